"""pareto_front (pure) and front_frame (a profile's front out of the trials table)."""

from __future__ import annotations

import itertools
import random

import optuna
import pandas as pd
import pytest

from autoslim.cost import builtin_profiles
from autoslim.report import front_frame, pareto_front, trials_frame
from autoslim.report.frame import front_hypervolumes

X86 = builtin_profiles()["x86-avx512-vnni"]
MCU = builtin_profiles()["mcu-cortex-m7"]
LAT = f"{X86.name}.latency_ms"


def test_docstring_examples() -> None:
    assert pareto_front([0.9, 0.8, 0.95], [10, 5, 20]) == [True, True, True]
    assert pareto_front([0.9, 0.8], [5, 10]) == [True, False]


def test_dominated_points_are_off_the_front() -> None:
    acc = [0.90, 0.85, 0.95, 0.80, 0.95, 0.70]
    cost = [10.0, 12.0, 20.0, 5.0, 25.0, 5.0]
    # 0.85@12 is beaten by 0.90@10; 0.95@25 by 0.95@20; 0.70@5 by 0.80@5
    assert pareto_front(acc, cost) == [True, False, True, True, False, False]


def test_equal_accuracy_lower_cost_and_equal_cost_higher_accuracy_dominate() -> None:
    assert pareto_front([0.9, 0.9], [10, 11]) == [True, False]
    assert pareto_front([0.9, 0.91], [10, 10]) == [False, True]


def test_duplicates_do_not_dominate_each_other() -> None:
    assert pareto_front([0.9, 0.9, 0.8], [10, 10, 20]) == [True, True, False]


def test_single_and_empty() -> None:
    assert pareto_front([0.5], [1.0]) == [True]
    assert pareto_front([], []) == []


def test_length_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="same length"):
        pareto_front([0.9, 0.8], [1.0])


def test_accepts_any_sequence() -> None:
    assert pareto_front((0.9, 0.8), pd.Series([1.0, 2.0]).tolist()) == [True, False]


def _frame(rows: list[tuple[int, str, float | None, float | None]]) -> pd.DataFrame:
    """The trials table as the search writes it: an Optuna study holding hand-made results, through trials_frame."""
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    for t, status, acc, lat in rows:
        costs = {} if lat is None else {
            X86.name: {"latency_ms": lat, "model_bytes": 10},
            MCU.name: {"latency_ms": 1.0, "model_bytes": 1000 - lat},
        }  # fmt: skip
        attrs = {"status": status, "accuracy": acc, "costs": costs, "plan_words": f"plan {t}", "plan": {"steps": []}}
        ok = status == "ok" and lat is not None
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL,
                values=[acc, lat, 1000 - lat] if ok else None,
                user_attrs=attrs,
            )
        )
        assert study.trials[-1].number == t
    return trials_frame(study, [X86, MCU])


def test_front_frame_uses_ok_trials_of_that_profile_sorted_by_cost() -> None:
    df = _frame(
        [
            (0, "ok", 0.95, 30.0),
            (1, "ok", 0.90, 10.0),
            (2, "ok", 0.85, 20.0),  # dominated
            (3, "failed", 0.99, 1.0),  # would dominate everything, but failed
            (4, "infeasible", None, None),
            (5, "ok", 0.80, 5.0),
        ]
    )
    front = front_frame(df, X86)
    assert front["trial"].tolist() == [5, 1, 0]
    assert front[LAT].is_monotonic_increasing
    # another profile, another objective and front: model_bytes = 1000 - latency here
    assert front_frame(df, MCU)["trial"].tolist() == [0]


def test_front_frame_skips_missing_costs_and_handles_empty() -> None:
    df = _frame([(0, "ok", 0.9, None), (1, "ok", 0.8, 3.0)])
    assert front_frame(df, X86)["trial"].tolist() == [1]
    assert front_frame(_frame([(0, "failed", None, None)]), X86).empty
    assert front_frame(_frame([]), X86).empty


def test_front_frame_keeps_one_of_equal_points() -> None:
    df = _frame([(0, "ok", 0.9, 10.0), (1, "ok", 0.9, 10.0), (2, "ok", 0.8, 5.0)])
    front = front_frame(df, X86)
    assert front["trial"].tolist() == [2, 0]


def test_front_frame_keeps_the_first_trial_of_equal_points_in_a_large_table() -> None:
    rows = []
    for t in range(60):  # two front points, each reached by many trials in interleaved order
        rows.append((t, "ok", 0.9 if t % 2 else 0.8, 20.0 if t % 2 else 10.0))
    front = front_frame(_frame(rows), X86)
    assert front["trial"].tolist() == [0, 1]


def test_front_of_random_points_is_exactly_the_non_dominated_set() -> None:
    rng = random.Random(0)
    acc = [round(rng.random(), 2) for _ in range(60)]
    cost = [round(rng.random() * 100, 1) for _ in range(60)]
    mask = pareto_front(acc, cost)
    for i, on in enumerate(mask):
        beaten = any(
            acc[j] >= acc[i] and cost[j] <= cost[i] and (acc[j], cost[j]) != (acc[i], cost[i]) for j in range(60)
        )
        assert on is (not beaten)
    front = sorted((cost[i], acc[i]) for i in range(60) if mask[i])
    assert all(a1 <= a2 for (_, a1), (_, a2) in itertools.pairwise(front))


def test_front_hypervolumes_use_the_baseline_box_and_the_trials_asked_for() -> None:
    df = _frame([(0, "ok", 0.95, 30.0), (1, "ok", 0.90, 10.0), (2, "ok", 0.85, 20.0)])
    df["is_baseline"] = df["trial"] == 0
    # x86: the box is 1.1 x 30 ms; front 0.90 @ 10/33 and 0.95 @ 30/33
    box = 33.0
    want = 0.90 * (1 - 10 / box) + (0.95 - 0.90) * (1 - 30 / box)
    hv = front_hypervolumes(df, [X86, MCU])
    assert hv[X86.name] == pytest.approx(want)
    # only trials 0 and 2: 0.85 @ 20/33 under 0.95 @ 30/33, in the same box
    sub = front_hypervolumes(df, [X86], among=df[df["trial"] != 1])
    assert sub[X86.name] == pytest.approx(0.85 * (1 - 20 / box) + 0.10 * (1 - 30 / box))
    assert front_hypervolumes(df, [X86], among=df.iloc[:0]) == {X86.name: 0.0}
