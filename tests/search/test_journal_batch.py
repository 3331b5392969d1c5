"""one_append: a recorded trial's user attributes and state reach the journal in one append, unchanged."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from autoslim.search.journal_batch import one_append


class CountingBackend(JournalFileBackend):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.appends: list[int] = []

    def append_logs(self, logs: list) -> None:
        self.appends.append(len(logs))
        super().append_logs(logs)


def _study(path: Path) -> tuple[optuna.Study, CountingBackend]:
    backend = CountingBackend(str(path))
    study = optuna.create_study(study_name="s", storage=JournalStorage(backend), load_if_exists=True)
    return study, backend


def _reopened(path: Path) -> optuna.trial.FrozenTrial:
    return optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path)))).trials[0]


def test_attributes_and_tell_share_one_append(tmp_path: Path) -> None:
    path = tmp_path / "study.journal"
    study, backend = _study(path)
    trial = study.ask()
    backend.appends.clear()
    with one_append(study):
        for i in range(5):
            trial.set_user_attr(f"k{i}", i)
        assert trial.user_attrs["k4"] == 4  # the trial object sees its attributes at once
        study.tell(trial, 0.5)
    assert backend.appends == [6]  # five attribute lines and the state: one lock, one fsync
    saved = _reopened(path)
    assert saved.user_attrs == {f"k{i}": i for i in range(5)} and saved.value == 0.5
    assert saved.state == optuna.trial.TrialState.COMPLETE


def test_attributes_are_written_when_the_block_raises(tmp_path: Path) -> None:
    path = tmp_path / "study.journal"
    study, backend = _study(path)
    trial = study.ask()
    with pytest.raises(RuntimeError), one_append(study):
        trial.set_user_attr("status", "ok")
        raise RuntimeError("boom")
    assert _reopened(path).user_attrs == {"status": "ok"}
    trial.set_user_attr("after", 1)  # the backend writes line by line again
    assert backend.appends[-1] == 1 and "append_logs" not in vars(backend)


def test_other_storages_are_left_alone() -> None:
    study = optuna.create_study()
    trial = study.ask()
    with one_append(study):
        trial.set_user_attr("a", 1)
        study.tell(trial, 1.0)
    assert study.trials[0].user_attrs == {"a": 1}
