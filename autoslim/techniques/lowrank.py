"""``factorize.lowrank``: replace Linear and Conv1d/Conv2d layers by two thinner layers from a truncated SVD.

A Linear ``in -> out`` becomes ``Linear(in -> r, no bias)`` then ``Linear(r -> out)`` with the original bias. A
convolution ``C -> O`` with kernel ``k`` is factorized through its weight reshaped to ``O x (C * prod(k))``: a
``conv(C -> r, kernel k)`` that keeps stride, padding and dilation, then a 1x1 ``conv(r -> O)`` with the bias.
The singular values are split evenly (``sqrt(S)`` into each factor) so both layers keep similar weight scales,
which a later fine-tune and quantization handle better than one factor carrying all of them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from autoslim.nn_utils import execution_order, weight_layers, weights_read_by_parent
from autoslim.techniques.per_layer import check_policy, describe_counts, perturb_one
from autoslim.techniques.registry import ApplyContext, InfeasibleError, LayerPolicy, register


@dataclass(frozen=True)
class LowRankConfig:
    rank_ratio: float | None = 0.5  # r = ceil(rank_ratio * min(rows, cols)) of the (reshaped) weight matrix
    energy: float | None = None  # or: the smallest r keeping this fraction of the squared singular values
    min_features: int = 16  # layers whose weight matrix has a side shorter than this are left alone
    skip_last: bool = True  # the output layer is usually small and the most sensitive
    # Per-layer rank ratios (see autoslim.techniques.per_layer): ``layer_ranks`` factorizes only the layers it names,
    # each at its own rank ratio (1.0: left as it is); ``policy="sensitivity"`` fills it at trial time from the
    # sensitivity table, for ``target`` (a share of the teacher's cost on ``target_profile``), among ``candidates``.
    layer_ranks: tuple[tuple[str, float], ...] = ()
    policy: Literal["uniform", "sensitivity"] = "uniform"
    target: float | None = None
    target_profile: str | None = None
    target_of: Literal["teacher", "input"] = "teacher"  # what ``target`` is a share of (per_layer.py)
    candidates: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        check_policy(self, "layer_ranks", _rank_ratio)
        if (self.rank_ratio is None) == (self.energy is None):
            raise ValueError(
                f"exactly one of rank_ratio and energy must be set, got rank_ratio={self.rank_ratio}, "
                f"energy={self.energy} (energy mode needs rank_ratio=None)"
            )
        if self.rank_ratio is not None and not 0.0 < self.rank_ratio <= 1.0:
            raise ValueError(f"rank_ratio must be in (0, 1], got {self.rank_ratio}")
        if self.energy is not None and not 0.0 < self.energy <= 1.0:
            raise ValueError(f"energy must be in (0, 1], got {self.energy}")
        if self.min_features < 1:
            raise ValueError(f"min_features must be >= 1, got {self.min_features}")


def _rank_ratio(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise ValueError(f"a rank ratio must be in (0, 1], got {value!r}")
    return float(value)


def choose_rank(singular_values: torch.Tensor, config: LowRankConfig) -> int:
    full = singular_values.numel()
    if config.rank_ratio is not None:
        return min(full, max(1, math.ceil(config.rank_ratio * full)))
    assert config.energy is not None
    power = singular_values.double().pow(2)
    kept = power.cumsum(0) / power.sum().clamp_min(1e-300)
    # A tolerance so energy=1.0 does not demand the last rounding-error sliver.
    return min(full, int((kept < config.energy - 1e-12).sum()) + 1)


def _factorize(layer: nn.Module, config: LowRankConfig) -> tuple[nn.Sequential, int] | None:
    """The factorized pair and its rank, or None when the layer should stay as it is."""
    if not isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d)):
        return None
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)) and (layer.groups != 1 or layer.padding_mode != "zeros"):
        return None  # grouped convs are already thin; other padding modes would need the pad repeated
    w = layer.weight.detach()
    matrix = w.flatten(1).double()
    rows, cols = matrix.shape
    if min(rows, cols) < config.min_features:
        return None
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    r = choose_rank(s, config)
    if r * (rows + cols) >= rows * cols:
        return None  # the pair would not be smaller
    root = s[:r].sqrt()
    first_w = (root[:, None] * vh[:r]).to(w.dtype)
    second_w = (u[:, :r] * root[None, :]).to(w.dtype)
    bias = layer.bias is not None
    first: nn.Module
    second: nn.Module
    if isinstance(layer, nn.Linear):
        first, second = nn.Linear(cols, r, bias=False), nn.Linear(r, rows, bias=bias)
        second_shape: tuple[int, ...] = (rows, r)
    else:
        conv = nn.Conv1d if isinstance(layer, nn.Conv1d) else nn.Conv2d
        first = conv(
            layer.in_channels, r, layer.kernel_size, stride=layer.stride, padding=layer.padding,  # type: ignore[arg-type]
            dilation=layer.dilation, bias=False,  # type: ignore[arg-type]
        )  # fmt: skip
        second = conv(r, layer.out_channels, 1, bias=bias)
        second_shape = (rows, r) + (1,) * (w.dim() - 2)
    first = first.to(device=w.device, dtype=w.dtype)
    second = second.to(device=w.device, dtype=w.dtype)
    with torch.no_grad():
        first.weight.copy_(first_w.reshape(first.weight.shape))
        second.weight.copy_(second_w.reshape(second_shape))
        if bias:
            second.bias.copy_(layer.bias.detach())  # type: ignore[union-attr]
    pair = nn.Sequential(first, second)
    pair.train(layer.training)
    return pair, r


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)


def _still_runs(model: nn.Module, example_inputs: Any) -> bool:
    """Other custom modules may read a child's weight too; a forward pass is the only general check."""
    try:
        execution_order(model, example_inputs)
    except (AttributeError, RuntimeError, TypeError):
        return False
    return True


def describe(c: LowRankConfig) -> str:
    if c.layer_ranks:
        return "low-rank per layer: " + describe_counts(c.layer_ranks, lambda r: "kept" if r == 1.0 else f"{r:.0%}")
    return f"low-rank {c.rank_ratio:.0%}" if c.rank_ratio is not None else f"low-rank {c.energy:.0%} energy"


def _candidates(model: nn.Module, config: LowRankConfig, ctx: ApplyContext) -> list[tuple[str, nn.Module]]:
    """The layers ``apply`` may factorize: weight layers that are not the output (with ``skip_last``) and whose
    weight the parent module does not read itself (MultiheadAttention's out_proj)."""
    skip = weights_read_by_parent(model)  # a factorized child there would break the forward pass
    last = execution_order(model, ctx.example_inputs)[-1] if config.skip_last else None
    return [(n, m) for n, m in weight_layers(model) if m is not last and n not in skip]


def _units(model: nn.Module, config: LowRankConfig, ctx: ApplyContext) -> list[str]:
    """Layers some rank would make smaller: a matrix with both sides >= ``min_features`` (a rank of 1 is the
    smallest pair, so a layer it cannot shrink is never worth a row of the table)."""
    out = []
    for name, layer in _candidates(model, config, ctx):
        if not isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d)) or not name:
            continue
        rows, cols = layer.weight.flatten(1).shape
        if min(rows, cols) >= config.min_features and rows + cols < rows * cols:
            out.append(name)
    return out


POLICY = LayerPolicy(knob="rank_ratio", layer_field="layer_ranks", candidates=(1.0, 0.5, 0.3, 0.2, 0.1),
                     perturb=perturb_one("factorize.lowrank", "layer_ranks"), units=_units,
                     neutral=1.0)  # fmt: skip


@register("factorize.lowrank", LowRankConfig, order=30, role="structural", describe=describe, layer_policy=POLICY)
def apply(model: nn.Module, config: LowRankConfig, ctx: ApplyContext) -> nn.Module:
    layers = weight_layers(model)
    if not layers:
        raise InfeasibleError("factorize.lowrank: the model has no Conv or Linear weights")
    per_layer = dict(config.layer_ranks)
    if per_layer and all(r == 1.0 for r in per_layer.values()):
        return model  # an allocation that kept every layer
    ranks: dict[str, Any] = {}
    before = after = 0
    for name, layer in _candidates(model, config, ctx):
        if per_layer and per_layer.get(name, 1.0) == 1.0:
            continue
        own = dataclasses.replace(config, rank_ratio=per_layer[name], energy=None) if per_layer else config
        made = _factorize(layer, own)
        if made is None:
            continue
        pair, r = made
        if not name:
            model = pair  # the model is a single layer
        else:
            _set_submodule(model, name, pair)
            if not _still_runs(model, ctx.example_inputs):
                _set_submodule(model, name, layer)
                continue
        weight = layer.weight
        assert isinstance(weight, torch.Tensor)
        before += weight.numel()
        after += r * (weight[0].numel() + weight.shape[0])
        ranks[name] = r
    if not ranks:
        raise InfeasibleError(
            "factorize.lowrank: no layer could be factorized into a smaller pair "
            f"(min_features={config.min_features}, skip_last={config.skip_last}, Conv groups != 1 skipped)"
        )
    ctx.notes["factorize.lowrank"] = {
        "layers": len(ranks), "ranks": ranks, "weights_before": before, "weights_after": after,
    }  # fmt: skip
    return model
