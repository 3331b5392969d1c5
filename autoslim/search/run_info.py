"""What a search call was run with, stored as the study's ``run`` attribute for the report's settings table.

Kept apart from the ``autoslim`` attribute (task, space, profiles, objectives), which a resumed run must match:
these settings may differ between the runs of one study (``--budget 60`` tops up, another ``--workers``), so the
attribute holds the latest run's, plus the wall time of every run so far."""

from __future__ import annotations

import platform
import re
from collections.abc import Mapping
from typing import Any

from autoslim.versions import installed_versions

PACKAGES = ("autoslim", "torch", "optuna", "torch-pruning", "numpy", "pandas", "plotly", "onnxruntime", "ray")
_PASSWORD = re.compile(r"(://[^:/@]+):[^@]*@")


def versions() -> dict[str, str]:
    """Python and the installed versions of the packages a result depends on (those not installed are left out)."""
    return {"python": platform.python_version(), **installed_versions(PACKAGES)}


def redact(url: str | None) -> str | None:
    """A storage URL without its password (the report is a file people pass around)."""
    return None if url is None else _PASSWORD.sub(r"\1:***@", url)


def run_record(settings: Mapping[str, Any], previous: object, *, wall_s: float | None = None) -> dict[str, Any]:
    """The ``run`` attribute: this call's ``settings``, library versions, its wall time once known and the sum
    over this study's runs (``previous`` is the attribute as stored before this call, or anything else)."""
    before = previous if isinstance(previous, dict) else {}
    earlier = float(before.get("wall_s_runs_before", 0.0)) + float(before.get("wall_s", 0.0) or 0.0)
    if before.get("open"):  # the previous record is this call's own opening one: do not count it twice
        earlier = float(before.get("wall_s_runs_before", 0.0))
    record = {**settings, "versions": versions(), "wall_s_runs_before": earlier, "open": wall_s is None}
    if "storage" in record:
        record["storage"] = redact(record["storage"]) or "journal (study.journal in the study folder)"
    if wall_s is not None:
        record["wall_s"] = wall_s
        record["wall_s_all_runs"] = earlier + wall_s
    return record
