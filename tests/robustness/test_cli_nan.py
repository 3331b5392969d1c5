"""NaN / infinite metric or outputs: the trial is `failed` with that reason; and reports, plots, pick and compare
never crash on any value a trial can record (NaN, inf, null accuracy or cost)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import optuna
import pandas as pd
import pytest

from tests.conftest import TINY_PROFILES
from tests.robustness.cli_support import TASKS, assert_no_traceback, load, run

pytestmark = pytest.mark.usefixtures("study_env")


def _search(tmp_path: Path, space: Path, task: str, budget: int = 2):
    return run("search", "--budget", str(budget), "--task", task, "--space", str(space), "--results",
               str(tmp_path / "results"), "--study", "s", "--workers", "1", "--no-preflight")  # fmt: skip


@pytest.mark.parametrize("task", ["nan_output_task", "nan_metric_task"])
def test_crash_nan_outputs_or_metric_make_the_trial_failed(tmp_path: Path, fast_space_file: Path, task: str) -> None:
    result = _search(tmp_path, fast_space_file, f"{TASKS}:{task}")
    assert result.exit_code == 0, result.output
    assert_no_traceback(result)
    trials = pd.read_csv(tmp_path / "results" / "s" / "trials.csv")
    assert (trials["status"] == "failed").all(), trials[["status", "reason"]]
    assert trials["reason"].str.contains("NaN|nan|finite", regex=True).all(), trials["reason"].tolist()
    assert (tmp_path / "results" / "s" / "report.html").is_file()


def _add_odd_trials(folder: Path) -> None:
    """Trials recorded `ok` with NaN / inf / missing accuracy and costs (an old or hand-edited journal)."""
    study = load(folder)
    template = next(t for t in study.trials if t.user_attrs.get("status") == "ok")
    odd = [(math.nan, 1.0), (math.inf, 1.0), (0.5, math.nan), (0.5, math.inf), (None, None), (-math.inf, 0.0)]
    for accuracy, cost in odd:
        costs = {p: {**template.user_attrs["costs"][p], "latency_ms": cost, "model_bytes": cost} for p in TINY_PROFILES}
        attrs = {**template.user_attrs, "accuracy": accuracy, "costs": costs, "baseline": False}
        study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs=attrs))


def test_crash_reports_survive_nan_and_inf_values(tmp_path: Path, fast_space_file: Path) -> None:
    from tests.conftest import TINY_TASK

    assert _search(tmp_path, fast_space_file, TINY_TASK).exit_code == 0
    folder = tmp_path / "results" / "s"
    _add_odd_trials(folder)
    (folder / "report.html").unlink()
    report = run("report", str(folder))
    assert report.exit_code == 0, report.output
    assert_no_traceback(report)
    html = (folder / "report.html").read_text()
    assert html.count('class="plotly-graph-div"') >= len(TINY_PROFILES)
    for p in TINY_PROFILES:
        picked = run("pick", str(folder), "--profile", p, "--min-accuracy", "0")
        assert picked.exit_code == 0, picked.output
        assert_no_traceback(picked)
        row = next(line for line in picked.output.splitlines() if line.startswith("picked"))
        assert not re.search(r"\b(nan|inf)\b", row, flags=re.I), row
    compared = run("compare", str(folder), str(folder))
    assert compared.exit_code == 0, compared.output
    resumed = _search(tmp_path, fast_space_file, TINY_TASK, budget=3)  # the driver's own report writing, too
    assert resumed.exit_code == 0, resumed.output
    assert (folder / f"pareto_{TINY_PROFILES[0]}.png").is_file()
