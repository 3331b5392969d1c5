"""The driver: the one place the Optuna study (ask / tell) meets an executor (run_trial).

``run_search`` keeps the executor's slots busy until the study holds ``budget`` finished trials, so rerunning
the same command after a crash finishes the job and a rerun with a larger budget runs only the difference. With
``time_budget_s`` it starts a trial only while that trial is expected to end in time (the median duration of the
finished ones), so the search ends within the time budget plus at most one running trial's rest.

The loop does no per-trial work that grows with the study beyond Optuna's own ask: the fronts a trial's early
stop needs are kept incrementally (``fronts.ParetoFronts``), a trial's record goes to the journal in one append
(``journal_batch.one_append``), and the trials table is built once at the start and once at the end.

A journal study (``results/<study>/study.journal``) has one driver at a time: ``run_search`` holds the folder's
``StudyLock``. With ``SearchConfig.storage`` (an Optuna RDB URL) several drivers share the study: the budget
counts every driver's trials, stale trials are found by heartbeat, and each driver writes the results folder.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from autoslim.cost import HardwareProfile
from autoslim.cost.profiles import profile_to_dict
from autoslim.execution import Executor, InlineExecutor, ProcessExecutor
from autoslim.plan import CompressionPlan
from autoslim.report import trials_frame, write_report
from autoslim.report.frame import front_frame
from autoslim.report.html import build_html
from autoslim.report.results import StudyResults, open_results
from autoslim.safe_io import replacing, safe_write_text
from autoslim.search.fronts import ParetoFronts
from autoslim.search.journal_batch import one_append
from autoslim.search.ladder import CONFIG_ATTR, LATE_ATTR, Ladder, RungsChangedError
from autoslim.search.lock import StudyLock
from autoslim.search.policy_tables import prepare_tables
from autoslim.search.preflight import study_preflight
from autoslim.search.run_info import run_record
from autoslim.search.rungs import rungs_from_config
from autoslim.search.space import Constraints, SearchSpace
from autoslim.search.space_check import check_space_unchanged
from autoslim.search.storage import Heartbeats, ask, fail_stale
from autoslim.search.study import (
    INTERRUPTED,
    beyond_budget,
    claimed_count,
    fail_stale_trials,
    finished_count,
    give_back,
    make_sampler,
    objective_names,
    open_study,
)
from autoslim.search.time_budget import Running, TimeBudget
from autoslim.tasks import Task, load_task
from autoslim.tasks.fingerprint import teacher_sha256
from autoslim.trial import TrialResult, TrialSpec


@dataclass
class SearchConfig:
    space: SearchSpace
    profiles: Sequence[HardwareProfile]
    budget: int | None = 50  # finished trials the study should hold; None: as many as the time budget allows
    task: str = "mnist1d-cnn"
    study: str = "default"
    results_dir: Path = Path("results")
    seed: int = 0
    workers: int | None = None  # None: one single-threaded worker per CPU core; 1: run inline
    timeout_s: float | None = None  # stop starting trials after this many seconds (a hard cut-off)
    time_budget_s: float | None = None  # start a trial only while it is expected to end within this many seconds
    sampler: str = "auto"
    warm_start: Path | None = None  # a previous study folder: its fronts' plans are tried first
    early_stop: bool = True  # stop a fine-tune that cannot meet the accuracy constraints (trial "stopped")
    executor: str | None = None  # inline|process|ray; None: inline if workers == 1, ray given ray_address, else process
    ray_address: str | None = None  # an existing Ray cluster (HEAD:6379); None with executor="ray": a local instance
    cpus_per_trial: float = 1.0  # torch threads per trial (process, ray) and the CPUs Ray reserves for it
    gpus_per_trial: float = 0.0  # GPUs Ray reserves per trial (ray only)
    preflight: bool = True  # try each technique on the teacher first; search only what applies (a new study only)
    storage: str | None = None  # an Optuna RDB URL several drivers share; None: the folder's journal, one driver
    heartbeat_s: int = 10  # with `storage`: heartbeat interval; a trial silent for 6 intervals is a dead driver's
    # Multi-fidelity (ASHA rungs of fine-tune length, autoslim.search.ladder): None: as the space says (its
    # `rungs:`); True: on (the space's rungs, else 1/9, 1/3, 1 with eta 3, hypervolume rule); False: off.
    multifidelity: bool | None = None

    @property
    def folder(self) -> Path:
        return Path(self.results_dir) / self.study


@dataclass
class Progress:
    done: int
    budget: int | None  # None: no trial budget, a time budget
    result: TrialResult | None
    best: str = ""
    number: int | None = None  # the finished trial's Optuna number (from 0), as in trials.csv and the fronts
    eta_s: float | None = None  # seconds from now until the search is expected to end (None: not known yet)
    # A multi-fidelity trial that finished a rung and goes on to this one (not a finished trial: ``done`` is
    # unchanged, ``result`` is the rung's)
    promoted_to: int | None = None
    # A late promotion (``result`` None): the turned-down trial that goes on, as trial ``number``, to ``promoted_to``
    late_of: int | None = None


@dataclass
class SearchOutcome:
    folder: Path
    trials: pd.DataFrame
    fronts: dict[str, pd.DataFrame]
    ran: int  # trials run by this call
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)


def _record(study: optuna.Study, trial: optuna.Trial, plan: CompressionPlan, result: TrialResult,
            profiles: Sequence[HardwareProfile], constraints: Constraints | None = None,
            baseline_accuracy: float | None = None, *, sampler_values: bool = False) -> bool:  # fmt: skip
    """Store the trial's result and tell Optuna (its ~14 journal operations in one locked, fsynced append);
    returns whether it meets the space's constraints. ``sampler_values``: a trial stopped below the top rung of a
    multi-fidelity search is told to Optuna with the values its rung measured (see ``_store``)."""
    with one_append(study):
        return _store(study, trial, plan, result, profiles, constraints, baseline_accuracy, sampler_values)


def _store(study: optuna.Study, trial: optuna.Trial, plan: CompressionPlan, result: TrialResult,
           profiles: Sequence[HardwareProfile], constraints: Constraints | None,
           baseline_accuracy: float | None, sampler_values: bool = False) -> bool:  # fmt: skip
    built = CompressionPlan.from_dict(result.plan) if result.plan else plan  # per-layer policies written out
    for key, value in {
        "status": result.status, "reason": result.reason, "plan": built.to_dict(), "plan_words": built.describe(),
        "plan_sampled": plan.to_dict(),
        "accuracy": result.accuracy, "costs": result.costs, "params": result.params,
        "duration_s": result.duration_s, "steps": result.steps, "seed": result.seed, "threads": result.threads,
        "fine_tune_legs": result.fine_tune_legs,  # continued rungs: the fidelities a rebuild runs to in turn
        "notes": result.notes,  # what each step did (KD epochs run, quantized layers, ...) and where it ran
    }.items():  # fmt: skip
        trial.set_user_attr(key, value)
    feasible = True
    if result.status == "ok" and constraints is not None and constraints.count:
        assert result.accuracy is not None
        violations = constraints.violations(result.accuracy, baseline_accuracy, result.costs)
        trial.set_user_attr("constraints", violations)
        feasible = all(v <= 0 for v in violations)
    values = _values(result, profiles) if result.status == "ok" or sampler_values else None
    if values is not None:
        # A trial not promoted past a low rung is told COMPLETE with what that rung measured, its status attr
        # staying "stopped" (so it is on no front, autoslim's frames read the attr): told PRUNED instead, TPE
        # would put every not-promoted fine-tune among its bad trials and drift to plans without one (measured on
        # the default task: 45 of 113 trials without a fine-tune, against 5 of 50 in the full-fidelity search).
        # A short fine-tune's accuracy is a pessimistic estimate of the full one's: the sampler still ranks them.
        study.tell(trial, values)
    elif result.status in ("stopped", "infeasible"):
        # Stopped early, or a plan step the model cannot take: told as PRUNED, TPE counts it among the bad trials
        # and samples that region less (a FAIL it ignores). The user attr "status" still says which it was.
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return feasible


def _values(result: TrialResult, profiles: Sequence[HardwareProfile]) -> list[float] | None:
    """Optuna's objective values of a result: accuracy, then each profile's objective (None: one is missing)."""
    if result.accuracy is None:
        return None
    values = [float(result.accuracy)]
    for p in profiles:
        cost = (result.costs.get(p.name) or {}).get(p.objective)
        if not isinstance(cost, (int, float)):
            return None
        values.append(float(cost))
    return values


class _Headline:
    """'Best so far' for progress lines: the smallest model within 1 pp of the baseline's accuracy. Kept as two
    running figures (the best accuracy, the smallest size within 1 pp), so a progress line costs O(1), not a pass
    over every trial; results that came before the baseline wait in ``_early`` until it is known."""

    def __init__(self, df: pd.DataFrame, profile: HardwareProfile) -> None:
        self.col = f"{profile.name}.model_bytes"
        ok = df[df["status"] == "ok"] if len(df) else df
        base = ok[ok["is_baseline"]] if len(ok) else ok
        self.base_acc = float(base["accuracy"].iloc[0]) if len(base) else None
        self.base_bytes = float(base[self.col].iloc[0]) if len(base) else None
        self.best_acc: float | None = None
        self.smallest: float | None = None  # the smallest model within 1 pp of the baseline
        self._early: list[tuple[float, float]] = []
        for acc, size in zip(ok["accuracy"], ok[self.col], strict=True) if len(ok) else ():
            self._take(float(acc), float(size))

    def add(self, r: TrialResult, profile: HardwareProfile, baseline: bool) -> None:
        if r.status != "ok" or r.accuracy is None:
            return
        size = float(r.costs[profile.name]["model_bytes"])
        if baseline and self.base_acc is None:
            self.base_acc, self.base_bytes = r.accuracy, size
            early, self._early = self._early, []
            for acc, s in early:
                self._take(acc, s)
        self._take(r.accuracy, size)

    def _take(self, acc: float, size: float) -> None:
        self.best_acc = acc if self.best_acc is None else max(self.best_acc, acc)
        if self.base_acc is None:
            self._early.append((acc, size))
        elif acc >= self.base_acc - 0.01:
            self.smallest = size if self.smallest is None else min(self.smallest, size)

    def text(self) -> str:
        if self.base_acc is None or self.base_bytes is None or self.best_acc is None or self.smallest is None:
            return ""
        return f"best acc {self.best_acc:.2%} · smallest ≤1pp drop {self.base_bytes / self.smallest:.1f}x"


def run_search(config: SearchConfig, *, on_progress: Callable[[Progress], None] | None = None) -> SearchOutcome:
    """Run (or resume) the study until it holds ``config.budget`` finished trials; write the results folder.

    Raises ``StudyInUseError`` at once when another driver runs the same journal study."""
    if config.storage is not None:
        return _run_search(config, on_progress)
    with StudyLock(config.folder):  # before the teacher loads: a second driver is refused at once
        return _run_search(config, on_progress)


def _run_search(config: SearchConfig, on_progress: Callable[[Progress], None] | None) -> SearchOutcome:
    if config.budget is None and config.time_budget_s is None:
        raise ValueError("a search needs a trial budget, a time budget, or both")
    if config.storage is not None and (config.multifidelity or (config.multifidelity is None and config.space.rungs)):
        raise ValueError("multi-fidelity search with a shared --storage is not supported yet: each driver would "
                         "promote among its own trials only; use the folder's journal (one driver)")  # fmt: skip
    started = time.monotonic()
    shared = config.storage is not None
    task = load_task(config.task)  # trains and caches the teacher before any worker starts
    overrides = dict(config.space.objectives)
    profiles = [dataclasses.replace(p, objective=overrides.get(p.name, p.objective)) for p in config.profiles]
    unknown = (set(overrides) | config.space.constraints.profiles()) - {p.name for p in profiles}
    if unknown:
        raise ValueError(
            f"{config.space.source}: objectives/constraints name profile(s) not searched: {sorted(unknown)}"
        )
    constraints = config.space.constraints
    metadata = {
        "task": config.task, "space": config.space.name, "profiles": [p.name for p in profiles],
        "objectives": objective_names(profiles),
    }  # fmt: skip
    # Drivers of one shared study seeded alike would sample the same plans side by side; trial seeds stay seed + n.
    seed = config.seed + os.getpid() if shared else config.seed
    sampler = make_sampler(config.sampler, seed, constrained=constraints.count > 0)
    opened = open_study(config.folder, config.study, metadata=metadata, n_objectives=len(profiles) + 1,
                        sampler=sampler, storage=config.storage, heartbeat_s=config.heartbeat_s)  # fmt: skip
    study = opened.study
    # Full profile data beside the study, so report / pick / compare work without the original YAML files.
    study.set_user_attr("profiles", [profile_to_dict(p) for p in profiles])
    study.set_user_attr("constraints", dataclasses.asdict(constraints))
    if "teacher_sha256" not in study.user_attrs:  # what `export --task` checks the user's task against
        study.set_user_attr("teacher_sha256", teacher_sha256(task.teacher()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(objective_names(profiles))
    notes = list(opened.notes)
    stale = 0 if shared else fail_stale_trials(study)  # shared: only the heartbeat can tell a dead driver's trial
    if shared:
        fail_stale(study)
    if stale:
        notes.append(
            f"{stale} trial(s) interrupted by an earlier run were marked interrupted; they do not count "
            "toward the budget, and interrupted recipes run again"
        )
    fresh = not study.get_trials(deepcopy=False)
    # Before trial 1: the techniques that cannot apply leave the space, ranges narrow to what applies (stored with
    # the study, so a resumed run searches the same space).
    space, pre, pre_notes = study_preflight(study, task, config.space, profiles, enabled=config.preflight, fresh=fresh)
    notes += pre_notes
    check_space_unchanged(
        study, space, tuple(p.name for p in profiles)
    )  # before any trial: an edited space is refused with its differences
    if pre is not None:
        with replacing(config.folder / "preflight.csv") as tmp:
            pre.frame().to_csv(tmp, index=False)
    notes += prepare_tables(study, task, space, profiles, config.folder)
    ladder = _ladder(config, space, profiles, study, fresh)
    if ladder is not None:  # before the queue below: interrupted climbers go back in the queue with their rungs
        notes += ladder.attach(study, fresh=fresh)
    # A fresh shared study is queued by the driver that created it, once (the others find its queue).
    first = opened.created or not shared
    if first or not fresh:
        _enqueue_baseline_and_recipes(study, space)
    if fresh and first and config.warm_start is not None:
        n = _enqueue_warm_start(study, config.warm_start)
        notes.append(f"warm start: {n} plan(s) from {config.warm_start} fronts queued after the baseline and recipes")

    settings = _run_settings(config)
    study.set_user_attr("run", run_record(settings, study.user_attrs.get("run")))
    done = finished_count(study)
    budget = config.budget if config.budget is not None else sys.maxsize  # None: the time budget decides
    # The one trials table of the loop: every later step updates what is built from it, trial by trial.
    df0 = trials_frame(study, profiles)
    headline = _Headline(df0, profiles[0])
    live = ParetoFronts.from_frame(df0, profiles)
    if ladder is None:
        clock = TimeBudget(config.time_budget_s, fractions=(1.0,))
        for seconds in df0["duration_s"].dropna() if len(df0) and "duration_s" in df0 else ():
            clock.add(0, float(seconds))  # a resumed search plans with the durations it has already seen
    else:  # each rung's runs, as recorded on the trials (a resumed search plans with them)
        clock = TimeBudget(config.time_budget_s, fractions=ladder.rungs.fractions,
                           reduction_factor=ladder.rungs.reduction_factor,
                           restart=ladder.rungs.fine_tune == "restart")  # fmt: skip
        for rung, seconds in ladder.durations():
            clock.add(rung, seconds)
    del df0
    if on_progress:
        on_progress(Progress(done, config.budget, None, headline.text()))
    executor = _make_executor(config, task)
    clock.slots = executor.slots
    heartbeats = Heartbeats(study._storage)
    running: dict[Future, tuple[optuna.Trial, CompressionPlan, int]] = {}  # -> (trial, plan, rung running)
    specs: dict[int, TrialSpec] = {}  # trial number -> its spec (a promotion reruns it at the next rung)
    since: dict[int, float] = {}  # trial number -> when it was submitted (for the end estimate)
    starting: optuna.Trial | None = None  # asked but not yet in `running` (an inline trial runs inside submit)

    def _eta_now() -> float | None:
        now = time.monotonic()
        rungs = [Running(r, now - since[t.number]) for t, _, r in running.values()]
        # running late promotions are plans already counted in `done`: not new ones taken off the budget's rest
        return _eta_s(clock, now - started, rungs, config.budget, done - _late(running.values()))

    ran, interrupted, out_of_time = 0, False, False
    deadline = time.monotonic() + config.timeout_s if config.timeout_s else None
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if _main_thread() else None
    try:
        while True:
            elapsed = time.monotonic() - started  # the budget is the whole call's: teacher and preflight included
            out_of_time = (deadline is not None and time.monotonic() > deadline) or not clock.can_start(elapsed)
            known = live.as_spec_fronts() if config.early_stop else None
            if shared:
                fail_stale(study)
            while not out_of_time and len(running) < executor.slots:
                # A free slot goes first to a turned-down trial that later arrivals pushed into its rung's top
                # share (ASHA's late promotion): it is the same plan, so it takes no new budget slot.
                late = None if ladder is None else ladder.next_late(functools.partial(_in_time, clock, elapsed))
                full = (claimed_count(study) if shared else done + len(running) - _late(running.values())) >= budget
                if ladder is not None and (late is not None or full):
                    # Optuna asks the oldest queued trial first: a late promotion is queued only behind nothing,
                    # and one already queued (a resume after a kill) is asked whether or not the budget is full.
                    head = _queue_head(study)
                    late_queued = head is not None and LATE_ATTR in head.user_attrs  # asked next, full or not
                    if not late_queued and late is not None and head is None:
                        ladder.promote_late(study, *late)
                    elif not late_queued and full:
                        break
                elif full:
                    break
                starting = ask(study)
                heartbeats.add(starting._trial_id)
                if shared and beyond_budget(study, starting.number, budget):
                    give_back(study, starting)  # another driver claimed the last slot at the same moment
                    heartbeats.discard(starting._trial_id)
                    starting = None
                    break
                try:
                    plan = _plan_for(starting, space, tuple(p.name for p in profiles))
                except (ValueError, TypeError) as exc:  # a sampled combination no config accepts
                    _record(study, starting, CompressionPlan(), TrialResult("infeasible", reason=str(exc)), profiles)
                    heartbeats.discard(starting._trial_id)
                    late_done = LATE_ATTR in starting.user_attrs  # its plan is counted already
                    starting, done, ran = None, done + (0 if late_done else 1), ran + 1
                    continue
                floor = accuracy_floor(constraints, headline.base_acc) if config.early_stop else None
                rung = ladder.first_rung(starting, plan) if ladder is not None else 0
                keep = ladder is not None and rung < ladder.top and ladder.continues(plan)  # for the next rung
                # A late promotion runs with its first trial's seed, and goes on from the state its rung left
                # where the driver kept it (continued rungs); else the rung restarts.
                state = ladder.take_state(starting.number) if ladder is not None else None
                spec = TrialSpec(plan.to_dict(), tuple(profiles),
                                 seed=config.seed + (starting.number if ladder is None else ladder.seed_of(starting)),
                                 number=starting.number, min_accuracy=floor, fronts=known,
                                 fidelity=ladder.fidelity(rung) if ladder is not None else 1.0, keep_state=keep,
                                 resume=state if ladder is not None and ladder.continues(plan) else None)  # fmt: skip
                specs[starting.number] = spec
                since[starting.number] = time.monotonic()
                late_of = starting.user_attrs.get(LATE_ATTR)
                running[executor.submit(spec)] = (starting, plan, rung)
                if on_progress and isinstance(late_of, int):
                    on_progress(Progress(done, config.budget, None, headline.text(), starting.number, _eta_now(),
                                         promoted_to=rung, late_of=late_of))  # fmt: skip
                starting = None
            if not running:
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            broken = False
            for fut in finished:
                trial, plan, rung = running.pop(fut)
                # The slot was held from submit to now (worker transfer included): that is what the budget spends.
                held = time.monotonic() - since.pop(trial.number, time.monotonic())
                try:
                    result = fut.result()
                except BrokenProcessPool as exc:  # a worker died (OOM kill, segfault): fail its trial, go on
                    result, broken = TrialResult("failed", reason=f"worker process died: {exc!r}"), True
                if ladder is not None:
                    goes_on = ladder.finish(trial, rung, result, held)
                    # Continued rungs' medians are of continuations: a rung that reran the fine-tune from the
                    # start (a late promotion whose state was not kept, a resume after a kill) stays out.
                    legs = result.fine_tune_legs or []
                    reran = rung > 0 and ladder.continues(plan) and len(legs) < 2
                    if result.status != "failed" and not ladder.runs_once(trial.number) and not reran:
                        clock.add(rung, max(held, result.duration_s))  # a top-rung median of real fine-tunes
                    if goes_on and not broken:
                        ends = time.monotonic() - started
                        if clock.can_promote(rung, ends) and (deadline is None or time.monotonic() < deadline):
                            ladder.promote(trial, rung)  # on the trial first: a kill now resumes at the next rung
                            floor = accuracy_floor(constraints, headline.base_acc) if config.early_stop else None
                            # Continued rungs go on from the state the rung below left (it came back with the
                            # result, so any worker can take the next rung); without one, the rung restarts.
                            goes_from = result.checkpoint if ladder.continues(plan) else None
                            spec = dataclasses.replace(
                                specs[trial.number], fidelity=ladder.fidelity(rung + 1), min_accuracy=floor,
                                fronts=live.as_spec_fronts() if config.early_stop else None, resume=goes_from,
                                keep_state=rung + 1 < ladder.top and ladder.continues(plan),
                            )  # fmt: skip
                            since[trial.number] = time.monotonic()
                            starting = trial  # an interrupt inside submit (inline) marks it interrupted
                            running[executor.submit(spec)] = (trial, plan, rung + 1)
                            starting = None
                            if on_progress:
                                on_progress(Progress(done, config.budget, result, headline.text(), trial.number,
                                                     _eta_now(), promoted_to=rung + 1))  # fmt: skip
                            continue
                        why = "promoted, but the next rung would not end within the time budget"
                    elif goes_on:
                        why = "promoted, but the worker pool broke"
                    else:
                        why = (f"not in the top 1/{ladder.rungs.reduction_factor} of its rung by the "
                               f"'{ladder.rungs.rule}' rule over every profile")  # fmt: skip
                    if rung < ladder.top:
                        if result.status == "ok":
                            ladder.park(trial, rung, result)  # it may still be promoted late
                        result = ladder.not_promoted(result, rung, why)
                specs.pop(trial.number, None)
                headline.add(result, profiles[0], plan.is_baseline)
                not_promoted = ladder is not None and ladder.is_not_promoted(result)
                feasible = _record(study, trial, plan, result, profiles, constraints, headline.base_acc,
                                   sampler_values=not_promoted)  # fmt: skip
                live.add(trial.number, accuracy=result.accuracy, costs=result.costs, status=result.status,
                         feasible=feasible, baseline=plan.is_baseline)  # fmt: skip
                if result.status != "failed" and ladder is None:
                    clock.add(0, max(held, result.duration_s))
                heartbeats.discard(trial._trial_id)
                # A late promotion's trial counts instead of the turned-down one (finished_count agrees).
                late_done = LATE_ATTR in trial.user_attrs
                done, ran = (finished_count(study) if shared else done + (0 if late_done else 1)), ran + 1
                if on_progress:
                    on_progress(Progress(done, config.budget, result, headline.text(), trial.number, _eta_now()))
            if broken:  # the pool is unusable: its other trials died with it
                for trial, plan, _ in running.values():
                    _record(study, trial, plan, TrialResult("failed", reason="worker pool broke"), profiles)
                    heartbeats.discard(trial._trial_id)
                    done, ran = done + (0 if LATE_ATTR in trial.user_attrs else 1), ran + 1
                running.clear()
                executor.close()
                executor = _make_executor(config, task)
    except KeyboardInterrupt:
        interrupted = True
        for trial in [t for t, _, _ in running.values()] + ([starting] if starting is not None else []):
            trial.set_user_attr("status", INTERRUPTED)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            heartbeats.discard(trial._trial_id)
        notes.append("interrupted: finished trials are saved; run the same command to resume")
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        heartbeats.stop()
        executor.close()
        study.set_user_attr("run", run_record(settings, study.user_attrs.get("run"),
                                              wall_s=time.monotonic() - started))  # fmt: skip
    if config.time_budget_s is not None and out_of_time and not interrupted:
        left = "" if config.budget is None else f" ({max(0, config.budget - done)} of the trial budget not run)"
        notes.append(f"time budget {config.time_budget_s:.0f} s: no further trial was expected to end in time; "
                     f"{ran} trial(s) ran{left}")  # fmt: skip
    df = trials_frame(study, profiles)
    fronts = write_report(config.folder, df, profiles)
    # The one-file report (`autoslim report` rebuilds it), from this study object: a shared study has no journal.
    safe_write_text(config.folder / "report.html", build_html(StudyResults(config.folder, study, profiles, df)))
    return SearchOutcome(config.folder, df, fronts, ran, interrupted, notes)


def _run_settings(config: SearchConfig) -> dict[str, Any]:
    return {"budget": config.budget, "time_budget_s": config.time_budget_s, "timeout_s": config.timeout_s,
            "seed": config.seed, "sampler": config.sampler, "executor": _executor_kind(config),
            "workers": config.workers, "cpus_per_trial": config.cpus_per_trial,
            "gpus_per_trial": config.gpus_per_trial, "early_stop": config.early_stop, "preflight": config.preflight,
            "storage": config.storage, "warm_start": str(config.warm_start) if config.warm_start else None,
            "multifidelity": config.multifidelity}  # fmt: skip


def _in_time(clock: TimeBudget, elapsed_s: float, rung: int, from_start: bool) -> bool:
    return clock.can_promote(rung, elapsed_s, from_start=from_start)


def _queue_head(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The queued trial Optuna's next ``ask`` takes (the oldest waiting one), if any."""
    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    return min(waiting, key=lambda t: t.number, default=None)


def _late(running: Iterable[tuple[optuna.Trial, CompressionPlan, int]]) -> int:
    """Running late promotions: each goes on with a plan the budget already counts (see ``finished_count``)."""
    return sum(1 for trial, _, _ in running if LATE_ATTR in trial.user_attrs)


def _eta_s(clock: TimeBudget, elapsed: float, running: Sequence[Running], budget: int | None,
           done: int) -> float | None:  # fmt: skip
    """Seconds from now until the search is expected to end (``running``: each running trial's rung and how
    long it has run)."""
    left = None if budget is None else max(0, budget - done - len(running))
    end = clock.estimated_end_s(elapsed, running=running, trials_left=left)
    return None if end is None else max(0.0, end - elapsed)


def _ladder(config: SearchConfig, space: SearchSpace, profiles: Sequence[HardwareProfile], study: optuna.Study,
            fresh: bool) -> Ladder | None:  # fmt: skip
    """The multi-fidelity ladder this run uses (None: every trial runs its whole fine-tune)."""
    template = None if config.multifidelity is False else space.rungs
    if template is None and config.multifidelity:
        template = rungs_from_config(None)  # the defaults: 1/9, 1/3, 1, eta 3, hypervolume rule
    if template is None:
        if not fresh and CONFIG_ATTR in study.user_attrs:
            raise RungsChangedError(
                f"study {study.study_name!r} began with multi-fidelity rungs {study.user_attrs[CONFIG_ATTR]}: "
                "resume it with them (--multifidelity, or the space it began with), or start a new --study"
            )
        return None
    return Ladder(template, profiles)


def accuracy_floor(constraints: Constraints, baseline_accuracy: float | None) -> float | None:
    """The least accuracy the constraints allow (None: no accuracy constraint, or the baseline is not known yet)."""
    floors = [constraints.min_accuracy]
    if constraints.max_accuracy_drop is not None and baseline_accuracy is not None:
        floors.append(baseline_accuracy - constraints.max_accuracy_drop)
    known = [f for f in floors if f is not None]
    return max(known) if known else None


def current_fronts(df: pd.DataFrame, profiles: Sequence[HardwareProfile]) -> dict[str, tuple]:
    """Each profile's front as plain ``(objective cost, accuracy, trial)`` points, for a trial's early stop."""
    fronts = {}
    for p in profiles:
        front = front_frame(df, p)
        col = f"{p.name}.{p.objective}"
        fronts[p.name] = tuple(
            (float(c), float(a), int(n)) for c, a, n in zip(front[col], front["accuracy"], front["trial"], strict=True)
        ) if len(front) else ()  # fmt: skip
    return fronts


def _executor_kind(config: SearchConfig) -> str:
    return config.executor or ("ray" if config.ray_address else "inline" if config.workers == 1 else "process")


def _make_executor(config: SearchConfig, task: Task) -> Executor:
    kind = _executor_kind(config)
    if kind != "ray" and (config.ray_address or config.gpus_per_trial):
        raise ValueError("--ray-address and --gpus-per-trial need --executor ray")
    if kind == "inline":
        return InlineExecutor(task)
    if kind == "process":
        threads = max(1, int(config.cpus_per_trial))
        return ProcessExecutor(config.task, workers=config.workers, threads_per_worker=threads)
    if kind == "ray":
        from autoslim.execution.ray_executor import RayExecutor  # Ray is optional: imported only when asked for

        return RayExecutor(task, address=config.ray_address, workers=config.workers, task_ref=config.task,
                           cpus_per_trial=config.cpus_per_trial, gpus_per_trial=config.gpus_per_trial)  # fmt: skip
    raise ValueError(f"unknown executor {kind!r}: use inline, process or ray")


def _plan_for(trial: optuna.Trial, space: SearchSpace, profiles: tuple[str, ...] = ()) -> CompressionPlan:
    if trial.user_attrs.get("baseline"):
        return CompressionPlan()  # no step at all, even where the space has `when: always` techniques
    sampled = space.sample(trial, profiles)
    recipe = trial.user_attrs.get("recipe")
    # A recipe runs exactly as written, also fields the space does not sample; its enqueued params keep the
    # sampler's view of the trial consistent with what ran.
    return CompressionPlan.from_params(recipe if isinstance(recipe, dict) else sampled)


def _enqueue_baseline_and_recipes(study: optuna.Study, space: SearchSpace) -> None:
    """The baseline is always a trial of the study; recipes are tried once, first. Interrupted ones run again."""
    trials = study.get_trials(deepcopy=False)
    if not trials:
        study.enqueue_trial({}, user_attrs={"baseline": True})
        for recipe in space.recipes:
            study.enqueue_trial(space.recipe_params(recipe), user_attrs={"recipe": recipe})
        return
    if not any(t.user_attrs.get("baseline") and t.user_attrs.get("status") != INTERRUPTED for t in trials):
        study.enqueue_trial({}, user_attrs={"baseline": True})  # the earlier one was interrupted
    requeued = {t.user_attrs.get("requeue_of") for t in trials}
    for t in trials:
        again = t.user_attrs.get("status") == INTERRUPTED and t.number not in requeued
        if again and (t.user_attrs.get("recipe") or t.user_attrs.get("warm_start")):
            keep = {k: v for k, v in t.user_attrs.items() if k in ("recipe", "warm_start")}
            study.enqueue_trial(t.params, user_attrs={**keep, "requeue_of": t.number})


def _enqueue_warm_start(study: optuna.Study, previous: Path) -> int:
    """Queue the sampled parameters of every front point of a previous study (same space), once each."""

    prev = open_results(previous)
    numbers = sorted({int(n) for p in prev.profiles for n in prev.front(p.name)["trial"]})
    by_number = {t.number: t for t in prev.study.get_trials(deepcopy=False)}
    queued = 0
    for n in numbers:
        if n in by_number and not by_number[n].user_attrs.get("baseline"):
            study.enqueue_trial(by_number[n].params, user_attrs={"warm_start": str(previous)})
            queued += 1
    return queued


def _raise_interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
