"""`autoslim pick` for people (a short table beside the baseline, the export command) and for scripts (--json);
a pick without a limit is refused; every user error is one line."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from autoslim.cli import app
from tests.conftest import TINY_PROFILES, TINY_TASK, write_space
from tests.robustness.conftest import FAST_SPACE

pytestmark = pytest.mark.usefixtures("repo_root_on_path")
MCU = TINY_PROFILES[1]


def run(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "300"})


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("pick")
    space = write_space(tmp / "fast.yaml", FAST_SPACE)
    result = run("search", "--budget", "6", "--task", TINY_TASK, "--space", str(space), "--results",
                 str(tmp / "results"), "--study", "p", "--workers", "1", "--no-preflight")  # fmt: skip
    assert result.exit_code == 0, result.output
    return tmp / "results" / "p"


def test_pick_prints_a_short_table_and_the_export_command(study: Path) -> None:
    result = run("pick", str(study), "--profile", MCU, "--max-accuracy-drop", "0.5")
    assert result.exit_code == 0, result.output
    front = pd.read_csv(study / f"pareto_{MCU}.csv")
    assert f"trial {front.iloc[0]['trial']} on {MCU}: the smallest of {len(front)} front point(s)" in result.output
    lines = result.output.splitlines()
    baseline = next(line for line in lines if line.startswith("baseline"))
    picked = next(line for line in lines if line.startswith("picked"))
    assert "0.00 pp" in baseline and "same" in baseline and "baseline (uncompressed)" in baseline
    assert " KB" in picked and "x smaller" in picked and " pp" in picked and "%" in picked
    assert "µs" in picked or "ms" in picked
    assert len(result.output) < 2000 and "plan_json" not in result.output and '"steps"' not in result.output
    command = next(line for line in lines if line.startswith("export it: "))
    args = shlex.split(command.removeprefix("export it: autoslim "))
    assert args[:2] == ["export", str(study)] and args[args.index("--trial") + 1] == str(front.iloc[0]["trial"])
    assert args[args.index("--task") + 1] == TINY_TASK and args[args.index("--profile") + 1] == MCU


def test_pick_json_is_for_scripts(study: Path) -> None:
    result = run("pick", str(study), "--profile", MCU, "--max-accuracy-drop", "0.5", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    front = pd.read_csv(study / f"pareto_{MCU}.csv")
    assert data["met"] and data["point"]["trial"] == int(front.iloc[0]["trial"])
    assert data["point"]["plan_json"] == json.loads(front.iloc[0]["plan_json"])
    assert data["baseline"]["trial"] == 0 and data["ratio_to_baseline"] > 1
    assert data["export_command"].startswith(f"autoslim export {study}")


def test_pick_without_a_limit_is_refused(study: Path) -> None:
    result = run("pick", str(study), "--profile", MCU)
    assert result.exit_code == 2
    assert result.output.startswith("error: say what to pick") and "Traceback" not in result.output


def test_pick_shows_the_nearest_point_when_none_meets_the_query(study: Path) -> None:
    result = run("pick", str(study), "--profile", MCU, "--max-bytes", "1")
    assert result.exit_code == 1
    assert "no front point" in result.output and "nearest is trial" in result.output
    assert any(line.startswith("nearest") for line in result.output.splitlines())
    as_json = json.loads(run("pick", str(study), "--profile", MCU, "--max-bytes", "1", "--json").output)
    assert as_json["met"] is False and as_json["point"]["trial"] >= 0


@pytest.mark.parametrize("profile", ["host", "gpu-a100"])
def test_pick_of_a_profile_the_study_lacks_is_one_line(study: Path, profile: str) -> None:
    result = run("pick", str(study), "--profile", profile, "--max-accuracy-drop", "0.01")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [
        f"error: profile {profile!r} is not in this study; it has {TINY_PROFILES}"
    ]


def test_profiles_list_shows_host() -> None:
    result = run("profiles", "list")
    assert result.exit_code == 0
    host = [line for line in result.output.splitlines() if "│ host " in line]
    assert host and "autoslim profiles calibrate" in host[0]


@pytest.mark.parametrize("name", ["constrained", "constrained.yaml"])
def test_search_takes_a_shipped_space_by_name(tmp_path: Path, name: str) -> None:
    # An unknown profile stops the search after the space resolved: no trial runs, and the message names it.
    result = run("search", "--space", name, "--profile", "nosuch", "--results", str(tmp_path))
    assert result.exit_code == 2 and "unknown profile 'nosuch'" in result.output, result.output


def test_an_unknown_space_name_lists_the_shipped_ones(tmp_path: Path) -> None:
    result = run("search", "--space", "nosuch", "--results", str(tmp_path))
    assert result.exit_code == 2 and "--space" in result.output
    assert "no search space 'nosuch'" in result.output and "constrained" in result.output
    assert not list(tmp_path.iterdir())
