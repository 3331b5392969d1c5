"""prune.unstructured pattern / threshold modes: N:M groups along the input dimension, |w| thresholds."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from autoslim.cost import builtin_profiles, estimate_cost
from autoslim.nn_utils import weight_layers
from autoslim.techniques import ApplyContext, InfeasibleError, get_technique
from autoslim.techniques.prune_unstructured import UnstructuredPruneConfig

torch.set_num_threads(1)


def make(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv1d(1, 16, 5, padding=2), nn.ReLU(),  # 1 x 5 = 5 weights per output channel: not divisible by 4
        nn.Conv1d(16, 16, 3, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(16 * 12, 32), nn.ReLU(), nn.Linear(32, 4),
    ).eval()  # fmt: skip


def inputs(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 1, 12, generator=torch.Generator().manual_seed(seed))


def prune(model: nn.Module, ctx: ApplyContext, **params) -> nn.Module:
    tech = get_technique("prune.unstructured")
    return tech.apply(model, tech.make_config(params), ctx)


def groups(w: torch.Tensor, m: int) -> torch.Tensor:
    return w.detach().flatten(1).reshape(w.shape[0], -1, m)


def test_two_of_four_keeps_the_largest_two_per_group() -> None:
    model, x = make(), inputs()
    original = {n: m.weight.detach().clone() for n, m in weight_layers(model)}
    shape = model(x).shape
    bytes_before = estimate_cost(model, x, builtin_profiles()["mcu-cortex-m7"]).model_bytes
    ctx = ApplyContext(example_inputs=x)
    out = prune(model, ctx, pattern="2:4")
    assert out(x).shape == shape
    assert ctx.notes["prune.unstructured"]["skipped"] == ["0"]
    assert ctx.notes["prune.unstructured"]["pattern_layers"] == 3
    assert torch.equal(out[0].weight, original["0"])  # skipped: its rows are 5 long
    for name, m in weight_layers(out):
        if name == "0":
            continue
        g, orig = groups(m.weight, 4), groups(original[name], 4).abs()
        assert int((g != 0).sum(-1).max()) <= 2, name
        assert int((g != 0).sum(-1).min()) == 2, name  # random weights: no ties, no prior zeros
        kept_min = torch.where(g != 0, orig, torch.inf).amin(-1)
        dropped_max = torch.where(g == 0, orig, -torch.inf).amax(-1)
        assert torch.all(dropped_max <= kept_min), name
    assert estimate_cost(out, x, builtin_profiles()["mcu-cortex-m7"]).model_bytes < bytes_before


def test_pattern_survives_distillation_and_is_deterministic() -> None:
    teacher = make()
    x_train = torch.randn(256, 1, 12, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y_train = teacher(x_train).argmax(-1)
    ctx = ApplyContext(example_inputs=inputs(), teacher=teacher, train_data=(x_train, y_train))
    student = prune(copy.deepcopy(teacher), ctx, pattern="1:4")
    again = prune(copy.deepcopy(teacher), ApplyContext(example_inputs=inputs()), pattern="1:4")
    assert all(torch.equal(student.state_dict()[k], again.state_dict()[k]) for k in student.state_dict())
    zeros = {n: (m.weight == 0).clone() for n, m in weight_layers(student)}
    student = get_technique("distill.kd").apply(student, get_technique("distill.kd").make_config({"epochs": 2}), ctx)
    for name, m in weight_layers(student):
        assert torch.all(m.weight[zeros[name]] == 0), name
        if name != "0":
            assert int((groups(m.weight, 4) != 0).sum(-1).max()) <= 1, name


def test_threshold_zeros_exactly_the_small_weights() -> None:
    model, x = make(), inputs()
    original = {n: m.weight.detach().clone() for n, m in weight_layers(model)}
    ctx = ApplyContext(example_inputs=x)
    out = prune(model, ctx, threshold=0.1, amount=0.0)
    total = zeros = 0
    for name, m in weight_layers(out):
        small = original[name].abs() < 0.1
        assert torch.all(m.weight[small] == 0)
        assert torch.equal(m.weight[~small], original[name][~small])
        total, zeros = total + small.numel(), zeros + int(small.sum())
    assert ctx.notes["prune.unstructured"]["sparsity"] == pytest.approx(zeros / total)
    # threshold takes precedence over amount: the default amount (0.5) is ignored
    same = prune(make(), ApplyContext(example_inputs=x), threshold=0.1)
    assert all(torch.equal(out.state_dict()[k], same.state_dict()[k]) for k in out.state_dict())


def test_no_layer_with_a_divisible_input_dim_is_infeasible() -> None:
    model = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 3))
    with pytest.raises(InfeasibleError, match="pattern"):
        prune(model, ApplyContext(example_inputs=torch.randn(2, 6)), pattern="2:4")
    out = prune(model, ApplyContext(example_inputs=torch.randn(2, 6)), pattern="1:2")  # 6 and 10 are even
    assert all(int((groups(m.weight, 2) != 0).sum(-1).max()) <= 1 for _, m in weight_layers(out))


@pytest.mark.parametrize("pattern", ["2-4", "4:2", "0:4", "2:2", "a:b", "2:4:8", ""])
def test_bad_patterns_name_the_field(pattern: str) -> None:
    with pytest.raises(ValueError, match="pattern"):
        UnstructuredPruneConfig(pattern=pattern)


@pytest.mark.parametrize(
    ("params", "field"),
    [({"threshold": 0.0}, "threshold"), ({"threshold": -1.0}, "threshold"), ({"threshold": float("nan")}, "threshold"),
     ({"threshold": 0.1, "pattern": "2:4"}, "pattern")],
)  # fmt: skip
def test_bad_thresholds_name_the_field(params: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        UnstructuredPruneConfig(**params)
