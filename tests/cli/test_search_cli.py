"""`autoslim search` end to end on the tiny task: files, resume top-up, errors with exit code 2."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from autoslim.cli import app
from tests.conftest import TINY_PROFILES, TINY_SPACE, TINY_TASK, write_space

pytestmark = pytest.mark.usefixtures("repo_root_on_path")


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # rich wraps at 80 columns otherwise, splitting paths and messages


def search(space: Path, results: Path, *extra: str, budget: int = 3):
    args = ["search", "--budget", str(budget), "--task", TINY_TASK, "--space", str(space),
            "--results", str(results), "--study", "s", *extra]  # fmt: skip
    return CliRunner().invoke(app, args)


def ran_now(output: str) -> int:
    match = re.search(r"(\d+) trial\(s\) run now", output)
    assert match, output
    return int(match.group(1))


def check_outputs(folder: Path, n_trials: int) -> pd.DataFrame:
    trials = pd.read_csv(folder / "trials.csv")
    assert len(trials) == n_trials
    assert trials["trial"].tolist() == list(range(n_trials))
    assert (trials["status"] == "ok").all(), trials["reason"].tolist()
    assert trials["is_baseline"].sum() == 1 and bool(trials.loc[0, "is_baseline"])
    assert trials.loc[0, "plan"] == "baseline (uncompressed)"
    for p in TINY_PROFILES:
        front = pd.read_csv(folder / f"pareto_{p}.csv")
        assert 1 <= len(front) <= n_trials
        assert set(front["trial"]) <= set(trials["trial"])
        assert (folder / f"pareto_{p}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (folder / "study.journal").exists()
    return trials


def test_search_then_resume_with_a_larger_budget(tmp_path: Path, space_file: Path) -> None:
    results = tmp_path / "results"
    first = search(space_file, results, "--workers", "1", budget=3)
    assert first.exit_code == 0, first.output
    assert ran_now(first.output) == 3
    for p in TINY_PROFILES:
        assert f"{p}: Pareto front" in first.output
    trials = check_outputs(results / "s", 3)

    again = search(space_file, results, "--workers", "1", budget=5)
    assert again.exit_code == 0, again.output
    assert ran_now(again.output) == 2  # a rerun only tops up
    trials5 = check_outputs(results / "s", 5)
    pd.testing.assert_frame_equal(
        trials5.iloc[:3][["trial", "accuracy", "plan"]], trials[["trial", "accuracy", "plan"]]
    )

    same = search(space_file, results, "--workers", "1", budget=5)
    assert same.exit_code == 0 and ran_now(same.output) == 0
    assert len(pd.read_csv(results / "s" / "trials.csv")) == 5


def test_profile_option_overrides_the_space(tmp_path: Path, space_file: Path) -> None:
    result = search(space_file, tmp_path / "r", "--workers", "1", "--profile", "gpu-a100", budget=1)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "r" / "s"
    assert (folder / "pareto_gpu-a100.csv").exists()
    assert not (folder / "pareto_x86-avx512-vnni.csv").exists()
    # gpu-a100 prices a batch of 64: trials.csv may say so in the column name
    assert any(c.startswith("gpu-a100.latency_ms") for c in pd.read_csv(folder / "trials.csv").columns)


def test_bad_space_file_exits_2_naming_the_field(tmp_path: Path) -> None:
    bad = dict(TINY_SPACE)
    bad["techniques"] = {**TINY_SPACE["techniques"], "quantize": {"params": {"weight_bits": {"choice": [5]}}}}
    path = write_space(tmp_path / "bad.yaml", bad)
    result = search(path, tmp_path / "r", "--workers", "1")
    assert result.exit_code == 2
    assert "error:" in result.output
    assert str(path) in result.output and "techniques.quantize" in result.output and "weight_bits" in result.output
    assert not (tmp_path / "r" / "s" / "trials.csv").exists()


def test_unknown_technique_in_space_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"techniques": {"prune.magic": {}}}))
    result = search(path, tmp_path / "r", "--workers", "1")
    assert result.exit_code == 2 and "techniques.prune.magic" in result.output


def test_resuming_with_other_profiles_exits_2(tmp_path: Path, space_file: Path) -> None:
    results = tmp_path / "results"
    assert search(space_file, results, "--workers", "1", budget=1).exit_code == 0
    result = search(space_file, results, "--workers", "1", "--profile", "gpu-a100", budget=2)
    assert result.exit_code == 2
    assert "error:" in result.output and "profiles" in result.output and "--study" in result.output
    assert len(pd.read_csv(results / "s" / "trials.csv")) == 1  # nothing was run or overwritten


def test_unknown_profile_and_task_exit_2(tmp_path: Path, space_file: Path) -> None:
    result = search(space_file, tmp_path / "r", "--profile", "tpu-v9")
    assert result.exit_code == 2 and "tpu-v9" in result.output
    result = CliRunner().invoke(
        app, ["search", "--budget", "1", "--task", "tests.no_such_module:task", "--space", str(space_file),
              "--results", str(tmp_path / "r"), "--workers", "1"],
    )  # fmt: skip
    assert result.exit_code == 2 and "no_such_module" in result.output


@pytest.mark.slow
def test_search_with_a_process_pool(tmp_path: Path, space_file: Path) -> None:
    results = tmp_path / "results"
    result = search(space_file, results, "--workers", "2", budget=3)
    assert result.exit_code == 0, result.output
    assert ran_now(result.output) == 3
    trials = check_outputs(results / "s", 3)
    # the workers load the same deterministic teacher: the baseline scores what it scores inline
    inline = search(space_file, tmp_path / "inline", "--workers", "1", budget=1)
    assert inline.exit_code == 0, inline.output
    assert pd.read_csv(tmp_path / "inline" / "s" / "trials.csv").loc[0, "accuracy"] == trials.loc[0, "accuracy"]


def test_profiles_list_and_show() -> None:
    listed = CliRunner().invoke(app, ["profiles", "list"])
    assert listed.exit_code == 0
    for name in ("gpu-a100", "x86-avx512-vnni", "arm-cortex-a76", "mcu-cortex-m7"):
        assert name in listed.output
    shown = CliRunner().invoke(app, ["profiles", "show", "mcu-cortex-m7"])
    assert shown.exit_code == 0
    data = yaml.safe_load(shown.output)
    assert data["name"] == "mcu-cortex-m7" and data["objective"] == "model_bytes"
    assert data["sources"]
