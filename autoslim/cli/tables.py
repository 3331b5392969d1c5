"""The tables the commands print: front points beside the baseline, in the units people read (autoslim.report.units).

Every cell is text from data (plans in words, profile names from a journal), so each is escaped: never rich markup.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from rich.markup import escape
from rich.table import Table

from autoslim.cli.text import versus
from autoslim.cost import HardwareProfile
from autoslim.report import units
from autoslim.report.pick import Pick

COSTS = {"latency_ms": "latency", "model_bytes": "size", "energy_mj": "energy"}


def cost_columns(p: HardwareProfile) -> list[str]:
    """Cost fields to show: the profile's objective first, then latency and size (what every profile prices)."""
    return [p.objective, *(f for f in ("latency_ms", "model_bytes") if f != p.objective)]


def _header(p: HardwareProfile, field: str) -> str:
    label = COSTS.get(field, field)
    return f"{label} (batch {p.batch_size})" if field == "latency_ms" and p.batch_size != 1 else label


def point_cells(row: pd.Series, base: pd.Series | None, p: HardwareProfile) -> list[str]:
    """trial, accuracy, drop, each cost, the objective's ratio to the baseline, the plan in words."""
    base_acc = units.number(base["accuracy"]) if base is not None else None
    acc = units.number(row["accuracy"])
    costs = [units.cost(f, row.get(f"{p.name}.{f}")) for f in cost_columns(p)]
    base_cost = base.get(f"{p.name}.{p.objective}") if base is not None else None
    ratio = versus(base_cost, row.get(f"{p.name}.{p.objective}"), p.objective)
    drop = base_acc - acc if base_acc is not None and acc is not None else None
    return [str(row["trial"]), units.percent(row["accuracy"]), units.drop_pp(drop), *costs,
            ratio, escape(str(row.get("plan", "")))]  # fmt: skip


def _table(first: str | None, p: HardwareProfile) -> Table:
    table = Table(show_edge=False, pad_edge=False)
    if first is not None:
        table.add_column(first)
    for name in ("trial", "accuracy", "drop"):
        table.add_column(name, justify="right")
    for f in cost_columns(p):
        table.add_column(_header(p, f), justify="right")
    table.add_column(f"vs baseline ({COSTS.get(p.objective, p.objective)})", justify="right")
    table.add_column("plan", overflow="fold")
    return table


def pick_table(chosen: Pick, p: HardwareProfile) -> Table:
    """The chosen (or nearest) point under the baseline it is measured against."""
    table = _table("", p)
    if chosen.baseline is not None:
        table.add_row("baseline", *point_cells(chosen.baseline, chosen.baseline, p))
    if chosen.point is not None:
        table.add_row("picked" if chosen.row is not None else "nearest", *point_cells(chosen.point, chosen.baseline, p))
    return table


def front_table(front: pd.DataFrame, base: pd.Series | None, p: HardwareProfile) -> Table:
    table = _table(None, p)  # the baseline, when on the front, says so in its plan: "baseline (uncompressed)"
    for _, row in front.iterrows():
        table.add_row(*point_cells(row, base, p))
    return table


def summary_table(picks: Sequence[tuple[HardwareProfile, Pick]]) -> Table:
    """One row per profile: its best point within the accuracy limit."""
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("profile")
    for name in ("trial", "accuracy", "drop", "cost", "vs baseline"):
        table.add_column(name, justify="right")
    table.add_column("plan", overflow="fold")
    for p, chosen in picks:
        if chosen.row is None:
            table.add_row(escape(p.name), "–", "", "", "", "", escape(chosen.message))
            continue
        cells = point_cells(chosen.row, chosen.baseline, p)
        cost = f"{cells[3]} {COSTS.get(p.objective, p.objective)}"
        table.add_row(escape(p.name), cells[0], cells[1], cells[2], cost, cells[-2], cells[-1])
    return table
