"""run_search: ask/tell over an executor until the study holds `budget` finished trials; resumable."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest

from autoslim.cost import get_profile
from autoslim.plan import CompressionPlan
from autoslim.search import Progress, SearchConfig, load_space, run_search
from autoslim.search.space import SearchSpace
from autoslim.search.study import INTERRUPTED, StudyMismatchError, finished_count
from autoslim.trial import run_trial as real_run_trial
from tests.conftest import TINY_PROFILES, TINY_SPACE, TINY_TASK, write_space

pytestmark = pytest.mark.usefixtures("repo_root_on_path")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOSLIM_CACHE", str(tmp_path / "cache"))  # preflight results are cached there


def config(tmp_path: Path, space_file: Path, budget: int, **kw) -> SearchConfig:
    return SearchConfig(
        space=load_space(space_file), profiles=[get_profile(p) for p in kw.pop("profiles", TINY_PROFILES)],
        budget=budget, task=TINY_TASK, study="s", results_dir=tmp_path / "results", workers=1, **kw,
    )  # fmt: skip


def _storage(tmp_path: Path) -> optuna.storages.JournalStorage:
    return optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "results" / "s" / "study.journal"))
    )


def load(tmp_path: Path) -> optuna.Study:
    return optuna.load_study(study_name="s", storage=_storage(tmp_path))


def test_search_fills_the_budget_then_resume_tops_it_up(tmp_path: Path, space_file: Path) -> None:
    events: list[Progress] = []
    outcome = run_search(config(tmp_path, space_file, 3), on_progress=events.append)

    assert outcome.ran == 3 and not outcome.interrupted
    df = outcome.trials
    assert df["trial"].tolist() == [0, 1, 2]
    assert (df["status"] == "ok").all(), df["reason"].tolist()
    # trial 0 is the uncompressed baseline, trial 1 the space's recipe
    assert df["is_baseline"].tolist() == [True, False, False]
    assert df.loc[0, "plan"] == "baseline (uncompressed)"
    recipe = CompressionPlan.from_params(TINY_SPACE["recipes"][0])
    assert CompressionPlan.from_dict(json.loads(df.loc[1, "plan_json"])) == recipe
    for p in TINY_PROFILES:
        for col in ("latency_ms", "model_bytes", "peak_activation_bytes", "macs"):
            assert df[f"{p}.{col}"].notna().all()
        # the 8-bit recipe is smaller than the baseline on every profile
        assert df.loc[1, f"{p}.model_bytes"] < df.loc[0, f"{p}.model_bytes"]
    # progress: one line before any trial, then one per finished trial
    assert [(e.done, e.result is None) for e in events] == [(0, True), (1, False), (2, False), (3, False)]
    assert events[-1].budget == 3

    folder = tmp_path / "results" / "s"
    assert outcome.folder == folder
    assert len(pd.read_csv(folder / "trials.csv")) == 3
    assert (
        'class="plotly-graph-div"' in (folder / "report.html").read_text()
    )  # the one-file report comes with every search
    for p in TINY_PROFILES:
        front = pd.read_csv(folder / f"pareto_{p}.csv")
        assert len(front) >= 1 and set(front["trial"]) <= {0, 1, 2}
        assert front.equals(front.sort_values(f"{p}.{get_profile(p).objective}"))
        assert (folder / f"pareto_{p}.png").stat().st_size > 0
        assert set(outcome.fronts[p]["trial"]) == set(front["trial"])

    # the study itself: accuracy plus each profile's own objective
    study = load(tmp_path)
    t1 = study.trials[1]
    assert t1.user_attrs["notes"]["quantize"]["layers"] > 0  # what each step did is kept with the trial
    assert t1.values == pytest.approx(
        [df.loc[1, "accuracy"], df.loc[1, "x86-avx512-vnni.latency_ms"], df.loc[1, "mcu-cortex-m7.model_bytes"]]
    )

    again = run_search(config(tmp_path, space_file, 5))
    assert again.ran == 2
    assert again.trials["trial"].tolist() == [0, 1, 2, 3, 4]
    assert again.trials["is_baseline"].sum() == 1
    assert again.trials.iloc[:3].drop(columns="duration_s").equals(df.drop(columns="duration_s"))

    assert run_search(config(tmp_path, space_file, 5)).ran == 0


def test_stale_running_trial_becomes_interrupted_and_does_not_count(tmp_path: Path, space_file: Path) -> None:
    cfg = config(tmp_path, space_file, 2)
    cfg.folder.mkdir(parents=True)
    study = optuna.create_study(
        study_name="s", storage=_storage(tmp_path), directions=["maximize", "minimize", "minimize"]
    )
    stale = study.ask()  # a process asked for it and died: left RUNNING in the journal
    assert stale.number == 0

    outcome = run_search(cfg)

    study = load(tmp_path)
    first = study.trials[0]
    assert first.state == optuna.trial.TrialState.FAIL
    assert first.user_attrs["status"] == INTERRUPTED
    assert any("interrupted" in n for n in outcome.notes)
    assert outcome.ran == 2
    assert finished_count(study) == 2
    df = outcome.trials
    assert (df.loc[df["trial"] != 0, "status"] == "ok").all()
    assert df["is_baseline"].sum() == 1  # the baseline still runs


def test_keyboard_interrupt_keeps_finished_trials_and_resumes(
    tmp_path: Path, space_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _interrupt_on_call(monkeypatch, 2)
    outcome = run_search(config(tmp_path, space_file, 4))
    assert outcome.interrupted
    assert outcome.ran == 1
    assert any("resume" in n for n in outcome.notes)
    assert (tmp_path / "results" / "s" / "trials.csv").exists()

    monkeypatch.setattr("autoslim.execution.inline.run_trial", real_run_trial)
    resumed = run_search(config(tmp_path, space_file, 4))
    assert not resumed.interrupted
    assert resumed.ran == 3
    study = load(tmp_path)
    assert finished_count(study) == 4
    assert sum(t.user_attrs.get("status") == INTERRUPTED for t in study.trials) == 1


def test_infeasible_trials_are_recorded_and_the_search_goes_on(tmp_path: Path) -> None:
    space = write_space(
        tmp_path / "cut.yaml",
        {"name": "cut", "techniques": {"cut.blocks": {"when": "always", "params": {"n_blocks": 99}}}},
    )
    outcome = run_search(config(tmp_path, space, 3, preflight=False))  # preflight would take cut.blocks out
    df = outcome.trials
    assert df["status"].tolist() == ["ok", "infeasible", "infeasible"]
    assert df["reason"].iloc[1:].str.contains("removable").all()
    assert df["accuracy"].iloc[1:].isna().all()
    study = load(tmp_path)
    # told as PRUNED, so TPE counts them among the bad trials (it ignores FAIL); still "infeasible" for autoslim
    assert [t.state for t in study.trials[1:]] == [optuna.trial.TrialState.PRUNED] * 2
    assert [t.user_attrs["status"] for t in study.trials[1:]] == ["infeasible"] * 2
    assert finished_count(study) == 3
    for p in TINY_PROFILES:
        assert outcome.fronts[p]["trial"].tolist() == [0]


def test_a_sampled_plan_no_config_accepts_is_infeasible(
    tmp_path: Path, space_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SearchSpace, "sample", lambda self, trial, profiles=(): {"quantize": {"weight_bits": 5}})
    outcome = run_search(config(tmp_path, space_file, 3))
    df = outcome.trials
    assert len(df) == 3
    # The baseline and the recipe run as written; the sampled third trial is the one no config accepts.
    assert df["status"].tolist() == ["ok", "ok", "infeasible"]
    assert df["reason"].iloc[2:].str.contains("weight_bits").all()
    assert finished_count(load(tmp_path)) == 3
    assert load(tmp_path).trials[2].state == optuna.trial.TrialState.PRUNED


def test_timeout_stops_starting_trials_and_the_queue_survives(tmp_path: Path, space_file: Path) -> None:
    outcome = run_search(config(tmp_path, space_file, 3, timeout_s=1e-9))
    assert outcome.ran == 0
    assert outcome.trials.empty
    assert (tmp_path / "results" / "s" / "trials.csv").exists()
    resumed = run_search(config(tmp_path, space_file, 2))
    assert resumed.ran == 2
    assert resumed.trials["is_baseline"].tolist() == [True, False]  # the queued baseline, once
    assert (
        json.loads(resumed.trials["plan_json"].iloc[1])
        == CompressionPlan.from_params(TINY_SPACE["recipes"][0]).to_dict()
    )


@pytest.mark.parametrize(
    "change", [{"profiles": ["x86-avx512-vnni"]}, {"profiles": ["mcu-cortex-m7", "x86-avx512-vnni"]}]
)
def test_resuming_with_other_settings_is_refused(tmp_path: Path, space_file: Path, change: dict) -> None:
    run_search(config(tmp_path, space_file, 1))
    with pytest.raises(StudyMismatchError, match="profiles"):
        run_search(config(tmp_path, space_file, 2, **change))


def test_resuming_with_another_space_is_refused(tmp_path: Path, space_file: Path) -> None:
    run_search(config(tmp_path, space_file, 1))
    other = write_space(tmp_path / "other.yaml", {**TINY_SPACE, "name": "other"})
    with pytest.raises(StudyMismatchError, match="space"):
        run_search(config(tmp_path, other, 2))


def _interrupt_on_call(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    calls = []

    def flaky(spec, task, **kw):
        calls.append(spec.number)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real_run_trial(spec, task, **kw)

    monkeypatch.setattr("autoslim.execution.inline.run_trial", flaky)


def test_interrupt_leaves_no_running_trial_behind(
    tmp_path: Path, space_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _interrupt_on_call(monkeypatch, 2)
    assert run_search(config(tmp_path, space_file, 4)).interrupted
    states = [t.state for t in load(tmp_path).trials]
    assert optuna.trial.TrialState.RUNNING not in states


def test_an_interrupted_recipe_is_retried_on_resume(
    tmp_path: Path, space_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _interrupt_on_call(monkeypatch, 2)  # trial 1 is the recipe
    assert run_search(config(tmp_path, space_file, 4)).interrupted
    monkeypatch.setattr("autoslim.execution.inline.run_trial", real_run_trial)
    df = run_search(config(tmp_path, space_file, 4)).trials
    recipe = json.dumps(CompressionPlan.from_params(TINY_SPACE["recipes"][0]).to_dict(), sort_keys=True)
    assert (df.loc[df["status"] == "ok", "plan_json"] == recipe).any()


@pytest.mark.slow
def test_a_worker_that_dies_fails_its_trial_instead_of_the_search(tmp_path: Path, space_file: Path) -> None:
    cfg = config(tmp_path, space_file, 2)
    cfg.task, cfg.workers = "tests.tiny_task:crashing_task", 2
    outcome = run_search(cfg)
    assert outcome.trials["status"].tolist() == ["failed", "failed"]
    assert outcome.trials["reason"].str.len().gt(0).all()
    assert optuna.trial.TrialState.RUNNING not in [t.state for t in load(tmp_path).trials]
    assert (tmp_path / "results" / "s" / "trials.csv").exists()
