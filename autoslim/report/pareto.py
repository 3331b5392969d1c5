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
