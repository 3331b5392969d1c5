"""`search --time-budget`: a duration with a unit, checked before anything runs; alone it lifts the trial budget."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import autoslim.cli.search as search_cmd
from autoslim.cli import app
from autoslim.search import SearchConfig


@pytest.mark.parametrize("text", ["10", "10x", "0m", "5s5m"])
def test_a_bad_duration_is_refused_by_name_before_the_search(text: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["search", "--time-budget", text, "--results", str(tmp_path)])
    assert result.exit_code == 2
    assert "--time-budget" in result.output and repr(text) in result.output
    assert not (tmp_path / "default").exists()


@pytest.mark.parametrize(
    ("args", "budget", "seconds"),
    [(["--time-budget", "10m"], None, 600.0), (["--time-budget", "1h30m", "--budget", "50"], 50, 5400.0),
     ([], 50, None)],
)  # fmt: skip
def test_the_time_budget_reaches_the_driver(args: list[str], budget: int | None, seconds: float | None,
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    seen: list[SearchConfig] = []

    def fake_run(config: SearchConfig, **_: object) -> None:
        seen.append(config)
        raise KeyError("stop here")  # nothing runs: only what the CLI built is checked

    monkeypatch.setattr(search_cmd, "run_search", fake_run)
    CliRunner().invoke(app, ["search", *args, "--results", str(tmp_path)])
    assert len(seen) == 1
    assert seen[0].budget == budget and seen[0].time_budget_s == seconds
