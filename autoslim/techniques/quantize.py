"""``quantize``: uniform weight quantization to N bits (simulated), optional 8-bit activations.

Weights are rounded to a symmetric grid (per output channel or per tensor) and stored back as floats, so
accuracy is computed with the quantized numerics. Activation quantization fake-quantizes each weight layer's
input with an asymmetric per-tensor range calibrated (min/max) on calibration data. Each quantized layer carries
``autoslim_weight_bits`` / ``autoslim_act_bits``: the cost model prices bytes and picks the compute dtype from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autoslim.nn_utils import call_model, weight_layers
from autoslim.techniques.registry import ApplyContext, InfeasibleError, register

WEIGHT_BITS = (2, 3, 4, 6, 8, 16)
ACT_BITS = (8, 16, None)


@dataclass(frozen=True)
class QuantizeConfig:
    weight_bits: int = 8
    act_bits: int | None = None  # None keeps float activations (weight-only quantization)
    per_channel: bool = True  # one scale per output channel, else one per tensor

    def __post_init__(self) -> None:
        if self.weight_bits not in WEIGHT_BITS:
            raise ValueError(f"weight_bits must be one of {WEIGHT_BITS}, got {self.weight_bits}")
        if self.act_bits not in ACT_BITS:
            raise ValueError(f"act_bits must be one of {ACT_BITS}, got {self.act_bits}")


def quantize_weight(w: torch.Tensor, bits: int, *, per_channel: bool = True) -> torch.Tensor:
    """Round ``w`` to a symmetric ``bits``-bit grid and return the dequantized tensor (zeros stay zero)."""
    qmax = 2 ** (bits - 1) - 1
    if per_channel:
        amax = w.abs().flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, *([1] * (w.dim() - 1)))
    else:
        amax = w.abs().amax().clamp_min(1e-12)
    scale = amax / qmax
    return (w / scale).round().clamp(-qmax, qmax) * scale


class ActFakeQuant:
    """Forward pre-hook that fake-quantizes a layer's input to an asymmetric ``bits``-bit range."""

    def __init__(self, lo: float, hi: float, bits: int) -> None:
        levels = 2**bits - 1
        self.scale = max(hi - lo, 1e-8) / levels
        self.zero_point = round(-lo / self.scale)
        self.levels = levels

    def __call__(self, _module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        q = (x / self.scale).round().add(self.zero_point).clamp(0, self.levels)
        return ((q - self.zero_point) * self.scale, *args[1:])


def _calibrate_ranges(model: nn.Module, layers: Sequence[nn.Module], inputs: Any) -> dict[nn.Module, tuple]:
    ranges: dict[nn.Module, tuple] = {}

    def hook(mod: nn.Module, args: tuple) -> None:
        x = args[0].detach()
        ranges[mod] = (float(x.min()), float(x.max()))

    handles = [m.register_forward_pre_hook(hook) for m in layers]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            call_model(model, inputs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return ranges


@register("quantize", QuantizeConfig, order=70)
def apply(model: nn.Module, config: QuantizeConfig, ctx: ApplyContext) -> nn.Module:
    layers = [m for _, m in weight_layers(model)]
    if not layers:
        raise InfeasibleError("quantize: the model has no Conv or Linear weights")
    if config.act_bits is not None:
        data = ctx.calibration_inputs if ctx.calibration_inputs is not None else ctx.example_inputs
        ranges = _calibrate_ranges(model, layers, data)
    with torch.no_grad():
        for m in layers:
            if config.weight_bits < 16:
                m.weight.copy_(quantize_weight(m.weight, config.weight_bits, per_channel=config.per_channel))
            else:  # 16 bits: fp16 storage
                m.weight.copy_(m.weight.half().float())
            m.autoslim_weight_bits = config.weight_bits  # type: ignore[assignment]
            if config.act_bits is not None and m in ranges:
                lo, hi = ranges[m]
                m.register_forward_pre_hook(ActFakeQuant(lo, hi, config.act_bits))
                m.autoslim_act_bits = config.act_bits  # type: ignore[assignment]
    ctx.notes["quantize"] = {"layers": len(layers)}
    return model
