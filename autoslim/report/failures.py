"""Trials that did not finish ok, grouped by why: one row per (status, reason) with its count and trials.

Reasons that differ only in their numbers ("accuracy 0.91 < floor 0.95" and "accuracy 0.88 < floor 0.95") are one
reason: a person wants to see "12 trials stopped because the fine-tune could not reach the floor", not 12 rows."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from autoslim.report.explore import status_word

_NUMBER = re.compile(r"[-+]?\d[\d,_]*(?:\.\d+)?(?:e[-+]?\d+)?", re.IGNORECASE)


@dataclass(frozen=True)
class FailureGroup:
    status: str  # ok / infeasible / failed / stopped / interrupted
    reason: str  # the first trial's reason, first line (the numbers are that trial's)
    trials: tuple[int, ...]


def first_line(reason: object) -> str:
    text = "" if reason is None or (isinstance(reason, float) and reason != reason) else str(reason)
    return text.strip().split("\n")[0].strip()


def failure_groups(df: pd.DataFrame) -> list[FailureGroup]:
    """Largest group first; an empty list when every trial finished ok."""
    if df.empty:
        return []
    bad = df[df["status"] != "ok"]
    groups: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for _, row in bad.iterrows():
        reason = first_line(row.get("reason"))
        key = (status_word(row["status"]), _NUMBER.sub("#", reason))
        groups.setdefault(key, []).append((int(row["trial"]), reason))
    found = [FailureGroup(status, members[0][1] or "(no reason recorded)", tuple(n for n, _ in members))
             for (status, _), members in groups.items()]  # fmt: skip
    return sorted(found, key=lambda g: (-len(g.trials), g.status, g.trials[0]))
