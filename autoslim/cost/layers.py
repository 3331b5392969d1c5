"""Per-layer facts a cost model needs, read off a real forward pass of the (compressed) model.

Batch norm is assumed folded into the preceding convolution and activations fused, as every deployment
runtime does; so the priced layers are the Conv and Linear layers that remain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autoslim.nn_utils import batch_size_of, call_model, weight_layers


@dataclass(frozen=True)
class LayerStats:
    name: str
    kind: str  # "linear", "conv1d", "conv2d" or "conv3d": kernel families run at different rates
    in_channels: int
    out_channels: int
    groups: int
    macs: int  # multiply-accumulates per sample
    in_elems: int  # activation elements read per sample
    out_elems: int  # activation elements written per sample
    weight_numel: int
    weight_nonzero: int
    weight_bits: int  # 32 unless quantized
    act_bits: int | None  # None: float activations
    bias_numel: int
    spatial: int  # output positions per sample (MACs per output channel per input channel per tap)
    # Most nonzeros in any group of M consecutive input weights, per M (4, 8): an N:M pattern holds when <= N.
    group_nonzero: tuple[tuple[int, int], ...] = ()

    def follows_pattern(self, pattern: str | None) -> bool:
        if pattern is None:
            return False
        n, m = (int(v) for v in pattern.split(":"))
        return dict(self.group_nonzero).get(m, m + 1) <= n

    codebook_bits: int | None = None  # weight sharing: weights stored as indices into 2**codebook_bits centroids
    huffman_bits: float | None = None  # weight sharing with Huffman-coded indices: mean code bits per nonzero


def layer_stats(model: nn.Module, example_inputs: Any) -> list[LayerStats]:
    """Stats of every Conv/Linear layer that runs on ``example_inputs``, normalized per sample."""
    n = batch_size_of(example_inputs)
    shapes: dict[str, tuple[int, int]] = {}

    def make_hook(name: str):
        def hook(_mod: nn.Module, args: tuple, out: torch.Tensor) -> None:
            if name not in shapes:  # a layer reused in a loop is counted at its first call only
                shapes[name] = (args[0].numel() // n, out.numel() // n)

        return hook

    layers = weight_layers(model)
    handles = [m.register_forward_hook(make_hook(name)) for name, m in layers]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            call_model(model, example_inputs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    stats = []
    for name, m in layers:
        if name not in shapes:
            continue  # defined but never run (e.g. replaced branch)
        in_elems, out_elems = shapes[name]
        w = m.weight
        if isinstance(m, nn.Linear):
            kind, cin, cout, groups = "linear", m.in_features, m.out_features, 1
            spatial = out_elems // max(cout, 1)
            macs = out_elems * cin
        else:
            kind, cin, cout, groups = f"conv{len(m.kernel_size)}d", m.in_channels, m.out_channels, m.groups
            spatial = out_elems // max(cout, 1)
            macs = out_elems * (cin // groups) * math.prod(tuple(m.kernel_size))
        stats.append(
            LayerStats(
                name=name, kind=kind, in_channels=cin, out_channels=cout, groups=groups, macs=macs,
                in_elems=in_elems, out_elems=out_elems, weight_numel=w.numel(),
                weight_nonzero=int(torch.count_nonzero(w)),
                weight_bits=int(getattr(m, "autoslim_weight_bits", 32)),
                act_bits=getattr(m, "autoslim_act_bits", None),
                bias_numel=m.bias.numel() if m.bias is not None else 0, spatial=spatial,
                group_nonzero=_group_nonzero(w),
                codebook_bits=getattr(m, "autoslim_codebook_bits", None),
                huffman_bits=getattr(m, "autoslim_huffman_bits_per_weight", None),
            )
        )  # fmt: skip
    return stats


def _group_nonzero(w: torch.Tensor) -> tuple[tuple[int, int], ...]:
    flat = w.detach().flatten(1)  # groups run along the input dimension, as sparse tensor cores read them
    out = []
    for m in (4, 8):
        if flat.shape[1] % m == 0:
            out.append((m, int((flat.reshape(flat.shape[0], -1, m) != 0).sum(-1).max())))
    return tuple(out)


def other_param_count(model: nn.Module) -> int:
    """Parameters outside Conv/Linear weights (biases excluded): norms, embeddings, ... kept at fp32."""
    counted = {id(m.weight) for _, m in weight_layers(model)} | {
        id(m.bias) for _, m in weight_layers(model) if m.bias is not None
    }
    return sum(p.numel() for p in model.parameters() if id(p) not in counted)
