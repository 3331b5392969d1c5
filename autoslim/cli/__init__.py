"""The ``autoslim`` command line: thin Typer commands over the public API."""

from __future__ import annotations

import typer

from autoslim.cli import profiles as _profiles
from autoslim.cli import search as _search

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
app.command("search")(_search.search)
app.add_typer(_profiles.app, name="profiles")


def main() -> None:
    app()
