"""Preflight: each technique tried once on the teacher; what cannot apply leaves the space before trial 1."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
from torch import nn

import autoslim.search.preflight as pf
import autoslim.search.preflight_probe as probe
from autoslim.cost import get_profile
from autoslim.search import SearchConfig, load_space, run_search, space_from_dict
from autoslim.search.preflight import PreflightResult, preflight
from autoslim.search.study import finished_count
from autoslim.tasks import Task
from autoslim.techniques import InfeasibleError, list_techniques, register
from tests.conftest import TINY_PROFILES, TINY_SPACE, TINY_TASK, write_space
from tests.tiny_task import tiny_task

pytestmark = pytest.mark.usefixtures("repo_root_on_path")

# --- test-only techniques (the core names none: it must find their limits by trying) ---------------------------

CAP_LEVEL = 0.42  # test.cap applies up to this level ...
CAP_STEPS = 5  # ... and up to this many steps


@dataclass(frozen=True)
class CapConfig:
    level: float = 0.0
    steps: int = 0
    mode: str = "ok"  # "raise": any exception; "shape": changes the output shape
    epochs: int = 3  # a fine-tune length: preflight runs it at 1 and never probes its range


@dataclass(frozen=True)
class NeverConfig:
    size: int = 1


if "test.cap" not in list_techniques():

    @register("test.cap", CapConfig, order=45)
    def _cap(model: nn.Module, config: CapConfig, ctx: object) -> nn.Module:
        if config.level > CAP_LEVEL:
            raise InfeasibleError(f"test.cap: level {config.level} is above {CAP_LEVEL}")
        if config.steps > CAP_STEPS:
            raise InfeasibleError(f"test.cap: {config.steps} steps are too many")
        if config.mode == "raise":
            raise RuntimeError("mode raise breaks")
        if config.mode == "shape":
            return nn.Sequential(model, nn.Linear(3, 7))
        return model

    @register("test.never", NeverConfig, order=46)
    def _never(model: nn.Module, config: NeverConfig, ctx: object) -> nn.Module:
        raise InfeasibleError("test.never: never applies")


CAP_SPACE = {
    "name": "cap",
    "techniques": {
        "test.cap": {"params": {"level": {"float": [0.1, 0.9]}, "steps": {"int": [0, 10]},
                                "mode": {"choice": ["ok", "raise", "shape"]}, "epochs": {"int": [2, 6]}}},
        "test.never": {"when": "always", "params": {"size": 3}},
        "prune.unstructured": {"params": {"amount": {"float": [0.3, 0.8]}}},
    },
    "recipes": [{"test.never": {"size": 3}}, {"test.cap": {"level": 0.8}}, {"test.cap": {"level": 0.2, "mode": "ok"}}],
}  # fmt: skip


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AUTOSLIM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every model preflight builds, by technique."""
    calls: list[str] = []
    real = probe.build_model

    def counting(plan, task, **kw):  # type: ignore[no-untyped-def]
        calls.append(plan.steps[0].technique)
        return real(plan, task, **kw)

    monkeypatch.setattr(probe, "build_model", counting)
    return calls


PROFILES = [get_profile(p) for p in TINY_PROFILES]


def by_name(result: PreflightResult) -> dict[str, probe.PreflightRow]:
    return {r.technique: r for r in result.rows}


def test_removes_narrows_and_drops_what_cannot_apply() -> None:
    result = preflight(tiny_task(), space_from_dict(CAP_SPACE), PROFILES)
    rows = by_name(result)
    assert [t.name for t in result.space.techniques] == ["prune.unstructured", "test.cap"]  # canonical order kept
    assert rows["test.never"].applies == "no" and "never applies" in rows["test.never"].why
    assert rows["test.never"].after is None
    assert result.removed == {"test.never": rows["test.never"].why}

    cap = rows["test.cap"]
    assert cap.applies == "narrowed"
    params = result.space.techniques[1].params
    assert params["level"].low == 0.1 and CAP_LEVEL - 0.05 <= params["level"].high <= CAP_LEVEL  # bisected
    assert (params["steps"].kind, params["steps"].low, params["steps"].high) == ("int", 0, CAP_STEPS)
    assert params["mode"].choices == ("ok",)  # "raise" (an exception) and "shape" (output shape) dropped
    assert "output shape" in cap.why and "mode raise breaks" in cap.why and "level narrowed" in cap.why
    assert params["epochs"] == space_from_dict(CAP_SPACE).techniques[1].params["epochs"]  # not probed ...
    assert cap.config["epochs"] == 1  # ... and run short
    assert rows["prune.unstructured"].applies == "yes"

    # recipes: one uses the removed technique, one a level outside what applies; the third stays
    assert result.space.recipes == (CAP_SPACE["recipes"][2],)
    assert len(result.dropped_recipes) == 2
    lines = "\n".join(result.lines())
    assert "1 removed" in lines and "test.never: no" in lines and "recipe 2 dropped" in lines


def test_the_strong_end_is_the_smaller_model_whichever_end_it_is() -> None:
    space = space_from_dict({"techniques": {
        "prune.structured": {"params": {"ratio": {"float": [0.2, 0.6]}}},
        "quantize": {"params": {"weight_bits": {"int": [2, 8]}, "act_bits": {"choice": [8, None]}}},
    }})  # fmt: skip
    rows = by_name(preflight(tiny_task(), space, PROFILES))
    assert rows["prune.structured"].config["ratio"] == 0.6  # the high end prunes more
    assert rows["quantize"].config["weight_bits"] == 2  # the low end is the strong one here
    for r in rows.values():
        assert r.applies == "yes" and r.after is not None and r.seconds > 0
        for p in TINY_PROFILES:
            assert r.after["costs"][p]["model_bytes"] < r.before["costs"][p]["model_bytes"]
    assert rows["prune.structured"].after["params"] < rows["prune.structured"].before["params"]  # type: ignore[index]


def linear_task() -> Task:
    """A model with nothing to prune or cut: one Linear layer."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 12), torch.randint(0, 4, (64,))
    return Task(name="linear", model=nn.Sequential(nn.Linear(12, 4)).eval(), train=(x, y), val=(x, y),
                example_inputs=x[:2])  # fmt: skip


def test_real_techniques_that_cannot_apply_are_removed_with_their_reason() -> None:
    space = space_from_dict({"techniques": {
        "cut.blocks": {"params": {"n_blocks": {"int": [1, 3]}}},
        "prune.structured": {"params": {"ratio": {"float": [0.2, 0.8]}}},
        "quantize": {"when": "always", "params": {"weight_bits": 8}},  # fixed: tried at its value
    }})  # fmt: skip
    result = preflight(linear_task(), space, PROFILES)
    rows = by_name(result)
    assert rows["cut.blocks"].applies == "no" and "removable" in rows["cut.blocks"].why
    assert rows["prune.structured"].applies == "no" and "no channel" in rows["prune.structured"].why
    assert rows["quantize"].applies == "yes" and rows["quantize"].probes == 1
    assert [t.name for t in result.space.techniques] == ["quantize"]


def test_a_real_range_is_narrowed_by_bisection() -> None:
    space = space_from_dict({"techniques": {"cut.blocks": {"params": {"n_blocks": {"int": [1, 8]}}}}})
    result = preflight(tiny_task(), space, PROFILES)  # the tiny CNN has 4 removable blocks
    spec = result.space.techniques[0].params["n_blocks"]
    assert (spec.low, spec.high) == (1, 4)
    assert result.rows[0].applies == "narrowed" and "only 4 are removable" in result.rows[0].why
    assert result.rows[0].config == {"n_blocks": 4}


def test_results_are_cached_per_teacher_and_space(builds: list[str], _own_cache: Path) -> None:
    space = space_from_dict(CAP_SPACE)
    first = preflight(tiny_task(), space, PROFILES)
    n = len(builds)
    assert n > 0 and not first.cached
    assert len(list((_own_cache / "preflight").glob("*.json"))) == 1

    again = preflight(tiny_task(), space, PROFILES)
    assert len(builds) == n  # nothing built again
    assert again.cached and again.space == first.space and again.frame().equals(first.frame())

    preflight(tiny_task(), space, PROFILES, cache=False)
    assert len(builds) == 2 * n

    other = space_from_dict({**CAP_SPACE, "recipes": []})  # another space: another key
    preflight(tiny_task(), other, PROFILES)
    assert len(builds) == 3 * n

    task = tiny_task()
    with torch.no_grad():
        next(task.teacher().parameters()).add_(0.01)  # other weights: another key
    preflight(task, space, PROFILES)
    assert len(builds) == 4 * n


def config(tmp_path: Path, space_file: Path, budget: int, **kw) -> SearchConfig:
    return SearchConfig(space=load_space(space_file), profiles=PROFILES, budget=budget, task=TINY_TASK, study="s",
                        results_dir=tmp_path / "results", workers=1, **kw)  # fmt: skip


def test_the_driver_searches_the_narrowed_space_and_reports_it(tmp_path: Path) -> None:
    always = {"when": "always", "params": CAP_SPACE["techniques"]["test.cap"]["params"]}
    space = write_space(
        tmp_path / "cap.yaml", {**CAP_SPACE, "techniques": {**CAP_SPACE["techniques"], "test.cap": always}}
    )
    outcome = run_search(config(tmp_path, space, 4))
    assert any(n.startswith("preflight") and "1 removed" in n for n in outcome.notes)
    df = outcome.trials
    assert (df["status"] == "ok").all(), df["reason"].tolist()
    assert not df["plan"].str.contains("test.never").any()
    assert (df.loc[~df["is_baseline"], "params_test.cap.level"] <= CAP_LEVEL).all()
    folder = tmp_path / "results" / "s"
    table = pd.read_csv(folder / "preflight.csv")
    assert table["technique"].tolist() == ["prune.unstructured", "test.cap", "test.never"]
    assert table["applies"].tolist() == ["yes", "narrowed", "no"]
    assert {"x86-avx512-vnni.model_bytes_before", "mcu-cortex-m7.model_bytes_after", "seconds"} <= set(table)
    assert "Preflight" in (folder / "report.html").read_text()


def distributions(study: optuna.Study) -> set[str]:
    return {f"{n}={d!r}" for t in study.trials for n, d in t.distributions.items() if n.startswith("test.cap")}


def test_a_resumed_study_searches_the_same_space_without_running_preflight_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _own_cache: Path
) -> None:
    params = {"level": {"float": [0.1, 0.9]}, "mode": {"choice": ["ok", "shape"]}}
    space = write_space(
        tmp_path / "cap.yaml", {"name": "cap", "techniques": {"test.cap": {"when": "always", "params": params}}}
    )
    run_search(config(tmp_path, space, 2))
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "results" / "s" / "study.journal"))
    )
    before = distributions(optuna.load_study(study_name="s", storage=storage))
    assert before and all("high=0.9" not in d for d in before)  # narrowed

    for f in (_own_cache / "preflight").glob("*.json"):
        f.unlink()  # not the cache: the study's own record gives the space

    def fail(*_a: object, **_k: object) -> None:
        raise AssertionError("preflight ran again")

    monkeypatch.setattr(pf, "preflight", fail)
    again = run_search(config(tmp_path, space, 4, preflight=False))  # the study keeps what it began with
    assert again.ran == 2
    assert any("preflight (cached)" in n for n in again.notes)
    study = optuna.load_study(study_name="s", storage=storage)
    assert distributions(study) == before
    assert study.user_attrs["preflight"]["narrowed"]["test.cap"]["mode"]["choices"] == ["ok"]


def test_a_study_begun_without_preflight_keeps_the_full_space(tmp_path: Path) -> None:
    space = write_space(tmp_path / "tiny.yaml", TINY_SPACE)
    first = run_search(config(tmp_path, space, 1, preflight=False))
    assert not any("preflight" in n for n in first.notes)
    assert not (tmp_path / "results" / "s" / "preflight.csv").exists()
    again = run_search(config(tmp_path, space, 2))
    assert any("preflight: off for this study" in n for n in again.notes)


def test_a_space_where_nothing_applies_is_refused_before_any_trial(tmp_path: Path) -> None:
    space = write_space(tmp_path / "never.yaml", {"name": "never", "techniques": {"test.never": {"when": "always"}}})
    with pytest.raises(ValueError, match="no technique of the space applies"):
        run_search(config(tmp_path, space, 2))


def test_infeasible_trials_are_told_as_pruned_and_still_count_as_infeasible(tmp_path: Path) -> None:
    space = write_space(tmp_path / "cap.yaml", {"name": "cap", "techniques": {
        "test.cap": {"when": "always", "params": {"level": {"float": [0.1, 0.9]}}}}})  # fmt: skip
    outcome = run_search(config(tmp_path, space, 8, preflight=False, seed=3))
    df = outcome.trials
    infeasible = df[df["status"] == "infeasible"]
    assert len(infeasible) > 0 and infeasible["reason"].str.contains("above").all()
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "results" / "s" / "study.journal"))
    )
    study = optuna.load_study(study_name="s", storage=storage)
    for t in study.trials:
        state = {"ok": optuna.trial.TrialState.COMPLETE, "infeasible": optuna.trial.TrialState.PRUNED}
        assert t.state == state[t.user_attrs["status"]]
    assert finished_count(study) == 8  # they count toward the budget
    # TPE sees them (it reads COMPLETE and PRUNED trials; a FAIL it never sees)
    seen = study.get_trials(states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
    assert len(seen) == 8
    saved = pd.read_csv(tmp_path / "results" / "s" / "trials.csv")
    assert saved["status"].value_counts()["infeasible"] == len(infeasible)  # not "pruned" (stopped early)
    assert f"{len(infeasible)} infeasible" in (tmp_path / "results" / "s" / "report.html").read_text()  # the counts
