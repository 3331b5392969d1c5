"""The ``autoslim`` command line: thin Typer commands over the public API."""

from __future__ import annotations

import typer

from autoslim.cli import check as _check
from autoslim.cli import export_cmd as _export
from autoslim.cli import profiles as _profiles
from autoslim.cli import results_cmds as _results
from autoslim.cli import search as _search
from autoslim.cli import spaces as _spaces

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
app.command("search")(_search.search)
app.command("report")(_results.report)
app.command("pick")(_results.pick_cmd)
app.command("compare")(_results.compare)
app.command("export")(_export.export)
app.command("check")(_check.check)
app.add_typer(_profiles.app, name="profiles")
app.add_typer(_spaces.app, name="spaces")


def main() -> None:
    app()
