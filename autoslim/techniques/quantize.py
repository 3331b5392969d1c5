"""``quantize``: uniform weight quantization to N bits (simulated), optional activation quantization.

Weights are rounded to a grid (per output channel or per tensor; symmetric, or asymmetric with a zero point) and
stored back as floats, so accuracy is computed with the quantized numerics. Activation quantization fake-quantizes
each weight layer's input on an asymmetric per-tensor grid whose range is calibrated on calibration data
(``minmax``, ``percentile`` or ``mse``) and always contains 0, so zero padding and ReLU zeros stay exact.

The defaults (8-bit per-channel symmetric weights, 8-bit asymmetric per-tensor min/max activations) follow
onnxruntime's static QDQ quantization, so the simulated accuracy predicts the real int8 accuracy measured by
:mod:`autoslim.runtime.onnx_int8` (per-channel symmetric rounding commutes with folding batch norm into the conv).

``keep_first_last`` keeps the first and last weight layers (in execution order) at 8-bit weights when
``weight_bits`` < 8, the usual recipe: the first layer has few weights and sees raw inputs, the last one writes the
logits, and both are the most sensitive to rounding. Their activations follow ``act_bits`` like every other layer:
``act_bits`` is never below 8, so there is nothing to protect, and leaving them in float would force a float
island (dequantize / requantize) on int8 hardware that the cost model would not see.

``mode="qat"`` changes nothing here: the technique's ``fine_tune_wrapper`` makes
:func:`autoslim.trial.build_model` run the plan's fine-tune (``distill.kd``) under fake quantization
(:mod:`autoslim.techniques.qat`); this step then rounds the trained weights.

``calibration="dynamic"`` computes no ranges ahead of time: each token's (each row of a Linear layer's input)
symmetric 8-bit scale is its own max magnitude, found at run time, as torchao's int8 dynamic-activation kernels and
ONNX ``MatMulInteger`` graphs do (:mod:`autoslim.runtime.onnx_dynamic` writes one). Transformer activations carry
per-token outliers that one static range must cover for every token: on the pretrained MiniLM encoder w8/a8 kept
0.9974 cosine to the original dynamic per token, 0.9938 with mse ranges, 0.9928 with min/max. It is for Linear
layers called through their own forward (a convolution's input window mixes positions with different scales, and
``nn.MultiheadAttention`` reads its ``out_proj`` weight without calling it): a model whose quantized layers include
a convolution makes the step infeasible, and Linear layers that never run their forward, or whose parent reads
their weight (PyTorch's ``nn.TransformerEncoderLayer``), keep float inputs. ``act_bits`` must be 8. The cost
model adds the extra pass over each input it needs.

``embedding_bits`` rounds embedding tables (weight-only, per row; default 8 bits, as onnxruntime's int8 Gather):
lookups cost no compute, so this buys bytes, not latency.

Each quantized layer is annotated (:func:`autoslim.cost.annotation.annotate`) with its weight bits, activation
bits and scale granularity: the cost model prices bytes and picks the compute dtype from them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from autoslim.cost.annotation import annotate
from autoslim.cost.layers import LayerStats
from autoslim.nn_utils import WeightLayer, eval_forward, execution_order, weight_layers, weights_read_by_parent
from autoslim.techniques.per_layer import check_policy, describe_counts
from autoslim.techniques.registry import ApplyContext, InfeasibleError, LayerPolicy, register

WEIGHT_BITS = (2, 3, 4, 6, 8, 16)
ACT_BITS = (8, 16, None)
EMBEDDING_BITS = (2, 3, 4, 6, 8, 16, None)
CALIBRATIONS = ("minmax", "percentile", "mse", "dynamic")
MODES = ("ptq", "qat")
PERCENTILE = 99.99  # of each tail: drops ~1 in 10,000 outliers per side
# clipping ratios of the min/max range tried by ``mse``: fine near 1, coarse down to 1% for heavy tails
MSE_RATIOS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01)
MAX_SAMPLES = 1 << 20  # values kept per layer for percentile / mse calibration: bounds memory on big models


@dataclass(frozen=True)
class QuantizeConfig:
    weight_bits: int = 8
    act_bits: int | None = None  # None keeps float activations (weight-only quantization)
    per_channel: bool = True  # one scale per output channel, else one per tensor
    symmetric: bool = True  # symmetric weight grid around 0; False: asymmetric with a zero point
    # how activation ranges are chosen: calibrated once (minmax, percentile, mse) or per token at run time (dynamic)
    calibration: Literal["minmax", "percentile", "mse", "dynamic"] = "minmax"
    keep_first_last: bool = False  # first and last weight layers keep 8-bit weights when weight_bits < 8
    mode: Literal["ptq", "qat"] = "ptq"  # qat: the plan's fine-tune trains under fake quantization
    # Per-layer weight bits (see autoslim.techniques.per_layer): ``layer_bits`` overrides ``weight_bits`` for the
    # layers it names; ``policy="sensitivity"`` fills it at trial time from the sensitivity table, for ``target``
    # (a share of the teacher's cost on ``target_profile``) choosing among ``candidates``.
    layer_bits: tuple[tuple[str, int], ...] = ()
    policy: Literal["uniform", "sensitivity"] = "uniform"
    target: float | None = None
    target_profile: str | None = None
    target_of: Literal["teacher", "input"] = "teacher"  # what ``target`` is a share of (per_layer.py)
    candidates: tuple[int, ...] = ()
    # Embedding tables (nn.Embedding / nn.EmbeddingBag), weight-only on a per-row symmetric grid; None keeps them
    # fp32. 8 by default, as onnxruntime's static int8 quantizes Gather tables too: half of a BERT-style sentence
    # encoder's bytes are its word embeddings, which a Conv/Linear-only quantizer would leave at fp32.
    embedding_bits: int | None = 8

    def __post_init__(self) -> None:
        check_policy(self, "layer_bits", _bits)
        if self.embedding_bits not in EMBEDDING_BITS:
            raise ValueError(f"embedding_bits must be one of {EMBEDDING_BITS}, got {self.embedding_bits!r}")
        if self.weight_bits not in WEIGHT_BITS:
            raise ValueError(f"weight_bits must be one of {WEIGHT_BITS}, got {self.weight_bits}")
        if self.act_bits not in ACT_BITS:
            raise ValueError(f"act_bits must be one of {ACT_BITS}, got {self.act_bits}")
        for name in ("per_channel", "symmetric", "keep_first_last"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.calibration == "dynamic" and self.act_bits not in (8, None):
            # int8 x int8 MatMulInteger is what runs per-token scales; nothing deploys 16-bit dynamic activations
            raise ValueError(f"calibration 'dynamic' needs act_bits 8 (or none), got {self.act_bits}")


def _bits(value: Any) -> int:
    if isinstance(value, bool) or value not in WEIGHT_BITS:
        raise ValueError(f"weight bits must be one of {WEIGHT_BITS}, got {value!r}")
    return int(value)


def quantize_weight(w: torch.Tensor, bits: int, *, per_channel: bool = True, symmetric: bool = True) -> torch.Tensor:
    """Round ``w`` to a ``bits``-bit grid and return the dequantized tensor (zeros stay zero).

    Symmetric: levels ``-qmax..qmax`` (int8: -127..127, as onnxruntime), scale ``amax / qmax``. Asymmetric:
    ``2**bits`` levels over ``[min(w, 0), max(w, 0)]`` with an integer zero point, so 0 is exactly representable.
    16 bits means fp16 storage.
    """
    if bits >= 16:
        return w.half().to(w.dtype)
    flat = w.flatten(1) if per_channel and w.dim() > 1 else w.reshape(1, -1)
    shape = (-1, *([1] * (w.dim() - 1))) if per_channel and w.dim() > 1 else ()
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        scale = (flat.abs().amax(dim=1).clamp_min(1e-12) / qmax).reshape(shape)
        return (w / scale).round().clamp(-qmax, qmax) * scale
    levels = 2**bits - 1
    lo = flat.amin(dim=1).clamp_max(0.0)
    hi = flat.amax(dim=1).clamp_min(0.0)
    scale = ((hi - lo).clamp_min(1e-12) / levels).reshape(shape)
    zero_point = (-lo.reshape(shape) / scale).round()
    return ((w / scale).round() + zero_point).clamp(0, levels).sub(zero_point) * scale


class ActFakeQuant:
    """Forward pre-hook that fake-quantizes a layer's input to an asymmetric ``bits``-bit range containing 0.

    Under autograd (quantization-aware training) it is a clipped straight-through estimator: the forward pass sees
    the quantized values, the gradient passes unchanged inside the range and is zero outside it.
    """

    def __init__(self, lo: float, hi: float, bits: int) -> None:
        lo, hi = min(lo, 0.0), max(hi, 0.0)  # 0 exact: zero padding and ReLU zeros cost no error
        self.levels = 2**bits - 1
        self.scale = max(hi - lo, 1e-8) / self.levels
        self.zero_point = round(-lo / self.scale)

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        q = (x / self.scale).round().add(self.zero_point).clamp(0, self.levels)
        return (q - self.zero_point) * self.scale

    def __call__(self, _module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        if torch.is_grad_enabled() and x.requires_grad:
            lo, hi = -self.zero_point * self.scale, (self.levels - self.zero_point) * self.scale
            xc = x.clamp(lo, hi)
            return (xc + (self.quantize(xc) - xc).detach(), *args[1:])
        return (self.quantize(x), *args[1:])


class DynamicActFakeQuant(ActFakeQuant):
    """Forward pre-hook that fake-quantizes a Linear layer's input per token at run time: each row (last dimension)
    on a symmetric ``bits``-bit grid scaled by its own max magnitude (int8: -127..127, zero point 0, as torchao's
    per-token int8 and an int8 x int8 ``MatMulInteger``). Straight-through under autograd (no clipping: every
    value is inside its own row's range)."""

    def __init__(self, bits: int) -> None:
        self.levels = 2 ** (bits - 1) - 1  # qmax of the symmetric grid
        self.scale = 0.0  # per row, found at run time
        self.zero_point = 0

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.detach().abs().amax(dim=-1, keepdim=True).clamp_min(1e-8) / self.levels
        return (x / scale).round().clamp(-self.levels, self.levels) * scale

    def __call__(self, _module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        if torch.is_grad_enabled() and x.requires_grad:
            return (x + (self.quantize(x) - x).detach(), *args[1:])
        return (self.quantize(x), *args[1:])


def act_quantizers(
    model: nn.Module, layers: Sequence[nn.Module], config: QuantizeConfig, ctx: ApplyContext
) -> dict[nn.Module, ActFakeQuant]:
    """The activation fake-quant hook of each of ``layers`` (none when ``act_bits`` is None): static ranges
    calibrated on ``ctx``'s calibration inputs, or per-token scales at run time (``calibration="dynamic"``)."""
    bits = config.act_bits
    if bits is None:
        return {}
    if config.calibration == "dynamic":
        convs = [type(m).__name__ for m in layers if not isinstance(m, nn.Linear)]
        if convs:
            raise InfeasibleError(
                f"quantize: dynamic per-token activations are for Linear layers; the model quantizes {convs[0]} "
                "layers too (use a calibrated range: minmax, percentile or mse)"
            )
        called = _called(model, layers, ctx.example_inputs)  # as calibration finds them: by a forward pass
        # the int8 graph swaps each layer for a MatMulInteger one, which a parent reading its weight cannot take
        read = weights_read_by_parent(model)
        fixed = {m for name, m in model.named_modules() if name in read}
        return {m: DynamicActFakeQuant(bits) for m in layers if m in called and m not in fixed}
    data = ctx.calibration_inputs if ctx.calibration_inputs is not None else ctx.example_inputs
    ranges = calibrate_ranges(model, layers, data, method=config.calibration, bits=bits)
    return {m: ActFakeQuant(*r, bits) for m, r in ranges.items()}


def _called(model: nn.Module, layers: Sequence[nn.Module], inputs: Any) -> set[nn.Module]:
    """Those of ``layers`` whose own forward runs on ``inputs`` (a pre-hook on a layer read by its parent never
    fires)."""
    seen: set[nn.Module] = set()
    eval_forward(model, inputs, hooks=[m.register_forward_pre_hook(lambda mod, _a: seen.add(mod)) for m in layers])
    return seen


def embedding_tables(model: nn.Module) -> list[tuple[str, nn.Embedding | nn.EmbeddingBag]]:
    """The embedding tables ``embedding_bits`` applies to: those whose weight no Conv/Linear layer shares (a table
    tied to an output projection is quantized, and priced, once: as that layer, at its bits)."""
    tied = {id(m.weight) for _, m in weight_layers(model)}
    out, seen = [], set(tied)
    for name, m in model.named_modules():
        if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and id(m.weight) not in seen:
            seen.add(id(m.weight))
            out.append((name, m))
    return out


def quantize_embeddings(model: nn.Module, bits: int | None) -> int:
    """Round every embedding table (:func:`embedding_tables`) to ``bits`` per row and annotate it; the count."""
    if bits is None:
        return 0
    tables = embedding_tables(model)
    with torch.no_grad():
        for _, m in tables:
            m.weight.copy_(quantize_weight(m.weight, bits, per_channel=True, symmetric=True))
            annotate(m, weight_bits=bits, per_channel=True)
    return len(tables)


def layer_bits(model: nn.Module, config: QuantizeConfig, ctx: ApplyContext) -> list[tuple[WeightLayer, int]]:
    """Every weight layer with the weight bits it gets (``layer_bits`` where it names the layer, else
    ``weight_bits``; ``keep_first_last`` lifts the ends of a uniform plan to 8 bits)."""
    named = weight_layers(model)
    layers = [m for _, m in named]
    if not layers:
        raise InfeasibleError("quantize: the model has no Conv or Linear weights")
    if config.layer_bits:
        per_layer = dict(config.layer_bits)
        return [(m, per_layer.get(name, config.weight_bits)) for name, m in named]
    kept: set[nn.Module] = set()
    if config.keep_first_last and config.weight_bits < 8:
        order = execution_order(model, ctx.example_inputs) or layers
        kept = {order[0], order[-1]}
    return [(m, 8 if m in kept else config.weight_bits) for m in layers]


def calibrate_ranges(
    model: nn.Module, layers: Sequence[nn.Module], inputs: Any, *, method: str = "minmax", bits: int = 8
) -> dict[nn.Module, tuple[float, float]]:
    """The input range of each layer in ``layers`` on ``inputs`` (one forward pass, eval mode)."""
    seen: dict[nn.Module, torch.Tensor] = {}
    gen = torch.Generator().manual_seed(0)  # the subsample is part of the calibration: keep it reproducible

    def hook(mod: nn.Module, args: tuple) -> None:
        if mod in seen:  # a layer reused in a loop is calibrated at its first call
            return
        x = args[0].detach().flatten().float()
        if method == "minmax":
            seen[mod] = torch.stack([x.min(), x.max()])
        else:
            seen[mod] = x[torch.randperm(x.numel(), generator=gen)[:MAX_SAMPLES]] if x.numel() > MAX_SAMPLES else x

    handles = [m.register_forward_pre_hook(hook) for m in layers]
    eval_forward(model, inputs, hooks=handles)
    if method == "minmax":
        return {m: (float(v[0]), float(v[1])) for m, v in seen.items()}
    if method == "percentile":
        return {m: _percentile_range(v) for m, v in seen.items()}
    return {m: _mse_range(v, bits) for m, v in seen.items()}


def _percentile_range(x: torch.Tensor) -> tuple[float, float]:
    tail = 1.0 - PERCENTILE / 100.0
    k_lo = max(1, int(tail * x.numel()))
    k_hi = max(1, min(x.numel(), round(PERCENTILE / 100.0 * x.numel())))
    return float(x.kthvalue(k_lo).values), float(x.kthvalue(k_hi).values)


def _mse_range(x: torch.Tensor, bits: int) -> tuple[float, float]:
    """The clipped min/max range whose fake quantization of ``x`` has the smallest squared error."""
    lo, hi = float(x.min()), float(x.max())
    best, best_err = (lo, hi), float("inf")
    for r in MSE_RATIOS:
        fq = ActFakeQuant(r * lo, r * hi, bits)
        err = float((fq.quantize(x) - x).pow(2).mean())
        if err < best_err:
            best, best_err = (r * lo, r * hi), err
    return best


def _perturb(model: nn.Module, layer: str, bits: int, config: QuantizeConfig, _ctx: ApplyContext) -> None:
    """That one layer's weights rounded to ``bits`` (weights only: activation ranges are not per-layer choices)."""
    weight = model.get_submodule(layer).weight
    assert isinstance(weight, torch.Tensor)
    with torch.no_grad():
        weight.copy_(quantize_weight(weight, bits, per_channel=config.per_channel, symmetric=config.symmetric))


def _restat(stats: LayerStats, bits: int, config: QuantizeConfig) -> LayerStats:
    dynamic = config.act_bits is not None and config.calibration == "dynamic"
    return dataclasses.replace(stats, weight_bits=bits, act_bits=config.act_bits, per_channel=config.per_channel,
                               act_dynamic=dynamic)  # fmt: skip


POLICY = LayerPolicy(knob="weight_bits", layer_field="layer_bits", candidates=(2, 3, 4, 6, 8), perturb=_perturb,
                     restat=_restat)  # fmt: skip


def describe(c: QuantizeConfig) -> str:
    # the default 8-bit tables go unsaid (most models have none); other widths are named: "w8/a8, emb4"
    emb = "" if c.embedding_bits == 8 else ", emb fp32" if c.embedding_bits is None else f", emb{c.embedding_bits}"
    dyn = " dyn" if c.act_bits and c.calibration == "dynamic" else ""  # "w8/a8 dyn": per-token run-time scales
    if c.layer_bits:
        return describe_counts(c.layer_bits, lambda b: f"w{b}") + (f", a{c.act_bits}{dyn}" if c.act_bits else "") + emb
    return f"w{c.weight_bits}" + (f"/a{c.act_bits}{dyn}" if c.act_bits else "") + emb


def fine_tune_wrapper(model: nn.Module, config: QuantizeConfig, ctx: ApplyContext) -> AbstractContextManager[Any]:
    """QAT: the plan's fine-tune before this step trains under this step's fake quantization; PTQ: nothing."""
    if config.mode != "qat":
        return nullcontext(model)
    from autoslim.techniques.qat import fake_quantized  # qat builds on this module's quantizers

    return fake_quantized(model, config, ctx)


@register("quantize", QuantizeConfig, order=70, layer_policy=POLICY, role="numeric", describe=describe,
          fine_tune_wrapper=fine_tune_wrapper)  # fmt: skip
def apply(model: nn.Module, config: QuantizeConfig, ctx: ApplyContext) -> nn.Module:
    bits = layer_bits(model, config, ctx)
    hooks = act_quantizers(model, [m for m, _ in bits], config, ctx)
    with torch.no_grad():
        for m, wbits in bits:
            m.weight.copy_(quantize_weight(m.weight, wbits, per_channel=config.per_channel, symmetric=config.symmetric))
            annotate(m, weight_bits=wbits, per_channel=config.per_channel)  # per_channel: how many scales to store
            if m in hooks:
                m.register_forward_pre_hook(hooks[m])
                annotate(m, act_bits=config.act_bits, act_dynamic=isinstance(hooks[m], DynamicActFakeQuant))
    note: dict[str, Any] = {"layers": len(bits), "kept_8bit": sum(b != config.weight_bits for _, b in bits),
                            "embeddings": quantize_embeddings(model, config.embedding_bits)}  # fmt: skip
    if config.mode == "qat" and "quantize.qat" not in ctx.notes:
        note["qat"] = "no fine-tune ran under fake quantization (the plan has no distill.kd step): PTQ only"
    ctx.notes["quantize"] = note
    return model
