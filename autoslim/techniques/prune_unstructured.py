"""``prune.unstructured``: zero the smallest-magnitude weights, globally or per layer, below a threshold, or in an
N:M semi-structured pattern.

Modes (the first that is set wins): ``layer_amounts`` prunes each named layer by its own magnitude ranking (a
per-layer policy's outcome); ``pattern="2:4"`` keeps the N largest of every M consecutive weights along
the input dimension (the layout sparse tensor cores accelerate); ``threshold`` zeros every ``|w| < threshold``;
otherwise ``amount`` zeros that fraction by magnitude rank.

The zero pattern is kept as a non-persistent buffer ``autoslim_weight_mask`` and re-applied after every
optimizer step of a later fine-tune (:func:`enforce_masks`), so zeros stay zero.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from autoslim.cost.layers import LayerStats
from autoslim.nn_utils import WeightLayer, weight_layers
from autoslim.techniques.per_layer import check_policy, describe_counts
from autoslim.techniques.registry import ApplyContext, InfeasibleError, LayerPolicy, register

MASK = "autoslim_weight_mask"
_PATTERN = re.compile(r"^(\d+):(\d+)$")


@dataclass(frozen=True)
class UnstructuredPruneConfig:
    amount: float = 0.5  # fraction of weights set to zero (ignored when threshold or pattern is set)
    scope: Literal["global", "layer"] = "global"  # one magnitude ranking across layers, or one per layer
    threshold: float | None = None  # zero every weight with |w| < threshold
    pattern: str | None = None  # "N:M": keep the N largest of every M consecutive input weights, e.g. "2:4"
    # Per-layer amounts (see autoslim.techniques.per_layer): when set, each named layer loses that share of its own
    # weights by magnitude and every other layer is left dense; ``policy="sensitivity"`` fills it at trial time.
    layer_amounts: tuple[tuple[str, float], ...] = ()
    policy: Literal["uniform", "sensitivity"] = "uniform"
    target: float | None = None
    target_profile: str | None = None
    target_of: Literal["teacher", "input"] = "teacher"  # what ``target`` is a share of (per_layer.py)
    candidates: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        check_policy(self, "layer_amounts", _amount)
        if not 0.0 <= self.amount < 1.0:
            raise ValueError(f"amount must be in [0, 1), got {self.amount}")
        if self.scope not in ("global", "layer"):
            raise ValueError(f"scope must be 'global' or 'layer', got {self.scope!r}")
        if self.threshold is not None and not (math.isfinite(self.threshold) and self.threshold > 0):
            raise ValueError(f"threshold must be a finite number > 0, got {self.threshold}")
        if self.pattern is not None:
            parse_pattern(self.pattern)
            if self.threshold is not None:
                raise ValueError("pattern and threshold are exclusive: set one of them")


def _amount(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"a layer's amount must be in [0, 1), got {value!r}")
    return float(value)


def parse_pattern(pattern: str) -> tuple[int, int]:
    """``"2:4"`` -> ``(2, 4)``; a malformed pattern raises a ValueError naming the field."""
    match = _PATTERN.match(pattern) if isinstance(pattern, str) else None
    if match is None:
        raise ValueError(f"pattern must look like 'N:M' (e.g. '2:4'), got {pattern!r}")
    n, m = int(match.group(1)), int(match.group(2))
    if not 1 <= n < m:
        raise ValueError(f"pattern 'N:M' needs 1 <= N < M, got {pattern!r}")
    return n, m


def enforce_masks(model: nn.Module) -> None:
    """Multiply each masked weight by its mask (call after an optimizer step)."""
    with torch.no_grad():
        for m in model.modules():
            mask = getattr(m, MASK, None)
            weight = getattr(m, "weight", None)
            if isinstance(mask, torch.Tensor) and isinstance(weight, torch.Tensor):
                weight.mul_(mask)


def _kth_smallest(values: torch.Tensor, fraction: float) -> float:
    k = int(fraction * values.numel())
    return float(values.kthvalue(k).values) if k > 0 else -1.0


def nm_mask(w: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the ``n`` largest |w| of every ``m`` consecutive weights of each row of ``w.flatten(1)``.

    A convolution's row runs over input channels and kernel taps in memory order, the GEMM K dimension that
    sparse kernels group (and the one the cost model checks).
    """
    groups = w.detach().abs().flatten(1).reshape(w.shape[0], -1, m)
    keep = groups.topk(n, dim=-1).indices  # ties resolved by position: deterministic
    mask = torch.zeros_like(groups).scatter_(-1, keep, 1.0)
    return mask.reshape(w.shape).to(w.dtype)


def _set_mask(layer: WeightLayer, mask: torch.Tensor) -> None:
    old = getattr(layer, MASK, None)
    if old is not None:
        mask = mask * old
    if MASK in layer._buffers:
        layer._buffers[MASK] = mask
    else:
        layer.register_buffer(MASK, mask, persistent=False)
    layer.weight.mul_(mask)


def _masks(layers: list[tuple[str, WeightLayer]], config: UnstructuredPruneConfig, notes: dict) -> list[tuple]:
    """(layer, mask) for every layer this config prunes."""
    if config.layer_amounts:
        per_layer = dict(config.layer_amounts)
        return [(lay, _magnitude_mask(lay, per_layer[name])) for name, lay in layers if per_layer.get(name, 0.0) > 0]
    if config.pattern is not None:
        n, m = parse_pattern(config.pattern)
        ok = [(name, lay) for name, lay in layers if lay.weight[0].numel() % m == 0]
        notes["pattern_layers"] = len(ok)
        notes["skipped"] = [name for name, lay in layers if lay.weight[0].numel() % m != 0]
        return [(lay, nm_mask(lay.weight, n, m)) for _, lay in ok]
    if config.threshold is not None:
        return [(lay, (lay.weight.abs() >= config.threshold).to(lay.weight.dtype)) for _, lay in layers]
    if config.scope == "global":
        t = _kth_smallest(torch.cat([lay.weight.abs().flatten() for _, lay in layers]), config.amount)
        return [(lay, (lay.weight.abs() > t).to(lay.weight.dtype)) for _, lay in layers]
    return [(lay, _magnitude_mask(lay, config.amount)) for _, lay in layers]


def _magnitude_mask(layer: nn.Module, amount: float) -> torch.Tensor:
    weight = layer.weight
    assert isinstance(weight, torch.Tensor)
    return (weight.abs() > _kth_smallest(weight.abs().flatten(), amount)).to(weight.dtype)


def _perturb(model: nn.Module, layer: str, amount: float, _config: UnstructuredPruneConfig, _ctx: ApplyContext) -> None:
    m = model.get_submodule(layer)
    weight = m.weight
    assert isinstance(weight, torch.Tensor)
    if amount > 0:
        with torch.no_grad():
            weight.mul_(_magnitude_mask(m, amount))


def _restat(stats: LayerStats, amount: float, _config: UnstructuredPruneConfig) -> LayerStats:
    kept = min(stats.weight_nonzero, stats.weight_numel - int(amount * stats.weight_numel))
    return dataclasses.replace(stats, weight_nonzero=kept)


POLICY = LayerPolicy(knob="amount", layer_field="layer_amounts", candidates=(0.0, 0.3, 0.5, 0.7, 0.8, 0.9),
                     perturb=_perturb, restat=_restat, neutral=0.0)  # fmt: skip


def describe(c: UnstructuredPruneConfig) -> str:
    if c.layer_amounts:
        return "zero weights per layer: " + describe_counts(c.layer_amounts, lambda a: f"{a:.0%}")
    if c.pattern is not None:
        return f"{c.pattern} sparsity"
    if c.threshold is not None:
        return f"zero |w| < {c.threshold:.3g}"
    return f"zero {c.amount:.0%} weights ({c.scope})"


@register("prune.unstructured", UnstructuredPruneConfig, order=40, layer_policy=POLICY, role="structural",
          describe=describe)  # fmt: skip
def apply(model: nn.Module, config: UnstructuredPruneConfig, ctx: ApplyContext) -> nn.Module:
    layers = weight_layers(model)
    if not layers:
        raise InfeasibleError("prune.unstructured: the model has no Conv or Linear weights")
    # A per-layer allocation may give every layer 0 (the model is already under its target): nothing to prune.
    nothing = not any(a for _, a in config.layer_amounts) if config.layer_amounts else config.amount == 0.0
    if nothing and config.threshold is None and config.pattern is None:
        return model
    notes: dict = {}
    with torch.no_grad():
        masks = _masks(layers, config, notes)
        if not masks:
            raise InfeasibleError(
                f"prune.unstructured: no layer's input dimension is divisible by M for pattern {config.pattern!r}"
            )
        for layer, mask in masks:
            _set_mask(layer, mask)
    total = sum(m.weight.numel() for _, m in layers)
    zeros = sum(m.weight.numel() - int(torch.count_nonzero(m.weight)) for _, m in layers)
    ctx.notes["prune.unstructured"] = {"sparsity": zeros / total, **notes}
    return model
