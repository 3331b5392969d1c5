"""Multi-fidelity search in the driver: rungs of fine-tune length, ASHA promotion, fronts from the top rung only,
resume keeping finished rungs."""

from __future__ import annotations

import copy
from pathlib import Path

import optuna
import pytest

from autoslim.cost import get_profile
from autoslim.search import Progress, SearchConfig, load_space, run_search
from autoslim.search.ladder import CONFIG_ATTR, NOT_PROMOTED, RUNGS_ATTR, RungsChangedError
from autoslim.search.study import INTERRUPTED, finished_count
from autoslim.trial import run_trial as real_run_trial
from tests.conftest import TINY_PROFILES, TINY_SPACE, TINY_TASK, write_space

pytestmark = pytest.mark.usefixtures("repo_root_on_path")

# KD long enough that its rungs differ: 3 epochs of the tiny task's training data
MF_SPACE = copy.deepcopy(TINY_SPACE)
MF_SPACE["techniques"]["distill.kd"]["params"]["epochs"] = 3
MF_SPACE["rungs"] = {"fractions": [0.2, 1.0], "reduction_factor": 2}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOSLIM_CACHE", str(tmp_path / "cache"))


def _config(tmp_path: Path, budget: int, data: dict | None = None, **kw) -> SearchConfig:
    space = write_space(tmp_path / "mf.yaml", MF_SPACE if data is None else data)
    kw.setdefault("workers", 1)
    return SearchConfig(space=load_space(space), profiles=[get_profile(p) for p in TINY_PROFILES], budget=budget,
                        task=TINY_TASK, study="s", results_dir=tmp_path / "results", **kw)  # fmt: skip


def _study(tmp_path: Path) -> optuna.Study:
    backend = optuna.storages.journal.JournalFileBackend(str(tmp_path / "results" / "s" / "study.journal"))
    return optuna.load_study(study_name="s", storage=optuna.storages.JournalStorage(backend))


def test_trials_climb_rungs_and_only_the_top_rung_enters_the_fronts(tmp_path: Path) -> None:
    events: list[Progress] = []
    out = run_search(_config(tmp_path, 14), on_progress=events.append)
    study = _study(tmp_path)
    assert study.user_attrs[CONFIG_ATTR] == {"fractions": [0.2, 1.0], "reduction_factor": 2, "rule": "hypervolume"}
    climbers = [t for t in study.trials if t.user_attrs.get(RUNGS_ATTR)]
    kd = [t for t in climbers if "distill.kd" in (t.user_attrs.get("notes") or {})]
    assert kd, "the space samples structural steps, so some trials fine-tune"
    for t in kd:
        rungs = t.user_attrs[RUNGS_ATTR]
        assert rungs[0]["rung"] in (0, 1) and [r["rung"] for r in rungs] == sorted(r["rung"] for r in rungs)
        if rungs[-1]["rung"] == 0 and t.user_attrs["status"] == "stopped":
            assert t.user_attrs["reason"].startswith(NOT_PROMOTED)
        if t.user_attrs["status"] == "ok" and not t.user_attrs.get("recipe"):
            assert rungs[-1]["rung"] == 1  # a trial told ok ran its whole fine-tune
            notes = t.user_attrs["notes"]["distill.kd"]
            assert "fidelity" not in notes  # the top rung: the plan's own steps
    low = [t for t in kd if t.user_attrs[RUNGS_ATTR][0]["rung"] == 0]
    assert low, "plans with a fine-tune start at the lowest rung"
    # the short rung really ran a share of the steps: 1/5 of 3 epochs
    first = low[0].user_attrs[RUNGS_ATTR][0]
    assert first["fidelity"] == 0.2
    promoted = [t for t in low if len(t.user_attrs[RUNGS_ATTR]) == 2]
    stopped = [t for t in low if t.user_attrs["status"] == "stopped" and len(t.user_attrs[RUNGS_ATTR]) == 1]
    assert promoted and stopped, (len(promoted), len(stopped))
    # the sampler is told what the low rung measured (COMPLETE), the trial stays stopped and off the fronts
    assert all(t.state == optuna.trial.TrialState.COMPLETE and t.values is not None for t in stopped)
    # fronts and the trials table: not-promoted trials are not on any front
    on_fronts = {int(n) for f in out.fronts.values() for n in f["trial"]}
    assert not on_fronts & {t.number for t in stopped}
    assert finished_count(study) == 14
    assert "rung" in out.trials.columns
    html = (tmp_path / "results" / "s" / "report.html").read_text()
    assert "Promotion ladder" in html
    # progress: one event per promotion (the bar does not advance) and one per finished trial
    # (a late promotion's event comes when its new trial starts, and names the turned-down one)
    ups = [e for e in events if e.promoted_to is not None]
    assert sorted(e.number for e in ups) == sorted(t.number for t in promoted)
    assert all(e.promoted_to == 1 for e in ups)
    assert all(e.result is not None and e.result.accuracy is not None for e in ups if e.late_of is None)
    # a late promotion's trial counts instead of the turned-down one when it ends: the count never goes back
    late = {e.number for e in ups if e.late_of is not None}
    ends = [e for e in events if e.result is not None and e.promoted_to is None]
    assert [e.done for e in ends if e.number not in late] == list(range(1, 15))
    assert [e.done for e in ends] == sorted(e.done for e in ends)
    # the baseline and recipes run once at the top: their seconds are kept apart from the top rung's fine-tunes
    base = next(t for t in study.trials if t.user_attrs.get("baseline"))
    assert base.user_attrs[RUNGS_ATTR] == [dict(base.user_attrs[RUNGS_ATTR][0], once=True)]
    assert all("once" not in e for t in kd if not t.user_attrs.get("recipe") for e in t.user_attrs[RUNGS_ATTR])


def test_a_low_rung_runs_a_share_of_the_fine_tune(tmp_path: Path) -> None:
    from autoslim.cost import get_profile as gp
    from autoslim.plan import CompressionPlan
    from autoslim.tasks import load_task
    from autoslim.trial import TrialSpec

    task = load_task(TINY_TASK)
    plan = CompressionPlan.from_params({"prune.unstructured": {"amount": 0.5}, "distill.kd": {"epochs": 3}})
    full = real_run_trial(TrialSpec(plan.to_dict(), (gp("mcu-cortex-m7"),)), task)
    short = real_run_trial(TrialSpec(plan.to_dict(), (gp("mcu-cortex-m7"),), fidelity=0.2), task)
    kd_full, kd_short = full.notes["distill.kd"], short.notes["distill.kd"]
    planned = 3 * kd_full["steps_per_epoch"]
    assert "steps_run" not in kd_full
    assert kd_short["steps_planned"] == planned and kd_short["steps_run"] == -(-planned // 5)
    assert kd_short["epochs_run"] < kd_full["epochs_run"]


def test_resume_after_a_kill_in_a_rung_keeps_finished_rungs_and_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill while a promoted trial runs its top rung: the resumed search runs that rung again (its rung 0 kept,
    not rerun) and the study ends with exactly the budget."""
    import autoslim.execution.inline as inline

    low: set[int] = set()  # trials that ran rung 0
    killed: list[int] = []

    def killing(spec, task, **kw):  # type: ignore[no-untyped-def]
        if spec.fidelity == 1.0 and spec.number in low and not killed:
            killed.append(spec.number)
            raise KeyboardInterrupt  # as SIGTERM / Ctrl-C: the running trial is marked interrupted
        if spec.fidelity < 1.0:
            low.add(spec.number)
        return real_run_trial(spec, task, **kw)

    monkeypatch.setattr(inline, "run_trial", killing)
    out = run_search(_config(tmp_path, 12))
    assert out.interrupted and killed
    study = _study(tmp_path)
    victim = [t for t in study.trials if t.user_attrs.get("status") == INTERRUPTED]
    assert len(victim) == 1 and victim[0].user_attrs[RUNGS_ATTR][0]["rung"] == 0
    before = victim[0].user_attrs[RUNGS_ATTR][0]
    monkeypatch.setattr(inline, "run_trial", real_run_trial)
    run_search(_config(tmp_path, 12))
    study = _study(tmp_path)
    again = [t for t in study.trials if t.user_attrs.get("requeue_of") == victim[0].number]
    assert len(again) == 1
    rungs = again[0].user_attrs[RUNGS_ATTR]
    assert rungs[0] == before and rungs[-1]["rung"] == 1  # rung 0 kept as it was, rung 1 run
    assert finished_count(study) == 12


def test_resuming_with_other_rungs_or_none_is_refused(tmp_path: Path) -> None:
    run_search(_config(tmp_path, 3))
    other = {**MF_SPACE, "rungs": {"fractions": [0.5, 1.0], "reduction_factor": 2}}
    with pytest.raises(RungsChangedError, match="began with rungs"):
        run_search(_config(tmp_path, 4, other))
    with pytest.raises(RungsChangedError, match="began with multi-fidelity"):
        run_search(_config(tmp_path, 4, multifidelity=False))


def test_a_bad_rungs_field_names_it(tmp_path: Path) -> None:
    from autoslim.search.space import SpaceError

    bad = write_space(tmp_path / "bad.yaml", {**MF_SPACE, "rungs": {"fractions": [0.5, 0.2]}})
    with pytest.raises(SpaceError, match="rungs: rung fractions must"):
        load_space(bad)
    bad = write_space(tmp_path / "bad2.yaml", {**MF_SPACE, "rungs": {"eta": 3}})
    with pytest.raises(SpaceError, match=r"rungs: .*unknown key"):
        load_space(bad)


_KILLED_DRIVER = """
import sys, time
import autoslim.execution.inline as inline
from autoslim.trial import run_trial
sys.path.insert(0, {root!r})
from tests.search.test_ladder import _config
from autoslim.search import run_search

def slow_top_rung(spec, task, **kw):
    if spec.fidelity == 1.0 and spec.number is not None and spec.number > 3:
        time.sleep(60)  # a promoted trial's full fine-tune: killed -9 in the middle of it
    return run_trial(spec, task, **kw)

inline.run_trial = slow_top_rung
from pathlib import Path
run_search(_config(Path({tmp!r}), 12))
"""


def test_resume_after_kill_9_in_a_rung(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    root = str(Path(__file__).resolve().parents[2])
    script = tmp_path / "driver.py"
    script.write_text(_KILLED_DRIVER.format(root=root, tmp=str(tmp_path)))
    journal = tmp_path / "results" / "s" / "study.journal"
    proc = subprocess.Popen([sys.executable, str(script)], cwd=root, start_new_session=True,
                            env={**os.environ, "AUTOSLIM_CACHE": str(tmp_path / "cache")})  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.exists() and '"promoted_to"' in journal.read_text():
                time.sleep(0.5)  # inside the 60 s top rung
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the driver ended before any promotion"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = _study(tmp_path)
    climbing = [t for t in before.trials if t.state.name == "RUNNING" and t.user_attrs.get(RUNGS_ATTR)]
    assert len(climbing) == 1
    kept = climbing[0].user_attrs[RUNGS_ATTR]
    finished_before = {t.number: t.values for t in before.trials if t.state.name in ("COMPLETE", "PRUNED")}
    run_search(_config(tmp_path, 12))
    after = _study(tmp_path)
    assert {t.number: t.values for t in after.trials if t.number in finished_before} == finished_before
    again = [t for t in after.trials if t.user_attrs.get("requeue_of") == climbing[0].number]
    assert len(again) == 1 and again[0].user_attrs[RUNGS_ATTR][: len(kept)] == kept
    assert again[0].user_attrs[RUNGS_ATTR][-1]["rung"] == 1
    assert finished_count(after) == 12


def test_multifidelity_with_a_shared_storage_is_refused_before_anything_runs(tmp_path: Path) -> None:
    cfg = _config(tmp_path, 3, storage=f"sqlite:///{tmp_path / 'shared.db'}")
    with pytest.raises(ValueError, match="shared --storage is not supported"):
        run_search(cfg)
    assert not (tmp_path / "shared.db").exists()


CONTINUE_SPACE = copy.deepcopy(MF_SPACE)
CONTINUE_SPACE["rungs"] = {**MF_SPACE["rungs"], "fine_tune": "continue"}


@pytest.mark.parametrize("workers", [1, 2])
def test_continued_rungs_go_on_from_the_rung_below_and_export_rebuilds_them(tmp_path: Path, workers: int) -> None:
    """fine_tune: continue: a promoted trial's top rung trains only the steps its low rung did not, starting from
    the state that rung left (through the driver: process workers hand it over as bytes), and export rebuilds
    the model bit for bit by running the same legs."""
    from autoslim.export import export_trial

    run_search(_config(tmp_path, 14, CONTINUE_SPACE, workers=workers))
    study = _study(tmp_path)
    assert study.user_attrs[CONFIG_ATTR]["fine_tune"] == "continue"
    promoted = [t for t in study.trials if [e["rung"] for e in t.user_attrs.get(RUNGS_ATTR) or []] == [0, 1]]
    assert promoted, "some trial went on to the top rung"
    for t in promoted:
        top = t.user_attrs[RUNGS_ATTR][1]
        kd = t.user_attrs["notes"]["distill.kd"]
        if t.user_attrs["status"] != "ok":
            continue
        assert top["continued_from"] == 0.2 and t.user_attrs["fine_tune_legs"] == [0.2, 1.0]
        planned = 3 * kd["steps_per_epoch"]  # MF_SPACE: 3 epochs, none added per share removed
        assert kd["steps_run"] == planned - -(-planned // 5)  # the rest of the fine-tune, not all of it again
    done = next(t for t in promoted if t.user_attrs["status"] == "ok")
    exported = export_trial(tmp_path / "results" / "s", task=TINY_TASK, trial=done.number, fmt="state-dict",
                            out=tmp_path / "out", measure=False)  # fmt: skip
    assert exported.manifest["reevaluated_accuracy"] == done.user_attrs["accuracy"]
    assert exported.manifest["fine_tune_legs"] == [0.2, 1.0]
    from autoslim.report.ladder import ladder_rows

    continued = sum(t.user_attrs[RUNGS_ATTR][1].get("continued_from") == 0.2 for t in promoted)
    assert continued and ladder_rows(study)[1][2].endswith(f" ({continued} continued)")
    # not-promoted rungs keep nothing and a restart-mode study records no legs
    assert all(t.user_attrs.get("fine_tune_legs") is None for t in study.trials if t not in promoted)


def test_restart_is_the_default_and_a_study_begun_with_it_resumes_without_the_key(tmp_path: Path) -> None:
    run_search(_config(tmp_path, 3))
    assert "fine_tune" not in _study(tmp_path).user_attrs[CONFIG_ATTR]
    with pytest.raises(RungsChangedError):
        run_search(_config(tmp_path, 4, CONTINUE_SPACE))


def test_a_trial_not_promoted_after_a_continued_rung_keeps_its_legs() -> None:
    from autoslim.search.ladder import Ladder
    from autoslim.search.rungs import Rungs
    from autoslim.trial import TrialResult

    ladder = Ladder(Rungs((1 / 9, 1 / 3, 1.0), fine_tune="continue"), [get_profile(p) for p in TINY_PROFILES])
    told = ladder.not_promoted(TrialResult("ok", accuracy=0.9, fine_tune_legs=[1 / 9, 1 / 3]), 1, "not in the top")
    assert told.status == "stopped" and told.fine_tune_legs == [1 / 9, 1 / 3]


def _early_best(order: list[int]):  # type: ignore[no-untyped-def]
    """A run_trial whose low rungs score by arrival: the first plans to finish rung 0 are the best, so they finish
    it while fewer than eta trials have (none promoted) and are pushed into the top share by the later ones."""
    import dataclasses

    def run(spec, task, **kw):  # type: ignore[no-untyped-def]
        result = real_run_trial(spec, task, **kw)
        if spec.fidelity < 1.0 and result.status == "ok":
            order.append(spec.number)
            result = dataclasses.replace(result, accuracy=0.99 - 0.02 * len(order))
        return result

    return run


@pytest.mark.parametrize("space", ["restart", "continue"])
def test_a_turned_down_trial_is_promoted_late_as_a_new_trial_of_the_same_plan_and_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, space: str
) -> None:
    """ASHA's late promotion: the first plan to finish rung 0 (best of all) was turned down (a rung of one
    promotes none) and goes on later, as a new Optuna trial of the same parameters and seed carrying its rung 0;
    the turned-down trial stays stopped, off the fronts, and the budget counts the plan once. Continued rungs go
    on from the state the driver kept, and export rebuilds the late trial bit for bit."""
    import autoslim.execution.inline as inline
    from autoslim.export import export_trial
    from autoslim.report.ladder import ladder_rows
    from autoslim.search.ladder import LATE_ATTR

    monkeypatch.setattr(inline, "run_trial", _early_best([]))
    data = CONTINUE_SPACE if space == "continue" else MF_SPACE
    out = run_search(_config(tmp_path, 14, data))
    study = _study(tmp_path)
    by_number = {t.number: t for t in study.trials}
    late = [t for t in study.trials if LATE_ATTR in t.user_attrs]
    assert late, "the early best plans were promoted late"
    on_fronts = {int(n) for f in out.fronts.values() for n in f["trial"]}
    for t in late:
        old = by_number[t.user_attrs[LATE_ATTR]]
        assert old.user_attrs["status"] == "stopped" and old.user_attrs["reason"].startswith(NOT_PROMOTED)
        assert old.number not in on_fronts and t.params == old.params and t.user_attrs["requeue_of"] == old.number
        assert t.user_attrs["seed"] == old.user_attrs["seed"]  # the same plan and seed: export rebuilds it
        assert t.user_attrs[RUNGS_ATTR][0] == old.user_attrs[RUNGS_ATTR][0]  # rung 0 carried, not run again
        assert t.user_attrs[RUNGS_ATTR][-1]["rung"] == 1
        if space == "continue":
            assert t.user_attrs[RUNGS_ATTR][1]["continued_from"] == 0.2
            assert t.user_attrs["fine_tune_legs"] == [0.2, 1.0]
    assert finished_count(study) == 14  # every plan once: a late promotion takes no new slot
    assert len(study.trials) == 14 + len(late)
    # one row per plan: the turned-down trial's row is gone, its late trial holds its rungs
    assert sorted(out.trials["trial"]) == sorted(t.number for t in study.trials if t.number not in
                                                 {x.user_attrs[LATE_ATTR] for x in late})  # fmt: skip
    # the ladder counts the plan once at rung 0 (under its late trial) and once as promoted
    rows = ladder_rows(study)
    ran0 = sum(1 for t in study.trials if t.number not in {x.user_attrs[LATE_ATTR] for x in late}
               and any(e["rung"] == 0 for e in t.user_attrs.get(RUNGS_ATTR) or []))  # fmt: skip
    assert rows[0][2] == str(ran0)
    done = next(t for t in late if t.user_attrs["status"] == "ok")
    exported = export_trial(tmp_path / "results" / "s", task=TINY_TASK, trial=done.number, fmt="state-dict",
                            out=tmp_path / "out", measure=False)  # fmt: skip
    assert exported.manifest["reevaluated_accuracy"] == done.user_attrs["accuracy"]


def test_a_kill_in_a_late_promotion_resumes_it_with_its_seed_and_the_budget_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import autoslim.execution.inline as inline
    from autoslim.search.ladder import LATE_ATTR

    order: list[int] = []
    early = _early_best(order)
    killed: list[int] = []

    def killing(spec, task, **kw):  # type: ignore[no-untyped-def]
        if spec.fidelity == 1.0 and spec.seed < spec.number and not killed:  # seed 0: a late promotion runs
            killed.append(spec.number)  # with the seed of the earlier trial it goes on from
            raise KeyboardInterrupt
        return early(spec, task, **kw)

    monkeypatch.setattr(inline, "run_trial", killing)
    out = run_search(_config(tmp_path, 14))
    assert out.interrupted and killed
    study = _study(tmp_path)
    victim = next(t for t in study.trials if t.number == killed[0])
    assert victim.user_attrs["status"] == INTERRUPTED and LATE_ATTR in victim.user_attrs
    monkeypatch.setattr(inline, "run_trial", early)
    run_search(_config(tmp_path, 14))
    study = _study(tmp_path)
    again = [t for t in study.trials if t.user_attrs.get("requeue_of") == victim.number]
    assert len(again) == 1 and again[0].user_attrs[LATE_ATTR] == victim.user_attrs[LATE_ATTR]
    assert again[0].user_attrs["seed"] == next(
        t for t in study.trials if t.number == victim.user_attrs[LATE_ATTR]).user_attrs["seed"]  # fmt: skip
    assert again[0].user_attrs[RUNGS_ATTR][-1]["rung"] == 1
    assert finished_count(study) == 14


def test_late_promotion_moves_the_rungs_and_the_state_to_the_new_trial(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ladder's side, step by step: a rung of one promotes none; a later arrival pushes the first trial into
    the top share; its late trial takes its record (the rung still counts two trials) and its kept state; the
    lowest-ranked kept state goes first when the states outgrow their cap."""
    import autoslim.search.ladder as ladder_mod
    from autoslim.plan import CompressionPlan
    from autoslim.search.ladder import LATE_ATTR, Ladder
    from autoslim.search.rungs import Rungs
    from autoslim.trial import TrialResult

    profiles = [get_profile(p) for p in TINY_PROFILES]
    costs = {p.name: {p.objective: 1.0} for p in profiles}
    ladder = Ladder(Rungs((0.2, 1.0), reduction_factor=2, rule="rank", fine_tune="continue"), profiles)
    study = optuna.create_study(directions=["maximize"])

    def rung0(acc: float, state: bytes) -> optuna.Trial:
        t = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        assert ladder.first_rung(t, CompressionPlan.from_params({"distill.kd": {"epochs": 3}})) == 0
        result = TrialResult("ok", accuracy=acc, costs=costs, checkpoint=state)
        assert not ladder.finish(t, 0, result, 1.0)
        ladder.park(t, 0, result)
        study.tell(t, acc)
        return t

    assert ladder.next_late(lambda r, from_start: True) is None
    first = rung0(0.9, b"first")  # alone at rung 0: none promoted
    assert ladder.next_late(lambda r, from_start: True) is None
    rung0(0.5, b"second")  # 2 at rung 0: the top 1 is the first
    assert ladder.next_late(lambda r, from_start: False) is None  # its next rung would not end in time
    assert ladder.next_late(lambda r, from_start: True) == (first.number, 0)
    ladder.promote_late(study, first.number, 0)
    assert ladder.next_late(lambda r, from_start: True) is None  # promoted once
    late = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    assert late.user_attrs[LATE_ATTR] == first.number and late.params == first.params
    assert ladder.first_rung(late, CompressionPlan()) == 1 and ladder.seed_of(late) == first.number
    assert set(ladder.rungs.records[0]) == {late.number, first.number + 1}  # moved, not doubled
    assert ladder.take_state(late.number) == b"first" and ladder.take_state(late.number) is None
    # a trial promoted but then not run (out of time, a broken pool) is parked and promotable again
    third = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    ladder.first_rung(third, CompressionPlan.from_params({"distill.kd": {"epochs": 3}}))
    assert ladder.finish(third, 0, TrialResult("ok", accuracy=0.95, costs=costs), 1.0)  # top 1 of 3
    ladder.park(third, 0, TrialResult("ok", accuracy=0.95, costs=costs))
    study.tell(third, 0.95)
    assert ladder.next_late(lambda r, from_start: True) == (third.number, 0)
    assert ladder.next_late(lambda r, from_start: not from_start) is None  # no state kept: it reruns rung 1
    # the state cap: the worst-ranked parked state goes first
    monkeypatch.setattr(ladder_mod, "LATE_STATE_BYTES", 10)
    newest = rung0(0.1, b"x" * 8)
    assert ladder.take_state(newest.number) is None  # over the cap: the lowest ranked went
    assert ladder.take_state(first.number + 1) == b"second"


def test_a_late_promotion_queued_before_a_kill_runs_on_resume_though_the_budget_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill between queuing a late promotion and asking it leaves it waiting in a study whose budget is full:
    the resume runs it (the plan is counted already) and the count stays the budget."""
    import autoslim.execution.inline as inline
    from autoslim.search.ladder import LATE_ATTR, PROMOTED_ATTR, RESUME_ATTR, SEED_ATTR

    monkeypatch.setattr(inline, "run_trial", _early_best([]))
    run_search(_config(tmp_path, 10))
    study = _study(tmp_path)
    gone = {t.user_attrs.get(LATE_ATTR) for t in study.trials}
    parked = [t for t in study.trials if t.user_attrs.get("status") == "stopped" and t.number not in gone
              and t.user_attrs["reason"].startswith(NOT_PROMOTED)]  # fmt: skip
    assert parked and finished_count(study) == 10
    p = parked[0]
    study.enqueue_trial(p.params, user_attrs={"requeue_of": p.number, LATE_ATTR: p.number, SEED_ATTR: p.number,
                                              RUNGS_ATTR: p.user_attrs[RUNGS_ATTR], RESUME_ATTR: 1,
                                              PROMOTED_ATTR: 1})  # fmt: skip
    out = run_search(_config(tmp_path, 10))
    study = _study(tmp_path)
    late = [t for t in study.trials if t.user_attrs.get(LATE_ATTR) == p.number]
    assert len(late) == 1 and late[0].state.is_finished() and late[0].user_attrs[RUNGS_ATTR][-1]["rung"] == 1
    assert out.ran >= 1 and finished_count(study) == 10
