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
    if not journal.exists():
        raise ValueError(f"{folder} holds no study (no study.journal); run `autoslim search --study NAME` first")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(journal)))
    names = optuna.get_all_study_names(storage)
    study = optuna.load_study(study_name=names[0], storage=storage)
    saved = study.user_attrs.get("profiles")
    if saved is not None:
        profiles = [profile_from_dict(d, where=f"{journal}: profiles") for d in saved]
    else:  # a study from before profiles were stored beside it: look them up by name
        profiles = [get_profile(n) for n in study.user_attrs.get("autoslim", {}).get("profiles", [])]
    return StudyResults(folder, study, profiles, trials_frame(study, profiles))
