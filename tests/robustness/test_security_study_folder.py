"""A study folder is data: it names no code that runs, plants no symlink autoslim writes through, and its name
never climbs out of --results. Each test crafts the attack and checks nothing outside was touched."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from autoslim.export import export_trial, teacher_sha256
from tests.conftest import TINY_PROFILES, TINY_TASK
from tests.robustness.cli_support import assert_no_traceback, load, run
from tests.robustness.conftest import assert_one_line_error, cli_search
from tests.tiny_task import tiny_task

pytestmark = pytest.mark.usefixtures("study_env")


@pytest.fixture
def study(tmp_path: Path, fast_space_file: Path) -> Path:
    result = cli_search(tmp_path / "results", fast_space_file, 2)
    assert result.exit_code == 0, result.output
    return tmp_path / "results" / "s"


@pytest.fixture
def evil_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """An importable module that leaves a marker file when imported (what a hostile journal would name)."""
    marker = tmp_path / "IMPORTED"
    code = tmp_path / "code"
    code.mkdir()
    (code / "evil_autoslim_task.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\ndef task():\n    pass\n")
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.delitem(sys.modules, "evil_autoslim_task", raising=False)
    return "evil_autoslim_task:task", marker


def _set_study_attr(folder: Path, key: str, value: object) -> None:
    load(folder).set_user_attr(key, value)


def test_security_export_never_imports_the_task_a_journal_names(
    study: Path, tmp_path: Path, evil_module: tuple[str, Path]
) -> None:
    ref, marker = evil_module
    settings = load(study).user_attrs["autoslim"]
    _set_study_attr(study, "autoslim", {**settings, "task": ref})
    out = tmp_path / "out"
    # The search recorded the teacher's sha256: the user's task has that teacher, so it exports on the user's task
    # whatever the journal names.
    ok = tmp_path / "ok"
    result = run("export", str(study), "--task", TINY_TASK, "--trial", "1", "--format", "state-dict", "--out", str(ok))
    assert result.exit_code == 0, result.output
    assert not marker.exists() and (ok / "manifest.json").exists()
    _set_study_attr(study, "teacher_sha256", "0" * 64)  # a study searched on another teacher
    result = run("export", str(study), "--task", TINY_TASK, "--trial", "1", "--format", "state-dict", "--out", str(out))
    assert result.exit_code == 2, result.output
    assert_one_line_error(result.output, repr(ref), repr(TINY_TASK), "--task")
    missing = run("export", str(study), "--trial", "1", "--format", "state-dict", "--out", str(out))
    assert missing.exit_code == 2 and "--task" in missing.output
    assert_no_traceback(missing)
    with pytest.raises(TypeError):  # the API has no default either
        export_trial(study, trial=1, fmt="state-dict", out=out)  # type: ignore[call-arg]
    assert not marker.exists() and "evil_autoslim_task" not in sys.modules
    assert not out.exists()


def test_security_export_refuses_a_teacher_other_than_the_studys(study: Path, tmp_path: Path) -> None:
    _set_study_attr(study, "teacher_sha256", "0" * 64)
    out = tmp_path / "out"
    result = run("export", str(study), "--task", TINY_TASK, "--trial", "1", "--format", "state-dict", "--out", str(out))
    assert result.exit_code == 2, result.output
    assert_one_line_error(result.output, "sha256", repr(TINY_TASK))
    assert not out.exists()


def test_security_export_accepts_the_recorded_teacher_under_another_name(study: Path, tmp_path: Path) -> None:
    """The teacher's hash, not the reference's spelling, ties a study to its model: a moved module still exports."""
    settings = load(study).user_attrs["autoslim"]
    _set_study_attr(study, "autoslim", {**settings, "task": "old_package.tasks:tiny"})
    _set_study_attr(study, "teacher_sha256", teacher_sha256(tiny_task().teacher()))
    out = tmp_path / "out"
    result = run("export", str(study), "--task", TINY_TASK, "--trial", "1", "--format", "state-dict", "--out", str(out))
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["task"] == TINY_TASK and manifest["task_check"] == "teacher sha256 matches the study's"


PLANTED = ["report.html", "trials.csv", f"pareto_{TINY_PROFILES[0]}.png", f"pareto_{TINY_PROFILES[1]}.csv",
           "study.journal"]  # fmt: skip


def _plant(folder: Path, name: str, outside: Path) -> None:
    target = folder / name
    if target.exists():
        target.unlink()
    target.symlink_to(outside)


@pytest.mark.parametrize("name", PLANTED)
def test_security_search_never_writes_through_a_planted_symlink(
    study: Path, tmp_path: Path, fast_space_file: Path, name: str
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    if name == "study.journal":  # the journal itself moved out of the folder, the folder holding a link to it
        os.replace(study / "study.journal", outside)
        before = outside.read_bytes()
    else:
        before = b"precious"
    _plant(study, name, outside)
    result = cli_search(study.parent, fast_space_file, 3)
    assert result.exit_code == 2, result.output
    assert_one_line_error(result.output, str(study / name), "symlink")
    assert outside.read_bytes() == before


def test_security_report_never_writes_through_a_planted_symlink(study: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.html"
    outside.write_text("precious")
    _plant(study, "report.html", outside)
    result = run("report", str(study))
    assert result.exit_code == 2, result.output
    assert_one_line_error(result.output, "report.html", "symlink")
    assert outside.read_text() == "precious"


@pytest.mark.parametrize("name", ["manifest.json", "model.state_dict.pt"])
def test_security_export_never_writes_through_a_planted_symlink(study: Path, tmp_path: Path, name: str) -> None:
    out, outside = tmp_path / "out", tmp_path / "outside.bin"
    out.mkdir()
    outside.write_text("precious")
    (out / name).symlink_to(outside)
    result = run("export", str(study), "--task", TINY_TASK, "--trial", "1", "--format", "state-dict", "--out", str(out))
    assert result.exit_code == 2, result.output
    assert_one_line_error(result.output, name, "symlink")
    assert outside.read_text() == "precious"


def test_security_study_folder_that_is_a_symlink(tmp_path: Path, fast_space_file: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "s").symlink_to(elsewhere, target_is_directory=True)
    result = cli_search(tmp_path / "results", fast_space_file, 1)
    assert result.exit_code == 2, result.output
    assert_one_line_error(result.output, "symlink")
    assert not list(elsewhere.iterdir())


@pytest.mark.parametrize("name", ["../../outside/evil", "", "..", ".hidden", "a/b", "/tmp/abs", "a\\b"])
def test_security_study_names_stay_inside_results(tmp_path: Path, fast_space_file: Path, name: str) -> None:
    work = tmp_path / "work"
    results = work / "results"
    result = cli_search(results, fast_space_file, 1, study=name)
    assert result.exit_code == 2, result.output
    assert "--study" in result.output and "plain name" in result.output
    assert_no_traceback(result)
    assert not work.exists() and not (tmp_path / "outside").exists()
