"""Quantization-aware training: run a fine-tune with the numerics a ``quantize`` step will give the model.

Techniques stay independent: ``distill.kd`` knows nothing about quantization and ``quantize`` nothing about
training. When a plan's ``quantize`` step has ``mode="qat"``, :func:`autoslim.trial.build_model` runs the plan's
fine-tune inside :func:`fake_quantized`, which for the duration of the block

* replaces each weight layer's ``forward`` by one that uses ``w + (q(w) - w).detach()``: the forward pass sees the
  rounded weights, the gradient reaches the float weights unchanged (straight-through estimator). Overriding
  ``forward`` rather than registering a ``torch.nn.utils.parametrize`` parametrization keeps ``m.weight`` the real
  Parameter, so in-place updates between optimizer steps (pruning masks, weight sharing) keep working;
* fake-quantizes each layer's input with :class:`~autoslim.techniques.quantize.ActFakeQuant` (a clipped
  straight-through estimator) on ranges calibrated on ``ctx.calibration_inputs`` when the fine-tune starts (per
  token at run time for ``calibration="dynamic"``);

and removes all of it afterwards, leaving float weights that the ``quantize`` step then rounds as in PTQ.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from autoslim.nn_utils import WeightLayer
from autoslim.techniques.quantize import ActFakeQuant, QuantizeConfig, act_quantizers, layer_bits, quantize_weight
from autoslim.techniques.registry import ApplyContext


class _FakeQuantForward:
    """A weight layer's ``forward`` with straight-through fake-quantized weights (Linear and ConvNd)."""

    def __init__(self, module: WeightLayer, bits: int, config: QuantizeConfig) -> None:
        self.module, self.bits, self.config = module, bits, config

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        m = self.module
        w = m.weight
        q = quantize_weight(w.detach(), self.bits, per_channel=self.config.per_channel, symmetric=self.config.symmetric)
        wq = w + (q - w.detach())
        if isinstance(m, nn.Linear):
            return F.linear(x, wq, m.bias)
        return m._conv_forward(x, wq, m.bias)


@contextmanager
def fake_quantized(model: nn.Module, config: QuantizeConfig, ctx: ApplyContext) -> Iterator[nn.Module]:
    """Train ``model`` inside this block to train it for ``config``'s quantization; everything is undone on exit."""
    bits = layer_bits(model, config, ctx)
    for m, b in bits:
        m.forward = _FakeQuantForward(m, b, config)  # type: ignore[method-assign,assignment]
    handles = []
    try:
        hooks = act_quantizers(model, [m for m, _ in bits], config, ctx)
        handles = [m.register_forward_pre_hook(hook) for m, hook in hooks.items()]
        ctx.notes["quantize.qat"] = {"layers": len(bits), "act_quantized": len(handles)}
        yield model
    finally:
        for h in handles:
            h.remove()
        for m, _ in bits:
            if isinstance(m.__dict__.get("forward"), _FakeQuantForward):
                del m.forward


def is_fake_quantized(model: nn.Module) -> bool:
    """Whether any layer of ``model`` carries fake quantization (QAT forwards or activation fake-quant hooks)."""
    return any(
        isinstance(m.__dict__.get("forward"), _FakeQuantForward)
        or any(isinstance(h, ActFakeQuant) for h in m._forward_pre_hooks.values())
        for m in model.modules()
    )


def strip_fake_quant(model: nn.Module) -> nn.Module:
    """Remove QAT forwards and activation fake-quant hooks (``quantize``'s too) in place, e.g. before export."""
    for m in model.modules():
        for key, hook in list(m._forward_pre_hooks.items()):
            if isinstance(hook, ActFakeQuant):
                del m._forward_pre_hooks[key]
        if isinstance(m.__dict__.get("forward"), _FakeQuantForward):
            del m.forward
    return model
