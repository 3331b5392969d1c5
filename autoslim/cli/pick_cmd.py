"""``autoslim pick``: choose a front point by an accuracy or cost limit; a short table and the export command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from autoslim.cli.next_steps import export_command, study_task
from autoslim.cli.options import NO_LIMIT, above_zero, at_least_zero
from autoslim.cli.tables import pick_table
from autoslim.cost import HardwareProfile
from autoslim.report.pick import NO_QUERY, MissingQueryError, Pick, Query, pick
from autoslim.report.results import open_results
from autoslim.report.units import number


def pick_cmd(
    study: Annotated[Path, typer.Argument(help="A study folder, e.g. results/default.")],
    profile: Annotated[str, typer.Option(help="Which profile's front to pick from (see the study's report).")],
    max_accuracy_drop: Annotated[
        float | None,
        typer.Option(
            callback=at_least_zero, help="Accuracy lost vs. the baseline: 0.01 = 1 pp.", show_default=NO_LIMIT
        ),
    ] = None,
    min_accuracy: Annotated[float | None, typer.Option(help="e.g. 0.98", show_default=NO_LIMIT)] = None,
    max_latency_ms: Annotated[
        float | None, typer.Option(callback=above_zero, help="On --profile.", show_default=NO_LIMIT)
    ] = None,
    max_bytes: Annotated[
        float | None, typer.Option(callback=above_zero, help="Stored size on --profile.", show_default=NO_LIMIT)
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object, for scripts, instead of the table.", show_default="off")
    ] = False,
) -> None:
    """Pick a front point: the cheapest within an accuracy limit, or the most accurate within a latency or size limit.

    Prints it beside the baseline (accuracy, drop, cost, ratio, plan) and the `autoslim export` command for it.
    Exit code 1 when no point meets the query (the nearest one is shown); 2 without any limit.
    """
    query = Query(max_accuracy_drop, min_accuracy, max_latency_ms, max_bytes)
    if query.is_empty():  # before reading the study: "the cheapest point" alone gave a model far below the baseline
        raise MissingQueryError(NO_QUERY)
    results = open_results(study)
    chosen = pick(results, profile, query)
    p = results.profile(profile)
    point = chosen.point
    task = study_task(results.study.user_attrs.get("autoslim", {}))
    command = export_command(study, task, point, p.name) if point is not None else None
    if as_json:
        typer.echo(json.dumps(pick_json(chosen, p, query, command), indent=2))
    else:
        _print(chosen, p, query, command)
    if chosen.row is None:
        raise typer.Exit(1)


def _print(chosen: Pick, p: HardwareProfile, query: Query, command: str | None) -> None:
    console = Console()
    say = lambda text: console.print(text, markup=False, highlight=False, soft_wrap=True)  # noqa: E731
    if chosen.row is not None:
        say(f"{chosen.message}: the {_best(p, query)} of {chosen.front_size} front point(s), "
            f"{chosen.qualifying} of them {query.describe()}")  # fmt: skip
    else:
        say(chosen.message)
    if chosen.point is not None:
        console.print(pick_table(chosen, p))
    if command is not None:
        say(f"export it: {command}" if chosen.row is not None else f"export the nearest anyway: {command}")


def _best(p: HardwareProfile, query: Query) -> str:
    if query.max_latency_ms is None and query.max_bytes is None:
        return {"latency_ms": "fastest", "model_bytes": "smallest"}.get(p.objective, f"lowest-{p.objective}")
    return "most accurate"


COSTS = ("latency_ms", "measured_latency_ms", "model_bytes", "peak_activation_bytes", "macs", "energy_mj")


def _point(row: Any, p: HardwareProfile) -> dict[str, Any]:
    costs = {f: number(row.get(f"{p.name}.{f}")) for f in COSTS}
    return {"trial": int(row["trial"]), "accuracy": number(row["accuracy"]), "plan": str(row.get("plan", "")),
            "plan_json": json.loads(row["plan_json"]) if row.get("plan_json") else None,
            "costs": {k: v for k, v in costs.items() if v is not None}}  # fmt: skip


def pick_json(chosen: Pick, p: HardwareProfile, query: Query, command: str | None) -> dict[str, Any]:
    """What `pick --json` prints: the point (or nearest), the baseline, drop and ratio, and the export command."""
    out: dict[str, Any] = {"profile": p.name, "objective": p.objective, "query": query.__dict__,
                           "met": chosen.row is not None, "message": chosen.message}  # fmt: skip
    if chosen.point is not None:
        out["point"] = _point(chosen.point, p)
    if chosen.baseline is not None:
        out["baseline"] = _point(chosen.baseline, p)
        if chosen.point is not None:
            b, v = out["baseline"], out["point"]
            out["accuracy_drop_pp"] = round((b["accuracy"] - v["accuracy"]) * 100, 4)
            cost_b, cost_v = b["costs"].get(p.objective), v["costs"].get(p.objective)
            out["ratio_to_baseline"] = cost_b / cost_v if cost_b and cost_v else None
    out["export_command"] = command
    return out
