"""trials.csv and pareto_<profile>.csv for pandas users: Optuna's column names, labelled per-batch costs, drops and
reductions against the baseline, timestamps, no column that no trial filled."""

from __future__ import annotations

import pandas as pd
import pytest

from autoslim.report.results import StudyResults
from autoslim.report.write import CORE, write_report
from tests.report.conftest import GPU, PROFILES, TRIALS


@pytest.fixture
def csv(handmade: StudyResults) -> pd.DataFrame:
    write_report(handmade.folder, handmade.trials, PROFILES)
    return pd.read_csv(handmade.folder / "trials.csv")


def test_sampled_values_are_params_and_the_parameter_count_is_n_params(csv: pd.DataFrame) -> None:
    assert {"params_quantize", "params_quantize.weight_bits", "params_prune.structured.ratio"} <= set(csv.columns)
    assert not [c for c in csv.columns if c.startswith("param.") or c == "params"]
    assert csv.loc[1, "params_quantize.weight_bits"] == 8
    assert csv.loc[0, "n_params"] == 1000 and pd.isna(csv.loc[5, "n_params"])  # an infeasible trial has no model


def test_costs_per_batch_say_their_batch(csv: pd.DataFrame) -> None:
    b = GPU.batch_size
    for field in ("latency_ms", "peak_activation_bytes", "macs", "energy_mj"):
        assert f"{GPU.name}.{field}_per_batch{b}" in csv.columns
        assert f"{GPU.name}.{field}" not in csv.columns
    assert f"{GPU.name}.model_bytes" in csv.columns  # the stored model does not grow with the batch
    assert "x86-avx512-vnni.latency_ms" in csv.columns  # batch 1: per inference, nothing to label


def test_drop_in_pp_and_reduction_against_the_baseline(csv: pd.DataFrame) -> None:
    assert csv.loc[0, "accuracy_drop_pp"] == 0.0
    assert csv.loc[1, "accuracy_drop_pp"] == pytest.approx(0.5)  # 95% -> 94.5%
    assert csv.loc[2, "x86-avx512-vnni.latency_ms_reduction"] == pytest.approx(4.0)  # 1.0 ms -> 0.25 ms
    assert csv.loc[2, "mcu-cortex-m7.model_bytes_reduction"] == pytest.approx(4.0)
    assert csv.loc[2, f"{GPU.name}.latency_ms_reduction"] == pytest.approx(4.0)  # a ratio: no batch label
    assert pd.isna(csv.loc[5, "accuracy_drop_pp"])


def test_start_and_end_timestamps(csv: pd.DataFrame) -> None:
    start, end = pd.to_datetime(csv["datetime_start"]), pd.to_datetime(csv["datetime_complete"])
    assert start.notna().all() and (end >= start).all()


def test_no_column_no_trial_filled_but_the_core_ones_always(csv: pd.DataFrame) -> None:
    assert "x86-avx512-vnni.energy_mj" not in csv.columns  # that profile has no energy constants
    assert not [c for c in csv.columns if c.endswith("measured_latency_ms") or c == "kd_loss"]
    for col in csv.columns.difference(list(CORE)):
        assert csv[col].notna().any(), col
    assert set(CORE) <= set(csv.columns) and csv.columns[0] == "trial" and csv.columns[-1] == "plan_json"
    assert len(csv) == len(TRIALS)


def test_pareto_files_keep_one_layout(handmade: StudyResults) -> None:
    fronts = write_report(handmade.folder, handmade.trials, PROFILES)
    gpu = pd.read_csv(handmade.folder / f"pareto_{GPU.name}.csv")
    assert gpu.columns.tolist() == [
        "trial", "accuracy", "accuracy_drop_pp", f"{GPU.name}.latency_ms_per_batch{GPU.batch_size}",
        f"{GPU.name}.model_bytes", f"{GPU.name}.peak_activation_bytes_per_batch{GPU.batch_size}",
        f"{GPU.name}.latency_ms_reduction", "n_params", "plan", "plan_json",
    ]  # fmt: skip
    assert gpu["trial"].tolist() == fronts[GPU.name]["trial"].tolist() == [3, 2, 1, 0]
    # in memory the table keeps <profile>.<objective>, the column every front is drawn against
    assert f"{GPU.name}.latency_ms" in fronts[GPU.name]
