"""Pick a front point that meets a query; say which comes nearest when none does.

::

    from autoslim.report.pick import Query, pick
    from autoslim.report.results import open_results

    chosen = pick(open_results("results/default"), "mcu-cortex-m7", Query(max_accuracy_drop=0.01))
    print(chosen.message, chosen.row["trial"] if chosen.row is not None else None)

Accuracy limits pick the cheapest point meeting them; cost limits the most accurate point within them. A query
with no limit at all is refused (:class:`MissingQueryError`): "the cheapest point" silently gave a model far
below the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from autoslim.cost import HardwareProfile
from autoslim.report.frame import front_frame
from autoslim.report.results import StudyResults


class MissingQueryError(ValueError):
    """A pick without any limit (bad input: exit code 2)."""


@dataclass(frozen=True)
class Query:
    max_accuracy_drop: float | None = None  # vs. the baseline, accuracy units (0.01 = 1 pp)
    min_accuracy: float | None = None
    max_latency_ms: float | None = None
    max_bytes: float | None = None

    def is_empty(self) -> bool:
        return all(v is None for v in (self.max_accuracy_drop, self.min_accuracy, self.max_latency_ms,
                                       self.max_bytes))  # fmt: skip

    def flags(self) -> list[str]:
        """The query as `autoslim pick` / `export` flags."""
        pairs = [("--max-accuracy-drop", self.max_accuracy_drop), ("--min-accuracy", self.min_accuracy),
                 ("--max-latency-ms", self.max_latency_ms), ("--max-bytes", self.max_bytes)]  # fmt: skip
        return [part for flag, v in pairs if v is not None for part in (flag, f"{v:g}")]

    def describe(self) -> str:
        parts = []
        if self.max_accuracy_drop is not None:
            parts.append(f"within {self.max_accuracy_drop * 100:g} pp of the baseline's accuracy")
        if self.min_accuracy is not None:
            parts.append(f"accuracy at least {self.min_accuracy:.2%}")
        if self.max_latency_ms is not None:
            parts.append(f"latency at most {self.max_latency_ms:g} ms")
        if self.max_bytes is not None:
            parts.append(f"at most {self.max_bytes:,.0f} bytes")
        return " and ".join(parts)


NO_QUERY = (
    "say what to pick: --max-accuracy-drop 0.01 (the cheapest point within 1 pp of the baseline), "
    "--min-accuracy A, --max-latency-ms L or --max-bytes B"
)


@dataclass(frozen=True)
class Pick:
    row: pd.Series | None  # the chosen front point, or None
    nearest: pd.Series | None  # when nothing meets the query: the point that misses it by least
    message: str
    baseline: pd.Series | None = None  # the uncompressed baseline trial, when it finished
    qualifying: int = 0  # front points meeting the query
    front_size: int = 0

    @property
    def point(self) -> pd.Series | None:
        return self.row if self.row is not None else self.nearest


def baseline_row(trials: pd.DataFrame) -> pd.Series | None:
    """The finished uncompressed baseline trial of a trials table, or None."""
    if trials.empty or "is_baseline" not in trials:
        return None
    base = trials[trials["is_baseline"].astype(bool) & (trials["status"] == "ok")]
    return base.iloc[0] if len(base) else None


def pick(results: StudyResults, profile: str, query: Query) -> Pick:
    """Accuracy limits → the cheapest point meeting them; cost limits → the most accurate point within them."""
    return pick_from(results.trials, results.profile(profile), query)


def pick_from(trials: pd.DataFrame, p: HardwareProfile, query: Query, *, front: pd.DataFrame | None = None) -> Pick:
    """:func:`pick` on a trials table (``trials_frame``), e.g. the one a search just wrote; ``front`` is the
    profile's ``front_frame`` where the caller already has it (the report builds every front once)."""
    if query.is_empty():
        raise MissingQueryError(NO_QUERY)
    base = baseline_row(trials)
    if front is None:
        front = front_frame(trials, p) if len(trials) else pd.DataFrame()
    if front.empty:
        return Pick(None, None, f"{p.name}: the front is empty", base)
    min_acc = query.min_accuracy
    if query.max_accuracy_drop is not None:
        if base is None:
            return Pick(None, None, "the study has no finished baseline to measure the accuracy drop against")
        floor = float(base["accuracy"]) - query.max_accuracy_drop
        min_acc = floor if min_acc is None else max(min_acc, floor)
    lat, size = front[f"{p.name}.latency_ms"], front[f"{p.name}.model_bytes"]
    ok = pd.Series(True, index=front.index)
    miss = pd.Series(0.0, index=front.index)  # relative shortfall against each limit, summed
    if min_acc is not None:
        ok &= front["accuracy"] >= min_acc
        miss += ((min_acc - front["accuracy"]) / max(min_acc, 1e-9)).clip(lower=0)
    if query.max_latency_ms is not None:
        ok &= lat <= query.max_latency_ms
        miss += ((lat - query.max_latency_ms) / query.max_latency_ms).clip(lower=0)
    if query.max_bytes is not None:
        ok &= size <= query.max_bytes
        miss += ((size - query.max_bytes) / query.max_bytes).clip(lower=0)
    hits = front[ok]
    if hits.empty:
        nearest = front.iloc[int(miss.to_numpy().argmin())]
        text = f"no front point on {p.name} meets the query; nearest is trial {nearest['trial']}"
        return Pick(None, nearest, text, base, 0, len(front))
    only_accuracy = query.max_latency_ms is None and query.max_bytes is None
    key = hits[f"{p.name}.{p.objective}"].to_numpy().argmin() if only_accuracy else hits["accuracy"].to_numpy().argmax()
    best = hits.iloc[int(key)]
    return Pick(best, None, f"trial {best['trial']} on {p.name}", base, len(hits), len(front))
