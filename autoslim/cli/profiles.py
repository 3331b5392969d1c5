"""``autoslim profiles list|show``: the hardware profiles fronts are priced on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.table import Table

from autoslim.cost import builtin_profiles, get_profile

app = typer.Typer(no_args_is_help=True, help="Hardware profiles.")


@app.command("list")
def list_() -> None:
    """List the built-in profiles."""
    table = Table("name", "kind", "objective", "batch", "description")
    for p in builtin_profiles().values():
        table.add_row(p.name, p.kind, p.objective, str(p.batch_size), p.description)
    Console().print(table)


@app.command()
def calibrate(
    name: Annotated[str, typer.Option(help="Profile name; saved as NAME.yaml in the user profile folder.")] = "host",
    out: Annotated[Path | None, typer.Option(help="Write the YAML here instead.")] = None,
) -> None:
    """Measure this machine (microbenchmarks, ~30 s) and write a loadable profile YAML for it."""
    from autoslim.cost.calibrate import calibrate as run_calibration
    from autoslim.cost.calibrate import save_profile

    path = save_profile(run_calibration(name), out)
    typer.echo(f"wrote {path}; use it with --profile {name if out is None else path}")


@app.command()
def show(name: str) -> None:
    """Show one profile (built-in name or YAML path) with its sources."""
    from dataclasses import asdict

    typer.echo(yaml.safe_dump(asdict(get_profile(name)), sort_keys=False))
