"""``prune.unstructured``: zero the smallest-magnitude weights, globally or per layer.

The zero pattern is kept as a non-persistent buffer ``autoslim_weight_mask`` and re-applied after every
optimizer step of a later fine-tune (:func:`enforce_masks`), so zeros stay zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from autoslim.nn_utils import weight_layers
from autoslim.techniques.registry import ApplyContext, InfeasibleError, register

MASK = "autoslim_weight_mask"


@dataclass(frozen=True)
class UnstructuredPruneConfig:
    amount: float = 0.5  # fraction of weights set to zero
    scope: Literal["global", "layer"] = "global"  # one magnitude ranking across layers, or one per layer

    def __post_init__(self) -> None:
        if not 0.0 <= self.amount < 1.0:
            raise ValueError(f"amount must be in [0, 1), got {self.amount}")
        if self.scope not in ("global", "layer"):
            raise ValueError(f"scope must be 'global' or 'layer', got {self.scope!r}")


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


@register("prune.unstructured", UnstructuredPruneConfig, order=40)
def apply(model: nn.Module, config: UnstructuredPruneConfig, ctx: ApplyContext) -> nn.Module:
    layers = weight_layers(model)
    if not layers:
        raise InfeasibleError("prune.unstructured: the model has no Conv or Linear weights")
    if config.amount == 0.0:
        return model
    with torch.no_grad():
        if config.scope == "global":
            threshold = _kth_smallest(torch.cat([m.weight.abs().flatten() for _, m in layers]), config.amount)
        for _, m in layers:
            w = m.weight
            t = threshold if config.scope == "global" else _kth_smallest(w.abs().flatten(), config.amount)
            mask = (w.abs() > t).to(w.dtype)
            old = getattr(m, MASK, None)
            if old is not None:
                mask = mask * old
            if MASK in m._buffers:
                m._buffers[MASK] = mask
            else:
                m.register_buffer(MASK, mask, persistent=False)
            w.mul_(mask)
    total = sum(m.weight.numel() for _, m in layers)
    zeros = sum(m.weight.numel() - int(torch.count_nonzero(m.weight)) for _, m in layers)
    ctx.notes["prune.unstructured"] = {"sparsity": zeros / total}
    return model
