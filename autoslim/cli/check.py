"""``autoslim check``: try each technique of a space once on the task's teacher (the search's preflight)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autoslim.cli.options import ProfilesOption, SpaceOption, TaskOption
from autoslim.cost import builtin_profiles, get_profile
from autoslim.search import default_space_path, load_space
from autoslim.search.preflight import preflight
from autoslim.tasks import load_task


def check(
    task: TaskOption = "mnist1d-cnn",
    space: SpaceOption = None,
    profile: ProfilesOption = None,
    cache: Annotated[bool, typer.Option(help="Reuse a cached result for the same teacher and space.")] = True,
) -> None:
    """Which techniques of the space apply to the model: yes / no / narrowed, why, and size and cost before/after."""
    console = Console()
    # Errors: one line, exit code 2 (autoslim.cli.errors).
    sp = load_space(Path(space) if space else default_space_path())
    profiles = [get_profile(n) for n in profile or list(sp.profiles) or list(builtin_profiles())]
    result = preflight(load_task(task), sp, profiles, cache=cache)
    title = escape(f"preflight: {sp.name} on {task} (size and cost: teacher → the technique's strong end)")
    table = Table(title=title,
                  title_justify="left")  # fmt: skip
    teacher = result.rows[0].before["costs"] if result.rows else {}
    cost_cols = [f"{n}: {c['objective']} / bytes" if c["objective"] != "model_bytes" else f"{n}: bytes"
                 for n, c in teacher.items()]  # fmt: skip
    for col in ("technique", "applies", "why", "strong end", "params", *cost_cols):
        table.add_column(col, overflow="fold")
    colour = {"yes": "green", "narrowed": "yellow", "no": "red"}

    def cost(c: dict | None) -> str:
        if not c:
            return "-"
        size = f"{c['model_bytes']:,}"
        return size if c["objective"] == "model_bytes" else f"{c['value']:.3g} / {size}"

    for r in result.rows:
        after = r.after or {"params": None, "costs": {}}
        size = f"{r.before['params']:,} → " + (f"{after['params']:,}" if after["params"] is not None else "-")
        costs = [f"{cost(b)} → {cost(after['costs'].get(n))}" for n, b in r.before["costs"].items()]
        config = ", ".join(f"{k}={v}" for k, v in r.config.items())
        table.add_row(escape(r.technique), f"[{colour[r.applies]}]{r.applies}[/]", escape(r.why), escape(config),
                      size, *costs)  # fmt: skip
    console.print(table)
    for line in result.lines():
        console.print(line, markup=False, highlight=False)
