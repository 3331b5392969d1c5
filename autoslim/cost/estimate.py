"""Analytic cost of a model on a hardware profile: a per-layer roofline.

time(layer) = max(2 * MACs / rate[dtype], weight bytes / weight bandwidth + activation bytes / act bandwidth)
              + dispatch overhead[dtype]
  (a measured profile with ``activation_bytes_per_s`` adds the activation term instead of overlapping it)
  * dtype: int8 when weights <= 8 bits and activations are quantized to 8 bits, fp16 with 16-bit activations,
    else fp32; a dtype the profile lacks falls back to the next wider one (int4 -> int8 -> fp16 -> fp32).
  * bytes moved: weights at their stored bits, activations in and out at the compute width. Weights are read
    at cache bandwidth when the whole model fits the profile's cache (steady-state inference keeps it there);
    a layer's activations likewise when they fit.
  * unstructured zeros cut compute only by the profile's ``unstructured_sparsity_speedup`` (1.0 on CPUs and
    GPUs: zeros save bytes, not time); a layer in the profile's ``semi_structured`` N:M pattern gets its speed-up.
  * channel counts round up to the profile's ``channel_multiple``.
model_bytes: every weight at its bit width (bitmask sparse encoding where the profile allows it and it is
smaller), per-channel fp32 scales for quantized layers, embedding tables at their annotated bits (+ a scale per
row), all other parameters at fp32.
energy_mj: ops x energy per op of the dtype + bytes moved x energy per byte, where the profile gives them.
fits: stored model <= storage capacity; peak activations (+ weights where resident in RAM) <= memory capacity.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from autoslim.cost.layers import LayerStats, layer_stats, other_param_bits
from autoslim.cost.profiles import HardwareProfile


@dataclass(frozen=True)
class Cost:
    latency_ms: float
    model_bytes: int
    peak_activation_bytes: int
    macs: int  # per batch of profile.batch_size
    energy_mj: float | None = None  # None where the profile gives no energy constants
    fits: bool = True  # False: too big for the profile's memory or storage; off its front
    fit_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def objective(self, name: str) -> float:
        return float(getattr(self, name))


def compute_dtype(layer: LayerStats) -> str:
    if layer.act_bits is not None and layer.act_bits <= 8 and layer.weight_bits <= 8:
        return "int4" if layer.act_bits <= 4 and layer.weight_bits <= 4 else "int8"
    if layer.act_bits == 16 and layer.weight_bits <= 16:
        return "fp16"
    return "fp32"


_DTYPE_BYTES = {"fp32": 4.0, "fp16": 2.0, "int8": 1.0, "int4": 0.5}


def weight_storage_bits(layer: LayerStats, profile: HardwareProfile) -> float:
    if layer.codebook_bits is not None:
        return shared_storage_bits(layer, profile)
    dense = layer.weight_numel * layer.weight_bits
    if not profile.sparse_storage:
        return dense
    bitmask = layer.weight_numel + layer.weight_nonzero * layer.weight_bits
    return min(dense, bitmask)


def shared_storage_bits(layer: LayerStats, profile: HardwareProfile) -> float:
    """A weight-shared layer: a cluster index per weight (fixed ``codebook_bits`` or Huffman coded) + the codebook.

    Zeros are not a centroid: a bitmask marks them where the profile allows sparse storage and it pays, else
    dense fixed-length indices need one more code for zero (one more bit). A Huffman code with zeros is priced as
    a one-bit zero flag before each nonzero's code, a valid prefix code whose length equals the bitmask's.
    """
    assert layer.codebook_bits is not None
    symbols = 2**layer.codebook_bits
    code = layer.huffman_bits if layer.huffman_bits is not None else float(layer.codebook_bits)
    zeros = layer.weight_numel - layer.weight_nonzero
    bitmask = layer.weight_numel + layer.weight_nonzero * code
    if zeros == 0:
        dense = layer.weight_numel * code
    elif layer.huffman_bits is not None:
        dense = bitmask
    else:
        dense = layer.weight_numel * (layer.codebook_bits + 1.0)
    indices = min(dense, bitmask) if profile.sparse_storage else dense
    codebook = symbols * min(layer.weight_bits, 32)  # centroids at fp32, or at the quantized width
    if layer.huffman_bits is not None:
        codebook += symbols * 8  # canonical Huffman table: one code length per symbol
    return indices + codebook


def _aligned(c: int, multiple: int) -> int:
    return math.ceil(c / multiple) * multiple


@dataclass(frozen=True)
class LayerCost:
    seconds: float
    ops: float
    bytes_moved: float
    dtype: str


def layer_cost(layer: LayerStats, profile: HardwareProfile, *, weights_cached: bool = False) -> LayerCost:
    dtype, rate = profile.rate(compute_dtype(layer), layer.kind)
    b, m = profile.batch_size, profile.channel_multiple
    cin_eff = _aligned(layer.in_channels, m) if layer.groups == 1 else layer.in_channels  # depthwise: no reuse
    align = (_aligned(layer.out_channels, m) / layer.out_channels) * (cin_eff / layer.in_channels)
    macs = layer.macs * align * b
    density = layer.weight_nonzero / max(layer.weight_numel, 1)
    sparse_compute = profile.unstructured_sparsity_speedup > 1.0 and density < 1.0
    if sparse_compute:
        macs *= max(density, 1.0 / profile.unstructured_sparsity_speedup)
    elif layer.follows_pattern(profile.semi_structured):
        macs /= profile.semi_structured_speedup
    act_width = _DTYPE_BYTES[dtype if dtype != "int4" else "int8"]
    weight_bytes = (
        weight_storage_bits(layer, profile) / 8 if sparse_compute else layer.weight_numel * layer.weight_bits / 8
    )
    act_bytes = (layer.in_elems + layer.out_elems) * b * act_width
    if layer.act_dynamic:  # per-token scales: the float input is read once for its row maxima before it is quantized
        act_bytes += layer.in_elems * b * _DTYPE_BYTES["fp32"]
    cache_bw = profile.cache_bandwidth_bytes_per_s or profile.memory_bandwidth_bytes_per_s
    act_bw = (
        cache_bw if profile.cache_bytes and act_bytes <= profile.cache_bytes else profile.memory_bandwidth_bytes_per_s
    )
    weight_bw = cache_bw if weights_cached else profile.memory_bandwidth_bytes_per_s
    act_rate = profile.activation_rate(dtype, layer.kind)
    if act_rate is not None:
        # Measured profiles: passes over activations between layers (adds, activations, int8 (de)quantization)
        # are not overlapped with the layer's compute, so they add at their fitted rate.
        seconds = max(2.0 * macs / rate, weight_bytes / weight_bw) + act_bytes / act_rate
    else:
        seconds = max(2.0 * macs / rate, weight_bytes / weight_bw + act_bytes / act_bw)
    seconds += profile.overhead(dtype, layer.kind)
    return LayerCost(seconds, 2.0 * macs, weight_bytes + act_bytes, dtype)


def estimate_cost(model: nn.Module, example_inputs: Any, profile: HardwareProfile) -> Cost:
    """Price ``model`` on ``profile`` from a real forward pass over ``example_inputs`` (its per-layer shapes)."""
    return cost_from_stats(layer_stats(model, example_inputs), other_param_bits(model), profile)


def cost_from_stats(stats: list[LayerStats], other_bits: int, profile: HardwareProfile) -> Cost:
    """``other_bits``: stored bits of the parameters outside ``stats`` (see ``layers.other_param_bits``)."""
    bits = sum(weight_storage_bits(s, profile) for s in stats)
    # fp32 scales of quantized layers: one per output channel, or one per tensor (fp16 storage has none)
    bits += sum((s.out_channels if s.per_channel else 1) * 32 for s in stats if s.weight_bits < 16)
    bits += sum(s.bias_numel * 32 for s in stats) + other_bits
    model_bytes = math.ceil(bits / 8)
    cached = profile.cache_bytes is not None and model_bytes <= profile.cache_bytes
    layers = [layer_cost(s, profile, weights_cached=cached) for s in stats]
    peak_act = math.ceil(
        max(((s.in_elems + s.out_elems) * profile.batch_size * _DTYPE_BYTES[c.dtype if c.dtype != "int4" else "int8"]
             for s, c in zip(stats, layers, strict=True)), default=0.0)
    )  # fmt: skip
    energy = None
    if profile.has_energy:
        per_op = profile.energy_per_op_j
        joules = sum(c.ops * per_op.get(c.dtype, max(per_op.values())) for c in layers)
        joules += sum(c.bytes_moved for c in layers) * (profile.energy_per_byte_j or 0.0)
        energy = joules * 1e3
    fits, reason = _fit(model_bytes, peak_act, profile)
    return Cost(
        latency_ms=sum(c.seconds for c in layers) * 1e3,
        model_bytes=model_bytes,
        peak_activation_bytes=peak_act,
        macs=sum(s.macs for s in stats) * profile.batch_size,
        energy_mj=energy,
        fits=fits,
        fit_reason=reason,
    )


def _fit(model_bytes: int, peak_act: int, profile: HardwareProfile) -> tuple[bool, str]:
    if profile.storage_capacity_bytes is not None and model_bytes > profile.storage_capacity_bytes:
        return False, f"model {model_bytes:,} B > storage {profile.storage_capacity_bytes:,.0f} B"
    memory = peak_act + (model_bytes if profile.weights_in_memory else 0)
    if profile.memory_capacity_bytes is not None and memory > profile.memory_capacity_bytes:
        return False, f"needs {memory:,} B of memory > {profile.memory_capacity_bytes:,.0f} B"
    return True, ""
