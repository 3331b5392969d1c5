"""`compare` refuses studies of other tasks or spaces (or warns loudly with --allow-different); `export` of a trial
that breaks the space's constraints warns, and manifest.json lists the violations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TINY_PROFILES, TINY_TASK, write_space
from tests.robustness.cli_support import assert_no_traceback, load, run
from tests.robustness.conftest import FAST_SPACE, assert_one_line_error, cli_search

pytestmark = pytest.mark.usefixtures("study_env")


def _study(tmp_path: Path, name: str, space: dict, budget: int = 2) -> Path:
    path = write_space(tmp_path / f"{name}.yaml", space)
    result = cli_search(tmp_path / name, path, budget)
    assert result.exit_code == 0, result.output
    return tmp_path / name / "s"


def test_poor_compare_refuses_studies_of_different_spaces(tmp_path: Path) -> None:
    a = _study(tmp_path, "a", FAST_SPACE)
    b = _study(tmp_path, "b", {**FAST_SPACE, "name": "other"})
    refused = run("compare", str(a), str(b))
    assert refused.exit_code == 2, refused.output
    assert_one_line_error(refused.output, "space: 'fast' vs 'other'", "--allow-different")
    forced = run("compare", str(a), str(b), "--allow-different")
    assert forced.exit_code in (0, 1) and "warning:" in forced.output and "fronts" in forced.output
    assert_no_traceback(forced)


def test_poor_compare_refuses_studies_of_different_tasks(tmp_path: Path) -> None:
    a = _study(tmp_path, "a", FAST_SPACE)
    b = _study(tmp_path, "b", FAST_SPACE)
    load(b).set_user_attr("autoslim", {**load(b).user_attrs["autoslim"], "task": "other.module:task"})
    refused = run("compare", str(a), str(b))
    assert refused.exit_code == 2
    assert_one_line_error(refused.output, f"task: {TINY_TASK!r} vs 'other.module:task'")


def test_poor_export_of_a_trial_breaking_the_constraints_warns_and_the_manifest_says(tmp_path: Path) -> None:
    space = {**FAST_SPACE, "constraints": {"max_model_bytes": {TINY_PROFILES[1]: 100}}}  # no model is this small
    study = _study(tmp_path, "c", space)
    out = tmp_path / "out"
    result = run("export", str(study), "--task", TINY_TASK, "--trial", "1", "--format", "state-dict", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"warning: trial 1 violates the space's constraints (max_model_bytes 100.0 on {TINY_PROFILES[1]})" in (
        result.output
    )
    manifest = json.loads((out / "manifest.json").read_text())
    (violation,) = manifest["constraint_violations"]
    assert violation["constraint"] == f"max_model_bytes 100.0 on {TINY_PROFILES[1]}" and violation["violation"] > 0
    assert manifest["warnings"]


def test_poor_export_of_a_feasible_trial_records_no_violation(tmp_path: Path) -> None:
    study = _study(tmp_path, "d", FAST_SPACE)
    out = tmp_path / "out"
    result = run("export", str(study), "--task", TINY_TASK, "--trial", "1", "--format", "state-dict", "--out", str(out))
    assert result.exit_code == 0 and "warning" not in result.output
    assert json.loads((out / "manifest.json").read_text())["constraint_violations"] == []
