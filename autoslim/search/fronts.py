"""Pareto fronts kept up to date trial by trial: one per profile, no table rebuilt per finished trial.

The driver used to rebuild the whole trials table (``trials_frame``) and every profile's front (``front_frame``)
after each finished trial: O(trials) per trial, O(trials²) per study. ``ParetoFronts.add`` costs O(front size)
per profile instead, and gives the same fronts as the batch functions of ``autoslim.report`` (``front_frame``:
same points, same trial kept among equal points, the same exclusions)::

    fronts = ParetoFronts({"x86": "latency_ms", "mcu": "model_bytes"})
    fronts.add(0, accuracy=0.97, costs={"x86": {"latency_ms": 2.0}, "mcu": {"model_bytes": 9e5}}, baseline=True)
    fronts.add(1, accuracy=0.96, costs={"x86": {"latency_ms": 1.0}, "mcu": {"model_bytes": 3e5, "fits": True}})
    fronts.points("x86")        # ((1.0, 0.96, 1), (2.0, 0.97, 0)): (cost, accuracy, trial) by cost
    fronts.hypervolume("x86")   # cost / (1.1 x baseline cost), accuracy from 0: as benchmarks and compare
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from autoslim.report.pareto import hypervolume_2d

if TYPE_CHECKING:
    import pandas as pd

Point = tuple[float, float, int]  # (objective cost, accuracy, trial): the shape of TrialSpec.fronts
REF_SCALE = 1.1  # reference cost = 1.1 x the baseline's, so every compressed point counts (report/compare.py)


def finite_number(value: object) -> float | None:
    """``value`` as a float when it is a finite real number (a journal is data: None, NaN, inf or text are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:  # numpy scalars are not int/float subclasses (float64 is); anything else numeric converts
            value = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
    number = float(value)
    return number if math.isfinite(number) else None


def fits_profile(cost: Mapping[str, Any]) -> bool:
    """A cost's ``fits`` flag as ``front_frame`` reads it: unknown (None, NaN) counts as fitting."""
    fits = cost.get("fits")
    if fits is None or (isinstance(fits, float) and math.isnan(fits)):
        return True
    return bool(fits)


def satisfies(violations: Iterable[object] | None) -> bool:
    """Whether a trial's constraint values (``Constraints.violations``: <= 0 is satisfied) let it on a front."""
    # As the trials table's "feasible" column: a real number <= 0 each (NaN, text or None is a violation).
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0 for v in violations or [])


class ProfileFront:
    """One profile's front: points sorted by cost, cost and accuracy both strictly increasing along it.

    That shape is what makes an insertion O(front size): among points no dearer than a new one, only the dearest
    can dominate it (it is the most accurate of them), and the points it dominates are a run starting at its
    cost. A point once dominated stays dominated, so nothing a trial evicts comes back, except when a trial is
    replaced (a later rung of the same trial): then the front is rebuilt from every eligible point, O(n log n),
    once per replacement of a front member."""

    def __init__(self) -> None:
        self._costs: list[float] = []
        self._points: list[Point] = []
        self._all: dict[int, tuple[float, float]] = {}  # every eligible trial: (cost, accuracy)
        self.version = 0  # bumped on every change of the front (caches key on it)

    def __len__(self) -> int:
        return len(self._points)

    def points(self) -> tuple[Point, ...]:
        return tuple(self._points)

    def add(self, trial: int, cost: float, accuracy: float) -> bool:
        """Offer a point; True when the front changed. A trial offered again replaces its earlier point."""
        if trial in self._all:
            self.discard(trial)
        self._all[trial] = (cost, accuracy)
        return self._insert(trial, cost, accuracy)

    def discard(self, trial: int) -> None:
        """Forget a trial; its front point (if any) leaves, and the points it alone dominated come back."""
        if self._all.pop(trial, None) is None:
            return
        if any(n == trial for _, _, n in self._points):
            self._rebuild()

    def _insert(self, trial: int, cost: float, accuracy: float) -> bool:
        j = bisect.bisect_right(self._costs, cost) - 1  # the dearest point costing no more than this one
        if j >= 0:
            c, a, n = self._points[j]
            if a > accuracy or (a == accuracy and c < cost):
                return False  # dominated
            if a == accuracy and c == cost:  # an equal point: front_frame keeps the smallest trial number
                if trial >= n:
                    return False
                self._points[j] = (cost, accuracy, trial)
                self.version += 1
                return True
        start = bisect.bisect_left(self._costs, cost)
        end = start
        while end < len(self._points) and self._points[end][1] <= accuracy:
            end += 1  # cost >= this one's and accuracy no higher: dominated by the new point
        self._costs[start:end] = [cost]
        self._points[start:end] = [(cost, accuracy, trial)]
        self.version += 1
        return True

    def _rebuild(self) -> None:
        # Cheapest first, then most accurate, then smallest trial: a sweep keeping each strict accuracy record
        # yields the front (a dearer point must beat every cheaper one), with the first trial among equal points.
        ordered = sorted(self._all.items(), key=lambda kv: (kv[1][0], -kv[1][1], kv[0]))
        self._costs, self._points = [], []
        for trial, (cost, accuracy) in ordered:
            if not self._points or accuracy > self._points[-1][1]:
                self._costs.append(cost)
                self._points.append((cost, accuracy, trial))
        self.version += 1


class ParetoFronts:
    """Every profile's front (maximize accuracy, minimize the profile's objective cost), updated per trial.

    A trial enters a profile's front only as ``front_frame`` lets it: status ok, finite accuracy and objective
    cost, ``fits`` the profile (unknown counts as fitting) and feasible under the space's constraints."""

    def __init__(self, objectives: Mapping[str, str], *, ref_costs: Mapping[str, float] | None = None) -> None:
        self.objectives = dict(objectives)  # profile name -> the cost field its front is drawn against
        self._fronts = {name: ProfileFront() for name in self.objectives}
        self._ref = dict(ref_costs or {})  # given: used as is; else 1.1 x the baseline's cost
        self._base: dict[str, float] = {}
        self._max_cost: dict[str, float] = {}
        self._hv: dict[str, tuple[int, float, float]] = {}  # profile -> (front version, reference, hypervolume)

    @classmethod
    def for_profiles(cls, profiles: Sequence[Any]) -> ParetoFronts:
        """From ``HardwareProfile`` objects (their ``name`` and ``objective``)."""
        return cls({p.name: p.objective for p in profiles})

    @classmethod
    def from_frame(cls, df: pd.DataFrame, profiles: Sequence[Any]) -> ParetoFronts:
        """Seeded from a trials table (``report.trials_frame``): what a resumed driver starts from, once."""
        fronts = cls.for_profiles(profiles)
        if df.empty:
            return fronts
        for row in df.to_dict("records"):
            costs = {p.name: {p.objective: row.get(f"{p.name}.{p.objective}"), "fits": row.get(f"{p.name}.fits")}
                     for p in profiles}  # fmt: skip
            fronts.add(int(row["trial"]), accuracy=row.get("accuracy"), costs=costs, status=str(row.get("status")),
                       feasible=bool(row.get("feasible", True)),
                       baseline=bool(row.get("is_baseline", False)))  # fmt: skip
        return fronts

    def add(self, trial: int, *, accuracy: object, costs: Mapping[str, Mapping[str, Any]], status: str = "ok",
            feasible: bool = True, baseline: bool = False) -> list[str]:  # fmt: skip
        """Offer one finished trial to every front; returns the profiles whose front changed. Offering a trial
        again (its next rung) replaces what it offered before."""
        acc = finite_number(accuracy)
        changed = []
        for name, objective in self.objectives.items():
            cost = costs.get(name) or {}
            value = finite_number(cost.get(objective))
            if baseline and status == "ok" and value is not None and name not in self._base:
                self._base[name] = value
            if value is not None:
                self._max_cost[name] = max(value, self._max_cost.get(name, value))
            front = self._fronts[name]
            if status != "ok" or acc is None or value is None or not feasible or not fits_profile(cost):
                front.discard(trial)  # a later rung that failed takes back what the earlier one offered
                continue
            before = front.version
            front.add(trial, value, acc)
            if front.version != before:
                changed.append(name)
        return changed

    def points(self, profile: str) -> tuple[Point, ...]:
        """The profile's front as (cost, accuracy, trial), cheapest first (``front_frame``'s order)."""
        return self._fronts[profile].points()

    def as_spec_fronts(self) -> dict[str, tuple[Point, ...]]:
        """Every front in the shape ``TrialSpec.fronts`` takes (what ``driver.current_fronts`` computed)."""
        return {name: front.points() for name, front in self._fronts.items()}

    def reference_cost(self, profile: str) -> float | None:
        """The hypervolume's reference cost: given, else 1.1 x the baseline's, else 1.1 x the dearest cost seen
        (compare.py's fallback), else None."""
        if profile in self._ref:
            return self._ref[profile]
        seen = self._base.get(profile, self._max_cost.get(profile))
        return REF_SCALE * seen if seen is not None and seen > 0 else None

    def hypervolume(self, profile: str) -> float:
        """Area the front dominates with cost as a share of the reference cost and accuracy from 0 (as
        ``benchmarks/samplers.py`` and ``autoslim compare``); cached until the front or the reference changes."""
        front = self._fronts[profile]
        ref = self.reference_cost(profile)
        if ref is None or not len(front):
            return 0.0
        cached = self._hv.get(profile)
        if cached is not None and cached[:2] == (front.version, ref):
            return cached[2]
        points = front.points()
        value = hypervolume_2d([a for _, a, _ in points], [c / ref for c, _, _ in points], ref_cost=1.0)
        self._hv[profile] = (front.version, ref, value)
        return value
