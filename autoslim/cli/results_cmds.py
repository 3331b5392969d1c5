"""``autoslim report | compare``: read finished study folders (read-only, nothing unpickled)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from autoslim.cli.errors import print_warning
from autoslim.report.compare import compare_studies, study_differences
from autoslim.report.html import write_html
from autoslim.report.results import open_results


class StudiesDiffer(ValueError):
    """Two studies of other tasks or spaces: their fronts do not measure the same thing."""


def report(study: Annotated[Path, typer.Argument(help="A study folder, e.g. results/default.")]) -> None:
    """Rebuild RESULTS/<study>/report.html (self-contained: plots, fronts, failures, settings)."""
    typer.echo(write_html(open_results(study)))


def compare(
    before: Annotated[Path, typer.Argument(help="The earlier study folder (e.g. last night).")],
    after: Annotated[Path, typer.Argument(help="The later study folder (e.g. tonight).")],
    tolerance: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Allowed relative hypervolume loss per profile.")
    ] = 0.02,
    allow_different: Annotated[
        bool, typer.Option(help="Compare studies of other tasks or spaces anyway (with a warning).")
    ] = False,
) -> None:
    """Per-profile hypervolume and front changes; exit code 1 when a front regressed beyond the tolerance."""
    a, b = open_results(before), open_results(after)
    differences = study_differences(a, b)
    if differences:
        text = f"{before} and {after} are not the same search ({'; '.join(differences)}): their fronts do not compare"
        if not allow_different:
            raise StudiesDiffer(f"{text}. Pass --allow-different to compare them anyway")
        print_warning(f"{text}; compared anyway (--allow-different)")
    table, regressed = compare_studies(a, b, tolerance=tolerance)
    console = Console()
    console.print(table)
    if regressed:
        console.print(f"[red]regressed:[/red] {escape(', '.join(regressed))}")
        raise typer.Exit(1)
