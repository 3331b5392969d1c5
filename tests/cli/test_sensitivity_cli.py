"""`autoslim sensitivity`: a table per per-layer technique of the space, its CSV and heat-map, read from cache."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from autoslim.cli import app
from tests.conftest import TINY_TASK

pytestmark = pytest.mark.usefixtures("repo_root_on_path")


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.setenv("AUTOSLIM_CACHE", str(tmp_path / "cache"))


def test_tables_csv_and_heatmaps_for_the_default_space(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["sensitivity", "--task", TINY_TASK, "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    folder = tmp_path / "out" / "tiny-cnn"
    # prune.structured: one row per channel group (7 in the tiny CNN), not per weight layer
    for slug, shape in (("quantize", (12, 5)), ("prune_unstructured", (12, 6)), ("prune_structured", (7, 6))):
        frame = pd.read_csv(folder / f"{slug}.csv", index_col=0)
        assert frame.shape == shape
        assert (folder / f"{slug}.png").stat().st_size > 1000
        assert (frame.iloc[:, 0] > frame.iloc[:, -1]).all() if slug == "quantize" else True
    assert "kl loss vs the teacher" in res.output and "3.conv1" in res.output
    again = CliRunner().invoke(app, ["sensitivity", "--task", TINY_TASK, "--out", str(tmp_path / "out")])
    assert again.exit_code == 0 and again.output.count("to measure") == 3
