"""The ``autoslim`` command line (Typer): one short module per command, over the public API.

Every command's errors end as one line (``error: ...``) with exit code 2 for bad input and 1 for a failure;
``autoslim --debug COMMAND`` (or ``AUTOSLIM_DEBUG=1``) also prints the traceback. See :mod:`autoslim.cli.errors`.
"""

from __future__ import annotations

import warnings
from importlib import metadata
from typing import Annotated

import typer
from optuna.exceptions import ExperimentalWarning

from autoslim.cli import check as _check
from autoslim.cli import export_cmd as _export
from autoslim.cli import pick_cmd as _pick
from autoslim.cli import profiles as _profiles
from autoslim.cli import results_cmds as _results
from autoslim.cli import search as _search
from autoslim.cli import sensitivity_cmd as _sensitivity
from autoslim.cli import spaces as _spaces
from autoslim.cli.errors import AutoslimGroup, set_debug

# What `autoslim --help` says: for the person at the terminal, not for this module's readers. "\b" keeps the
# example's line breaks; rich markup is on, so a literal bracket is written "\\[".
HELP = """Shrink a trained PyTorch model for each device it ships to.

One Optuna search tries combinations of layer cuts, pruning, distillation and quantization; every trial's
accuracy is measured once and its cost priced on every hardware profile, so one search gives one Pareto front of
accuracy vs. cost per profile. Then pick a point and export it.

\b
Example:
  autoslim search --budget 50                                   # the built-in task, about 5 min on 2 cores
  autoslim search --study nightly --time-budget 8h               # as many trials as end within 8 hours
  autoslim pick results/default --profile mcu-cortex-m7 --max-accuracy-drop 0.01
  autoslim export results/default --task mnist1d-cnn --trial N --format onnx-int8 --out deploy/

Your own model: --task mypkg.tasks:my_task (imported from the current directory). Results: results/<study>/
(trials.csv, pareto_<profile>.csv/.png, report.html)."""

app = typer.Typer(no_args_is_help=True, add_completion=False, help=HELP, cls=AutoslimGroup, rich_markup_mode="rich",
                  pretty_exceptions_enable=False)  # fmt: skip


def _version(value: bool) -> None:
    if value:
        typer.echo(f"autoslim {metadata.version('autoslim')}")
        raise typer.Exit()


@app.callback()
def _options(
    ctx: typer.Context,
    debug: Annotated[
        bool,
        typer.Option("--debug", envvar="AUTOSLIM_DEBUG", help="Print the traceback of an error.", show_default="off"),
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    set_debug(ctx, debug)
    # Optuna warns on every run that TPE's `group` option (which the conditional space needs) is experimental, and
    # that `constraints_func` is deprecated: advice for code that calls Optuna (ours), noise for a CLI user.
    warnings.filterwarnings("ignore", category=ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"optuna(\.|$)")


app.command("search")(_search.search)
app.command("report")(_results.report)
app.command("pick")(_pick.pick_cmd)
app.command("compare")(_results.compare)
app.command("export")(_export.export)
app.command("check")(_check.check)
app.command("sensitivity")(_sensitivity.sensitivity)
app.add_typer(_profiles.app, name="profiles")
app.add_typer(_spaces.app, name="spaces")


def main() -> None:
    app()
