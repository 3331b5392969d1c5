"""mo_rank: non-dominated layers and hypervolume contributions against their definitions."""

from __future__ import annotations

import random

import pytest

from autoslim.report.pareto import hypervolume_2d, pareto_front
from autoslim.search.mo_rank import contributions, nondominated_layers, order_best_first


def _layers_by_peeling(points: list[tuple[float, float]]) -> list[int]:
    """The definition: layer k is the front of what is left once layers 0..k-1 are removed."""
    layer = [-1] * len(points)
    left = list(range(len(points)))
    k = 0
    while left:
        on = pareto_front([points[i][1] for i in left], [points[i][0] for i in left])
        for i, front in zip(list(left), on, strict=True):
            if front:
                layer[i] = k
        left = [i for i in left if layer[i] < 0]
        k += 1
    return layer


@pytest.mark.parametrize("seed", range(30))
def test_layers_match_peeling_with_ties_and_duplicates(seed: int) -> None:
    rng = random.Random(seed)
    points = [(float(rng.randint(1, 8)), rng.randint(1, 8) / 10) for _ in range(rng.randint(0, 40))]
    assert nondominated_layers(points) == _layers_by_peeling(points)


@pytest.mark.parametrize("seed", range(20))
def test_contribution_is_what_the_front_loses_without_the_point(seed: int) -> None:
    rng = random.Random(seed)
    points = [(rng.randint(1, 20) / 20, rng.randint(1, 20) / 20) for _ in range(25)]
    layers = nondominated_layers(points)
    shares = contributions(points, layers)
    front = sorted({p for p, k in zip(points, layers, strict=True) if k == 0})  # equal points counted once

    def hv(pts: list[tuple[float, float]]) -> float:
        return hypervolume_2d([a for _, a in pts], [c for c, _ in pts], ref_cost=1.0)

    for i, (p, k) in enumerate(zip(points, layers, strict=True)):
        if k != 0:
            continue
        first = points.index(p) == i  # of equal points, the first listed carries the area
        expected = hv(front) - hv([q for q in front if q != p]) if first else 0.0
        assert shares[i] == pytest.approx(expected, abs=1e-12)


def test_order_puts_unplaced_trials_last_and_rejects_unknown_rules() -> None:
    entries = {
        0: (None, {"p": 1.0}),  # failed
        1: (0.5, {"p": None}),  # fits no profile
        2: (0.4, {"p": 2.0}),
        3: (0.6, {"p": 3.0}),
    }
    assert order_best_first(entries) == [3, 2, 0, 1]
    assert order_best_first(entries, rule="hypervolume")[2:] == [0, 1]
    with pytest.raises(ValueError, match="unknown promotion rule"):
        order_best_first(entries, rule="crowding")
