"""quantize: weights on an N-bit symmetric grid (simulated), optional 8-bit activations, priced by the cost model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoslim.cost import estimate_cost
from autoslim.cost.annotation import annotation_of
from autoslim.nn_utils import weight_layers
from autoslim.techniques import get_technique
from autoslim.techniques.quantize import quantize_weight
from tests.conftest import apply, inputs_for, make_ctx, make_model, same_state


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
@pytest.mark.parametrize("kind", ["mlp", "cnn1d", "cnn2d"])
def test_per_channel_weights_take_at_most_2_pow_bits_values(kind: str, bits: int) -> None:
    model = make_model(kind)
    original = [m.weight.detach().clone() for _, m in weight_layers(model)]
    out = apply("quantize", model, make_ctx(kind), weight_bits=bits)
    for (name, m), w0 in zip(weight_layers(out), original, strict=True):
        assert annotation_of(m).weight_bits == bits
        assert not torch.equal(m.weight, w0), name  # really changed
        for row in m.weight.detach().flatten(1):
            assert row.unique().numel() <= 2**bits, name
        # symmetric grid, per channel: the largest magnitude of each channel is kept exactly
        assert torch.allclose(m.weight.abs().flatten(1).amax(1), w0.abs().flatten(1).amax(1), rtol=1e-5)


@pytest.mark.parametrize("bits", [2, 4])
def test_per_tensor_weights_take_at_most_2_pow_bits_values(bits: int) -> None:
    out = apply("quantize", make_model("cnn1d"), make_ctx("cnn1d"), weight_bits=bits, per_channel=False)
    for _, m in weight_layers(out):
        assert m.weight.unique().numel() <= 2**bits


def test_16_bits_is_fp16_storage() -> None:
    out = apply("quantize", make_model("mlp"), make_ctx("mlp"), weight_bits=16)
    for _, m in weight_layers(out):
        assert torch.equal(m.weight, m.weight.half().float())
        assert annotation_of(m).weight_bits == 16


def test_fewer_bits_larger_error_and_smaller_model(mcu) -> None:
    x = inputs_for("cnn1d", 32)
    ctx = make_ctx("cnn1d")
    base = make_model("cnn1d")
    base_bytes = estimate_cost(base, ctx.example_inputs, mcu).model_bytes
    errors, sizes = {}, {}
    with torch.no_grad():
        ref = base(x)
        for bits in (8, 4, 2):
            out = apply("quantize", make_model("cnn1d"), ctx, weight_bits=bits)
            y = out(x)
            assert y.shape == ref.shape
            errors[bits] = float((y - ref).abs().mean() / ref.abs().mean())
            sizes[bits] = estimate_cost(out, ctx.example_inputs, mcu).model_bytes
    assert errors[8] < 0.05
    assert errors[8] < errors[4] < errors[2]
    assert base_bytes > sizes[8] > sizes[4] > sizes[2]
    assert sizes[8] < 0.4 * base_bytes  # 32 -> 8 bit weights, plus scales, biases and norms at fp32


def test_zeros_stay_zero() -> None:
    ctx = make_ctx("mlp")
    model = apply("prune.unstructured", make_model("mlp"), ctx, amount=0.6)
    zeros = [m.weight == 0 for _, m in weight_layers(model)]
    out = apply("quantize", model, ctx, weight_bits=4)
    assert all(bool((m.weight[z] == 0).all()) for (_, m), z in zip(weight_layers(out), zeros, strict=True))


def test_quantize_weight_grid() -> None:
    w = torch.tensor([[1.0, -0.6, 0.26, 0.0], [0.1, 0.2, -0.3, 0.05]])
    q = quantize_weight(w, 2)  # qmax = 1: each row rounds to {-amax, 0, amax}
    assert torch.allclose(q, torch.tensor([[1.0, -1.0, 0.0, 0.0], [0.0, 0.3, -0.3, 0.0]]))
    q8 = quantize_weight(w, 8, per_channel=False)
    assert torch.allclose(q8, w, atol=1.0 / 127 / 2 + 1e-7)


@pytest.mark.parametrize("kind", ["mlp", "cnn1d", "cnn2d"])
def test_8bit_activations_fake_quantize_layer_inputs(kind: str, x86) -> None:
    model = make_model(kind)
    ctx = make_ctx(kind)
    fp32_latency = estimate_cost(model, ctx.example_inputs, x86).latency_ms
    out = apply("quantize", model, ctx, weight_bits=8, act_bits=8)
    seen: dict[nn.Module, torch.Tensor] = {}
    # registered after quantize's hook, so these see the inputs as the layer does: fake-quantized
    handles = [
        m.register_forward_pre_hook(lambda mod, args: seen.__setitem__(mod, args[0].detach()))
        for _, m in weight_layers(out)
    ]
    out(inputs_for(kind, 16))
    for h in handles:
        h.remove()
    for name, m in weight_layers(out):
        assert annotation_of(m).act_bits == 8
        assert seen[m].unique().numel() <= 256, name
    assert estimate_cost(out, ctx.example_inputs, x86).latency_ms < fp32_latency


def test_activation_range_comes_from_calibration_data() -> None:
    model = make_model("mlp")
    ctx = make_ctx("mlp")
    out = apply("quantize", model, ctx, weight_bits=8, act_bits=8)
    seen = []
    out[0].register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach()))
    out(torch.full((1, 12), 1e3))  # far outside the calibration range: clamped to its top
    assert seen[0].max() <= ctx.calibration_inputs.max() + 0.1


def test_weight_only_quantization_keeps_float_activations() -> None:
    out = apply("quantize", make_model("mlp"), make_ctx("mlp"), weight_bits=4)
    for _, m in weight_layers(out):
        assert annotation_of(m).act_bits is None
        assert not m._forward_pre_hooks


def test_quantize_is_deterministic() -> None:
    x = inputs_for("cnn2d", 4)
    a = apply("quantize", make_model("cnn2d"), make_ctx("cnn2d"), weight_bits=4, act_bits=8)
    b = apply("quantize", make_model("cnn2d"), make_ctx("cnn2d"), weight_bits=4, act_bits=8)
    assert same_state(a, b)
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("params", [{"weight_bits": 5}, {"weight_bits": 32}, {"act_bits": 4}, {"act_bits": 32}])
def test_invalid_config_raises(params: dict) -> None:
    with pytest.raises(ValueError):
        get_technique("quantize").make_config(params)
