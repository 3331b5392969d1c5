"""Early stop of KD fine-tunes that cannot meet the accuracy constraints: stops hopeless ones, leaves the rest be."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch

from autoslim.cost import get_profile
from autoslim.plan import CompressionPlan
from autoslim.search import SearchConfig, load_space, run_search
from autoslim.search.driver import accuracy_floor, current_fronts
from autoslim.search.space import Constraints
from autoslim.techniques import StoppedEarly
from autoslim.trial import TrialSpec, build_model, early_stop, run_trial
from tests.conftest import TINY_PROFILES, TINY_TASK, apply, make_ctx, make_model, same_state, write_space
from tests.tiny_task import tiny_task

KD = {"epochs": 3, "batch_size": 64}
HOPELESS = {"prune.structured": {"ratio": 0.8}, "distill.kd": KD}  # the tiny task stays at 29% after any epoch
GOOD = {"prune.structured": {"ratio": 0.3}, "distill.kd": KD}  # ~54% after epoch 1 (the teacher: 87.5%)


@pytest.fixture(autouse=True)
def _check_from_the_first_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny task's epochs are a few steps long: check them anyway (the guard has its own test)."""
    monkeypatch.setattr("autoslim.trial.EARLY_STOP_MIN_STEPS", 0)


def test_fine_tunes_shorter_than_the_minimum_are_never_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("autoslim.trial.EARLY_STOP_MIN_STEPS", 10_000)
    calls: list[int] = []
    plan = CompressionPlan.from_params({"prune.unstructured": {"amount": 0.5}, "distill.kd": {"epochs": 3}})
    build_model(plan, tiny_task(), epoch_callback=lambda e, n, m: calls.append(e))
    assert calls == []
    monkeypatch.setattr("autoslim.trial.EARLY_STOP_MIN_STEPS", 0)
    build_model(plan, tiny_task(), epoch_callback=lambda e, n, m: calls.append(e))
    assert calls == [1, 2]


def spec(plan: dict, min_accuracy: float | None) -> TrialSpec:
    profiles = (get_profile(TINY_PROFILES[0]),)
    return TrialSpec(CompressionPlan.from_params(plan).to_dict(), profiles, seed=1, min_accuracy=min_accuracy)


def test_kd_calls_the_callback_between_epochs_and_stops_when_it_raises() -> None:
    teacher = make_model("mlp")
    calls: list[tuple[int, int]] = []
    ctx = make_ctx("mlp", teacher=teacher, n_train=64)
    ctx.epoch_callback = lambda e, n, m: calls.append((e, n))
    apply("distill.kd", make_model("mlp", seed=1), ctx, epochs=3, batch_size=32)
    assert calls == [(1, 3), (2, 3)]  # never after the last epoch: stopping there saves nothing

    def stop(e: int, n: int, m: torch.nn.Module) -> None:
        calls.append((e, n))
        raise StoppedEarly("no")

    calls.clear()
    ctx.epoch_callback = stop
    with pytest.raises(StoppedEarly):
        apply("distill.kd", make_model("mlp", seed=1), ctx, epochs=3, batch_size=32)
    assert calls == [(1, 3)]


def test_a_hopeless_fine_tune_stops_before_its_last_epoch() -> None:
    result = run_trial(spec(HOPELESS, 0.8), tiny_task(), cache={})
    assert result.status == "stopped", result.reason
    # after epoch 1 of 3 the rule still lets the error (0.71, plus two standard errors) shrink to 1/6 of itself;
    # after epoch 2, to 1/3: 76% is the best it could reach
    assert result.reason == "stopped early: accuracy 0.2891 after epoch 2/3 cannot reach 0.8000"
    assert result.accuracy is None and not result.costs


def test_a_good_fine_tune_runs_every_epoch_and_reports_the_same_metric() -> None:
    task = tiny_task()
    seen: list[int] = []
    check = early_stop(task, 0.4)
    assert check is not None

    def watch(e: int, n: int, m: torch.nn.Module) -> None:
        seen.append(e)
        check(e, n, m)

    with_check, _ = build_model(CompressionPlan.from_params(GOOD), task, seed=1, epoch_callback=watch)
    without, _ = build_model(CompressionPlan.from_params(GOOD), task, seed=1)
    assert seen == [1, 2]
    assert same_state(with_check, without)  # the check evaluates read-only: weights and BN statistics unchanged

    checked, plain = run_trial(spec(GOOD, 0.4), task, cache={}), run_trial(spec(GOOD, None), task, cache={})
    assert checked.status == plain.status == "ok"
    assert checked.accuracy == plain.accuracy and checked.costs == plain.costs


def test_accuracy_floor_from_the_constraints() -> None:
    assert accuracy_floor(Constraints(), 0.9) is None
    assert accuracy_floor(Constraints(max_accuracy_drop=0.01), 0.9) == pytest.approx(0.89)
    assert accuracy_floor(Constraints(max_accuracy_drop=0.01), None) is None  # the baseline has not finished yet
    assert accuracy_floor(Constraints(max_accuracy_drop=0.01, min_accuracy=0.95), 0.9) == 0.95
    assert accuracy_floor(Constraints(min_accuracy=0.5), None) == 0.5


@pytest.mark.usefixtures("repo_root_on_path")
@pytest.mark.parametrize("early", [True, False])
def test_the_driver_records_a_stopped_trial_as_stopped(tmp_path: Path, early: bool) -> None:
    space = {
        "name": "hopeless", "profiles": TINY_PROFILES, "constraints": {"max_accuracy_drop": 0.05},
        "techniques": {"prune.structured": {"params": {"ratio": 0.8}}, "distill.kd": {"params": KD}},
        "recipes": [HOPELESS],
    }  # fmt: skip
    config = SearchConfig(
        space=load_space(write_space(tmp_path / "space.yaml", space)), profiles=[get_profile(p) for p in TINY_PROFILES],
        budget=2, task=TINY_TASK, study="s", results_dir=tmp_path / "results", workers=1, early_stop=early,
    )  # fmt: skip
    outcome = run_search(config)
    assert outcome.ran == 2  # a stopped trial counts toward the budget
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "results" / "s" / "study.journal"))
    )
    trial = optuna.load_study(study_name="s", storage=storage).trials[1]
    row = outcome.trials.iloc[1]
    if early:  # the baseline (87.5%) less 5 pp: 82.5% is out of reach
        assert trial.state == optuna.trial.TrialState.PRUNED
        assert row["status"] == "stopped" and row["reason"].startswith("stopped early: accuracy 0.2891 after epoch 2/3")
    else:  # runs to the end, then fails the constraint
        assert trial.state == optuna.trial.TrialState.COMPLETE and row["status"] == "ok" and not row["feasible"]


QUANTIZED = {"prune.structured": {"ratio": 0.3}, "distill.kd": KD, "quantize": {"weight_bits": 2, "act_bits": None}}


def test_the_check_sees_the_plan_after_quantization_and_leaves_the_fine_tune_alone() -> None:
    task = tiny_task()
    levels: list[int] = []

    def watch(e: int, n: int, preview: torch.nn.Module) -> None:  # 2-bit weights: at most 4 levels per channel
        w = dict(preview.named_parameters())["3.conv1.weight"]
        levels.append(max(len(torch.unique(row)) for row in w))

    with_check, _ = build_model(CompressionPlan.from_params(QUANTIZED), task, seed=1, epoch_callback=watch)
    without, _ = build_model(CompressionPlan.from_params(QUANTIZED), task, seed=1)
    assert levels and max(levels) <= 4
    assert same_state(with_check, without)


def _fronts(point: tuple[float, float, int]) -> dict[str, tuple[tuple[float, float, int], ...]]:
    return {p: (point,) for p in TINY_PROFILES}


def test_a_fine_tune_dominated_on_every_profile_stops() -> None:
    profiles = tuple(get_profile(p) for p in TINY_PROFILES)
    plan = CompressionPlan.from_params(GOOD).to_dict()
    beaten = run_trial(TrialSpec(plan, profiles, seed=1, fronts=_fronts((0.0, 1.0, 7))), tiny_task(), cache={})
    assert beaten.status == "stopped"
    assert "dominated at its cost on every profile" in beaten.reason and "trial 7" in beaten.reason
    # a front point that costs more than the trial's model, or one that is less accurate, dominates nothing
    for point in ((1e12, 1.0, 7), (0.0, 0.05, 7)):
        assert run_trial(TrialSpec(plan, profiles, seed=1, fronts=_fronts(point)), tiny_task(), cache={}).status == "ok"
    # beaten on one profile only: it could still enter the other's front
    one = {TINY_PROFILES[0]: ((0.0, 1.0, 7),), TINY_PROFILES[1]: ()}
    assert run_trial(TrialSpec(plan, profiles, seed=1, fronts=one), tiny_task(), cache={}).status == "ok"


def test_the_driver_hands_each_profile_its_front() -> None:
    df = pd.DataFrame({
        "trial": [0, 1, 2, 3], "status": ["ok", "ok", "ok", "failed"], "accuracy": [0.9, 0.8, 0.7, None],
        "feasible": [True, True, True, True], "p.model_bytes": [100.0, 50.0, 60.0, None], "p.fits": [True] * 4,
    })  # fmt: skip
    profile = dataclasses.replace(get_profile(TINY_PROFILES[1]), name="p", objective="model_bytes")
    assert current_fronts(df, [profile]) == {"p": ((50.0, 0.8, 1), (100.0, 0.9, 0))}  # trial 2 is dominated
    assert current_fronts(df.iloc[:0], [profile]) == {"p": ()}


@pytest.mark.parametrize("mode", ["ptq", "qat"])
def test_dominance_prices_the_quantized_model_the_plan_delivers(mode: str) -> None:
    """A front point cheaper than the float model but dearer than the quantized one must not stop the trial: the
    check prices the preview (quantized, fake quantization stripped under QAT), not the model in training."""
    task = tiny_task()
    profiles = (get_profile("mcu-cortex-m7"),)  # stored bytes: 4-bit weights cut them ~6x (latency barely moves here)
    plan = {**QUANTIZED, "quantize": {"weight_bits": 4, "act_bits": 8, "mode": mode}}
    final = run_trial(TrialSpec(CompressionPlan.from_params(plan).to_dict(), profiles, seed=1), task, cache={})
    floating = run_trial(TrialSpec(CompressionPlan.from_params({k: v for k, v in plan.items() if k != "quantize"})
                                   .to_dict(), profiles, seed=1), task, cache={})  # fmt: skip
    assert final.status == floating.status == "ok"

    def at(scale: float) -> dict:
        # Per profile: between the quantized and the float cost (scale 1.5), or below the quantized one (0.9).
        costs = {p.name: final.costs[p.name][p.objective] for p in profiles}
        for p in profiles:
            assert costs[p.name] * 1.5 < floating.costs[p.name][p.objective]
        return {name: ((scale * c, 1.0, 9),) for name, c in costs.items()}

    plan_dict = CompressionPlan.from_params(plan).to_dict()
    kept = run_trial(TrialSpec(plan_dict, profiles, seed=1, fronts=at(1.5)), task, cache={})
    assert kept.status == "ok" and kept.accuracy == final.accuracy and kept.costs == final.costs
    stopped = run_trial(TrialSpec(plan_dict, profiles, seed=1, fronts=at(0.9)), task, cache={})
    assert stopped.status == "stopped" and "dominated" in stopped.reason
    assert stopped.notes["distill.kd"]["epochs_run"] == KD["epochs"]  # a stopped trial keeps its steps' notes


def test_no_check_and_no_preview_while_a_front_is_empty() -> None:
    task = tiny_task()
    profiles = tuple(get_profile(p) for p in TINY_PROFILES)
    assert early_stop(task, None, {TINY_PROFILES[0]: ((1.0, 1.0, 0),), TINY_PROFILES[1]: ()}, profiles) is None
    assert early_stop(task, None, None, profiles) is None
    assert early_stop(task, 0.5, None, profiles) is not None
