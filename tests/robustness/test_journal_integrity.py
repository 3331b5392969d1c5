"""A torn or blank last journal line is dropped (file backed up, a warning naming it) and the study resumes;
corruption elsewhere names the file and the line, exits 2, and changes nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest

from autoslim.search import run_search
from autoslim.search.journal import JournalCorruptError, check_journal
from autoslim.search.study import finished_count
from tests.conftest import REPO_ROOT
from tests.robustness.conftest import assert_one_line_error, cli_search, fast_config

pytestmark = pytest.mark.usefixtures("study_env")


@pytest.fixture(scope="module")
def done_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished 2-trial study, copied by each test (a search costs seconds; a copy nothing)."""
    base = tmp_path_factory.mktemp("template")
    with pytest.MonkeyPatch.context() as mp:  # module scope: study_env's function-scoped set-up is not there yet
        mp.setenv("AUTOSLIM_CACHE", str(base / "cache"))
        mp.syspath_prepend(str(REPO_ROOT))
        run_search(fast_config(base / "results", 2))
    return base / "results"


def copy_of(done: Path, tmp_path: Path) -> tuple[Path, Path]:
    results = tmp_path / "results"
    shutil.copytree(done, results)
    (results / "s" / "study.lock").unlink(missing_ok=True)
    return results, results / "s" / "study.journal"


def trials(journal: Path) -> dict[int, tuple]:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.load_study(study_name="s", storage=storage)
    return {t.number: (t.state, t.user_attrs.get("status"), tuple(t.values or ())) for t in study.get_trials()}


def _resume_after(tail: bytes, done: Path, tmp_path: Path, what: str) -> None:
    results, journal = copy_of(done, tmp_path)
    before = trials(journal)
    original = journal.read_bytes() + tail
    journal.write_bytes(original)
    outcome = run_search(fast_config(results, 3))
    warning = [n for n in outcome.notes if n.startswith("warning:")]
    assert len(warning) == 1 and str(journal) in warning[0] and what in warning[0], outcome.notes
    backups = list(journal.parent.glob("study.journal.bak-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == original and backups[0].name in warning[0]
    after = trials(journal)
    assert {n: after[n] for n in before} == before  # nothing lost
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    assert finished_count(optuna.load_study(study_name="s", storage=storage)) == 3  # resumed, budget exact


def test_torn_last_line_is_backed_up_dropped_with_a_warning_and_the_study_resumes(done_study: Path, tmp_path: Path):
    _resume_after(b'{"op_code":5,"worker_id":"a-b","trial_id":1,"param_na', done_study, tmp_path, "torn last line")


def test_blank_last_line_is_dropped_and_the_study_resumes(done_study: Path, tmp_path: Path) -> None:
    _resume_after(b"\n", done_study, tmp_path, "blank last line")


def test_torn_line_then_a_stray_newline_is_dropped(done_study: Path, tmp_path: Path) -> None:
    # The case: `Expecting ',' delimiter: line 1 column 69` from Optuna, with no file named.
    _resume_after(b'{"op_code":8,"worker_id":"x","trial_id":1,"user_attr":{"status" "ok"}\n', done_study, tmp_path,
                  "torn last line")  # fmt: skip


def test_complete_last_line_without_its_newline_is_dropped(done_study: Path, tmp_path: Path) -> None:
    # Optuna ignores a line without its newline, then appends the next operation onto it: a corrupt middle line.
    tail = json.dumps({"op_code": 8, "worker_id": "x", "trial_id": 0, "user_attr": {"x": 1}}).encode()
    _resume_after(tail, done_study, tmp_path, "torn last line")


def _corrupt(done: Path, tmp_path: Path, edit) -> tuple[Path, Path, bytes, int]:
    results, journal = copy_of(done, tmp_path)
    lines = journal.read_bytes().split(b"\n")
    number = edit(lines)
    journal.write_bytes(b"\n".join(lines))
    return results, journal, journal.read_bytes(), number


def test_bad_line_in_the_middle_names_file_and_line_and_exits_2(done_study: Path, tmp_path: Path,
                                                                fast_space_file: Path) -> None:  # fmt: skip
    def garble(lines: list[bytes]) -> int:
        lines[4] = lines[4][: len(lines[4]) // 2]  # line 5 torn, with good lines after it
        return 5

    results, journal, data, number = _corrupt(done_study, tmp_path, garble)
    with pytest.raises(JournalCorruptError, match=f"{journal}: line {number}: not JSON"):
        run_search(fast_config(results, 3))
    out = cli_search(results, fast_space_file, 3)
    assert out.exit_code == 2
    assert_one_line_error(out.output, str(journal), f"line {number}:")
    assert journal.read_bytes() == data and not list(journal.parent.glob("*.bak-*"))  # nothing changed


def test_unknown_op_code_names_file_and_line_and_exits_2(done_study: Path, tmp_path: Path,
                                                          fast_space_file: Path) -> None:  # fmt: skip
    def unknown(lines: list[bytes]) -> int:
        lines.insert(len(lines) - 1, json.dumps({"op_code": 99, "worker_id": "x"}).encode())  # a whole last line
        return len(lines) - 1

    results, journal, data, number = _corrupt(done_study, tmp_path, unknown)
    out = cli_search(results, fast_space_file, 3)
    assert out.exit_code == 2
    assert_one_line_error(out.output, str(journal), f"line {number}: unknown op code 99")
    assert journal.read_bytes() == data


def test_check_journal_leaves_a_clean_journal_alone(done_study: Path, tmp_path: Path) -> None:
    _, journal = copy_of(done_study, tmp_path)
    data = journal.read_bytes()
    assert check_journal(journal) is None and journal.read_bytes() == data
