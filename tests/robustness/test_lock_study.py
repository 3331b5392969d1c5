"""One driver per journal study: a second one is refused at start with who holds it; a dead one's lock is taken."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import optuna
import pytest

from autoslim.search import Progress, run_search
from autoslim.search.lock import StudyInUseError, StudyLock
from autoslim.search.study import INTERRUPTED, finished_count
from tests.robustness.conftest import assert_one_line_error, cli_search, fast_config

pytestmark = pytest.mark.usefixtures("study_env")


def _journal_study(folder: Path) -> optuna.Study:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(folder / "study.journal")))
    return optuna.load_study(study_name="s", storage=storage)


def test_second_driver_on_one_journal_is_refused_and_the_first_keeps_every_trial(
    tmp_path: Path, fast_space_file: Path
) -> None:
    results = tmp_path / "results"
    paused, resume = threading.Event(), threading.Event()
    first: dict = {}

    def hold_after_two(p: Progress) -> None:  # the first driver stops mid-search until the second was refused
        if p.done == 2 and not resume.is_set():
            paused.set()
            resume.wait(60)

    def first_driver() -> None:
        first["outcome"] = run_search(fast_config(results, 5), on_progress=hold_after_two)

    thread = threading.Thread(target=first_driver)
    thread.start()
    try:
        assert paused.wait(60), "the first driver never reached its second trial"
        expected = f"study in use by PID {os.getpid()} on {socket.gethostname()} since "
        with pytest.raises(StudyInUseError, match=expected):  # the API
            run_search(fast_config(results, 5))
        cli = cli_search(results, fast_space_file, 5)  # the CLI
        assert cli.exit_code == 2
        line = assert_one_line_error(cli.output, str(results / "s"), expected, "--storage")
        assert "Traceback" not in cli.output and len(line) < 300
    finally:
        resume.set()
        thread.join(120)
    outcome = first["outcome"]
    assert outcome.ran == 5 and not outcome.interrupted
    study = _journal_study(results / "s")
    assert finished_count(study) == 5
    assert [t.user_attrs["status"] for t in study.get_trials()] == ["ok"] * 5  # none interrupted, none lost
    assert not any(t.user_attrs.get("status") == INTERRUPTED for t in study.get_trials())
    # the lock is released at the end: the next driver tops the study up
    assert run_search(fast_config(results, 6)).ran == 1


def test_a_killed_drivers_lock_is_taken_over(tmp_path: Path) -> None:
    folder = tmp_path / "results" / "s"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from autoslim.search.lock import StudyLock; "
         "StudyLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(120)", str(folder)],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(StudyInUseError, match=f"study in use by PID {holder.pid} on "):
            StudyLock(folder).acquire()
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # kill -9: no chance to release anything
        holder.wait(30)
    assert "pid" in (folder / "study.lock").read_text()  # its record is still there, but no live flock
    outcome = run_search(fast_config(tmp_path / "results", 2))
    assert outcome.ran == 2 and finished_count(_journal_study(folder)) == 2
