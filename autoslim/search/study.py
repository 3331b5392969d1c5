"""The Optuna study behind a search: objectives, sampler and a journal file under ``results/<study>/``.

The journal (append-only log) is written after every finished trial, so a killed search loses at most the
trials that were running; the same command resumes it. ``--storage URL`` puts the study in an Optuna RDB
instead, shared by several drivers (``autoslim.search.storage``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.study import StudyDirection

from autoslim.cost import HardwareProfile
from autoslim.search.journal import JOURNAL_NAME, check_journal, check_one_study
from autoslim.search.storage import rdb_storage
from autoslim.search.windowed_tpe import WindowedTPESampler
from autoslim.trial import LATE_OF, superseded

INTERRUPTED = "interrupted"
# Statuses told as COMPLETE / PRUNED, never FAIL ("pruned": what studies before the rename to "stopped" stored).
_TOLD_OTHERWISE = ("ok", "stopped", "pruned", "infeasible")


def objective_names(profiles: Sequence[HardwareProfile]) -> list[str]:
    """``accuracy`` (maximized) then each profile's own cost objective (minimized)."""
    return ["accuracy", *(f"{p.name}:{p.objective}" for p in profiles)]


SAMPLERS = ("auto", "tpe", "nsga2", "gp", "random")
AUTO_SAMPLER = "tpe"  # chosen by benchmarks/samplers.py (hypervolume per profile at budget 50, 3 seeds)


def _constraint_values(trial: optuna.trial.FrozenTrial) -> list[float]:
    return list(trial.user_attrs.get("constraints", []))


def make_sampler(name: str, seed: int | None, *, constrained: bool = False) -> optuna.samplers.BaseSampler:
    """An Optuna sampler by name; constraints reach it through ``constraints_func`` (values <= 0 are feasible)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {list(SAMPLERS)}")
    cf = _constraint_values if constrained else None
    name = AUTO_SAMPLER if name == "auto" else name
    if name == "tpe":
        # Multivariate, grouped TPE handles the conditional (define-by-run) space; constant liar spreads out
        # parallel asks by treating running trials as bad. Windowed: past 200 finished trials it models the recent
        # ones and every front's trials, so an ask stops growing with the study (windowed_tpe.py).
        return WindowedTPESampler(
            seed=seed, n_startup_trials=10, multivariate=True, group=True, constant_liar=True, constraints_func=cf
        )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=16, constraints_func=cf)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=10, constraints_func=cf)
    return optuna.samplers.RandomSampler(seed=seed)


class StudyMismatchError(ValueError):
    """An existing study was created with other settings than the ones given now."""


@dataclass
class OpenedStudy:
    study: optuna.Study
    created: bool  # this call created it (with an RDB storage: no other driver did first)
    notes: list[str] = field(default_factory=list)


def open_study(
    folder: Path, name: str, *, metadata: dict[str, Any], n_objectives: int, sampler: optuna.samplers.BaseSampler,
    storage: str | None = None, heartbeat_s: int = 10,
) -> OpenedStudy:  # fmt: skip
    """Create the study, or load it and check it was made with the same task, space and profiles.

    Without ``storage`` the study is ``folder/study.journal`` (the caller holds the folder's ``StudyLock``): the
    journal is checked first (a torn last line is dropped, with a note) and must hold this one study only. With
    an RDB ``storage`` URL several drivers may open the study at once; exactly one of them creates it."""
    folder.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = [StudyDirection.MAXIMIZE] + [StudyDirection.MINIMIZE] * (n_objectives - 1)
    notes: list[str] = []
    backend: optuna.storages.BaseStorage
    if storage is None:
        journal = folder / JOURNAL_NAME
        repaired = check_journal(journal)
        notes += [repaired] if repaired else []
        backend = JournalStorage(JournalFileBackend(str(journal)))
        exists = check_one_study(backend, name, journal)
    else:
        backend, exists = rdb_storage(storage, heartbeat_s=heartbeat_s), False
    try:
        # load_if_exists=False: the storage, not a check before it, decides who creates a shared study.
        study = optuna.create_study(study_name=name, storage=backend, directions=directions, sampler=sampler,
                                    load_if_exists=exists)  # fmt: skip
        created = not exists
    except optuna.exceptions.DuplicatedStudyError:
        study, created = optuna.load_study(study_name=name, storage=backend, sampler=sampler), False
    if len(study.directions) != n_objectives:
        raise StudyMismatchError(f"study {name!r} has {len(study.directions)} objectives, this search {n_objectives}"
                                 "; resume it with the same profiles, or pass a new --study name")  # fmt: skip
    saved = study.user_attrs.get("autoslim")
    if saved is None:
        study.set_user_attr("autoslim", metadata)
    else:
        diff = sorted(k for k in metadata if k in saved and saved[k] != metadata[k])
        if diff:
            details = "; ".join(f"{k}: was {saved[k]!r}, now {metadata[k]!r}" for k in diff)
            raise StudyMismatchError(
                f"study {name!r} in {folder} was created with other settings ({details}). "
                "Resume it with the same options, or pass a new --study name."
            )
    return OpenedStudy(study, created, notes)


def counts_as_finished(t: optuna.trial.FrozenTrial) -> bool:
    """A trial that ran to a result (ok, infeasible, failed or stopped early), by its ``status`` user attr, not
    Optuna's state alone (infeasible and stopped-early trials are both told as PRUNED). Interrupted ones do not
    count, nor a FAIL whose status says otherwise: a trial failed by the heartbeat check after its driver died
    between recording its result and telling it (a finished trial's attrs can no longer be changed)."""
    status = t.user_attrs.get("status")
    if not t.state.is_finished() or status in (None, INTERRUPTED):
        return False
    return t.state != optuna.trial.TrialState.FAIL or status not in _TOLD_OTHERWISE


def finished_count(study: optuna.Study) -> int:
    """Trials that count toward the budget (see ``counts_as_finished``), from every driver of the study. A trial
    promoted late (multi-fidelity) is the same plan as the turned-down trial it goes on from: once it has finished,
    it counts instead of that one (so the count never goes back)."""
    trials = study.get_trials(deepcopy=False)
    gone = _superseded(trials)
    return sum(1 for t in trials if counts_as_finished(t) and t.number not in gone)


def _superseded(trials: list[optuna.trial.FrozenTrial]) -> set[int]:
    """Trials whose late promotion (``autoslim.search.ladder``, ``late_of``) has finished and counts instead."""
    return superseded(t.user_attrs for t in trials if counts_as_finished(t))


def _holds_slot(t: optuna.trial.FrozenTrial, gone: set[int]) -> bool:
    """Whether ``t`` takes a budget slot: finished, or running; not a late promotion still under way (the
    turned-down trial it goes on from holds its slot until it finishes). Multi-fidelity refuses a shared
    ``--storage`` today, so claimed_count and beyond_budget see no late promotion yet; they agree with
    finished_count for when it does."""
    if t.number in gone:
        return False
    return counts_as_finished(t) or (t.state.name == "RUNNING" and LATE_OF not in t.user_attrs)


def fail_stale_trials(study: optuna.Study) -> int:
    """Trials left RUNNING by a killed process: mark them failed/interrupted so they are neither lost nor counted.

    Only for a journal study, whose folder lock guarantees one driver: every RUNNING trial is then a dead one's.
    Shared (RDB) studies use the heartbeat instead (``autoslim.search.storage.fail_stale``)."""
    n = 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(t._trial_id, "status", INTERRUPTED)
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        n += 1
    return n


def claimed_count(study: optuna.Study) -> int:
    """Budget slots taken in a shared study: finished plus running trials of every driver, read from storage."""
    trials = study.get_trials(deepcopy=False)
    gone = _superseded(trials)
    return sum(1 for t in trials if _holds_slot(t, gone))


def beyond_budget(study: optuna.Study, number: int, budget: int) -> bool:
    """Whether trials numbered before ``number`` already fill the budget: two drivers that asked for the last slot
    at once both saw it free; the storage's trial numbers decide which one keeps it."""
    trials = study.get_trials(deepcopy=False)
    gone = _superseded(trials)
    taken = sum(1 for t in trials if t.number < number and _holds_slot(t, gone))
    return taken >= budget


def give_back(study: optuna.Study, trial: optuna.Trial) -> None:
    """Close a trial that lost the race for the last slot. Interrupted, so it never counts, and a queued hand
    recipe it took is queued again on the next start."""
    trial.set_user_attr("status", INTERRUPTED)
    trial.set_user_attr("reason", "not run: another driver of the shared study filled the budget")
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
