"""Open a finished study folder read-only: the journal is JSON lines, so nothing is unpickled."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from autoslim.cost import HardwareProfile
from autoslim.cost.profiles import get_profile, profile_from_dict
from autoslim.report.frame import front_frame, trials_frame


class StudyReadError(RuntimeError):
    """A study journal that cannot be read (corrupt, from another tool); the message names the file."""


@dataclass
class StudyResults:
    folder: Path
    study: optuna.Study
    profiles: list[HardwareProfile]
    trials: pd.DataFrame

    def profile(self, name: str) -> HardwareProfile:
        for p in self.profiles:
            if p.name == name:
                return p
        raise ValueError(f"profile {name!r} is not in this study; it has {[p.name for p in self.profiles]}")

    def front(self, name: str) -> pd.DataFrame:
        return front_frame(self.trials, self.profile(name))


def open_results(folder: str | Path) -> StudyResults:
    folder = Path(folder)
    journal = folder / "study.journal"
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a study folder (not a folder); give RESULTS/<study>, e.g. results/default")
    if not journal.is_file():
        raise ValueError(f"{folder} holds no study (no study.journal); run `autoslim search --study NAME` first")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = JournalStorage(JournalFileBackend(str(journal)))
        names = optuna.get_all_study_names(storage)
        study = optuna.load_study(study_name=names[0], storage=storage) if names else None
    except Exception as exc:  # Optuna replays every line: an unknown op code is an AssertionError, a bad line JSON
        detail = str(exc).strip() or type(exc).__name__
        raise StudyReadError(f"{journal}: cannot read the study journal ({type(exc).__name__}: {detail})") from exc
    if study is None:
        raise ValueError(f"{journal} holds no study yet; run `autoslim search` on it first")
    saved = study.user_attrs.get("profiles")
    if saved is not None:
        profiles = [profile_from_dict(d, where=f"{journal}: profiles") for d in saved]
    else:  # a study from before profiles were stored beside it: look them up by name
        profiles = [get_profile(n) for n in study.user_attrs.get("autoslim", {}).get("profiles", [])]
    return StudyResults(folder, study, profiles, trials_frame(study, profiles))
