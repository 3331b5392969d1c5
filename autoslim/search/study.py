"""The Optuna study behind a search: objectives, sampler and a journal file under ``results/<study>/``.

The journal (append-only log) is written after every finished trial, so a killed search loses at most the
trials that were running; the same command resumes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.study import StudyDirection

from autoslim.cost import HardwareProfile

INTERRUPTED = "interrupted"


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
        # parallel asks by treating running trials as bad.
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=10, multivariate=True, group=True, constant_liar=True, constraints_func=cf
        )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=16, constraints_func=cf)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=10, constraints_func=cf)
    return optuna.samplers.RandomSampler(seed=seed)


class StudyMismatchError(ValueError):
    """An existing study was created with other settings than the ones given now."""


def open_study(
    folder: Path, name: str, *, metadata: dict[str, Any], n_objectives: int, sampler: optuna.samplers.BaseSampler
) -> optuna.Study:
    """Create the study, or load it and check it was made with the same task, space and profiles."""
    folder.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(folder / "study.journal")))
    directions = [StudyDirection.MAXIMIZE] + [StudyDirection.MINIMIZE] * (n_objectives - 1)
    study = optuna.create_study(
        study_name=name, storage=storage, directions=directions, sampler=sampler, load_if_exists=True
    )
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
    return study


def finished_count(study: optuna.Study) -> int:
    """Trials that ran to a result (ok, infeasible, failed or stopped early), by their ``status`` user attr, not
    Optuna's state (infeasible and stopped-early trials are both told as PRUNED); interrupted ones do not count."""
    return sum(
        1
        for t in study.get_trials(deepcopy=False)
        if t.state.is_finished() and t.user_attrs.get("status") not in (None, INTERRUPTED)
    )


def fail_stale_trials(study: optuna.Study) -> int:
    """Trials left RUNNING by a killed process: mark them failed/interrupted so they are neither lost nor counted.

    One driver per study: a second search running on the same study at the same time would see the first one's
    running trials as stale (run distributed work through one driver and an executor instead)."""
    n = 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(t._trial_id, "status", INTERRUPTED)
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        n += 1
    return n
