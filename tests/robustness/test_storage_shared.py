"""``--storage URL``: an Optuna RDB study shared by several drivers, with heartbeats for dead drivers' trials.

The done-when figure runs against a real PostgreSQL server the tests start (``postgres_url`` in conftest.py): two
drivers x 20 trials started together hold 40 distinct finished trials, none lost or duplicated, and the fronts
are those of the same 40 plans run by one process.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from autoslim.cost import get_profile
from autoslim.report.frame import front_frame, trials_frame
from autoslim.search import run_search
from autoslim.search.storage import Heartbeats, StorageError, ask, rdb_storage
from autoslim.search.study import counts_as_finished, finished_count
from autoslim.tasks import load_task
from autoslim.trial import TrialSpec, run_trial
from tests.conftest import TINY_PROFILES, TINY_TASK
from tests.robustness.conftest import assert_one_line_error, cli_command, cli_search, fast_config

pytestmark = pytest.mark.usefixtures("study_env")


def test_sqlite_storage_runs_resumes_and_writes_the_results_folder(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    results = tmp_path / "results"
    assert run_search(fast_config(results, 2, storage=url)).ran == 2
    folder = results / "s"
    assert {"trials.csv", "report.html", "pareto_mcu-cortex-m7.csv", "pareto_mcu-cortex-m7.png"} <= {
        p.name for p in folder.iterdir()
    }
    assert not (folder / "study.journal").exists() and not (folder / "study.lock").exists()  # no journal, no lock
    assert not list(folder.glob(".*.tmp"))  # atomic writes leave no temporary file behind
    assert run_search(fast_config(results, 3, storage=url)).ran == 1  # a rerun tops up
    study = optuna.load_study(study_name="s", storage=url)
    assert finished_count(study) == 3 and [t.number for t in study.get_trials()] == [0, 1, 2]


def test_bad_storage_url_is_one_line_naming_it_with_the_password_hidden(tmp_path: Path, fast_space_file: Path):
    with pytest.raises(StorageError, match="--storage nosuch: not a database URL"):
        rdb_storage("nosuch")
    out = cli_search(tmp_path / "r", fast_space_file, 2, "--storage", "postgresql://me:s3cret@127.0.0.1:1/db")
    assert out.exit_code == 2
    line = assert_one_line_error(out.output, "--storage postgresql://me:***@127.0.0.1:1/db: cannot open it")
    assert "s3cret" not in out.output and len(line) < 400


def test_dead_drivers_trial_is_failed_by_heartbeat_while_a_live_drivers_is_kept(tmp_path: Path) -> None:
    url, results = f"sqlite:///{tmp_path / 'shared.db'}", tmp_path / "results"
    run_search(fast_config(results, 2, storage=url, heartbeat_s=1))  # baseline + the hand recipe
    storage = rdb_storage(url, heartbeat_s=1)
    study = optuna.load_study(study_name="s", storage=storage)
    # A dead driver's trial (a hand recipe run again): one heartbeat, then silence.
    study.enqueue_trial({"quantize": True, "quantize.weight_bits": 8}, user_attrs={"recipe": {"quantize": {}}})
    dead = ask(study)
    storage.record_heartbeat(dead._trial_id)
    live = ask(study)  # a live driver's trial: its heartbeat goes on
    beats = Heartbeats(storage)
    beats.add(live._trial_id)
    try:
        time.sleep(7.5)  # past the grace period (6 heartbeats of 1 s) for the dead one only
        outcome = run_search(fast_config(results, 5, storage=url, heartbeat_s=1))
    finally:
        beats.stop()
    trials = {t.number: t for t in optuna.load_study(study_name="s", storage=url).get_trials()}
    assert trials[dead.number].state == optuna.trial.TrialState.FAIL  # failed by Optuna's heartbeat check
    assert trials[live.number].state == optuna.trial.TrialState.RUNNING  # not "every running trial is stale"
    requeued = [t for t in trials.values() if t.user_attrs.get("requeue_of") == dead.number]
    assert len(requeued) == 1 and requeued[0].user_attrs["status"] == "ok"  # the recipe ran again
    # the budget counts the live driver's running trial: 2 + 2 new + 1 running = 5
    assert outcome.ran == 2 and sum(counts_as_finished(t) for t in trials.values()) == 4


def _replayed_fronts(df: pd.DataFrame, study: optuna.Study) -> dict[str, list[int]]:
    """Each trial's plan run again in this one process (same seed): the fronts a single driver gets from them."""
    task, profiles = load_task(TINY_TASK), tuple(get_profile(p) for p in TINY_PROFILES)
    by_number = {t.number: t for t in study.get_trials()}
    again = df.copy()
    for i, n in enumerate(df["trial"]):
        result = run_trial(TrialSpec(by_number[n].user_attrs["plan"], profiles, seed=n, number=n), task)
        assert result.status == "ok", result.reason
        again.loc[again.index[i], "accuracy"] = result.accuracy
        for p in profiles:
            for field, value in result.costs[p.name].items():
                if f"{p.name}.{field}" in again:
                    again.loc[again.index[i], f"{p.name}.{field}"] = value
    pd.testing.assert_series_equal(again["accuracy"], df["accuracy"])  # the same numbers, trial by trial
    return {p.name: front_frame(again, p)["trial"].tolist() for p in profiles}


@pytest.mark.slow
def test_two_drivers_x_20_on_postgresql_hold_40_distinct_trials_and_single_driver_fronts(
    tmp_path: Path, postgres_url: str
) -> None:
    space = tmp_path / "fast.yaml"
    from tests.conftest import write_space
    from tests.robustness.conftest import FAST_SPACE

    write_space(space, FAST_SPACE)
    results = tmp_path / "results"
    # Early stop off: a trial's outcome then depends on its plan and seed only, not on what the other driver did.
    cmd = cli_command(results, space, 40, "--storage", postgres_url, "--no-early-stop")
    drivers = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [d.communicate(timeout=300)[0] for d in drivers]
    assert [d.returncode for d in drivers] == [0, 0], outputs
    ran = [int(re.search(r"(\d+) trial\(s\) run now", out).group(1)) for out in outputs]  # type: ignore[union-attr]
    assert sum(ran) == 40 and min(ran) > 0, ran  # both drivers worked, together exactly the budget

    study = optuna.load_study(study_name="s", storage=postgres_url)  # read back through Optuna's API
    trials = study.get_trials()
    done = [t for t in trials if counts_as_finished(t)]
    assert len(done) == 40
    assert len({t.number for t in trials}) == len(trials) and len({t._trial_id for t in trials}) == len(trials)
    assert not [t for t in trials if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)]
    assert sum(bool(t.user_attrs.get("baseline")) for t in done) == 1  # queued once, by the driver that created it
    print(f"\ntwo drivers x 20 on PostgreSQL: {len(done)} distinct finished trials (ran {ran}), "
          f"{len(trials) - len(done)} given back")  # fmt: skip

    profiles = [get_profile(p) for p in TINY_PROFILES]
    df = trials_frame(study, profiles)
    df = df[df["status"] == "ok"].reset_index(drop=True)
    shared = {p.name: front_frame(df, p)["trial"].tolist() for p in profiles}
    assert _replayed_fronts(df, study) == shared
    for p in profiles:  # the last driver to finish wrote the folder from all 40
        written = pd.read_csv(results / "s" / f"pareto_{p.name}.csv")
        assert written["trial"].tolist() == shared[p.name]
    assert (pd.read_csv(results / "s" / "trials.csv")["status"] == "ok").sum() == 40
