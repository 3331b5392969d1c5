"""``autoslim profiles list|show``: the hardware profiles fronts are priced on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autoslim.cli.options import plain_name
from autoslim.cost import builtin_profiles, get_profile
from autoslim.cost.profiles import load_profile_file, profile_to_dict, user_profile_dir

app = typer.Typer(no_args_is_help=True, help="Hardware profiles.")


HOST_ROW = ("host", "cpu", "latency_ms", "1",
            "this machine, measured by `autoslim profiles calibrate` (~30 s, run on first use and cached)")  # fmt: skip


@app.command("list")
def list_() -> None:
    """List the profiles: the built-in ones, host (this machine) and those calibrated here."""
    table = Table("name", "kind", "objective", "batch", "description")
    for p in builtin_profiles().values():
        table.add_row(escape(p.name), p.kind, p.objective, str(p.batch_size), escape(p.description))
    table.add_row(*(escape(cell) for cell in HOST_ROW))
    for path in sorted(user_profile_dir().glob("*.yaml")):  # calibrated here (host-* is host's cache)
        try:
            p = load_profile_file(path)
        except ValueError as exc:
            table.add_row(escape(path.stem), "", "", "", escape(f"unreadable: {exc}"))
            continue
        table.add_row(escape(path.stem), p.kind, p.objective, str(p.batch_size), escape(f"calibrated: {path}"))
    Console().print(table)


@app.command()
def calibrate(
    name: Annotated[
        str, typer.Option(callback=plain_name, help="Profile name; saved as NAME.yaml in the user profile folder.")
    ] = "host",
    out: Annotated[
        Path | None, typer.Option(help="Write the YAML here instead.", show_default="NAME.yaml there")
    ] = None,
) -> None:
    """Measure this machine (microbenchmarks, ~30 s) and write a loadable profile YAML for it."""
    from autoslim.cost.calibrate import calibrate as run_calibration
    from autoslim.cost.calibrate import save_profile

    path = save_profile(run_calibration(name), out)
    typer.echo(f"wrote {path}; use it with --profile {name if out is None else path}")


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="A built-in name, host, a calibrated name or a YAML path.")],
    as_yaml: Annotated[
        bool,
        typer.Option(
            "--yaml",
            help="Only the YAML (no header comment), e.g. `> p.yaml`, then --profile p.yaml.",
            show_default="off",
        ),
    ] = False,
) -> None:
    """Show one profile with its sources, as YAML that `--profile FILE` loads back."""
    profile = get_profile(name)
    # profile_to_dict leaves out fields at their defaults (None would not load back: fields take numbers).
    text = yaml.safe_dump(profile_to_dict(profile), sort_keys=False, allow_unicode=True)
    header = f"# profile {profile.name}: save this output as a .yaml file and pass it with --profile FILE\n"
    typer.echo(text if as_yaml else header + text, nl=False)
