"""``autoslim export``: rebuild a trial's model from its saved plan, check it, write a deployable artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from autoslim.export import FORMATS, ExportError, export_trial
from autoslim.report.pick import Query


def export(
    study: Annotated[Path, typer.Argument(help="A study folder, e.g. results/default.")],
    out: Annotated[Path, typer.Option(help="Folder for the artifact and manifest.json.")],
    fmt: Annotated[str, typer.Option("--format", help=f"One of {', '.join(FORMATS)}.")] = "onnx-int8",
    trial: Annotated[int | None, typer.Option(help="The trial number to export.")] = None,
    profile: Annotated[str | None, typer.Option(help="Or pick a front point of this profile (see `pick`).")] = None,
    max_accuracy_drop: Annotated[float | None, typer.Option(help="Pick: vs. the baseline, 0.01 = 1 pp.")] = None,
    min_accuracy: Annotated[float | None, typer.Option(help="Pick: e.g. 0.98")] = None,
    max_latency_ms: Annotated[float | None, typer.Option(help="Pick: on --profile.")] = None,
    max_bytes: Annotated[float | None, typer.Option(help="Pick: on --profile.")] = None,
) -> None:
    """Rebuild a trial (by number, or picked from a profile's front), check that it reproduces the recorded
    accuracy, and write the artifact plus manifest.json. Exit code 1 when it does not."""
    console = Console()
    query = Query(max_accuracy_drop, min_accuracy, max_latency_ms, max_bytes)
    try:
        done = export_trial(study, fmt=fmt, out=out, trial=trial, profile=profile, query=query)
    except (ExportError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    m = done.manifest
    note = f" (asked for {m['requested_format']}: 8-bit activations need the int8 graph)" if m["format"] != fmt else ""
    lines = [
        f"trial {m['trial']}: {m['plan_words']}",
        f"  {m['format']}{note} → {done.artifact}",
        f"  accuracy recorded {m['recorded_accuracy']:.4%} · rebuilt {m['reevaluated_accuracy']:.4%} · "
        f"artifact {m['artifact_accuracy']:.4%}",
        f"  manifest: {done.manifest_path}",
    ]
    console.print("\n".join(lines), highlight=False)
