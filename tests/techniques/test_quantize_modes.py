"""quantize options: asymmetric weights, activation calibration, keep_first_last, and QAT through the trial."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autoslim.cost.annotation import annotation_of
from autoslim.nn_utils import execution_order, weight_layers
from autoslim.plan import CompressionPlan
from autoslim.techniques import get_technique
from autoslim.techniques.qat import fake_quantized, is_fake_quantized
from autoslim.techniques.quantize import ActFakeQuant, QuantizeConfig, calibrate_ranges, quantize_weight
from autoslim.trial import TrialSpec, build_model, run_trial
from tests.conftest import apply, inputs_for, make_ctx, make_model, same_state
from tests.tiny_task import tiny_task

# --- config --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("symmetric", "yes"), ("calibration", "kl"), ("keep_first_last", 1), ("mode", "fp"), ("per_channel", None)],
)
def test_invalid_option_raises_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        get_technique("quantize").make_config({field: value})


def test_new_options_round_trip_through_a_plan() -> None:
    params = {"weight_bits": 4, "act_bits": 8, "symmetric": False, "calibration": "mse", "keep_first_last": True}
    plan = CompressionPlan.from_params({"quantize": {**params, "mode": "qat"}})
    assert CompressionPlan.from_json(plan.to_json()) == plan


# --- asymmetric weights --------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_asymmetric_grid_takes_at_most_2_pow_bits_values_and_keeps_zeros(bits: int) -> None:
    ctx = make_ctx("cnn1d")
    model = apply("prune.unstructured", make_model("cnn1d"), ctx, amount=0.5)
    zeros = [m.weight == 0 for _, m in weight_layers(model)]
    out = apply("quantize", model, ctx, weight_bits=bits, symmetric=False)
    for (name, m), z in zip(weight_layers(out), zeros, strict=True):
        assert bool((m.weight[z] == 0).all()), name
        for row in m.weight.detach().flatten(1):
            assert row.unique().numel() <= 2**bits, name


def test_asymmetric_grid_fits_one_sided_weights_better() -> None:
    w = torch.rand(8, 64, generator=torch.Generator().manual_seed(0))  # all positive: half a symmetric grid wasted
    for bits in (2, 3, 4):
        sym = (quantize_weight(w, bits) - w).pow(2).mean()
        asym = (quantize_weight(w, bits, symmetric=False) - w).pow(2).mean()
        assert asym < 0.5 * sym


# --- activation calibration ----------------------------------------------------------------------------------


def test_percentile_clips_a_rare_outlier_that_minmax_keeps() -> None:
    layer = nn.Linear(1000, 2)
    model = nn.Sequential(layer)
    x = torch.randn(64, 1000, generator=torch.Generator().manual_seed(0))
    x[0, 0] = 1000.0
    ranges = {m: calibrate_ranges(model, [layer], x, method=m)[layer] for m in ("minmax", "percentile")}
    assert ranges["minmax"][1] == pytest.approx(1000.0)
    assert 3.0 < ranges["percentile"][1] < 5.0
    assert ranges["percentile"][0] < -3.0


def test_mse_clips_heavy_tails_and_lowers_the_error() -> None:
    layer = nn.Linear(1000, 2)
    model = nn.Sequential(layer)
    torch.manual_seed(0)
    x = torch.distributions.StudentT(2.0).sample((64, 1000))  # heavy tails: min/max wastes most of the grid
    ranges = {m: calibrate_ranges(model, [layer], x, method=m)[layer] for m in ("minmax", "mse")}
    assert ranges["mse"][1] < ranges["minmax"][1]
    errors = {m: float((ActFakeQuant(*r, 8).quantize(x) - x).pow(2).mean()) for m, r in ranges.items()}
    assert errors["mse"] < errors["minmax"]


@pytest.mark.parametrize("calibration", ["minmax", "percentile", "mse"])
def test_each_calibration_keeps_8bit_outputs_close(calibration: str) -> None:
    x = inputs_for("cnn1d", 32)
    base = make_model("cnn1d")
    with torch.no_grad():
        ref = base(x)
        out = apply(
            "quantize", copy.deepcopy(base), make_ctx("cnn1d"), weight_bits=8, act_bits=8, calibration=calibration
        )
        y = out(x)
    assert float((y - ref).abs().mean() / ref.abs().mean()) < 0.2  # random small-logit model: loose bound
    assert all(annotation_of(m).act_bits == 8 for _, m in weight_layers(out))


# --- keep_first_last -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mlp", "cnn1d", "cnn2d"])
def test_keep_first_last_holds_the_ends_at_8_bits(kind: str) -> None:
    ctx = make_ctx(kind)
    model = make_model(kind)
    order = execution_order(model, ctx.example_inputs)
    out = apply("quantize", model, ctx, weight_bits=2, act_bits=8, keep_first_last=True)
    ends = {id(order[0]), id(order[-1])}
    for name, m in weight_layers(out):
        expected = 8 if id(m) in ends else 2
        assert annotation_of(m).weight_bits == expected, name
        assert annotation_of(m).act_bits == 8, name  # activations follow act_bits everywhere (documented choice)
        assert max(row.unique().numel() for row in m.weight.detach().flatten(1)) <= 2**expected
    assert ctx.notes["quantize"]["kept_8bit"] == 2


def test_keep_first_last_changes_nothing_at_8_bits_or_more() -> None:
    a = apply("quantize", make_model("mlp"), make_ctx("mlp"), weight_bits=8)
    b = apply("quantize", make_model("mlp"), make_ctx("mlp"), weight_bits=8, keep_first_last=True)
    assert same_state(a, b)


# --- QAT -----------------------------------------------------------------------------------------------------


def test_fake_quant_forward_matches_ptq_numerics_and_passes_gradients() -> None:
    model = make_model("cnn1d")
    ctx = make_ctx("cnn1d")
    config = QuantizeConfig(weight_bits=4)
    x = inputs_for("cnn1d", 8)
    ptq = apply("quantize", copy.deepcopy(model), ctx, weight_bits=4)
    with fake_quantized(model, config, ctx):
        assert is_fake_quantized(model)
        y = model(x)
        y.square().mean().backward()
    with torch.no_grad():
        assert torch.allclose(y, ptq(x), atol=1e-5)
    for name, m in weight_layers(model):  # straight-through: every float weight gets a gradient
        assert m.weight.grad is not None and m.weight.grad.abs().sum() > 0, name


def test_activation_ste_passes_gradient_inside_the_range_only() -> None:
    layer = nn.Linear(4, 1)
    model = nn.Sequential(layer)
    calib = torch.linspace(-1.0, 1.0, 64).reshape(16, 4)
    ctx = make_ctx("mlp")
    ctx.calibration_inputs, ctx.example_inputs = calib, calib[:2]
    x = torch.tensor([[0.3, -0.2, 5.0, -5.0]], requires_grad=True)  # the last two are outside [-1, 1]
    with fake_quantized(model, QuantizeConfig(weight_bits=8, act_bits=8), ctx):
        model(x).sum().backward()
    assert x.grad is not None
    assert torch.equal(x.grad[0, 2:], torch.zeros(2))
    # d(w_q . x)/dx = w_q: the forward used the fake-quantized weights
    assert torch.allclose(x.grad[0, :2], quantize_weight(layer.weight.detach(), 8)[0, :2])


def test_fake_quant_is_removed_afterwards_even_on_error() -> None:
    model = make_model("cnn2d")
    reference = copy.deepcopy(model)
    ctx = make_ctx("cnn2d")
    x = inputs_for("cnn2d", 4)
    with pytest.raises(RuntimeError), fake_quantized(model, QuantizeConfig(weight_bits=3, act_bits=8), ctx):
        raise RuntimeError("boom")
    assert not is_fake_quantized(model)
    assert all(not m._forward_pre_hooks and "forward" not in m.__dict__ for m in model.modules())
    assert same_state(model, reference)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


def _qat_plan(mode: str, **kd: object) -> dict:
    return CompressionPlan.from_params(
        {
            "distill.kd": {"epochs": 2, "batch_size": 64, **kd},
            "quantize": {"weight_bits": 3, "act_bits": 8, "mode": mode},
        }
    ).to_dict()


def test_qat_trial_trains_under_fake_quant_then_quantizes() -> None:
    task = tiny_task()
    qat = run_trial(TrialSpec(plan=_qat_plan("qat"), profiles=()), task)
    ptq = run_trial(TrialSpec(plan=_qat_plan("ptq"), profiles=()), task)
    assert qat.status == "ok", qat.reason
    assert ptq.status == "ok", ptq.reason
    assert "quantize.qat" in qat.notes and "quantize.qat" not in ptq.notes
    assert "qat" not in qat.notes["quantize"]  # the fine-tune did run under fake quantization
    assert qat.accuracy is not None and qat.accuracy > 0.5

    model, _ = build_model(CompressionPlan.from_dict(_qat_plan("qat")), task)
    assert all("forward" not in m.__dict__ for m in model.modules())  # QAT forwards gone; quantize's hooks stay
    ptq_model, _ = build_model(CompressionPlan.from_dict(_qat_plan("ptq")), task)
    assert not same_state(model, ptq_model)  # training saw the rounding: different weights


def test_qat_keeps_pruning_masks() -> None:
    task = tiny_task()
    plan = CompressionPlan.from_params(
        {
            "prune.unstructured": {"amount": 0.5},
            "distill.kd": {"epochs": 1, "batch_size": 64},
            "quantize": {"weight_bits": 4, "mode": "qat"},
        }
    )
    model, ctx = build_model(plan, task, skip=("quantize",))
    assert "quantize.qat" in ctx.notes
    for name, m in weight_layers(model):
        assert bool((m.weight[m.autoslim_weight_mask == 0] == 0).all()), name


def test_qat_without_a_fine_tune_is_noted_as_ptq() -> None:
    plan = CompressionPlan.from_params({"quantize": {"weight_bits": 4, "mode": "qat"}}).to_dict()
    result = run_trial(TrialSpec(plan=plan, profiles=()), tiny_task())
    assert result.status == "ok"
    assert "PTQ only" in result.notes["quantize"]["qat"]


def test_ste_training_reduces_loss_under_fake_quant() -> None:
    torch.manual_seed(0)
    model = make_model("mlp")
    x = inputs_for("mlp", 128)
    with torch.no_grad():
        y = make_model("mlp", seed=1)(x)
    ctx = make_ctx("mlp")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    with fake_quantized(model, QuantizeConfig(weight_bits=4, act_bits=8), ctx):
        for _ in range(30):
            loss = F.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
