"""Per-layer facts a cost model needs, read off a real forward pass of the (compressed) model.

Batch norm is assumed folded into the preceding convolution and activations fused, as every deployment
runtime does; so the priced layers are the Conv and Linear layers that remain. How each layer would be stored
(bits, codebooks) comes from its :class:`~autoslim.cost.annotation.LayerAnnotation`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autoslim.cost.annotation import annotation_of
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
    per_channel: bool = True  # quantized with one scale per output channel (else one per tensor)
    act_dynamic: bool = False  # 8-bit input scaled per token at run time: its float input is read once more

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
    fused: list[LayerStats] = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.MultiheadAttention, nn.RNNBase)):
            handles.append(m.register_forward_hook(_fused_hook(name, n, fused)))
    was_training = model.training
    model.eval()
    fastpath = torch.backends.mha.get_fastpath_enabled()
    # The fused eval-mode transformer kernel bypasses the submodules' forward (and so the hooks that see them).
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad():
            call_model(model, example_inputs)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        for h in handles:
            h.remove()
        model.train(was_training)

    stats = list(fused)
    fused_names = {s.name for s in fused}
    for name, m in layers:
        if name not in shapes or name in fused_names:
            continue  # defined but never run (e.g. replaced branch), or priced inside its attention layer
        in_elems, out_elems = shapes[name]
        w = m.weight
        note = annotation_of(m)
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
                weight_bits=int(note.weight_bits), act_bits=note.act_bits,
                bias_numel=m.bias.numel() if m.bias is not None else 0, spatial=spatial,
                group_nonzero=_group_nonzero(w), codebook_bits=note.codebook_bits,
                per_channel=bool(note.per_channel), huffman_bits=note.huffman_bits,
                act_dynamic=bool(note.act_dynamic and note.act_bits is not None),
            )
        )  # fmt: skip
    return stats


def _linear_like(name: str, cin: int, cout: int, tokens: int, weight: torch.Tensor | None, *, macs: int,
                 weight_bits: int = 32, act_bits: int | None = None, bias: int = 0) -> LayerStats:  # fmt: skip
    numel = weight.numel() if weight is not None else 0
    return LayerStats(
        name=name, kind="linear", in_channels=cin, out_channels=cout, groups=1, macs=macs,
        in_elems=tokens * cin, out_elems=tokens * cout, weight_numel=numel,
        weight_nonzero=int(torch.count_nonzero(weight)) if weight is not None else 0, weight_bits=weight_bits,
        act_bits=act_bits, bias_numel=bias, spatial=tokens,
        group_nonzero=_group_nonzero(weight) if weight is not None and weight.dim() == 2 else (),
    )  # fmt: skip


def _fused_hook(name: str, n: int, out: list[LayerStats]):
    """Attention and recurrent layers use their weights inside one fused call: price their parts explicitly."""

    def hook(mod: nn.Module, args: tuple, _out: Any) -> None:
        if any(s.name.startswith(name + ".") or s.name == name for s in out) or not args:
            return
        x = args[0]
        if isinstance(mod, nn.MultiheadAttention):
            e = mod.embed_dim
            tokens = x.shape[1] if mod.batch_first or x.dim() == 2 else x.shape[0]
            tokens = x.numel() // (n * e) if x.dim() == 2 else tokens
            w_in = mod.in_proj_weight if mod.in_proj_weight is not None else None
            proj = mod.out_proj
            out.append(_linear_like(f"{name}.in_proj", e, 3 * e, tokens, w_in, macs=3 * tokens * e * e,
                                    bias=3 * e if mod.in_proj_bias is not None else 0))  # fmt: skip
            out.append(_linear_like(f"{name}.scores", e, tokens, tokens, None, macs=2 * tokens * tokens * e))
            out.append(_linear_like(f"{name}.out_proj", e, e, tokens, proj.weight, macs=tokens * e * e,
                                    weight_bits=int(annotation_of(proj).weight_bits),
                                    act_bits=annotation_of(proj).act_bits,
                                    bias=proj.bias.numel() if proj.bias is not None else 0))  # fmt: skip
        elif isinstance(mod, nn.RNNBase):
            steps = x.shape[1] if mod.batch_first and x.dim() == 3 else x.shape[0]
            weights = [p for k, p in mod.named_parameters() if k.startswith("weight_")]
            macs = steps * sum(w.numel() for w in weights)
            flat = torch.cat([w.detach().flatten() for w in weights])
            bias = sum(p.numel() for k, p in mod.named_parameters() if k.startswith("bias_"))
            out.append(_linear_like(name, mod.input_size, mod.hidden_size, steps, flat.unsqueeze(0), macs=macs,
                                    bias=bias))  # fmt: skip

    return hook


def _group_nonzero(w: torch.Tensor) -> tuple[tuple[int, int], ...]:
    flat = w.detach().flatten(1)  # groups run along the input dimension, as sparse tensor cores read them
    out = []
    for m in (4, 8):
        if flat.shape[1] % m == 0:
            out.append((m, int((flat.reshape(flat.shape[0], -1, m) != 0).sum(-1).max())))
    return tuple(out)


def _counted_elsewhere(model: nn.Module) -> set[int]:
    """Ids of the parameters priced per layer: Conv/Linear/attention/recurrent weights and biases."""
    counted = {id(m.weight) for _, m in weight_layers(model)} | {
        id(m.bias) for _, m in weight_layers(model) if m.bias is not None
    }
    for m in model.modules():
        if isinstance(m, nn.MultiheadAttention):
            counted |= {id(p) for p in (m.in_proj_weight, m.in_proj_bias) if p is not None}
        elif isinstance(m, nn.RNNBase):
            counted |= {id(p) for p in m.parameters()}
    return counted


def other_param_count(model: nn.Module) -> int:
    """Parameters outside Conv/Linear/attention/recurrent weights and biases: norms, embeddings, ..."""
    counted = _counted_elsewhere(model)
    return sum(p.numel() for p in model.parameters() if id(p) not in counted)


def other_param_bits(model: nn.Module) -> int:
    """Stored bits of the parameters :func:`other_param_count` counts: fp32, except embedding tables a technique
    annotated (``quantize``'s ``embedding_bits``): their weights at the annotated bits plus one fp32 scale per row
    (per-row symmetric grid; fp16 storage has no scales). A table shared with a weight layer is priced there."""
    counted = _counted_elsewhere(model)
    bits, seen = 0, set(counted)
    for m in model.modules():
        if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and id(m.weight) not in seen:
            seen.add(id(m.weight))
            wbits = annotation_of(m).weight_bits
            scales = m.weight.shape[0] * 32 if wbits < 16 else 0
            bits += m.weight.numel() * min(wbits, 32) + scales
    return bits + 32 * sum(p.numel() for p in model.parameters() if id(p) not in seen)
