"""Pareto fronts as pure functions over plain numbers."""

from __future__ import annotations

from collections.abc import Sequence


def pareto_front(accuracy: Sequence[float], cost: Sequence[float]) -> list[bool]:
    """Which points no other point dominates (higher-or-equal accuracy and lower-or-equal cost, one strictly).

    >>> pareto_front([0.9, 0.8, 0.95], [10, 5, 20])
    [True, True, True]
    >>> pareto_front([0.9, 0.8], [5, 10])
    [True, False]
    """
    if len(accuracy) != len(cost):
        raise ValueError("accuracy and cost must have the same length")
    pts = list(zip(accuracy, cost, strict=True))
    on = []
    for i, (a, c) in enumerate(pts):
        dominated = any(a2 >= a and c2 <= c and (a2 > a or c2 < c) for j, (a2, c2) in enumerate(pts) if j != i)
        on.append(not dominated)
    return on


def hypervolume_2d(
    accuracy: Sequence[float], cost: Sequence[float], *, ref_cost: float, ref_accuracy: float = 0.0
) -> float:
    """Area dominated by the points (maximize accuracy, minimize cost) inside the reference box.

    >>> hypervolume_2d([0.9], [1.0], ref_cost=2.0)
    0.9
    """
    pts = sorted((c, a) for a, c in zip(accuracy, cost, strict=True) if c < ref_cost and a > ref_accuracy)
    area, best = 0.0, ref_accuracy
    # Sweep from the cheapest point: each point adds the strip between its cost and the reference cost above
    # the best accuracy seen so far.
    for c, a in pts:
        if a > best:
            area += (ref_cost - c) * (a - best)
            best = a
    return area
