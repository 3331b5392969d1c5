"""Numbers in the units people read; anything that is not a finite number reads as a dash."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from autoslim.report import units


def test_docstring_example() -> None:
    assert doctest.testmod(units).failed == 0


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0 B"), (999, "999 B"), (1000, "1 KB"), (14_026, "14 KB"), (40_057, "40.1 KB"), (935_848, "936 KB"),
     (1_283_000, "1.28 MB"), (250e6, "250 MB"), (3.2e9, "3.2 GB")],
)  # fmt: skip
def test_sizes_are_decimal_kb_mb(value: float, text: str) -> None:
    assert units.size(value) == text


@pytest.mark.parametrize(
    ("ms", "text"), [(0.0412, "41.2 µs"), (0.00005, "50 ns"), (1.0, "1 ms"), (34.3, "34.3 ms"), (2500, "2.5 s")]
)
def test_durations_pick_their_unit(ms: float, text: str) -> None:
    assert units.duration_ms(ms) == text


def test_accuracy_drop_and_ratio() -> None:
    assert units.percent(0.9955) == "99.55%"
    assert units.drop_pp(0.0057) == "0.57 pp"
    assert units.drop_pp(-0.0003) == "−0.03 pp"  # better than the baseline
    assert units.ratio(14.03) == "14.0x" and units.ratio(250.4) == "250x"
    assert units.gain("model_bytes", 33.4) == "33.4x smaller"
    assert units.gain("latency_ms", 2.9) == "2.9x faster"
    assert units.cost("macs", 113_213_440) == "113 M"
    assert units.seconds(185) == "3 min 5 s" and units.seconds(7.25) == "7.2 s"


@pytest.mark.parametrize("junk", [None, float("nan"), float("inf"), "text", True, np.nan])
def test_what_is_not_a_finite_number_reads_as_a_dash(junk: object) -> None:
    for fmt in (units.percent, units.drop_pp, units.size, units.duration_ms, units.ratio, units.count):
        assert fmt(junk) == units.MISSING
    assert units.number(np.float32(0.5)) == 0.5 and units.number("12.5") == 12.5
