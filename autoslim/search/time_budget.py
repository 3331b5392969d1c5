"""A wall-clock budget (``--time-budget 8h``): whether the next trial or promotion still fits, and when it ends.

Pure arithmetic over what the driver reports (time elapsed, finished rung durations, running trials), no clock of
its own, so it is tested without sleeping and rebuilt on resume from the durations in the journal::

    budget = TimeBudget(parse_duration("1h30m"), slots=2, reduction_factor=3)
    budget.add(rung=0, seconds=41.0)                           # a finished rung-0 run
    budget.can_start(elapsed_s=600.0)                          # a fresh trial (rung 0) ends in time?
    budget.can_promote(rung=0, elapsed_s=600.0)                # its rung-1 continuation ends in time?
    budget.estimated_end_s(600.0, running=[Running(0, 12.0)], trials_left=40)   # for the progress bar
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([hms])")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str) -> float:
    """Seconds in ``8h``, ``10m``, ``90s``, ``1h30m``, ``1h 30m 10s``, ``1.5h``.

    >>> parse_duration("1h30m")
    5400.0

    A bare number is refused (hours or minutes? the unit is the point), as are repeated or misordered units and
    a zero budget; the ValueError quotes the text."""
    raw = text
    s = text.strip().lower()
    pos, seen, total = 0, "", 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            hint = " (give a unit: h, m or s, e.g. 8h)" if re.fullmatch(r"\d+(\.\d+)?", s) else ""
            raise ValueError(f"time budget {raw!r}: expected a duration like 8h, 10m, 90s or 1h30m{hint}")
        unit = m.group(2)
        if unit in seen or (seen and "hms".index(unit) < "hms".index(seen[-1])):
            raise ValueError(f"time budget {raw!r}: units must come once each, in the order h, m, s")
        seen += unit
        total += float(m.group(1)) * _UNITS[unit]
        pos = m.end()
        while pos < len(s) and s[pos].isspace():
            pos += 1
    if not seen:
        raise ValueError(f"time budget {raw!r}: expected a duration like 8h, 10m, 90s or 1h30m")
    if total <= 0:
        raise ValueError(f"time budget {raw!r}: must be more than zero")
    return total


@dataclass(frozen=True)
class Running:
    rung: int  # the rung it is running
    running_s: float  # how long it has run so far


@dataclass
class TimeBudget:
    """Plans against ``budget_s`` seconds (None: no time limit, only the end estimate) with ``slots`` trials at
    once. A rung's expected duration is the median of its finished runs (robust to one stuck trial); a rung
    with none yet is scaled from the nearest rung that has some by its share of the fine-tune."""

    budget_s: float | None
    slots: int = 1
    reduction_factor: int = 3  # share of trials reaching rung r: eta ** -r (ASHA promotes the top 1/eta)
    fractions: tuple[float, ...] = (1 / 9, 1 / 3, 1.0)
    durations: dict[int, list[float]] = field(default_factory=dict)  # rung -> seconds of each finished run
    restart: bool = False  # a rung > 0 reruns the fine-tune from the start (autoslim.search.ladder), not the rest

    def add(self, rung: int, seconds: float) -> None:
        """A finished run of ``rung`` (a rung > 0: the continuation alone, or with ``restart`` the whole rerun)."""
        if math.isfinite(seconds) and seconds >= 0:
            self.durations.setdefault(rung, []).append(float(seconds))

    def expected_s(self, rung: int) -> float | None:
        """Seconds a run of ``rung`` is expected to take; None before any run of any rung finished."""
        if self.durations.get(rung):
            return statistics.median(self.durations[rung])
        known = [r for r, d in self.durations.items() if d]
        if not known:
            return None
        near = min(known, key=lambda r: (abs(r - rung), r))
        return statistics.median(self.durations[near]) * self._share(rung) / self._share(near)

    def can_start(self, elapsed_s: float, *, rung: int = 0) -> bool:
        """Whether a run of ``rung`` started now is expected to end within the budget. Before anything finished
        there is nothing to go on, so the first runs start while time is left."""
        if self.budget_s is None:
            return True
        if elapsed_s >= self.budget_s:
            return False
        expected = self.expected_s(rung)
        return expected is None or elapsed_s + expected <= self.budget_s

    def can_promote(self, rung: int, elapsed_s: float, *, from_start: bool = False) -> bool:
        """Whether continuing a trial from ``rung`` to ``rung + 1`` is expected to end within the budget.
        ``from_start``: this one reruns the fine-tune up to ``rung + 1`` from the start though rungs go on from
        each other (a late promotion whose state was not kept): it is priced as that much more."""
        if from_start and not self.restart and self.budget_s is not None:
            expected = self.expected_s(rung + 1)
            if expected is not None:
                nxt = min(rung + 1, len(self.fractions) - 1)
                expected *= self.fractions[nxt] / max(self._share(nxt), 1e-9)
                return elapsed_s < self.budget_s and elapsed_s + expected <= self.budget_s
        return self.can_start(elapsed_s, rung=rung + 1)

    def time_left_s(self, elapsed_s: float) -> float | None:
        return None if self.budget_s is None else max(0.0, self.budget_s - elapsed_s)

    def estimated_end_s(self, elapsed_s: float, *, running: Sequence[Running] = (),
                        trials_left: int | None = None) -> float | None:  # fmt: skip
        """Seconds from the start at which the search is expected to end: the work left (the running runs' rest,
        plus ``trials_left`` new trials with their expected promotions) spread over the slots, capped by the
        time budget plus the longest running run's rest (the budget starts nothing late, and stops nothing).
        None when neither the work nor the budget gives an end (no run finished, no time budget)."""
        rests = [max(0.0, (self.expected_s(r.rung) or 0.0) - r.running_s) for r in running]
        per_trial = self._expected_trial_s()
        by_work: float | None = None
        if trials_left is not None and (per_trial is not None or trials_left == 0):
            work = sum(rests) + trials_left * (per_trial or 0.0)
            by_work = elapsed_s + work / max(1, self.slots)
        if self.budget_s is None:
            return by_work
        capped = max(self.budget_s, elapsed_s + max(rests, default=0.0))
        return capped if by_work is None else min(by_work, capped)

    def _expected_trial_s(self) -> float | None:
        """A fresh trial's expected run time over all rungs: rung r runs for a share eta ** -r of the trials."""
        parts = [self.expected_s(r) for r in range(len(self.fractions))]
        if any(p is None for p in parts):
            return None
        return sum(p * self.reduction_factor**-r for r, p in enumerate(parts) if p is not None)

    def _share(self, rung: int) -> float:
        """The fraction of the fine-tune rung ``rung`` adds (rung 0: its whole fraction)."""
        rung = min(max(rung, 0), len(self.fractions) - 1)
        if self.restart:
            return self.fractions[rung]
        return self.fractions[rung] - (self.fractions[rung - 1] if rung > 0 else 0.0)
