"""The driver's hot path: incremental fronts give each trial the same early-stop fronts a rebuilt trials table
would, a trial's record is one journal append, the time budget ends the search on time, the run's settings are
stored for the report."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest

import autoslim.execution.inline as inline
import autoslim.search.driver as driver
from autoslim.report import trials_frame
from autoslim.report.settings import settings_rows
from autoslim.search import run_search
from autoslim.search.run_info import redact, run_record
from autoslim.search.study import finished_count
from autoslim.trial import TrialResult, TrialSpec
from tests.search.test_driver import config, load

pytestmark = pytest.mark.usefixtures("repo_root_on_path")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOSLIM_CACHE", str(tmp_path / "cache"))


def test_each_trial_gets_the_fronts_a_rebuilt_table_would_give(
    tmp_path: Path, space_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[int, dict] = {}
    real = inline.run_trial

    def spy(spec: TrialSpec, task: object, **kw: object) -> TrialResult:
        seen[spec.number] = dict(spec.fronts or {})
        return real(spec, task, **kw)

    monkeypatch.setattr(inline, "run_trial", spy)
    outcome = run_search(config(tmp_path, space_file, 8))
    assert outcome.ran == 8
    study = load(tmp_path)
    profiles = [p for p in config(tmp_path, space_file, 1).profiles]
    df = trials_frame(study, profiles)
    assert (df["status"] == "ok").sum() >= 3  # fronts with points to compare, not empty ones
    for number, fronts in seen.items():
        before = df[df["trial"] < number]  # inline: every earlier trial had finished
        assert fronts == driver.current_fronts(before, profiles), number
    assert any(any(points) for points in seen.values())


def test_a_trial_record_is_one_journal_append(
    tmp_path: Path, space_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optuna.storages.journal import JournalFileBackend

    appends: list[list[dict]] = []
    per_record: list[int] = []
    real_append, real_record = JournalFileBackend.append_logs, driver._record

    def counting(self: JournalFileBackend, logs: list[dict]) -> None:
        appends.append(logs)
        real_append(self, logs)

    def record(*args, **kwargs):  # type: ignore[no-untyped-def]
        before = len(appends)
        out = real_record(*args, **kwargs)  # the held attribute lines are written with the tell, in the block
        per_record.append(len(appends) - before)
        return out

    monkeypatch.setattr(JournalFileBackend, "append_logs", counting)
    monkeypatch.setattr(driver, "_record", record)
    run_search(config(tmp_path, space_file, 3))
    assert per_record == [1, 1, 1]  # ~14 operations (user attributes, then the tell) in one locked, fsynced write
    study = load(tmp_path)
    assert finished_count(study) == 3
    assert all("status" in t.user_attrs and "plan" in t.user_attrs for t in study.trials)  # nothing lost


def test_a_time_budget_ends_the_search_on_time_with_results_written(
    tmp_path: Path, space_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = inline.run_trial

    def slow(spec: TrialSpec, task: object, **kw: object) -> TrialResult:
        time.sleep(0.4)  # trials of a known length: the budget's arithmetic, not the machine's speed, is tested
        return real(spec, task, **kw)

    monkeypatch.setattr(inline, "run_trial", slow)
    start = time.monotonic()
    outcome = run_search(config(tmp_path, space_file, None, time_budget_s=4.0))
    took = time.monotonic() - start
    longest = float(outcome.trials["duration_s"].max()) + 0.4  # the sleep is outside the trial's own clock
    assert outcome.ran >= 2
    run = load(tmp_path).user_attrs["run"]
    # The search loop (teacher and preflight included) ends within the budget plus one trial's time; the report
    # written after it (a few seconds of matplotlib on a loaded CI machine) is not the budget's to plan.
    assert run["wall_s"] <= 4.0 + longest + 0.5 and run["wall_s"] <= took
    assert any("time budget" in n for n in outcome.notes)
    assert (tmp_path / "results" / "s" / "trials.csv").exists() and (
        tmp_path / "results" / "s" / "report.html"
    ).exists()
    assert run["budget"] is None and run["time_budget_s"] == 4.0


def test_no_budget_at_all_is_refused(tmp_path: Path, space_file: Path) -> None:
    with pytest.raises(ValueError, match="trial budget, a time budget"):
        run_search(config(tmp_path, space_file, None))


def test_the_run_settings_reach_the_report_and_add_up_over_resumes(tmp_path: Path, space_file: Path) -> None:
    run_search(config(tmp_path, space_file, 2, seed=7))
    first = load(tmp_path).user_attrs["run"]
    run_search(config(tmp_path, space_file, 3, seed=7))
    study = load(tmp_path)
    run = study.user_attrs["run"]
    assert run["budget"] == 3 and run["executor"] == "inline" and run["seed"] == 7 and run["open"] is False
    assert run["wall_s_runs_before"] == pytest.approx(first["wall_s"])
    assert run["versions"]["optuna"] == optuna.__version__
    rows = dict(settings_rows(study, trials_frame(study, config(tmp_path, space_file, 1).profiles)))
    assert rows["budget"] == "3" and rows["executor"] == "inline" and rows["seed"] == "7"
    assert "over all runs of this study" in rows["wall time"]
    assert f"optuna {optuna.__version__}" in rows["library versions"]


def test_a_storage_password_is_not_stored() -> None:
    assert redact("postgresql://me:s3cret@127.0.0.1/db") == "postgresql://me:***@127.0.0.1/db"
    assert redact("sqlite:///x.db") == "sqlite:///x.db"
    record = run_record({"storage": "postgresql://me:s3cret@127.0.0.1/db"}, None, wall_s=1.0)
    assert "s3cret" not in str(record)
