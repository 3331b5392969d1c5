"""Every flag validated at the CLI: nonsense is refused with exit code 2 naming the flag, before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TINY_TASK
from tests.robustness.cli_support import assert_no_traceback, run

pytestmark = pytest.mark.usefixtures("study_env")

SEARCH_NONSENSE = [
    ("--budget", "0"), ("--budget", "-1"), ("--timeout", "-1"), ("--timeout", "0"), ("--workers", "-2"),
    ("--workers", "0"), ("--cpus-per-trial", "0"), ("--gpus-per-trial", "-1"), ("--seed", "-1"),
    ("--sampler", "bogus"), ("--executor", "bogus"),
]  # fmt: skip


@pytest.mark.parametrize(("flag", "value"), SEARCH_NONSENSE)
def test_poor_search_refuses_nonsense(tmp_path: Path, fast_space_file: Path, flag: str, value: str) -> None:
    results = tmp_path / "results"
    result = run("search", "--task", TINY_TASK, "--space", str(fast_space_file), "--results", str(results),
                 flag, value)  # fmt: skip
    assert result.exit_code == 2, result.output
    assert flag in result.output and "Invalid value" in result.output
    assert_no_traceback(result)
    assert "_ProcessExecutor" not in result.output and "Executor" not in result.output  # no internal names
    assert not results.exists()  # refused before anything was written


@pytest.mark.parametrize(
    "args",
    [
        ["pick", "S", "--profile", "x", "--max-accuracy-drop", "-5"],
        ["pick", "S", "--profile", "x", "--max-latency-ms", "0"],
        ["pick", "S", "--profile", "x", "--max-bytes", "-1"],
        ["compare", "A", "B", "--tolerance", "-0.1"],
        ["compare", "A", "B", "--tolerance", "2"],
        ["export", "S", "--task", "t", "--out", "o", "--trial", "-1"],
        ["export", "S", "--task", "t", "--out", "o", "--trial", "1", "--format", "tflite"],
        ["export", "S", "--task", "t", "--out", "o", "--profile", "p", "--max-accuracy-drop", "-5"],
        ["profiles", "calibrate", "--name", "../../etc/x"],
    ],
    ids=lambda a: " ".join(a[:1] + a[-2:]),
)
def test_poor_limits_are_checked_before_reading_anything(args: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert args[-2] in result.output and "Invalid value" in result.output
    assert_no_traceback(result)
