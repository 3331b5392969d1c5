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


def make_sampler(seed: int | None) -> optuna.samplers.BaseSampler:
    # Multi-objective TPE with constant liar: sensible with few trials, and safe with parallel workers
    # (running trials are treated as bad, so parallel asks spread out). Issue 5 picks the default by benchmark.
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=10, multivariate=True, constant_liar=True)


class StudyMismatchError(ValueError):
    """An existing study was created with other settings than the ones given now."""


def open_study(
    folder: Path, name: str, *, metadata: dict[str, Any], n_objectives: int, seed: int | None
) -> optuna.Study:
    """Create the study, or load it and check it was made with the same task, space and profiles."""
    folder.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(folder / "study.journal")))
    directions = [StudyDirection.MAXIMIZE] + [StudyDirection.MINIMIZE] * (n_objectives - 1)
    study = optuna.create_study(
        study_name=name, storage=storage, directions=directions, sampler=make_sampler(seed), load_if_exists=True
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
    """Trials that ran to a result (ok, infeasible or failed); interrupted ones do not count."""
    return sum(
        1
        for t in study.get_trials(deepcopy=False)
        if t.state.is_finished() and t.user_attrs.get("status") not in (None, INTERRUPTED)
    )


def fail_stale_trials(study: optuna.Study) -> int:
    """Trials left RUNNING by a killed process: mark them failed/interrupted so they are neither lost nor counted."""
    n = 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(t._trial_id, "status", INTERRUPTED)
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        n += 1
    return n
