"""`autoslim report | pick | compare | spaces | profiles` and `search --warm-start` on a tiny finished study."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from autoslim.cli import app
from tests.conftest import TINY_PROFILES, TINY_TASK

pytestmark = pytest.mark.usefixtures("repo_root_on_path")


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")


def run(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def study(tmp_path: Path, space_file: Path) -> Path:
    result = run("search", "--budget", "5", "--task", TINY_TASK, "--space", str(space_file), "--results",
                 str(tmp_path / "results"), "--study", "a", "--workers", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    return tmp_path / "results" / "a"


def test_report_writes_one_self_contained_html(study: Path) -> None:
    result = run("report", str(study))
    assert result.exit_code == 0, result.output
    html = (study / "report.html").read_text()
    assert html.count('class="plotly-graph-div"') >= len(TINY_PROFILES)  # one interactive view per profile at least
    for p in TINY_PROFILES:
        assert p in html
    assert "Settings" in html
    # nothing fetched from elsewhere: no src/href to another host (Plotly's JavaScript is inlined)
    markup = re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.S)  # plotly.js's own strings are not links
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", markup)


def test_pick_returns_the_cheapest_point_within_the_accuracy_drop(study: Path) -> None:
    profile = TINY_PROFILES[0]
    result = run("pick", str(study), "--profile", profile, "--max-accuracy-drop", "0.5")
    assert result.exit_code == 0, result.output
    front = pd.read_csv(study / f"pareto_{profile}.csv")
    cheapest = front.iloc[0]  # cheapest first
    assert f"trial {cheapest['trial']} on {profile}" in result.output
    as_json = json.loads(run("pick", str(study), "--profile", profile, "--max-accuracy-drop", "0.5", "--json").output)
    assert as_json["point"]["plan_json"] == json.loads(cheapest["plan_json"])


def test_pick_says_which_point_is_nearest_when_none_meets_the_query(study: Path) -> None:
    result = run("pick", str(study), "--profile", TINY_PROFILES[0], "--max-latency-ms", "1e-12")
    assert result.exit_code == 1
    assert "no front point" in result.output and "nearest is trial" in result.output


def test_pick_unknown_profile_is_a_clear_error(study: Path) -> None:
    result = run("pick", str(study), "--profile", "no-such-device", "--min-accuracy", "0.5")
    assert result.exit_code != 0
    assert "no-such-device" in str(result.exception) + result.output


def test_compare_a_study_with_itself_passes_and_with_a_worse_one_fails(study: Path, tmp_path: Path) -> None:
    same = run("compare", str(study), str(study))
    assert same.exit_code == 0, same.output
    assert "+0.0%" in same.output
    worse = tmp_path / "results" / "worse"
    worse.mkdir()
    (worse / "study.journal").write_bytes((study / "study.journal").read_bytes())
    # The same journal with only the baseline left: keep the first trial's lines only.
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "results" / "base.journal")))
    src = optuna.load_study(study_name="a", storage=JournalStorage(JournalFileBackend(str(study / "study.journal"))))
    dst = optuna.create_study(study_name="a", storage=storage, directions=src.directions)
    for k, v in src.user_attrs.items():
        dst.set_user_attr(k, v)
    dst.add_trial(src.trials[0])
    (worse / "study.journal").write_bytes((tmp_path / "results" / "base.journal").read_bytes())
    regressed = run("compare", str(study), str(worse))
    assert regressed.exit_code == 1, regressed.output
    assert "regressed" in regressed.output


def test_warm_start_runs_the_previous_fronts_plans_first(study: Path, tmp_path: Path, space_file: Path) -> None:
    fronts = pd.concat(pd.read_csv(study / f"pareto_{p}.csv") for p in TINY_PROFILES)
    previous = {json.dumps(json.loads(j), sort_keys=True) for j in fronts["plan_json"]}
    previous.discard(json.dumps({"steps": []}, sort_keys=True))
    result = run("search", "--budget", str(2 + len(previous) + 1), "--task", TINY_TASK, "--space", str(space_file),
                 "--results", str(tmp_path / "results"), "--study", "b", "--workers", "1", "--warm-start",
                 str(study))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "warm start" in result.output
    trials = pd.read_csv(tmp_path / "results" / "b" / "trials.csv")
    ran = {json.dumps(json.loads(j), sort_keys=True) for j in trials["plan_json"]}
    assert previous <= ran


def test_spaces_list_and_show() -> None:
    listed = run("spaces", "list")
    assert listed.exit_code == 0, listed.output
    for name in ("default", "cnn", "transformer"):
        assert name in listed.output
    shown = run("spaces", "show", "transformer")
    assert shown.exit_code == 0 and "techniques:" in shown.output


def test_profiles_list_and_show() -> None:
    listed = run("profiles", "list")
    assert listed.exit_code == 0
    for name in (
        "gpu-a100",
        "jetson-orin-nano",
        "x86-avx512-vnni",
        "arm-cortex-a76",
        "npu-phone-int8",
        "mcu-cortex-m7",
        "host",
    ):
        assert name in listed.output
    shown = run("profiles", "show", "mcu-cortex-m7")
    assert shown.exit_code == 0 and "sources:" in shown.output and "storage_capacity_bytes" in shown.output


def test_search_summary_lists_failed_trials_with_reasons(tmp_path: Path) -> None:
    from tests.conftest import write_space

    space = write_space(tmp_path / "cut.yaml", {"name": "cut", "profiles": TINY_PROFILES,
                        "techniques": {"cut.blocks": {"when": "always", "params": {"n_blocks": 99}}}})  # fmt: skip
    result = run("search", "--budget", "3", "--task", TINY_TASK, "--space", str(space), "--results",
                 str(tmp_path / "results"), "--study", "c", "--workers", "1", "--no-preflight")  # fmt: skip
    assert result.exit_code == 0, result.output  # (preflight would have removed the technique before trial 1)
    assert "2 trial(s) did not finish ok" in result.output
    assert "removable" in result.output
