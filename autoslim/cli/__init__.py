"""The ``autoslim`` command line: thin Typer commands over the public API.

Every command's errors end as one line (``error: ...``) with exit code 2 for bad input and 1 for a failure;
``autoslim --debug COMMAND`` (or ``AUTOSLIM_DEBUG=1``) also prints the traceback. See :mod:`autoslim.cli.errors`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from autoslim.cli import check as _check
from autoslim.cli import export_cmd as _export
from autoslim.cli import profiles as _profiles
from autoslim.cli import results_cmds as _results
from autoslim.cli import search as _search
from autoslim.cli import sensitivity_cmd as _sensitivity
from autoslim.cli import spaces as _spaces
from autoslim.cli.errors import AutoslimGroup, set_debug

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__, cls=AutoslimGroup,
                  pretty_exceptions_enable=False)  # fmt: skip


@app.callback()
def _options(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", envvar="AUTOSLIM_DEBUG", help="Print the traceback of an error.")
    ] = False,
) -> None:
    set_debug(ctx, debug)


app.command("search")(_search.search)
app.command("report")(_results.report)
app.command("pick")(_results.pick_cmd)
app.command("compare")(_results.compare)
app.command("export")(_export.export)
app.command("check")(_check.check)
app.command("sensitivity")(_sensitivity.sensitivity)
app.add_typer(_profiles.app, name="profiles")
app.add_typer(_spaces.app, name="spaces")


def main() -> None:
    app()
