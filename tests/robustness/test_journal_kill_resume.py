"""kill -9 during a trial, during a journal write and during report writing, then resume: every finished trial
kept, the budget exact, the study usable (benchmarks/kill_resume.py does the same at 20 moments)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.usefixtures("study_env"), pytest.mark.slow]


def _benchmark():
    spec = importlib.util.spec_from_file_location("kill_resume", REPO_ROOT / "benchmarks" / "kill_resume.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kill_9_at_three_moments_then_resume_keeps_everything(tmp_path: Path) -> None:
    df = _benchmark().run(3, seed=1, out=tmp_path / "kill_resume.csv")
    assert df["kill"].tolist() == ["trial", "journal", "report"]
    # The trial and journal kills land mid-search (a report kill may come after a quick last write).
    assert not df.loc[df["kill"] != "report", "exited_before_kill"].any(), df.to_dict("records")
    assert df["all_kept"].all() and df["budget_exact"].all() and df["usable"].all(), df.to_dict("records")
    assert (df["finished_after_resume"] == 6).all()
