"""``prune.structured``: remove whole channels / neurons with torch-pruning's dependency graph.

The result is a physically smaller model (fewer channels), so every hardware profile sees the saving.
The layer that produces the model output is never pruned, so the output shape is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch_pruning as tp
from torch import nn

from autoslim.nn_utils import execution_order
from autoslim.techniques.registry import ApplyContext, InfeasibleError, register

Importance = Literal["l1", "l2", "bn_scale"]


@dataclass(frozen=True)
class StructuredPruneConfig:
    ratio: float = 0.5  # fraction of channels removed from each prunable group
    importance: Importance = "l2"  # how channels are ranked: L1 / L2 weight magnitude or batch-norm scale
    global_pruning: bool = False  # rank channels across layers instead of per layer
    round_to: int | None = None  # keep channel counts a multiple of this (hardware alignment)

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"ratio must be in [0, 1), got {self.ratio}")
        if self.importance not in ("l1", "l2", "bn_scale"):
            raise ValueError(f"importance must be one of l1, l2, bn_scale, got {self.importance!r}")
        if self.round_to is not None and self.round_to < 1:
            raise ValueError(f"round_to must be >= 1, got {self.round_to}")


def _importance(name: Importance) -> tp.importance.Importance:
    if name == "bn_scale":
        return tp.importance.BNScaleImportance()
    return tp.importance.GroupMagnitudeImportance(p=1 if name == "l1" else 2)


@register("prune.structured", StructuredPruneConfig, order=20)
def apply(model: nn.Module, config: StructuredPruneConfig, ctx: ApplyContext) -> nn.Module:
    if config.ratio == 0.0:
        return model
    order = execution_order(model, ctx.example_inputs)
    if not order:
        raise InfeasibleError("prune.structured: the model has no Conv or Linear layer to prune")
    before = sum(p.numel() for p in model.parameters())
    try:
        pruner = tp.pruner.BasePruner(
            model,
            ctx.example_inputs,
            importance=_importance(config.importance),
            pruning_ratio=config.ratio,
            global_pruning=config.global_pruning,
            ignored_layers=[order[-1]],  # the output layer keeps its width: output shape is part of the contract
            round_to=config.round_to,
        )
        pruner.step()
    except Exception as exc:  # torch-pruning raises many types on graphs it cannot trace
        raise InfeasibleError(f"prune.structured: torch-pruning could not prune this graph: {exc!r}") from exc
    after = sum(p.numel() for p in model.parameters())
    if after >= before:
        raise InfeasibleError("prune.structured: no channel could be removed (all layers coupled to the output)")
    ctx.notes["prune.structured"] = {"params_before": before, "params_after": after}
    return model
