"""CompressionPlan: the ordered technique steps of one trial; round-trips to JSON.

A plan is an ordered list of steps, and a technique may appear more than once (prune -> KD -> prune -> KD). A plan
built from ``{technique: params}`` (what a search space samples) is put in the canonical order of the techniques'
``order`` (cut -> structured prune -> low-rank -> unstructured prune / sharing -> distill -> quantize): structural
changes first, then the distillation fine-tune that recovers them (masks keep pruned zeros at zero through it),
then quantization so the deployed numerics are the ones measured. A plan built from a list of steps, or read back
from JSON, runs in the order given.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from autoslim.techniques import get_technique


@dataclass(frozen=True)
class Step:
    technique: str
    config: Any  # the technique's frozen config dataclass

    def to_dict(self) -> dict[str, Any]:
        # Through JSON, so per-layer tuples read as the lists a saved plan gives back: to_dict() == from JSON.
        return {"technique": self.technique, "config": json.loads(json.dumps(asdict(self.config)))}


@dataclass(frozen=True)
class CompressionPlan:
    steps: tuple[Step, ...] = ()

    @classmethod
    def from_params(cls, steps: Mapping[str, Mapping[str, Any]]) -> CompressionPlan:
        """Build from ``{technique: {field: value}}``; validates every config and sorts into canonical order."""
        built = cls.from_steps(steps.items()).steps
        return cls(tuple(sorted(built, key=lambda s: get_technique(s.technique).order)))

    @classmethod
    def from_steps(cls, steps: Iterable[tuple[str, Mapping[str, Any]]]) -> CompressionPlan:
        """Build from ``[(technique, {field: value}), ...]`` in the order given, repeats kept::

        CompressionPlan.from_steps([("prune.structured", {"ratio": 0.3}), ("distill.kd", {}),
                                    ("prune.structured", {"ratio": 0.3}), ("distill.kd", {})])
        """
        return cls(tuple(Step(name, get_technique(name).make_config(dict(params))) for name, params in steps))

    def to_dict(self) -> dict[str, Any]:
        return {"steps": [s.to_dict() for s in self.steps]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompressionPlan:
        """The plan :meth:`to_dict` wrote: its steps in their saved order, repeats kept."""
        return cls.from_steps((s["technique"], s["config"]) for s in data["steps"])

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CompressionPlan:
        return cls.from_dict(json.loads(text))

    @property
    def is_baseline(self) -> bool:
        return not self.steps

    def describe(self) -> str:
        """The plan in words, e.g. ``cut 1 block → prune 50% channels (l2) → KD 3 ep → int4 weights``."""
        return " → ".join(_describe_step(s) for s in self.steps) or "baseline (uncompressed)"


def _describe_step(step: Step) -> str:
    tech = get_technique(step.technique)
    c = step.config
    # The per-layer policy fields are shared by every technique that takes them (autoslim.techniques.per_layer).
    if getattr(c, "policy", "uniform") != "sensitivity":
        return tech.describe(c)
    of = "its input's cost" if getattr(c, "target_of", "teacher") == "input" else "cost"
    where = f"{c.target:.0%} of {of} on {c.target_profile}" if c.target else ""
    policy = tech.layer_policy
    if policy is not None and not getattr(c, policy.layer_field):
        # Not allocated yet (a trial that stopped or failed before the step ran): the uniform knob's default in
        # the config was never used, so say what was asked, not "zero 50% weights".
        return f"{step.technique} per layer" + (f", to {where}" if where else "") + " (not allocated)"
    return tech.describe(c) + (f" (per layer, {where})" if where else " (per layer)")
