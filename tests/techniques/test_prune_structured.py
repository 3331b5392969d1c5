"""prune.structured: physically removes channels (every profile sees it), keeps the output layer's width."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from autoslim.cost import estimate_cost
from autoslim.nn_utils import weight_layers
from autoslim.techniques import InfeasibleError, get_technique
from tests.conftest import apply, inputs_for, make_ctx, make_model, n_params, same_state


def _out_channels(model: nn.Module) -> list[int]:
    return [m.out_features if isinstance(m, nn.Linear) else m.out_channels for _, m in weight_layers(model)]


@pytest.mark.parametrize("kind", ["mlp", "cnn1d", "cnn2d"])
def test_prune_half_keeps_output_shape_and_shrinks_every_cost(kind: str, profiles) -> None:
    model = make_model(kind)
    ctx = make_ctx(kind)
    x = inputs_for(kind, 5)
    out_shape = model(x).shape
    before_params = n_params(model)
    before = {name: estimate_cost(model, ctx.example_inputs, p) for name, p in profiles.items()}

    out = apply("prune.structured", model, ctx, ratio=0.5)

    assert out(x).shape == out_shape
    after_params = n_params(out)
    assert after_params < 0.5 * before_params  # half the channels on both sides of most weights: ~1/4 left
    assert ctx.notes["prune.structured"] == {"params_before": before_params, "params_after": after_params}
    for name, p in profiles.items():
        cost = estimate_cost(out, ctx.example_inputs, p)
        assert cost.macs < before[name].macs, name
        assert cost.model_bytes < before[name].model_bytes, name
        assert cost.latency_ms <= before[name].latency_ms, name


@pytest.mark.parametrize("kind", ["mlp", "cnn1d", "cnn2d"])
def test_output_layer_keeps_its_width_and_hidden_layers_shrink(kind: str) -> None:
    model = make_model(kind)
    widths = _out_channels(model)
    out = apply("prune.structured", model, make_ctx(kind), ratio=0.5)
    new_widths = _out_channels(out)
    assert new_widths[-1] == widths[-1]
    assert all(n == w // 2 for n, w in zip(new_widths[:-1], widths[:-1], strict=True))


def test_pruned_model_still_trains_and_runs_in_train_mode() -> None:
    out = apply("prune.structured", make_model("cnn2d"), make_ctx("cnn2d"), ratio=0.5)
    out.train()
    loss = out(inputs_for("cnn2d", 8)).square().mean()
    loss.backward()
    assert all(p.grad is not None for p in out.parameters())


@pytest.mark.parametrize("kind", ["mlp", "cnn1d", "cnn2d"])
def test_round_to_keeps_channel_counts_aligned(kind: str) -> None:
    out = apply("prune.structured", make_model(kind), make_ctx(kind), ratio=0.3, round_to=8)
    assert all(c % 8 == 0 for c in _out_channels(out)[:-1]), _out_channels(out)
    unaligned = apply("prune.structured", make_model(kind), make_ctx(kind), ratio=0.3)
    assert any(c % 8 for c in _out_channels(unaligned)[:-1])  # the rounding really did something


def test_global_pruning_ranks_across_layers() -> None:
    per_layer = _out_channels(apply("prune.structured", make_model("cnn1d"), make_ctx("cnn1d"), ratio=0.4))
    global_ = _out_channels(
        apply("prune.structured", make_model("cnn1d"), make_ctx("cnn1d"), ratio=0.4, global_pruning=True)
    )
    assert global_ != per_layer


def test_importance_decides_which_channels_go() -> None:
    model = make_model("mlp")
    with torch.no_grad():  # make neuron 7 of the first hidden layer by far the largest: it must survive
        model[0].weight[7].mul_(100.0)
        model[0].bias[7] = 5.0
    kept_weight = model[0].weight[7].clone()
    out = apply("prune.structured", model, make_ctx("mlp"), ratio=0.5, importance="l1")
    assert any(torch.equal(row, kept_weight) for row in out[0].weight)


def test_bn_scale_importance_uses_batch_norm_scales() -> None:
    model = make_model("cnn2d")
    with torch.no_grad():  # stem channel 3 has the largest BN scale by far; channel 5 the smallest
        model[1].weight[3] = 50.0
        model[1].weight[5] = 1e-4
    stem = model[0].weight.detach().clone()
    out = apply("prune.structured", model, make_ctx("cnn2d"), ratio=0.5, importance="bn_scale")
    kept = out[0].weight
    assert any(torch.equal(k, stem[3]) for k in kept)
    assert not any(torch.equal(k, stem[5]) for k in kept)


def test_bn_scale_on_a_model_without_batch_norm_is_infeasible() -> None:
    with pytest.raises(InfeasibleError, match="no channel could be removed"):
        apply("prune.structured", make_model("mlp"), make_ctx("mlp"), ratio=0.5, importance="bn_scale")


def test_a_single_output_layer_cannot_be_pruned() -> None:
    model = nn.Sequential(nn.Linear(12, 4)).eval()
    with pytest.raises(InfeasibleError):
        apply("prune.structured", model, make_ctx("mlp"), ratio=0.5)


def test_ratio_zero_returns_the_model_unchanged() -> None:
    model = make_model("cnn1d")
    reference = copy.deepcopy(model)
    assert same_state(apply("prune.structured", model, make_ctx("cnn1d"), ratio=0.0), reference)


def test_prune_is_deterministic() -> None:
    a = apply("prune.structured", make_model("cnn2d"), make_ctx("cnn2d"), ratio=0.4, global_pruning=True)
    b = apply("prune.structured", make_model("cnn2d"), make_ctx("cnn2d"), ratio=0.4, global_pruning=True)
    assert same_state(a, b)


@pytest.mark.parametrize(
    "params", [{"ratio": 1.2}, {"ratio": 1.0}, {"ratio": -0.1}, {"importance": "l3"}, {"round_to": 0}]
)
def test_invalid_config_raises(params: dict) -> None:
    with pytest.raises(ValueError):
        get_technique("prune.structured").make_config(params)


@pytest.mark.parametrize("kind", ["mlp", "cnn1d", "cnn2d"])
def test_bias_compensation_keeps_the_removed_channels_mean(kind: str) -> None:
    """With compensation the pruned model's mean output on the calibration data stays closer to the teacher's:
    the removed channels' mean contribution moved into the next layer's bias (FLAP)."""
    torch.manual_seed(0)
    model = make_model(kind)
    with torch.no_grad():  # biased activations: post-ReLU channels with a large mean, as trained nets have
        for _, m in weight_layers(model):
            if m.bias is not None:
                m.bias.add_(1.0)
    ctx = make_ctx(kind)
    x = ctx.calibration_inputs
    reference = model(x).mean(0)
    errors = {}
    for comp in (False, True):
        out = apply("prune.structured", copy.deepcopy(model), make_ctx(kind), ratio=0.5, bias_compensation=comp)
        assert n_params(out) < n_params(model)
        errors[comp] = (out(x).mean(0) - reference).abs().mean().item()
    assert errors[True] < 0.5 * errors[False], errors


def test_reconstruct_solves_the_layer_least_squares_problem() -> None:
    """The refit kept columns and bias are the least-squares optimum of reproducing the layer's outputs from the
    inputs it keeps (compared with torch.linalg.lstsq, up to the ridge term)."""
    from autoslim.techniques import prune_structured

    torch.manual_seed(0)
    layer = nn.Linear(10, 5)
    # inputs on a 6-dimensional subspace (plus noise), biased: what a removed column carried, the 7 kept ones mostly
    # still carry, and a refit recovers it
    x = torch.randn(400, 6) @ torch.randn(6, 10) + 0.05 * torch.randn(400, 10) + 0.5
    target = layer(x).detach()
    w0, b0 = layer.weight.detach().clone(), layer.bias.detach().clone()
    rows = torch.cat([x, torch.ones(400, 1)], 1).double()
    removed = [1, 4, 7]
    kept = [i for i in range(10) if i not in removed]
    prune_structured._reconstruct(layer, removed, rows.T @ rows)
    refit = x[:, kept] @ layer.weight[:, kept].T + layer.bias
    solution = torch.linalg.lstsq(torch.cat([x[:, kept], torch.ones(400, 1)], 1), target).solution
    best = torch.cat([x[:, kept], torch.ones(400, 1)], 1) @ solution
    dropped = x[:, kept] @ w0[:, kept].T + b0  # the columns simply removed, as plain pruning does
    err, best_err = (refit - target).pow(2).mean().item(), (best - target).pow(2).mean().item()
    # near the unregularised optimum (the ridge term, 1% of the mean diagonal, costs a little on purpose: it keeps
    # the solve stable where calibration data barely spans a layer's inputs)
    assert err <= 5 * best_err + 1e-6, (err, best_err)
    assert err < 0.1 * (dropped - target).pow(2).mean().item()


def test_reconstruct_keeps_the_pruned_mlp_closer_to_the_teacher_than_bias_compensation() -> None:
    """On held-out inputs (not the calibration batch the refit saw): per-sample output error falls from plain
    pruning to bias compensation to least-squares reconstruction."""
    torch.manual_seed(0)
    model = make_model("mlp")
    with torch.no_grad():
        for _, m in weight_layers(model):
            m.bias.add_(1.0)
    held_out = inputs_for("mlp", 256, seed=7)
    reference = model(held_out)
    errors = {}
    for mode in ({}, {"bias_compensation": True}, {"reconstruct": True}):
        ctx = make_ctx("mlp")
        ctx.calibration_inputs = inputs_for("mlp", 512, seed=2)
        out = apply("prune.structured", copy.deepcopy(model), ctx, ratio=0.5, **mode)
        assert n_params(out) < n_params(model)
        errors[str(mode)] = (out(held_out) - reference).pow(2).mean().item()
    plain, comp, recon = errors.values()
    assert recon < 0.5 * comp and comp < plain, errors
    assert "reconstructed" in get_technique("prune.structured").describe(
        get_technique("prune.structured").make_config({"reconstruct": True})
    )


# --- activation-aware importance -------------------------------------------------------------------------------


def _quiet_loud_mlp() -> nn.Module:
    """12 -> 32 -> 4: hidden units 0-15 have large outgoing weights but near-silent inputs (contribution ~0.01 of
    the others'), the trap that weight magnitude falls into."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    with torch.no_grad():
        model[0].weight[:16] *= 0.01
        model[0].bias[:16] *= 0.01
        model[2].weight[:, :16] *= 10.0
    return model


def test_activation_importance_removes_silent_channels_that_magnitude_keeps() -> None:
    x = inputs_for("mlp", 512, seed=5)
    with torch.no_grad():
        ref = _quiet_loud_mlp()(x)
        errors = {}
        for importance in ("l2", "activation"):
            pruned = apply("prune.structured", _quiet_loud_mlp(), make_ctx("mlp"), ratio=0.5, importance=importance)
            assert pruned[0].out_features == 16
            errors[importance] = float((pruned(x) - ref).pow(2).mean())
    assert errors["activation"] < errors["l2"] / 10


def test_activation_importance_falls_back_to_magnitude_where_no_consumer_has_statistics() -> None:
    import torch_pruning as tp

    from autoslim.techniques.prune_structured import ActivationImportance

    model = _quiet_loud_mlp()
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=inputs_for("mlp", 2))
    group = graph.get_pruning_group(model[0], tp.prune_linear_out_channels, idxs=list(range(32)))
    bare = ActivationImportance()  # no second moments: ranked by L2 magnitude, as l2 would
    assert torch.allclose(bare(group), tp.importance.GroupMagnitudeImportance(p=2)(group))
    bare.second_moments = {model[2]: torch.ones(32)}  # with statistics the silent units rank last
    scores = bare(group)
    assert scores[:16].max() > scores[16:].min()  # equal inputs: their loud outgoing weights win...
    bare.second_moments = {model[2]: torch.cat([torch.full((16,), 1e-4), torch.ones(16)])}
    scores = bare(group)
    assert scores[:16].max() < scores[16:].min()  # ...silent inputs lose
