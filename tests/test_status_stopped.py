"""A trial whose fine-tune was stopped early has status "stopped" (Optuna's word "pruned" read like the prune.*
techniques): in the result, the journal, trials.csv and the CLI; studies that stored "pruned" still read."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
import pytest
from typer.testing import CliRunner

import autoslim.trial as trial_module
from autoslim.cli import app
from autoslim.export import ExportError, export_trial
from autoslim.techniques import StoppedEarly
from autoslim.trial import STATUSES, status_name
from tests.conftest import TINY_PROFILES, TINY_TASK, write_space
from tests.robustness.cli_support import load

SPACE = {
    "name": "kd",
    "profiles": TINY_PROFILES,
    "techniques": {"prune.structured": {"params": {"ratio": {"float": [0.2, 0.4]}}},
                   "distill.kd": {"when": "structural", "params": {"epochs": 2, "batch_size": 64}}},
    "recipes": [{"prune.structured": {"ratio": 0.3}, "distill.kd": {"epochs": 2, "batch_size": 64}}],
}  # fmt: skip


def test_statuses_and_the_old_word() -> None:
    assert STATUSES == ("ok", "infeasible", "failed", "stopped")
    assert status_name("pruned") == "stopped" and status_name("ok") == "ok" and status_name(None) == ""


@pytest.fixture
def stopped_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo_root_on_path: Path):
    def always_stop(*_args: object, **_kw: object):
        def stop(epoch: int, epochs: int, _model: object) -> None:
            raise StoppedEarly(f"stopped early: after epoch {epoch}/{epochs} (test)")

        return stop

    monkeypatch.setattr(trial_module, "early_stop", always_stop)
    monkeypatch.setattr(trial_module, "EARLY_STOP_MIN_STEPS", 0)  # the tiny task's epochs are a few steps long
    space = write_space(tmp_path / "kd.yaml", SPACE)
    args = ["search", "--budget", "2", "--task", TINY_TASK, "--space", str(space), "--results",
            str(tmp_path / "results"), "--study", "s", "--workers", "1", "--no-preflight"]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    return tmp_path / "results" / "s", result, args


def test_a_stopped_trial_is_stopped_everywhere(stopped_study) -> None:
    folder, result, _ = stopped_study
    assert "trial 1: stopped, stopped early: after epoch 1/2 (test)" in result.output
    assert "1 trial(s) did not finish ok (1 stopped); most common reasons:" in result.output
    assert pd.read_csv(folder / "trials.csv")["status"].tolist() == ["ok", "stopped"]
    t = load(folder).trials[1]
    assert t.user_attrs["status"] == "stopped" and t.state == optuna.trial.TrialState.PRUNED  # TPE's bad trial
    assert "pruned" not in result.output


def test_a_study_that_stored_pruned_still_reads(stopped_study) -> None:
    folder, _, args = stopped_study
    journal = folder / "study.journal"
    journal.write_text(journal.read_text().replace('{"status":"stopped"}', '{"status":"pruned"}'))
    assert load(folder).trials[1].user_attrs["status"] == "pruned"
    again = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert again.exit_code == 0, again.output
    assert "0 trial(s) run now" in again.output  # still counts toward the budget
    assert "1 trial(s) did not finish ok (1 stopped)" in again.output
    with pytest.raises(ExportError, match="trial 1 has status 'stopped'"):
        export_trial(folder, task=TINY_TASK, trial=1, fmt="state-dict", out=folder.parent / "out")
