"""share.weights: k-means weight sharing keeps few distinct values, saves bytes, survives the KD fine-tune."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from autoslim.cost import builtin_profiles, estimate_cost, layer_stats
from autoslim.cost.annotation import annotate, annotation_of, is_annotated
from autoslim.cost.estimate import weight_storage_bits
from autoslim.nn_utils import weight_layers
from autoslim.techniques import ApplyContext, InfeasibleError, get_technique
from autoslim.techniques.prune_unstructured import MASK
from autoslim.techniques.share import CLUSTER_INDEX, ShareConfig, huffman_bits_per_symbol, kmeans_1d

torch.set_num_threads(1)


def make(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv1d(2, 16, 3, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(16 * 12, 64), nn.ReLU(), nn.Linear(64, 4),
    ).eval()  # fmt: skip


def inputs(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 2, 12, generator=torch.Generator().manual_seed(seed))


def run(name: str, model: nn.Module, ctx: ApplyContext, **params) -> nn.Module:
    tech = get_technique(name)
    return tech.apply(model, tech.make_config(params), ctx)


def distinct_nonzero(w: torch.Tensor) -> int:
    return int(torch.unique(w[w != 0]).numel())


@pytest.mark.parametrize("bits", [2, 4])
def test_few_distinct_values_and_smaller_model_on_every_profile(bits: int) -> None:
    model, x = make(), inputs()
    shape = model(x).shape
    before = {n: estimate_cost(model, x, p).model_bytes for n, p in builtin_profiles().items()}
    ctx = ApplyContext(example_inputs=x)
    out = run("share.weights", model, ctx, bits=bits)
    assert out(x).shape == shape
    for _, m in weight_layers(out):
        assert distinct_nonzero(m.weight) <= 2**bits
        assert annotation_of(m).codebook_bits == bits
    assert ctx.notes["share.weights"] == {"layers": 3, "clusters": 2**bits}
    for name, p in builtin_profiles().items():
        after = estimate_cost(out, x, p).model_bytes
        assert after < before[name] * (bits + 2) / 32, name  # weights dominate this model's bytes


def test_storage_is_indices_plus_codebook_and_unshared_layers_are_priced_as_before() -> None:
    layer = nn.Linear(64, 64, bias=False)
    x = torch.randn(2, 64)
    profile = builtin_profiles()["x86-avx512-vnni"]
    (plain,) = layer_stats(layer, x)
    assert plain.codebook_bits is None
    assert weight_storage_bits(plain, profile) == 64 * 64 * 32
    run("share.weights", layer, ApplyContext(example_inputs=x), bits=3)
    (shared,) = layer_stats(layer, x)
    assert weight_storage_bits(shared, profile) == 64 * 64 * 3 + 8 * 32
    annotate(layer, weight_bits=8)  # a later quantize stores the codebook at 8 bits
    (quantized,) = layer_stats(layer, x)
    assert weight_storage_bits(quantized, profile) == 64 * 64 * 3 + 8 * 8


def test_huffman_code_lengths() -> None:
    assert huffman_bits_per_symbol([1, 1, 2, 4]) == pytest.approx((3 + 3 + 2 * 2 + 4 * 1) / 8)
    assert huffman_bits_per_symbol([5]) == 1.0
    assert huffman_bits_per_symbol([3, 3, 3, 3]) == 2.0
    assert huffman_bits_per_symbol([0, 7, 0, 7]) == 1.0


def test_huffman_shrinks_bell_shaped_weights() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(128, 128, bias=False)
    with torch.no_grad():
        layer.weight.normal_()  # trained weights are bell-shaped: linear-init clusters are used unevenly
    x = torch.randn(2, 128)
    profile = builtin_profiles()["mcu-cortex-m7"]
    fixed = run("share.weights", copy.deepcopy(layer), ApplyContext(example_inputs=x), bits=4)
    ctx = ApplyContext(example_inputs=x)
    coded = run("share.weights", copy.deepcopy(layer), ctx, bits=4, huffman=True)
    avg = annotation_of(coded).huffman_bits
    assert avg is not None
    assert 1.0 <= avg < 4.0
    assert ctx.notes["share.weights"]["huffman_bits_per_weight"] == {"": round(avg, 4)}
    assert estimate_cost(coded, x, profile).model_bytes < estimate_cost(fixed, x, profile).model_bytes


def test_kmeans_is_deterministic_and_centroids_are_member_means() -> None:
    values = torch.randn(500, generator=torch.Generator().manual_seed(0))
    c1, a1 = kmeans_1d(values, 8)
    c2, a2 = kmeans_1d(values, 8)
    assert torch.equal(c1, c2) and torch.equal(a1, a2)
    for k in a1.unique():
        assert c1[k] == pytest.approx(float(values[a1 == k].double().mean()), abs=1e-6)
    a, b = make(), make()
    x = inputs()
    run("share.weights", a, ApplyContext(example_inputs=x))
    run("share.weights", b, ApplyContext(example_inputs=x))
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_pruned_zeros_and_clusters_survive_distillation() -> None:
    teacher = make()
    x_train = inputs(256, seed=3)
    with torch.no_grad():
        y_train = teacher(x_train).argmax(-1)
    x = inputs()
    ctx = ApplyContext(example_inputs=x, teacher=teacher, train_data=(x_train, y_train), seed=0)
    student = run("prune.unstructured", copy.deepcopy(teacher), ctx, amount=0.5)
    zeros = {n: (m.weight == 0).clone() for n, m in weight_layers(student)}
    student = run("share.weights", student, ctx, bits=3)
    shared = {n: m.weight.detach().clone() for n, m in weight_layers(student)}
    for n, m in weight_layers(student):
        assert torch.equal(m.weight == 0, zeros[n])
    student = run("distill.kd", student, ctx, epochs=2, lr=1e-2)
    moved = False
    for n, m in weight_layers(student):
        w, index = m.weight.detach(), getattr(m, CLUSTER_INDEX)
        assert torch.all(w[zeros[n]] == 0), n
        assert distinct_nonzero(w) <= 8, n
        for k in index[index >= 0].unique():  # every cluster still holds a single value
            assert w[index == k].unique().numel() == 1, n
        assert torch.equal(getattr(m, MASK) == 0, zeros[n])
        moved |= not torch.equal(w, shared[n])
    assert moved  # the fine-tune trained the centroids


def test_small_layers_are_skipped_and_none_left_is_infeasible() -> None:
    model, x = make(), inputs()
    ctx = ApplyContext(example_inputs=x)
    run("share.weights", model, ctx, min_numel=300)  # the 16x2x3 conv and the 64x4 head are smaller
    assert ctx.notes["share.weights"]["layers"] == 1
    assert not is_annotated(model[0])
    with pytest.raises(InfeasibleError, match=r"share\.weights"):
        run("share.weights", make(), ApplyContext(example_inputs=x), min_numel=10**6)


@pytest.mark.parametrize(("params", "field"), [({"bits": 0}, "bits"), ({"bits": 9}, "bits"),
                                               ({"bits": 2.5}, "bits"), ({"min_numel": 0}, "min_numel")])  # fmt: skip
def test_bad_configs_name_the_field(params: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ShareConfig(**params)
