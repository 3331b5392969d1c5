"""``autoslim export``: rebuild a trial's model from its saved plan, check it, write a deployable artifact, and say
what it weighs on disk and how fast it runs here, beside the teacher exported the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from autoslim.cli.errors import print_warning
from autoslim.cli.options import NO_LIMIT, Format, above_zero, at_least_zero
from autoslim.cli.text import versus
from autoslim.export import export_trial
from autoslim.report import units
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
    fmt: Annotated[Format, typer.Option("--format", help="The artifact to write.")] = Format.onnx_int8,
    trial: Annotated[
        int | None, typer.Option(min=0, help="The trial number to export.", show_default="pick by --profile")
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            help="Pick a front point of this profile (with a pick limit), or, with --trial, time at its batch size "
            "and check that front.",
            show_default="none: batch 1",
        ),
    ] = None,
    max_accuracy_drop: Annotated[
        float | None,
        typer.Option(callback=at_least_zero, help="Pick: vs. the baseline, 0.01 = 1 pp.", show_default=NO_LIMIT),
    ] = None,
    min_accuracy: Annotated[float | None, typer.Option(help="Pick: e.g. 0.98", show_default=NO_LIMIT)] = None,
    max_latency_ms: Annotated[
        float | None, typer.Option(callback=above_zero, help="Pick: on --profile.", show_default=NO_LIMIT)
    ] = None,
    max_bytes: Annotated[
        float | None, typer.Option(callback=above_zero, help="Pick: on --profile.", show_default=NO_LIMIT)
    ] = None,
    measure: Annotated[
        bool, typer.Option(help="Time the artifact and the teacher exported the same way on this machine.")
    ] = True,
) -> None:
    """Rebuild a trial (by number, or picked from a profile's front) on --task, check that it reproduces the
    recorded accuracy, and write the artifact plus manifest.json: its size on disk and its latency here.

    Exit code 1 when the rebuild or the artifact does not reproduce the trial.
    """
    query = Query(max_accuracy_drop, min_accuracy, max_latency_ms, max_bytes)
    done = export_trial(study, task=task, fmt=fmt.value, out=out, trial=trial, profile=profile, query=query,
                        measure=measure)  # fmt: skip
    for warning in done.warnings:
        print_warning(warning)
    m = done.manifest
    asked = m["requested_format"]
    note = f" (asked for {asked}: 8-bit activations need the int8 graph)" if m["format"] != asked else ""
    lines = [
        f"trial {m['trial']}: {m['plan_words']}",
        f"  {m['format']}{note} → {done.artifact}",
        f"  accuracy recorded {m['recorded_accuracy']:.4%} · rebuilt {m['reevaluated_accuracy']:.4%} · "
        f"artifact {m['artifact_accuracy']:.4%}",
        *measured_lines(m),
        f"  manifest: {done.manifest_path}",
    ]
    Console().print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


def measured_lines(m: dict[str, Any]) -> list[str]:
    """Size on disk and latency here, each beside the teacher exported the same way."""
    size = f"  on disk {units.size(m['artifact_bytes'])} ({m['artifact_bytes']:,} B)"
    x = m.get("measured")
    if not x:
        return [size]
    t = x["timing"]
    latency = f"  latency here {units.duration_ms(x['latency_ms'])} per batch of {t['batch']}"
    how = f"  (median of {t['runs']} runs, {t['threads']} thread, {t['runtime']}, on {x['machine']['cpu']})"
    base = x.get("baseline")
    if base:
        smaller = versus(base["artifact_bytes"], m["artifact_bytes"], "model_bytes")
        faster = versus(base["latency_ms"], x["latency_ms"], "latency_ms")
        size += f"; the teacher exported the same way: {units.size(base['artifact_bytes'])} ({smaller})"
        latency += f"; the teacher: {units.duration_ms(base['latency_ms'])} ({faster})"
    return [size, latency, how]
