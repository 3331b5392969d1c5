"""What `export` checks before and beside its work: the runtime a format needs (before minutes of rebuilding), the
space's constraints the trial breaks, and whether the trial is on a front at all."""

from __future__ import annotations

import importlib.util
from typing import Any

from autoslim.report.results import StudyResults

RUNTIMES = {"onnx": ("onnx", "onnxruntime"), "onnx-int8": ("onnx", "onnxruntime")}  # format -> modules it needs


class MissingRuntimeError(ImportError):
    """A format's runtime is not installed (bad set-up, exit code 2); the message is the one-line fix."""


def require_runtime(fmt: str) -> None:
    """Refuse a format whose runtime is missing, with the install command (torch's own error comes only after the
    rebuild, as a traceback ending in "Module onnx is not installed!")."""
    missing = [m for m in RUNTIMES.get(fmt, ()) if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingRuntimeError(
            f"--format {fmt} needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
            f"installed here: pip install {' '.join(missing)} (autoslim's own install brings them)"
        )


def _constraint_labels(saved: dict[str, Any] | None) -> list[str]:
    """Names of the values a trial's ``constraints`` attr holds, in the order Constraints.violations makes them."""
    saved = saved or {}
    labels = []
    if saved.get("max_accuracy_drop") is not None:
        labels.append(f"max_accuracy_drop {saved['max_accuracy_drop']}")
    if saved.get("min_accuracy") is not None:
        labels.append(f"min_accuracy {saved['min_accuracy']}")
    for key in ("max_model_bytes", "max_latency_ms"):
        labels += [f"{key} {limit} on {profile}" for profile, limit in saved.get(key) or ()]
    return labels


def violations(results: StudyResults, attrs: dict[str, Any]) -> list[dict[str, Any]]:
    values = list(attrs.get("constraints") or [])
    labels = _constraint_labels(results.study.user_attrs.get("constraints"))
    labels += [f"constraint {i}" for i in range(len(labels), len(values))]
    return [{"constraint": label, "violation": v} for label, v in zip(labels, values, strict=False) if v > 0]


def placement_warnings(results: StudyResults, number: int, attrs: dict[str, Any], profile: str | None) -> list[str]:
    """A trial that breaks the space's constraints, or that no front holds: exporting it is allowed, but a
    cheaper-and-as-accurate point exists (or the space said no), so say so."""
    broken = violations(results, attrs)
    if broken:
        names = "; ".join(v["constraint"] for v in broken)
        return [f"trial {number} violates the space's constraints ({names}): it is on no front"]
    profiles = [profile] if profile is not None else [p.name for p in results.profiles]
    fronts = [results.front(name) for name in profiles]
    if any(len(front) and number in set(front["trial"].astype(int)) for front in fronts):
        return []
    where = f"the {profile} front" if profile is not None else "any profile's front"
    hint = f"`autoslim pick {results.folder} --profile {profile or 'P'} --max-accuracy-drop 0.01` chooses from a front"
    return [f"trial {number} is not on {where}: another trial is as accurate and cheaper ({hint})"]
