"""``autoslim export``: rebuild a trial's model from its saved plan, check it, write a deployable artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from autoslim.cli.errors import print_warning
from autoslim.cli.options import above_zero, at_least_zero, one_of
from autoslim.export import FORMATS, export_trial
from autoslim.report.pick import Query


def export(
    study: Annotated[Path, typer.Argument(help="A study folder, e.g. results/default.")],
    out: Annotated[Path, typer.Option(help="Folder for the artifact and manifest.json.")],
    task: Annotated[
        str,
        typer.Option(
            help="The task to rebuild on (built-in name or 'module:attr'), as given to `search`; checked "
            "against the study. A study never chooses the code that runs."
        ),
    ],
    fmt: Annotated[
        str, typer.Option("--format", callback=one_of(FORMATS), help=f"One of {', '.join(FORMATS)}.")
    ] = "onnx-int8",
    trial: Annotated[int | None, typer.Option(min=0, help="The trial number to export.")] = None,
    profile: Annotated[str | None, typer.Option(help="Or pick a front point of this profile (see `pick`).")] = None,
    max_accuracy_drop: Annotated[
        float | None, typer.Option(callback=at_least_zero, help="Pick: vs. the baseline, 0.01 = 1 pp.")
    ] = None,
    min_accuracy: Annotated[float | None, typer.Option(help="Pick: e.g. 0.98")] = None,
    max_latency_ms: Annotated[float | None, typer.Option(callback=above_zero, help="Pick: on --profile.")] = None,
    max_bytes: Annotated[float | None, typer.Option(callback=above_zero, help="Pick: on --profile.")] = None,
) -> None:
    """Rebuild a trial (by number, or picked from a profile's front) on --task, check that it reproduces the
    recorded accuracy, and write the artifact plus manifest.json. Exit code 1 when it does not."""
    query = Query(max_accuracy_drop, min_accuracy, max_latency_ms, max_bytes)
    done = export_trial(study, task=task, fmt=fmt, out=out, trial=trial, profile=profile, query=query)
    for warning in done.warnings:
        print_warning(warning)
    m = done.manifest
    note = f" (asked for {m['requested_format']}: 8-bit activations need the int8 graph)" if m["format"] != fmt else ""
    lines = [
        f"trial {m['trial']}: {m['plan_words']}",
        f"  {m['format']}{note} → {done.artifact}",
        f"  accuracy recorded {m['recorded_accuracy']:.4%} · rebuilt {m['reevaluated_accuracy']:.4%} · "
        f"artifact {m['artifact_accuracy']:.4%}",
        f"  manifest: {done.manifest_path}",
    ]
    Console().print("\n".join(lines), markup=False, highlight=False)
