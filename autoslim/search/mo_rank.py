"""Ordering trials of one rung best-first by a multi-objective rule, for ASHA's "top 1/eta" (``rungs.py``).

Each trial has one accuracy (maximized) and one objective cost per profile (minimized); a cost of None (or not
finite) means the trial has no place on that profile (it does not fit, or the cost is unknown). Two rules:

* ``"rank"``: a trial's rank is the best (lowest) of its per-profile non-dominated ranks (2-D: accuracy vs. that
  profile's cost). Not the rank in the union of all objectives: with 1 + P objectives almost every trial is
  non-dominated (one profile where it is a little cheaper suffices), so the union rank hardly orders anything;
  and the search's product is one front per profile, so a trial near the front of any one profile deserves the
  longer fine-tune. Ties: more profiles at that rank, then higher accuracy, then the earlier trial.
* ``"hypervolume"``: per profile, (non-dominated rank, minus the trial's exclusive hypervolume contribution within
  its rank's layer), the best over profiles; then accuracy, then the earlier trial. Cost is a share of the
  reference cost (given per profile, else 1.1 x the dearest cost at the rung) and accuracy counts from 0, so
  contributions compare across profiles. Within a layer it prefers points that widen the front over points
  crowded beside others (SMS-EMOA's ordering).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from autoslim.search.fronts import REF_SCALE, finite_number

RULES = ("rank", "hypervolume")
Entry = tuple[float | None, Mapping[str, float | None]]  # (accuracy, objective cost per profile)


def nondominated_layers(points: Sequence[tuple[float, float]]) -> list[int]:
    """Each (cost, accuracy) point's non-dominated rank: 0 on the front, 1 on the front once rank 0 is removed...

    Equal points share a rank (neither dominates the other, as in ``pareto_front``).

    >>> nondominated_layers([(1.0, 0.9), (2.0, 0.8), (2.0, 0.95), (1.0, 0.9)])
    [0, 1, 0, 0]
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    # Per layer, its most accurate point so far (the first met, so the cheapest of equals). Points come cheapest
    # first, so only that point of a layer can dominate the next one; and the layers holding a dominator of a
    # point are 0..m-1 (each dominator has one in every layer below), so its rank m is the first layer that does
    # not: a binary search, O(n log layers) in all.
    best: list[tuple[float, float]] = []
    layer = [0] * len(points)
    for i in order:
        c, a = points[i]
        lo, hi = 0, len(best)
        while lo < hi:
            mid = (lo + hi) // 2
            if best[mid][1] > a or (best[mid][1] == a and best[mid][0] < c):
                lo = mid + 1
            else:
                hi = mid
        k = lo
        if k == len(best):
            best.append((c, a))
        elif a > best[k][1]:
            best[k] = (c, a)
        layer[i] = k
    return layer


def contributions(points: Sequence[tuple[float, float]], layers: Sequence[int]) -> list[float]:
    """Each point's exclusive hypervolume within its own layer, on (cost share of 1, accuracy from 0) axes.

    Along a layer sorted by cost, point i alone covers cost [c_i, c_next) x accuracy (a_prev, a_i]. Of equal
    points the first listed gets the area and the others 0, as a front keeps the first trial among equals."""
    out = [0.0] * len(points)
    by_layer: dict[int, list[int]] = {}
    for i in sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i)):
        by_layer.setdefault(layers[i], []).append(i)
    for members in by_layer.values():
        unique = [i for j, i in enumerate(members) if j == 0 or points[i] != points[members[j - 1]]]
        for j, i in enumerate(unique):
            c, a = min(points[i][0], 1.0), max(points[i][1], 0.0)
            c_next = min(points[unique[j + 1]][0], 1.0) if j + 1 < len(unique) else 1.0
            a_prev = max(points[unique[j - 1]][1], 0.0) if j > 0 else 0.0
            out[i] = max(0.0, c_next - c) * max(0.0, a - a_prev)
    return out


def order_best_first(entries: Mapping[int, Entry], *, rule: str = "rank",
                     ref_costs: Mapping[str, float] | None = None) -> list[int]:  # fmt: skip
    """Trial numbers of ``entries`` best first by ``rule``; a trial without a finite accuracy, or without a place
    on any profile, comes last."""
    if rule not in RULES:
        raise ValueError(f"unknown promotion rule {rule!r}; choose one of {list(RULES)}")
    accuracy = {t: finite_number(acc) for t, (acc, _) in entries.items()}
    profiles = sorted({name for _, costs in entries.values() for name in costs})
    per_trial: dict[int, list[tuple[float, float]]] = {t: [] for t in entries}  # (rank, -contribution) per profile
    for name in profiles:
        trials: list[int] = []
        points: list[tuple[float, float]] = []
        for t, (_, costs) in entries.items():
            cost, acc = finite_number(costs.get(name)), accuracy[t]
            if cost is not None and acc is not None:
                trials.append(t)
                points.append((cost, acc))
        if not points:
            continue
        layers = nondominated_layers(points)
        if rule == "hypervolume":
            ref = _reference(name, [c for c, _ in points], ref_costs)
            shares = contributions([(c / ref, a) for c, a in points], layers)
        else:
            shares = [0.0] * len(points)
        for t, rank, share in zip(trials, layers, shares, strict=True):
            per_trial[t].append((float(rank), -share))

    def key(t: int) -> tuple[float, float, float, float, int]:
        keys = per_trial[t]
        acc = accuracy[t]
        if not keys or acc is None:
            return (math.inf, 0.0, 0.0, math.inf, t)
        best = min(keys)
        if rule == "rank":  # more profiles at the best rank first
            return (best[0], -sum(1 for k in keys if k[0] == best[0]), 0.0, -acc, t)
        return (best[0], best[1], 0.0, -acc, t)

    return sorted(entries, key=key)


def _reference(profile: str, costs: Sequence[float], ref_costs: Mapping[str, float] | None) -> float:
    given = finite_number((ref_costs or {}).get(profile))
    if given is not None and given > 0:
        return given
    top = max(costs)
    return REF_SCALE * top if top > 0 else 1.0
