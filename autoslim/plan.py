"""CompressionPlan: the ordered technique steps of one trial; round-trips to JSON.

Steps always run in the canonical order (cut -> structured prune -> low-rank -> unstructured prune / sharing ->
distill -> quantize): structural changes first, then the distillation fine-tune that recovers them (masks keep
pruned zeros at zero through it), then quantization so the deployed numerics are the ones measured.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from autoslim.techniques import get_technique
from autoslim.techniques.per_layer import describe_counts


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
    def from_params(cls, steps: dict[str, dict[str, Any]]) -> CompressionPlan:
        """Build from ``{technique: {field: value}}``; validates every config and sorts into canonical order."""
        built = [Step(name, get_technique(name).make_config(dict(params))) for name, params in steps.items()]
        built.sort(key=lambda s: get_technique(s.technique).order)
        return cls(tuple(built))

    def to_dict(self) -> dict[str, Any]:
        return {"steps": [s.to_dict() for s in self.steps]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompressionPlan:
        return cls.from_params({s["technique"]: s["config"] for s in data["steps"]})

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
    text = _describe_config(step)
    c = step.config
    if getattr(c, "policy", "uniform") == "sensitivity":
        text += f" (per layer, {c.target:.0%} of cost on {c.target_profile})" if c.target else " (per layer)"
    return text


def _describe_config(step: Step) -> str:
    c = step.config
    name = step.technique
    if name == "cut.blocks":
        return f"cut {c.fraction:.0%} of blocks" if c.fraction is not None else f"cut {c.n_blocks} block(s)"
    if name == "prune.structured":
        return f"prune {c.ratio:.0%} channels ({c.importance})"
    if name == "prune.unstructured":
        if c.layer_amounts:
            return "zero weights per layer: " + describe_counts(c.layer_amounts, lambda a: f"{a:.0%}")
        if c.pattern is not None:
            return f"{c.pattern} sparsity"
        if c.threshold is not None:
            return f"zero |w| < {c.threshold:.3g}"
        return f"zero {c.amount:.0%} weights ({c.scope})"
    if name == "factorize.lowrank":
        return f"low-rank {c.rank_ratio:.0%}" if c.rank_ratio is not None else f"low-rank {c.energy:.0%} energy"
    if name == "share.weights":
        return f"share {2**c.bits} clusters" + (" + huffman" if c.huffman else "")
    if name == "distill.kd":
        more = f"(+{c.epochs_per_removed:g}×removed)" if c.epochs_per_removed else ""
        return f"KD {c.epochs}{more} ep lr {c.lr:.1g} T{c.temperature:.1f}"
    if name == "quantize":
        act = f"/a{c.act_bits}" if c.act_bits else ""
        if c.layer_bits:
            return describe_counts(c.layer_bits, lambda b: f"w{b}") + (f", a{c.act_bits}" if c.act_bits else "")
        return f"w{c.weight_bits}{act}"
    fields = ", ".join(f"{k}={v}" for k, v in asdict(c).items())
    return f"{name}({fields})"
