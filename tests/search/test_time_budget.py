"""Time budget: duration parsing and the start / promote / end estimates."""

from __future__ import annotations

import pytest

from autoslim.search.time_budget import Running, TimeBudget, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("8h", 28800.0), ("10m", 600.0), ("90s", 90.0), ("1h30m", 5400.0), ("1h 30m 10s", 5410.0), ("1.5h", 5400.0),
     (" 2M ", 120.0), ("0h5m", 300.0)],
)  # fmt: skip
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "why"),
    [("8", "give a unit"), ("", "expected a duration"), ("8 hours", "expected a duration"),
     ("30m1h", "order h, m, s"), ("1h1h", "once each"), ("0s", "more than zero"), ("-1h", "expected"),
     ("1d", "expected")],
)  # fmt: skip
def test_bad_durations_name_the_text(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as info:
        parse_duration(text)
    assert repr(text) in str(info.value)


def test_first_trials_start_while_time_is_left_then_only_what_fits() -> None:
    budget = TimeBudget(600.0, slots=2)
    assert budget.can_start(0.0) and budget.expected_s(0) is None  # nothing to go on yet
    assert not budget.can_start(600.0)
    for seconds in (40.0, 50.0, 400.0):  # the median ignores the one slow run
        budget.add(0, seconds)
    assert budget.expected_s(0) == 50.0
    assert budget.can_start(550.0) and not budget.can_start(551.0)


def test_promotion_estimates_scale_from_the_rung_below_until_measured() -> None:
    budget = TimeBudget(1000.0)  # rungs 1/9, 1/3, 1: rung 1 adds 2/9 of the fine-tune, rung 2 the last 2/3
    budget.add(0, 10.0)
    assert budget.expected_s(1) == pytest.approx(20.0) and budget.expected_s(2) == pytest.approx(60.0)
    assert budget.can_promote(0, 980.0) and not budget.can_promote(0, 981.0)
    budget.add(1, 30.0)
    assert budget.expected_s(1) == 30.0 and budget.expected_s(2) == pytest.approx(90.0)  # from rung 1 now
    assert budget.add(2, float("nan")) is None and 2 not in budget.durations  # a broken clock reading is dropped


def test_estimated_end_from_work_left_capped_by_the_budget() -> None:
    budget = TimeBudget(None, slots=2, reduction_factor=3)
    assert budget.estimated_end_s(5.0, trials_left=10) is None  # no run finished, no budget: no estimate
    for rung, seconds in ((0, 9.0), (1, 18.0), (2, 54.0)):
        budget.add(rung, seconds)
    per_trial = 9.0 + 18.0 / 3 + 54.0 / 9  # every trial runs rung 0, a third rung 1, a ninth rung 2
    running = [Running(0, 4.0), Running(2, 60.0)]  # the second has overrun its estimate: nothing left to count
    assert budget.estimated_end_s(100.0, running=running, trials_left=4) == pytest.approx(
        100.0 + (5.0 + 4 * per_trial) / 2
    )
    assert budget.estimated_end_s(100.0, trials_left=0) == 100.0
    timed = TimeBudget(120.0, slots=2, durations=dict(budget.durations))
    assert timed.estimated_end_s(100.0, running=running, trials_left=40) == 120.0  # the budget ends it first
    assert timed.estimated_end_s(100.0, running=[Running(2, 10.0)]) == pytest.approx(144.0)  # lets it finish
    assert timed.time_left_s(100.0) == 20.0 and timed.time_left_s(130.0) == 0.0


def test_restarted_rungs_are_scaled_by_their_whole_share() -> None:
    """The driver's rungs rerun the fine-tune from the start (autoslim.search.ladder): rung 1 at 1/3 is 3x rung 0
    at 1/9, not the 2/9 a continuation would add."""
    budget = TimeBudget(100.0, fractions=(1 / 9, 1 / 3, 1.0), restart=True)
    budget.add(0, 10.0)
    assert budget.expected_s(1) == pytest.approx(30.0)
    assert budget.expected_s(2) == pytest.approx(90.0)
    assert budget.can_promote(0, elapsed_s=65.0) and not budget.can_promote(0, elapsed_s=75.0)


def test_a_continued_rung_rerun_from_the_start_is_priced_as_the_whole_share() -> None:
    """Continued rungs measure continuations (rung 1 adds 2/9 of the fine-tune); a late promotion whose state was
    not kept reruns 1/3 from the start: 1.5x that continuation."""
    budget = TimeBudget(100.0, fractions=(1 / 9, 1 / 3, 1.0))
    budget.add(1, 20.0)  # a measured continuation
    assert budget.can_promote(0, elapsed_s=75.0)  # 75 + 20 <= 100
    assert not budget.can_promote(0, elapsed_s=75.0, from_start=True)  # 75 + 30 > 100
    assert budget.can_promote(0, elapsed_s=70.0, from_start=True)
    assert TimeBudget(None).can_promote(0, elapsed_s=1e9, from_start=True)
    restart = TimeBudget(100.0, fractions=(1 / 9, 1 / 3, 1.0), restart=True, durations={1: [30.0]})
    assert restart.can_promote(0, 70.0, from_start=True) == restart.can_promote(0, 70.0)  # already whole
