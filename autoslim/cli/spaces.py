"""``autoslim spaces list | show``: the search spaces shipped in search_spaces/."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autoslim.cli.options import resolve_space
from autoslim.safe_io import UnsafePathError
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
def show(
    name: Annotated[str, typer.Argument(help="A shipped space's name (as --space takes) or a YAML path.")],
) -> None:
    """Validate a space and print its file."""
    try:
        path = resolve_space(name)  # the same names and paths `search --space` accepts
    except UnsafePathError as exc:
        raise SpaceError(str(exc)) from None
    load_space(path)  # raises with the field named when invalid
    typer.echo(path.read_text(), nl=False)
