"""quantize with ``calibration="dynamic"``: per-token int8 activation scales found at run time."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from autoslim.cost import get_profile
from autoslim.cost.annotation import annotation_of
from autoslim.cost.estimate import estimate_cost, layer_cost
from autoslim.cost.layers import layer_stats
from autoslim.nn_utils import weight_layers
from autoslim.plan import CompressionPlan
from autoslim.techniques import InfeasibleError
from autoslim.techniques.qat import fake_quantized
from autoslim.techniques.quantize import DynamicActFakeQuant, QuantizeConfig
from tests.conftest import apply, inputs_for, make_ctx, make_model


def test_each_row_is_scaled_by_its_own_max_magnitude() -> None:
    fq = DynamicActFakeQuant(8)
    x = torch.tensor([[0.01, -0.02, 0.005], [100.0, -50.0, 3.0]])
    q = fq.quantize(x)
    # the small row keeps its precision although the other holds values 5,000x larger (one static range could not)
    assert (q[0] - x[0]).abs().max() <= 0.02 / 127 / 2 + 1e-9
    assert (q[1] - x[1]).abs().max() <= 100.0 / 127 / 2 + 1e-6
    assert q[0, 1] == x[0, 1] and q[1, 0] == x[1, 0]  # each row's max magnitude is a level (+-127)
    levels = q / (x.abs().amax(-1, keepdim=True) / 127)
    assert torch.allclose(levels, levels.round(), atol=1e-4) and levels.abs().max() <= 127


def test_dynamic_keeps_outlier_tokens_from_costing_the_others_precision() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    calib = torch.randn(64, 16)
    calib[::8] *= 200.0  # a few outlier tokens, as BERT-style activations have
    ctx = make_ctx("mlp")
    ctx.calibration_inputs, ctx.example_inputs = calib, calib[:4]
    x = torch.randn(256, 16)
    with torch.no_grad():
        ref = model(x)
        errors = {
            cal: (apply("quantize", copy.deepcopy(model), ctx, act_bits=8, calibration=cal)(x) - ref).pow(2).mean()
            for cal in ("minmax", "dynamic")
        }
    assert errors["dynamic"] < errors["minmax"] / 10


def test_dynamic_annotates_and_is_priced_with_its_extra_pass() -> None:
    ctx = make_ctx("mlp")
    static = apply("quantize", make_model("mlp"), ctx, act_bits=8)
    dynamic = apply("quantize", make_model("mlp"), ctx, act_bits=8, calibration="dynamic")
    assert all(annotation_of(m).act_dynamic for _, m in weight_layers(dynamic))
    assert not any(annotation_of(m).act_dynamic for _, m in weight_layers(static))
    example = inputs_for("mlp", 4)
    for name in ("x86-avx512-vnni", "arm-cortex-a76", "gpu-a100"):
        p = get_profile(name)
        s_layers, d_layers = layer_stats(static, example), layer_stats(dynamic, example)
        for s, d in zip(s_layers, d_layers, strict=True):
            assert d.act_dynamic and not s.act_dynamic
            s_cost, d_cost = layer_cost(s, p), layer_cost(d, p)
            assert d_cost.dtype == s_cost.dtype == "int8"  # int8 kernels either way...
            # ...plus one more read of the float input for its per-token maxima
            assert d_cost.bytes_moved == pytest.approx(s_cost.bytes_moved + 4 * s.in_elems * p.batch_size)
            assert d_cost.seconds >= s_cost.seconds
        assert estimate_cost(dynamic, example, p).latency_ms >= estimate_cost(static, example, p).latency_ms


def test_dynamic_needs_8_bit_activations() -> None:
    with pytest.raises(ValueError, match="act_bits 8"):
        QuantizeConfig(act_bits=16, calibration="dynamic")
    assert QuantizeConfig(act_bits=None, calibration="dynamic").act_bits is None  # weight-only: nothing to scale


def test_linear_layers_whose_parent_reads_their_weight_keep_float_inputs() -> None:
    from tests.zoo import ZOO, build_model

    model = build_model("transformer")  # nn.TransformerEncoder: MultiheadAttention reads out_proj.weight itself
    ctx = make_ctx("mlp")
    ctx.example_inputs = ctx.calibration_inputs = ZOO["transformer"].inputs(8, torch.Generator().manual_seed(0))
    q = apply("quantize", model, ctx, act_bits=8, calibration="dynamic")
    notes = {name: annotation_of(m) for name, m in weight_layers(q)}
    # out_proj is read by MultiheadAttention, linear1/2 by the encoder layer's fast path: float inputs there
    assert {name for name, n in notes.items() if n.act_dynamic} == {"head"}
    assert all(n.weight_bits == 8 for n in notes.values())  # weights are rounded all the same


def test_a_convolution_makes_dynamic_infeasible_with_a_reason() -> None:
    with pytest.raises(InfeasibleError, match="Linear layers"):
        apply("quantize", make_model("cnn1d"), make_ctx("cnn1d"), act_bits=8, calibration="dynamic")


def test_qat_trains_under_dynamic_fake_quant_and_removes_it() -> None:
    model = make_model("mlp")
    ctx = make_ctx("mlp")
    config = QuantizeConfig(act_bits=8, calibration="dynamic", mode="qat")
    with fake_quantized(model, config, ctx):
        hooks = [h for _, m in weight_layers(model) for h in m._forward_pre_hooks.values()]
        assert hooks and all(isinstance(h, DynamicActFakeQuant) for h in hooks)
        x = inputs_for("mlp", 8).requires_grad_(True)
        model(x).sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0  # straight-through
    assert not any(m._forward_pre_hooks for _, m in weight_layers(model))


def test_described_and_round_tripped() -> None:
    plan = CompressionPlan.from_params({"quantize": {"weight_bits": 8, "act_bits": 8, "calibration": "dynamic"}})
    assert plan.describe() == "w8/a8 dyn"
    assert CompressionPlan.from_json(plan.to_json()) == plan
