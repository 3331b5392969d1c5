"""Analytic cost of a model on a hardware profile: a per-layer roofline.

time(layer) = max(2 * MACs / rate[dtype], bytes moved / bandwidth) + dispatch overhead
  * dtype: int8 when weights <= 8 bits and activations are quantized to 8 bits, fp16 with 16-bit activations,
    else fp32; a dtype the profile lacks falls back to the next wider one (int4 -> int8 -> fp16 -> fp32).
  * bytes moved: weights at their stored bits (+ activations in and out at the activation width).
  * unstructured zeros cut time only by the profile's ``unstructured_sparsity_speedup`` (1.0 on CPUs/GPUs).
  * channel counts round up to the profile's ``channel_multiple``.
model_bytes: every weight at its bit width (bitmask sparse encoding where the profile allows it and it is
smaller), per-channel fp32 scales for quantized layers, all other parameters at fp32.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from autoslim.cost.layers import LayerStats, layer_stats, other_param_count
from autoslim.cost.profiles import HardwareProfile


@dataclass(frozen=True)
class Cost:
    latency_ms: float
    model_bytes: int
    peak_activation_bytes: int
    macs: int  # per batch of profile.batch_size

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
    dense = layer.weight_numel * layer.weight_bits
    if not profile.sparse_storage:
        return dense
    bitmask = layer.weight_numel + layer.weight_nonzero * layer.weight_bits
    return min(dense, bitmask)


def _aligned(c: int, multiple: int) -> int:
    return math.ceil(c / multiple) * multiple


def layer_latency_s(layer: LayerStats, profile: HardwareProfile) -> float:
    dtype, rate = profile.rate(compute_dtype(layer))
    b, m = profile.batch_size, profile.channel_multiple
    cin_eff = _aligned(layer.in_channels, m) if layer.groups == 1 else layer.in_channels  # depthwise: no reuse
    align = (_aligned(layer.out_channels, m) / layer.out_channels) * (cin_eff / layer.in_channels)
    macs = layer.macs * align * b
    density = layer.weight_nonzero / max(layer.weight_numel, 1)
    if profile.unstructured_sparsity_speedup > 1.0 and density < 1.0:
        macs *= max(density, 1.0 / profile.unstructured_sparsity_speedup)
    act_bytes = _DTYPE_BYTES[dtype if dtype != "int4" else "int8"]
    weight_bytes = (
        weight_storage_bits(layer, profile) / 8
        if profile.unstructured_sparsity_speedup > 1.0
        else (layer.weight_numel * layer.weight_bits / 8)
    )
    moved = weight_bytes + (layer.in_elems + layer.out_elems) * b * act_bytes
    return max(2.0 * macs / rate, moved / profile.memory_bandwidth_bytes_per_s) + profile.layer_overhead_s


def estimate_cost(model: nn.Module, example_inputs: Any, profile: HardwareProfile) -> Cost:
    """Price ``model`` on ``profile`` from a real forward pass over ``example_inputs`` (its per-layer shapes)."""
    return cost_from_stats(layer_stats(model, example_inputs), other_param_count(model), profile)


def cost_from_stats(stats: list[LayerStats], other_params: int, profile: HardwareProfile) -> Cost:
    latency = sum(layer_latency_s(s, profile) for s in stats)
    bits = sum(weight_storage_bits(s, profile) for s in stats)
    bits += sum(s.out_channels * 32 for s in stats if s.weight_bits < 32)  # per-channel scales
    bits += sum(s.bias_numel * 32 for s in stats) + other_params * 32
    peak_act = max(
        ((s.in_elems + s.out_elems) * profile.batch_size * _DTYPE_BYTES[compute_dtype(s) if compute_dtype(s) != "int4"
          else "int8"] for s in stats), default=0.0)  # fmt: skip
    return Cost(
        latency_ms=latency * 1e3,
        model_bytes=math.ceil(bits / 8),
        peak_activation_bytes=math.ceil(peak_act),
        macs=sum(s.macs for s in stats) * profile.batch_size,
    )
