"""What `autoslim search` prints at the end: each front, the failures in words, the best point per profile within
1 pp of the baseline, where the report is, and the `pick` / `export` commands to run next."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from rich.console import Console

from autoslim.cli.next_steps import export_command, pick_command
from autoslim.cli.tables import front_table, summary_table
from autoslim.cli.text import counts as in_words
from autoslim.cli.text import shorten
from autoslim.cost import HardwareProfile
from autoslim.report import units
from autoslim.report.pick import Pick, Query, baseline_row, pick_from
from autoslim.search import SearchOutcome
from autoslim.trial import status_name

SUMMARY_DROP = 0.01  # "best within 1 pp": the headline the README and the report use


def _say(console: Console, text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def print_fronts(console: Console, outcome: SearchOutcome, profiles: Sequence[HardwareProfile]) -> None:
    base = baseline_row(outcome.trials)
    for p in profiles:
        _say(console, f"\n{p.name}: Pareto front, accuracy vs. {p.objective} (cheapest first)")
        console.print(front_table(outcome.fronts[p.name], base, p))


def print_failures(console: Console, trials: pd.DataFrame) -> None:
    """Failed, infeasible and stopped trials keep their reasons; say how many of each, and the commonest reasons."""
    if trials.empty:
        return
    status = trials["status"].map(status_name)
    bad = trials[~status.isin(["ok", "interrupted"])]
    if bad.empty:
        return
    counts = in_words({str(k): int(v) for k, v in status[bad.index].value_counts().items()})
    _say(console, f"\n{len(bad)} trial(s) did not finish ok ({counts}); most common reasons:")
    reasons = bad["reason"].map(lambda r: shorten(r, 140)).value_counts()
    for reason, count in reasons.head(5).items():
        _say(console, f"  {count}x {reason}")


def print_summary(console: Console, outcome: SearchOutcome, profiles: Sequence[HardwareProfile], task: str) -> None:
    query = Query(max_accuracy_drop=SUMMARY_DROP)
    picks: list[tuple[HardwareProfile, Pick]] = [(p, pick_from(outcome.trials, p, query)) for p in profiles]
    base = baseline_row(outcome.trials)
    if base is not None:
        size = units.size(base.get(f"{profiles[0].name}.model_bytes")) if profiles else units.MISSING
        _say(console, f"\nbaseline (trial {base['trial']}): accuracy {units.percent(base['accuracy'])}, {size}; "
                      f"the best point within {SUMMARY_DROP * 100:g} pp of it, per profile:")  # fmt: skip
        console.print(summary_table(picks))
    report = outcome.folder / "report.html"
    _say(console, f"\nreport: {report}")
    found = [(p, c) for p, c in picks if c.row is not None and c.baseline is not None and _gain(p, c) > 1]
    if not found:  # nothing beats the baseline yet (a search of a trial or two): no command worth running
        return
    # The profile where compression pays most (largest ratio to the baseline) is the one worth exporting first.
    p, chosen = max(found, key=lambda pc: _gain(pc[0], pc[1]))
    assert chosen.row is not None
    _say(console, f"next: {pick_command(outcome.folder, p.name, query)}")
    _say(console, f"      {export_command(outcome.folder, task, chosen.row, p.name)}")


def _gain(p: HardwareProfile, chosen: Pick) -> float:
    assert chosen.row is not None and chosen.baseline is not None
    col = f"{p.name}.{p.objective}"
    b, v = units.number(chosen.baseline.get(col)), units.number(chosen.row.get(col))
    return b / v if b and v else 0.0
