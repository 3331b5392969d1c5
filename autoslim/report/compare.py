"""Compare two studies' fronts profile by profile (nightly regression check)."""

from __future__ import annotations

import math

from rich.markup import escape
from rich.table import Table

from autoslim.report.frame import finite
from autoslim.report.pareto import hypervolume_2d
from autoslim.report.results import StudyResults


def front_hypervolume(results: StudyResults, profile: str, *, ref_cost: float) -> float:
    front = results.front(profile)
    p = results.profile(profile)
    if front.empty:
        return 0.0
    # Cost as a fraction of the reference, so hypervolumes read alike on every profile (accuracy x cost share).
    costs = (front[f"{p.name}.{p.objective}"] / ref_cost).tolist()
    return hypervolume_2d(front["accuracy"].tolist(), costs, ref_cost=1.0)


def _ref_cost(results: StudyResults, profile: str) -> float:
    """The reference cost: 1.1x the baseline's, so every compressed point counts (and both studies use one box)."""
    p = results.profile(profile)
    df = results.trials
    col = f"{p.name}.{p.objective}"
    if df.empty or col not in df:
        return 1.0
    usable = df[finite(df[col])]
    base = usable[usable["is_baseline"] & (usable["status"] == "ok")]
    value = float(base[col].iloc[0]) if len(base) else float(usable[col].max()) if len(usable) else 1.0
    return 1.1 * value if math.isfinite(value) and value > 0 else 1.0


def study_differences(before: StudyResults, after: StudyResults) -> list[str]:
    """What makes two studies different searches (task, space): their fronts then measure different things."""
    a = before.study.user_attrs.get("autoslim", {})
    b = after.study.user_attrs.get("autoslim", {})
    return [f"{key}: {a.get(key)!r} vs {b.get(key)!r}" for key in ("task", "space") if a.get(key) != b.get(key)]


def compare_studies(before: StudyResults, after: StudyResults, *, tolerance: float = 0.02) -> tuple[Table, list[str]]:
    table = Table("profile", "hypervolume before", "after", "change", "front size before → after", title="fronts")
    regressed = []
    for p in before.profiles:
        name = escape(p.name)  # a profile name comes from a journal: data, never rich markup
        if p.name not in {q.name for q in after.profiles}:
            table.add_row(name, "", "missing", "", "")
            regressed.append(p.name)
            continue
        ref = _ref_cost(before, p.name)
        hv_a, hv_b = front_hypervolume(before, p.name, ref_cost=ref), front_hypervolume(after, p.name, ref_cost=ref)
        change = (hv_b - hv_a) / hv_a if hv_a else 0.0
        if change < -tolerance:
            regressed.append(p.name)
        table.add_row(name, f"{hv_a:.4g}", f"{hv_b:.4g}", f"{change:+.1%}",
                      f"{len(before.front(p.name))} → {len(after.front(p.name))}")  # fmt: skip
    return table, regressed
