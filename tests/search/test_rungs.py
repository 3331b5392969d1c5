"""Rungs (ASHA): promotions on hand-made ladders, both multi-objective rules, JSON resume."""

from __future__ import annotations

import json
import pickle
import random

import pytest

from autoslim.search.rungs import Rungs, rungs_from_config


def _one(rungs: Rungs, trial: int, acc: float | None, cost: float | None, rung: int = 0) -> bool:
    rungs.record(trial, rung, accuracy=acc, costs={"p": cost})
    return rungs.should_promote(trial, rung)


def test_no_promotion_before_eta_trials_at_the_rung() -> None:
    rungs = Rungs()
    assert not _one(rungs, 0, 0.9, 1.0)  # the best so far, but alone: top 1 // 3 is empty
    assert not _one(rungs, 1, 0.5, 2.0)
    assert rungs.promotable(0) == []
    rungs.record(2, 0, accuracy=0.4, costs={"p": 3.0})
    assert rungs.promotable(0) == [0]  # the third trial makes a top share of one: trial 0, turned down before
    assert rungs.should_promote(0, 0) and not rungs.should_promote(1, 0) and not rungs.should_promote(2, 0)
    assert rungs.promotable(0) == []


def test_asynchronous_ladder_decides_at_each_arrival() -> None:
    """Decided as each trial finishes the rung, against the trials recorded so far (nobody waits)."""
    rungs = Rungs()
    arrivals = [  # (accuracy, cost) and the decision ASHA takes at that moment
        ((0.80, 5.0), False),  # n=1: no top share yet
        ((0.70, 6.0), False),  # n=2
        ((0.90, 4.0), True),  # n=3, top 1: dominates both
        ((0.60, 1.0), False),  # n=4, top 1: on the front too, but less accurate than trial 2
        ((0.50, 9.0), False),  # n=5
        ((0.95, 8.0), True),  # n=6, top 2: front members by accuracy: 5, 2
        ((0.85, 2.0), False),  # n=7, top 2 still 5, 2
        ((0.30, 10.0), False),
        ((0.20, 11.0), False),  # n=9, top 3: 5, 2, 6
    ]
    for trial, ((acc, cost), decision) in enumerate(arrivals):
        assert _one(rungs, trial, acc, cost) is decision, trial
    assert rungs.promotable(0) == [6]  # pushed into the top 3 by the two poor arrivals: ASHA's late promotion
    assert not _one(rungs, 2, 0.92, 4.0, rung=1) and not _one(rungs, 5, 0.96, 8.0, rung=1)
    rungs.record(6, 1, accuracy=0.86, costs={"p": 2.0})  # a record one rung up: promoted from the rung below
    assert rungs.promotable(0) == [] and rungs.rung_of(6) == 1 and rungs.rung_of(7) == 0 and rungs.rung_of(99) is None
    assert rungs.should_promote(5, 1)  # n=3 at rung 1: the most accurate front member goes to the full fine-tune
    assert not _one(rungs, 5, 0.97, 8.0, rung=2)  # the top rung promotes nobody


def test_a_granted_promotion_stands_when_better_trials_arrive() -> None:
    rungs = Rungs()
    for trial, acc in enumerate([0.5, 0.4, 0.6]):
        rungs.record(trial, 0, accuracy=acc, costs={"p": 1.0})
    assert rungs.should_promote(2, 0)
    for trial in range(3, 6):
        rungs.record(trial, 0, accuracy=0.9, costs={"p": 0.5})  # all better than trial 2
    assert rungs.should_promote(2, 0)  # its fine-tune is already under way
    assert not rungs.should_promote(0, 0)


def test_rank_rule_keeps_a_trial_that_leads_on_one_profile_only() -> None:
    """The best of per-profile ranks: trial 2 is on the microcontroller's front only, and goes on; trial 1, as
    accurate as the best but dearer everywhere, does not."""
    rungs = Rungs(rule="rank")
    trials = [
        (0.90, {"x86": 1.0, "mcu": 10.0}),
        (0.90, {"x86": 2.0, "mcu": 11.0}),
        (0.80, {"x86": 3.0, "mcu": 1.0}),
        (0.85, {"x86": 2.5, "mcu": 12.0}),
        (0.50, {"x86": 5.0, "mcu": 20.0}),
        (0.40, {"x86": 6.0, "mcu": None}),  # does not fit the microcontroller
    ]
    for trial, (acc, costs) in enumerate(trials):
        rungs.record(trial, 0, accuracy=acc, costs=costs)
    assert [t for t in range(6) if rungs.should_promote(t, 0)] == [0, 2]


def test_hypervolume_rule_prefers_points_that_widen_the_front() -> None:
    """Four front points, two promoted: by rank (then accuracy) the two dearest, nearly equal ones; by
    hypervolume contribution the two that span the front."""
    points = [(0.50, 1.0), (0.90, 2.0), (0.95, 8.0), (0.96, 8.5), (0.30, 9.0), (0.20, 9.5)]
    decided = {}
    for rule in ("rank", "hypervolume"):
        rungs = Rungs(rule=rule, ref_costs={"p": 10.0})
        for trial, (acc, cost) in enumerate(points):
            rungs.record(trial, 0, accuracy=acc, costs={"p": cost})
        decided[rule] = [t for t in range(len(points)) if rungs.should_promote(t, 0)]
    assert decided == {"rank": [2, 3], "hypervolume": [0, 1]}


def test_failed_and_non_finite_rungs_count_and_rank_last() -> None:
    rungs = Rungs()
    _one(rungs, 0, None, None)
    _one(rungs, 1, float("nan"), 1.0)
    rungs.record(2, 0, accuracy=0.1, costs={"p": float("inf")})
    rungs.record(3, 0, accuracy=0.2, costs={"p": 5.0})
    assert rungs.promotable(0) == [3]  # 4 trials: a top share of 1, the only one with a place on a front
    text = rungs.to_json()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON token {c}"))


def _drive(rungs: Rungs, rng: random.Random, pending: list[tuple[int, int]], steps: int, first: int) -> list:
    """An async driver's loop: each step a new trial finishes rung 0, or a promoted one finishes its next rung;
    each is recorded and asked at once whether it goes on. Returns the decisions (trial, rung, promoted)."""
    decisions = []
    new = first
    for _ in range(steps):
        if pending and rng.random() < 0.4:
            trial, rung = pending.pop(0)
        else:
            trial, rung, new = new, 0, new + 1
        cost = rng.uniform(1, 10)
        rungs.record(trial, rung, accuracy=rng.random(), costs={"x86": cost, "mcu": cost * rng.uniform(0.5, 2)})
        go = rungs.should_promote(trial, rung)
        decisions.append((trial, rung, go))
        if go:
            pending.append((trial, rung + 1))
    return decisions


@pytest.mark.parametrize("rule", ["rank", "hypervolume"])
def test_resume_from_json_makes_the_same_decisions(rule: str) -> None:
    reference, rng, pending = Rungs(rule=rule), random.Random(7), []
    before = _drive(reference, rng, pending, 40, first=0)
    assert any(go for _, rung, go in before if rung == 0), "nobody promoted: the test would exercise nothing"
    resumed = Rungs.from_json(reference.to_json())  # what the journal keeps, read back by a new driver
    assert resumed == reference and pickle.loads(pickle.dumps(reference)) == reference
    state, queue = rng.getstate(), list(pending)
    after_reference = _drive(reference, rng, pending, 60, first=40)
    rng.setstate(state)
    assert _drive(resumed, rng, queue, 60, first=40) == after_reference
    assert resumed.to_json() == reference.to_json()
    assert any(rung == 2 for _, rung, _ in after_reference), "no trial reached the top rung"


def test_rung_epochs() -> None:
    rungs = Rungs()
    assert rungs.rung_epochs(9) == (1, 3, 9)
    assert rungs.rung_epochs(4) == (1, 2, 4)  # rounded up: no rung trains nothing
    assert rungs.rung_epochs(1) == (1, 1, 1)
    assert rungs.rung_epochs(0) == (0, 0, 0)
    assert rungs.rung_epochs(1410) == (157, 470, 1410)  # steps work alike
    assert Rungs((0.25, 0.5, 1.0), reduction_factor=2).rung_epochs(8) == (2, 4, 8)
    with pytest.raises(ValueError, match="kd_epochs"):
        rungs.rung_epochs(-1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fractions": (0.5, 0.9)}, "end at 1"),
        ({"fractions": (0.5, 0.3, 1.0)}, "increase"),
        ({"fractions": (0.0, 1.0)}, r"\(0, 1\]"),
        ({"reduction_factor": 1}, "reduction_factor"),
        ({"reduction_factor": 2.5}, "reduction_factor"),
        ({"rule": "crowding"}, "unknown promotion rule"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Rungs(**kwargs)


def test_bad_questions_are_refused() -> None:
    rungs = Rungs()
    with pytest.raises(ValueError, match="rung 3 does not exist"):
        rungs.record(0, 3, accuracy=0.5, costs={})
    with pytest.raises(KeyError, match="no record at rung 0"):
        rungs.should_promote(0, 0)
    with pytest.raises(ValueError, match="format"):
        Rungs.from_dict({"format": 99})


def test_rungs_from_a_space_mapping() -> None:
    assert rungs_from_config(None) == Rungs(rule="hypervolume")  # the default rule, benchmarked
    custom = rungs_from_config({"fractions": [0.25, 1], "reduction_factor": 4, "rule": "hypervolume"})
    assert custom.fractions == (0.25, 1.0) and custom.reduction_factor == 4 and custom.rule == "hypervolume"
    with pytest.raises(ValueError, match="unknown key"):
        rungs_from_config({"eta": 3})
