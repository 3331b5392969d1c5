"""The commands a person runs next, printed ready to paste: `autoslim pick ...`, `autoslim export ...`."""

from __future__ import annotations

import shlex
from pathlib import Path

import pandas as pd

from autoslim.report.pick import Query
from autoslim.report.summary import export_format

EXPORT_OUT = "deploy/"


def _join(*parts: str) -> str:
    return " ".join(shlex.quote(str(p)) for p in parts)


def pick_command(study: Path | str, profile: str, query: Query) -> str:
    return _join("autoslim", "pick", str(study), "--profile", profile, *query.flags())


def export_command(study: Path | str, task: str, row: pd.Series, profile: str, *, out: str = EXPORT_OUT) -> str:
    """--trial, not the pick flags: exactly the point shown, whatever a later search adds; --profile: timed at that
    profile's batch size and checked against its front; the format report.html gives (int8 for a quantized plan,
    float ONNX otherwise: an int8 graph of a float plan would not score what the search measured)."""
    return _join("autoslim", "export", str(study), "--task", task, "--trial", str(int(row["trial"])), "--profile",
                 profile, "--format", export_format(row), "--out", out)  # fmt: skip


def study_task(settings: dict) -> str:
    """The task reference a study was searched with (printed for `export --task`, never imported here)."""
    return str(settings.get("task") or "TASK")
