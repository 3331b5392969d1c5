"""Every command catches its errors: one line naming the bad input, exit code 2 (bad input) or 1 (a failure),
the traceback only under --debug / AUTOSLIM_DEBUG=1, and brackets in messages printed as they are."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY_TASK
from tests.robustness.cli_support import TASKS, assert_no_traceback, load, run
from tests.robustness.conftest import FAST_SPACE, assert_one_line_error, cli_search

pytestmark = pytest.mark.usefixtures("study_env")


@pytest.fixture
def study(tmp_path: Path, fast_space_file: Path) -> Path:
    result = cli_search(tmp_path / "results", fast_space_file, 3)
    assert result.exit_code == 0, result.output
    return tmp_path / "results" / "s"


def test_crash_space_that_is_a_directory(tmp_path: Path) -> None:
    result = run("search", "--task", TINY_TASK, "--space", str(tmp_path), "--results", str(tmp_path / "r"))
    assert result.exit_code == 2 and "--space" in result.output and "is a directory" in result.output
    assert_no_traceback(result)


def test_crash_profiles_show_unknown_name() -> None:
    result = run("profiles", "show", "nosuch")
    assert result.exit_code == 2
    assert_one_line_error(result.output, "'nosuch'", "built-in ones are")


def test_crash_spaces_show_unknown_name() -> None:
    result = run("spaces", "show", "nosuch")
    assert result.exit_code == 2
    assert_one_line_error(result.output, "'nosuch'", "default")


def test_crash_task_that_returns_a_dict(tmp_path: Path, fast_space_file: Path) -> None:
    ref = f"{TASKS}:dict_task"
    result = run("search", "--budget", "1", "--task", ref, "--space", str(fast_space_file), "--results",
                 str(tmp_path / "r"), "--workers", "1")  # fmt: skip
    assert result.exit_code == 2
    assert_one_line_error(result.output, ref, "dict", "Task")


def test_crash_pick_profile_not_in_the_study(study: Path) -> None:
    result = run("pick", str(study), "--profile", "gpu-a100", "--min-accuracy", "0.1")
    assert result.exit_code == 2
    assert_one_line_error(result.output, "'gpu-a100'", "x86-avx512-vnni")


@pytest.mark.parametrize("command", ["report", "pick", "compare"])
def test_crash_commands_on_an_empty_folder(tmp_path: Path, command: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    args = {"report": [str(empty)], "pick": [str(empty), "--profile", "x", "--max-accuracy-drop", "0.01"],
            "compare": [str(empty), str(empty)]}  # fmt: skip
    result = run(command, *args[command])
    assert result.exit_code == 2
    assert_one_line_error(result.output, str(empty), "no study.journal")


def test_crash_results_that_is_a_file(tmp_path: Path, fast_space_file: Path) -> None:
    not_a_folder = tmp_path / "results.txt"
    not_a_folder.write_text("x")
    result = cli_search(not_a_folder, fast_space_file, 1)
    assert result.exit_code == 2
    assert_one_line_error(result.output, "--results", str(not_a_folder), "not a folder")
    assert not_a_folder.read_text() == "x"


def test_crash_results_that_is_not_writable(tmp_path: Path, fast_space_file: Path) -> None:
    if os.geteuid() == 0:  # root writes through permission bits: use a folder no one can create files in
        results = Path("/sys/autoslim-test-results")
    else:
        results = tmp_path / "ro"
        results.mkdir()
        results.chmod(0o500)
    result = cli_search(results, fast_space_file, 1)
    assert result.exit_code == 2
    assert_one_line_error(result.output, "--results", str(results), "not writable")


def test_crash_unwritable_trials_csv_after_all_trials_ran(tmp_path: Path, fast_space_file: Path) -> None:
    results = tmp_path / "results"
    (results / "s" / "trials.csv").mkdir(parents=True)  # in the way of the final write, for root too
    result = cli_search(results, fast_space_file, 3)
    assert result.exit_code == 1, result.output
    assert_one_line_error(result.output, "trials.csv", "study.journal", "rerun the same command")
    done = [t for t in load(results / "s").trials if t.user_attrs.get("status") == "ok"]
    assert len(done) == 3  # the work is saved
    shutil.rmtree(results / "s" / "trials.csv")
    again = cli_search(results, fast_space_file, 3)
    assert again.exit_code == 0, again.output
    assert "0 trial(s) run now" in again.output and (results / "s" / "trials.csv").is_file()


def test_crash_journal_line_with_an_unknown_op_code(study: Path) -> None:
    with open(study / "study.journal", "a") as f:
        f.write(json.dumps({"op_code": 99, "worker_id": "x"}) + "\n")
    for args in (["report", str(study)], ["pick", str(study), "--profile", "x86-avx512-vnni", "--min-accuracy", "0"]):
        result = run(*args)
        assert result.exit_code == 1, result.output
        assert_one_line_error(result.output, str(study / "study.journal"), "cannot read")


def test_poor_brackets_in_messages_are_printed_literally(tmp_path: Path) -> None:
    space = {**FAST_SPACE, "techniques": {"prune.unstructured": {"params": {"amount": {"float": [0.9, 0.1]}}}}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(space))
    result = run("search", "--task", TINY_TASK, "--space", str(path), "--results", str(tmp_path / "r"))
    assert result.exit_code == 2
    assert_one_line_error(result.output, "float must be [low, high] with low <= high", str(path))


def test_poor_ray_install_hint_keeps_its_brackets(
    tmp_path: Path, fast_space_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    result = cli_search(tmp_path / "r", fast_space_file, 1, "--executor", "ray")
    assert result.exit_code == 2, result.output
    assert_one_line_error(result.output, "pip install 'autoslim[ray]'")


@pytest.mark.parametrize("how", ["flag", "env"])
def test_poor_debug_shows_the_traceback(how: str) -> None:
    args, env = (["--debug"], None) if how == "flag" else ([], {"AUTOSLIM_DEBUG": "1"})
    result = run(*args, "profiles", "show", "nosuch", env=env)
    assert result.exit_code == 2
    assert "Traceback" in result.output and "ProfileError" in result.output
    assert result.output.rstrip().splitlines()[-1].startswith("error: unknown profile 'nosuch'")


def test_crash_an_unexpected_failure_is_one_line_with_exit_1(study: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import autoslim.cli.results_cmds as cmds

    def boom(_results: object) -> str:
        raise RuntimeError("disk on fire [really]")

    monkeypatch.setattr(cmds, "write_html", boom)
    result = run("report", str(study))
    assert result.exit_code == 1
    assert_one_line_error(result.output, "RuntimeError: disk on fire [really]", "--debug")
