"""prune.unstructured: zeros the smallest weights (global or per layer), keeps masks, saves bytes not time."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from autoslim.cost import estimate_cost
from autoslim.nn_utils import weight_layers
from autoslim.techniques import get_technique
from autoslim.techniques.prune_unstructured import MASK, enforce_masks
from tests.conftest import apply, inputs_for, make_ctx, make_model, n_params, same_state


def _sparsity(model: nn.Module) -> float:
    ws = [m.weight for _, m in weight_layers(model)]
    return sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)


@pytest.mark.parametrize("kind", ["mlp", "cnn1d", "cnn2d"])
def test_global_amount_zeros_that_fraction_and_saves_bytes_not_time(kind: str, profiles) -> None:
    model = make_model(kind)
    ctx = make_ctx(kind)
    x = inputs_for(kind, 5)
    shape, params = model(x).shape, n_params(model)
    before = {name: estimate_cost(model, ctx.example_inputs, p) for name, p in profiles.items()}

    out = apply("prune.unstructured", model, ctx, amount=0.6)

    assert out(x).shape == shape
    assert n_params(out) == params  # same tensors, zeros inside
    total = sum(m.weight.numel() for _, m in weight_layers(out))
    assert _sparsity(out) == pytest.approx(int(0.6 * total) / total)
    assert ctx.notes["prune.unstructured"]["sparsity"] == pytest.approx(_sparsity(out))
    for name, p in profiles.items():
        cost = estimate_cost(out, ctx.example_inputs, p)
        assert cost.model_bytes < before[name].model_bytes, name
        # Every built-in profile is a CPU/GPU/MCU with dense kernels: zeros do not save time.
        assert p.unstructured_sparsity_speedup == 1.0
        assert cost.latency_ms == pytest.approx(before[name].latency_ms), name
        assert cost.macs == before[name].macs


def test_the_smallest_magnitudes_are_the_ones_zeroed() -> None:
    model = make_model("mlp")
    original = torch.cat([m.weight.detach().abs().flatten() for _, m in weight_layers(model)])
    out = apply("prune.unstructured", model, make_ctx("mlp"), amount=0.5)
    pruned = torch.cat([m.weight.detach().flatten() for _, m in weight_layers(out)])
    zeroed = original[pruned == 0]
    kept = original[pruned != 0]
    assert zeroed.max() < kept.min()


def test_global_and_per_layer_scopes_differ() -> None:
    def scaled() -> nn.Module:
        m = make_model("mlp")
        with torch.no_grad():
            w = m[0].weight
            w.copy_(torch.where(w >= 0, 1.0, -1.0) * (10.0 + w.abs()))  # the first layer's weights dwarf all others
        return m

    glob = apply("prune.unstructured", scaled(), make_ctx("mlp"), amount=0.5, scope="global")
    per_layer = apply("prune.unstructured", scaled(), make_ctx("mlp"), amount=0.5, scope="layer")
    assert (glob[0].weight == 0).float().mean() == 0.0  # global ranking spares the large layer entirely
    for _, m in weight_layers(per_layer):
        assert (m.weight == 0).float().mean().item() == pytest.approx(int(0.5 * m.weight.numel()) / m.weight.numel())


def test_mask_is_a_non_persistent_buffer_matching_the_zeros() -> None:
    out = apply("prune.unstructured", make_model("cnn2d"), make_ctx("cnn2d"), amount=0.5)
    for name, m in weight_layers(out):
        mask = getattr(m, MASK)
        assert torch.equal(mask == 0, m.weight == 0)
        assert f"{name}.{MASK}" not in out.state_dict()


def test_enforce_masks_restores_zeros_after_an_update() -> None:
    out = apply("prune.unstructured", make_model("mlp"), make_ctx("mlp"), amount=0.7)
    zeros = [m.weight == 0 for _, m in weight_layers(out)]
    with torch.no_grad():
        for _, m in weight_layers(out):
            m.weight.add_(1.0)
    enforce_masks(out)
    assert all(torch.equal(m.weight == 0, z) for (_, m), z in zip(weight_layers(out), zeros, strict=True))


def test_pruning_twice_keeps_earlier_zeros() -> None:
    ctx = make_ctx("cnn1d")
    model = apply("prune.unstructured", make_model("cnn1d"), ctx, amount=0.3)
    first = [m.weight == 0 for _, m in weight_layers(model)]
    with torch.no_grad():  # a fine-tune could have grown other weights; earlier zeros must survive regardless
        for _, m in weight_layers(model):
            m.weight.add_(torch.randn_like(m.weight) * 0.01)
    model = apply("prune.unstructured", model, ctx, amount=0.5)
    for (_, m), z in zip(weight_layers(model), first, strict=True):
        assert bool((m.weight[z] == 0).all())
    assert _sparsity(model) >= 0.5


def test_amount_zero_changes_nothing() -> None:
    model = make_model("cnn1d")
    reference = copy.deepcopy(model)
    assert same_state(apply("prune.unstructured", model, make_ctx("cnn1d"), amount=0.0), reference)


def test_unstructured_is_deterministic() -> None:
    a = apply("prune.unstructured", make_model("cnn2d"), make_ctx("cnn2d"), amount=0.8, scope="layer")
    b = apply("prune.unstructured", make_model("cnn2d"), make_ctx("cnn2d"), amount=0.8, scope="layer")
    assert same_state(a, b)


@pytest.mark.parametrize("params", [{"amount": 1.0}, {"amount": 1.2}, {"amount": -0.1}, {"scope": "row"}])
def test_invalid_config_raises(params: dict) -> None:
    with pytest.raises(ValueError):
        get_technique("prune.unstructured").make_config(params)
