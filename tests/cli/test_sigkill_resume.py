"""kill -9 in the middle of a search loses at most the trial in flight; the same command finishes the budget."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from autoslim.search.study import INTERRUPTED, finished_count
from tests.conftest import TINY_SPACE, TINY_TASK, write_space

pytestmark = [pytest.mark.usefixtures("repo_root_on_path"), pytest.mark.slow]

# Every sampled trial fine-tunes for a while, so the kill lands while a trial runs.
SLOW_SPACE = {**TINY_SPACE, "techniques": {**TINY_SPACE["techniques"],
              "distill.kd": {"when": "structural", "params": {"epochs": 5, "batch_size": 16}}}}  # fmt: skip


def command(space: Path, results: Path, budget: int) -> list[str]:
    return [sys.executable, "-c", "from autoslim.cli import main; main()", "search", "--budget", str(budget),
            "--task", TINY_TASK, "--space", str(space), "--results", str(results), "--study", "s",
            "--workers", "1"]  # fmt: skip


def finished(journal: Path) -> dict[int, tuple]:
    """Finished trials: number -> (status, values), read straight from the journal."""
    if not journal.exists():
        return {}
    study = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(journal))))
    return {
        t.number: (t.user_attrs.get("status"), tuple(t.values or ()))
        for t in study.get_trials(deepcopy=False)
        if t.state.is_finished() and t.user_attrs.get("status") not in (None, INTERRUPTED)
    }


def test_sigkill_mid_search_then_resume_keeps_finished_trials_and_exact_budget(tmp_path: Path) -> None:
    space, results = write_space(tmp_path / "slow.yaml", SLOW_SPACE), tmp_path / "results"
    journal = results / "s" / "study.journal"
    proc = subprocess.Popen(command(space, results, 6), start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(finished(journal)) < 2 and proc.poll() is None:
            time.sleep(0.2)
        before = finished(journal)
        assert 2 <= len(before) < 6, "the search should be mid-run when killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # its own process group: the CLI and anything it started
        proc.wait(timeout=30)
    killed_at = finished(journal)
    assert set(before) <= set(killed_at)

    resumed = subprocess.run(command(space, results, 6), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = finished(journal)
    assert {n: after[n] for n in killed_at} == killed_at  # every finished trial kept, unchanged
    study = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(journal))))
    assert finished_count(study) == 6  # the budget is exact: interrupted trials do not count
    trials = pd.read_csv(results / "s" / "trials.csv")
    assert (trials["status"] != INTERRUPTED).sum() == 6
    assert not [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]
