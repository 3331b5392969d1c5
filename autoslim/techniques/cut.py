"""``cut.blocks``: remove whole blocks whose input and output shapes match.

Candidates are children of ``nn.Sequential`` / ``nn.ModuleList`` that hold parameters and map a tensor to a
tensor of the same shape (residual blocks, repeated layers). Each is scored on calibration data by how much it
changes its input, ``1 - cosine(input, output)``; the least important are replaced by ``nn.Identity``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autoslim.nn_utils import call_model
from autoslim.techniques.registry import ApplyContext, InfeasibleError, register

_NOT_BLOCKS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm, nn.Dropout)


@dataclass(frozen=True)
class CutBlocksConfig:
    n_blocks: int = 1  # how many blocks to remove (used when fraction is None)
    fraction: float | None = None  # or: this fraction of the removable blocks, rounded down

    def __post_init__(self) -> None:
        if self.n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {self.n_blocks}")
        if self.fraction is not None and not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"fraction must be in [0, 1], got {self.fraction}")


def removable_blocks(model: nn.Module, example_inputs: Any) -> dict[str, float]:
    """Names of removable blocks mapped to importance (1 - cosine(in, out)) on ``example_inputs``."""
    containers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Sequential, nn.ModuleList))]
    candidates: dict[str, nn.Module] = {}
    for cname, container in containers:
        for child_name, child in container.named_children():
            if isinstance(child, (nn.Identity, *_NOT_BLOCKS)) or not any(True for _ in child.parameters()):
                continue
            candidates[f"{cname}.{child_name}" if cname else child_name] = child

    scores: dict[str, float] = {}

    def make_hook(name: str):
        def hook(_mod: nn.Module, args: tuple, out: Any) -> None:
            x = args[0] if args else None
            if not (isinstance(x, torch.Tensor) and isinstance(out, torch.Tensor)) or x.shape != out.shape:
                return
            cos = nn.functional.cosine_similarity(x.flatten(1).float(), out.flatten(1).float(), dim=1)
            scores[name] = float((1.0 - cos).mean())

        return hook

    hooks = [m.register_forward_hook(make_hook(n)) for n, m in candidates.items()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            call_model(model, example_inputs)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    # A block nested in another candidate is dropped with its parent; keep only outermost candidates.
    outer = {n: s for n, s in scores.items() if not any(n.startswith(p + ".") for p in scores if p != n)}
    return outer


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    parent._modules[child] = new  # works for Sequential and ModuleList alike


@register("cut.blocks", CutBlocksConfig, order=10)
def apply(model: nn.Module, config: CutBlocksConfig, ctx: ApplyContext) -> nn.Module:
    data = ctx.calibration_inputs if ctx.calibration_inputs is not None else ctx.example_inputs
    scores = removable_blocks(model, data)
    if not scores:
        raise InfeasibleError("cut.blocks: no block maps its input to an output of the same shape")
    k = int(config.fraction * len(scores)) if config.fraction is not None else config.n_blocks
    if k > len(scores):
        raise InfeasibleError(f"cut.blocks: asked to remove {k} blocks but only {len(scores)} are removable")
    removed = sorted(scores, key=scores.__getitem__)[:k]
    for name in removed:
        _set_submodule(model, name, nn.Identity())
    ctx.notes["cut.blocks"] = {"removed": removed, "importance": scores}
    return model
