"""``autoslim spaces list | show``: the search spaces shipped in search_spaces/."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autoslim.search.space import SpaceError, default_space_path, load_space

app = typer.Typer(no_args_is_help=True, help="Search spaces.")


def _folder() -> Path:
    return default_space_path().parent


@app.command("list")
def list_() -> None:
    """List the spaces in search_spaces/ with their techniques."""
    table = Table("name", "file", "techniques", "profiles")
    for path in sorted(_folder().glob("*.yaml")):
        sp = load_space(path)
        table.add_row(escape(sp.name), escape(path.name), ", ".join(t.name for t in sp.techniques),
                      escape(", ".join(sp.profiles)))  # fmt: skip
    Console().print(table)


@app.command()
def show(name: Annotated[str, typer.Argument(help="A space name (file stem) or a YAML path.")]) -> None:
    """Validate a space and print its file."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else _folder() / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in _folder().glob("*.yaml")))
        raise SpaceError(f"no search space {name!r}: the shipped ones are {known}; or give a YAML file path")
    load_space(path)  # raises with the field named when invalid
    typer.echo(path.read_text(), nl=False)
