"""quantize with ``calibration="dynamic"``: per-token int8 activation scales found at run time."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from autoslim.cost import get_profile
from autoslim.cost.annotation import annotation_of
from autoslim.cost.estimate import estimate_cost
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
    for name in ("x86-avx512-vnni", "gpu-a100"):
        p = get_profile(name)
        fp32 = estimate_cost(make_model("mlp"), example, p).latency_ms
        s, d = estimate_cost(static, example, p).latency_ms, estimate_cost(dynamic, example, p).latency_ms
        assert s <= d < fp32 or name == "gpu-a100"  # int8 compute, plus one more read of each input
        assert d >= s


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
