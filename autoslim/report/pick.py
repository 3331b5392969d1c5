"""Pick a front point that meets a query; say which comes nearest when none does."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from autoslim.report.results import StudyResults


@dataclass(frozen=True)
class Query:
    max_accuracy_drop: float | None = None  # vs. the baseline, accuracy units (0.01 = 1 pp)
    min_accuracy: float | None = None
    max_latency_ms: float | None = None
    max_bytes: float | None = None


@dataclass(frozen=True)
class Pick:
    row: pd.Series | None  # the chosen front point, or None
    nearest: pd.Series | None  # when nothing meets the query: the point that misses it by least
    message: str


def pick(results: StudyResults, profile: str, query: Query) -> Pick:
    """Accuracy limits → the cheapest point meeting them; cost limits → the most accurate point within them."""
    p = results.profile(profile)
    front = results.front(profile)
    if front.empty:
        return Pick(None, None, f"{profile}: the front is empty")
    min_acc = query.min_accuracy
    if query.max_accuracy_drop is not None:
        base = results.trials[results.trials["is_baseline"] & (results.trials["status"] == "ok")]
        if base.empty:
            return Pick(None, None, "the study has no finished baseline to measure the accuracy drop against")
        floor = float(base["accuracy"].iloc[0]) - query.max_accuracy_drop
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
        return Pick(None, nearest, f"no front point on {profile} meets the query; nearest is trial {nearest['trial']}")
    only_accuracy = query.max_latency_ms is None and query.max_bytes is None
    key = hits[f"{p.name}.{p.objective}"].to_numpy().argmin() if only_accuracy else hits["accuracy"].to_numpy().argmax()
    best = hits.iloc[int(key)]
    return Pick(best, None, f"trial {best['trial']} on {profile}")
