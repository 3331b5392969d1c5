"""factorize.lowrank: SVD-factorized Linear / Conv pairs keep shapes, cut parameters, skip what they should."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from autoslim.nn_utils import weight_layers
from autoslim.techniques import ApplyContext, InfeasibleError, get_technique
from autoslim.techniques.lowrank import LowRankConfig

torch.set_num_threads(1)

INPUT_SHAPES = {"mlp": (24,), "conv1d": (4, 20), "conv2d": (4, 8, 8)}


def make(kind: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    if kind == "mlp":
        layers: list[nn.Module] = [nn.Linear(24, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 5)]
    elif kind == "conv1d":
        layers = [nn.Conv1d(4, 32, 5, padding=2), nn.ReLU(), nn.Conv1d(32, 32, 3, stride=2, padding=1),
                  nn.ReLU(), nn.Flatten(), nn.Linear(32 * 10, 5)]  # fmt: skip
    else:
        layers = [nn.Conv2d(4, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=2, dilation=2),
                  nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 5)]  # fmt: skip
    return nn.Sequential(*layers).eval()


def inputs(kind: str, n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, *INPUT_SHAPES[kind], generator=torch.Generator().manual_seed(seed))


def lowrank(model: nn.Module, example: torch.Tensor, **params) -> tuple[nn.Module, ApplyContext]:
    tech = get_technique("factorize.lowrank")
    ctx = ApplyContext(example_inputs=example)
    return tech.apply(model, tech.make_config(params), ctx), ctx


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("kind", ["mlp", "conv1d", "conv2d"])
def test_shape_kept_and_params_fall_as_configured(kind: str) -> None:
    x = inputs(kind)
    model = make(kind)
    shape, before = model(x).shape, n_params(model)
    out, ctx = lowrank(model, x, rank_ratio=0.25)
    assert out(x).shape == shape
    note = ctx.notes["factorize.lowrank"]
    assert note["layers"] >= 1
    assert n_params(out) == before - note["weights_before"] + note["weights_after"]
    assert n_params(out) < before
    for name, r in note["ranks"].items():
        pair = out.get_submodule(name)
        assert isinstance(pair, nn.Sequential) and len(pair) == 2
        full = min(pair[0].weight[0].numel(), pair[1].weight.shape[0])
        assert r == -(-25 * full // 100)  # ceil(0.25 * min(rows, cols))


def test_skip_last_keeps_the_output_layer_and_small_layers_are_skipped() -> None:
    x = inputs("mlp")
    out, _ = lowrank(make("mlp"), x, rank_ratio=0.25)
    assert isinstance(out[4], nn.Linear)  # the classifier
    assert isinstance(out[0], nn.Sequential)  # 24 x 64 is factorized
    out, _ = lowrank(make("mlp"), x, rank_ratio=0.25, min_features=32)
    assert isinstance(out[0], nn.Linear)  # its short side (24) is below min_features
    out, _ = lowrank(make("mlp"), x, rank_ratio=0.25, skip_last=False)
    assert isinstance(out[4], nn.Linear)  # 5 outputs: below min_features either way


def test_exact_low_rank_weights_are_reproduced() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 32, 3, stride=2, padding=1, dilation=1)
    with torch.no_grad():  # rank-3 weight matrix (32 x 144)
        conv.weight.copy_((torch.randn(32, 3) @ torch.randn(3, 16 * 9)).view_as(conv.weight))
    model = nn.Sequential(conv, nn.Flatten(), nn.Linear(32 * 16, 5)).eval()
    x = torch.randn(2, 16, 8, 8)
    ref = model(x)
    out, ctx = lowrank(copy.deepcopy(model), x, rank_ratio=None, energy=0.9999)
    assert ctx.notes["factorize.lowrank"]["ranks"] == {"0": 3}
    assert torch.allclose(out(x), ref, atol=1e-4)


def test_energy_picks_a_smaller_rank_for_less_energy() -> None:
    x = inputs("mlp")
    _, low = lowrank(make("mlp"), x, rank_ratio=None, energy=0.3)
    _, high = lowrank(make("mlp"), x, rank_ratio=None, energy=0.6)
    ranks_low, ranks_high = low.notes["factorize.lowrank"]["ranks"], high.notes["factorize.lowrank"]["ranks"]
    assert set(ranks_low) == set(ranks_high) == {"0", "2"}
    for name in ranks_low:
        assert ranks_low[name] < ranks_high[name]
    assert low.notes["factorize.lowrank"]["weights_after"] < high.notes["factorize.lowrank"]["weights_after"]


def test_deterministic() -> None:
    x = inputs("conv1d")
    a, _ = lowrank(make("conv1d"), x, rank_ratio=0.3)
    b, _ = lowrank(make("conv1d"), x, rank_ratio=0.3)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_grouped_convs_and_attention_projections_are_left_alone() -> None:
    depthwise = nn.Sequential(nn.Conv1d(32, 32, 3, groups=32), nn.Flatten(), nn.Linear(32 * 6, 4)).eval()
    with pytest.raises(InfeasibleError, match=r"factorize\.lowrank"):
        lowrank(depthwise, torch.randn(2, 32, 8))

    class Attn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(32, 4, batch_first=True)
            self.head = nn.Linear(32, 32)
            self.out = nn.Linear(32, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.head(self.attn(x, x, x)[0]).mean(1))

    torch.manual_seed(0)
    model = Attn().eval()
    x = torch.randn(2, 6, 32)
    out, ctx = lowrank(model, x, rank_ratio=0.25)
    assert list(ctx.notes["factorize.lowrank"]["ranks"]) == ["head"]
    assert out(x).shape == (2, 3)


def test_layers_whose_weight_is_read_directly_are_left_alone() -> None:
    class Reads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)  # eval fast path reads linear1.weight
            self.a = nn.Linear(32, 32)
            self.b = nn.Linear(32, 32)
            self.out = nn.Linear(32, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.enc(x).mean(1)
            return self.out(nn.functional.linear(h, self.a.weight) + self.b(h))

    torch.manual_seed(0)
    model = Reads().eval()
    x = torch.randn(2, 6, 32)
    ref = model(x)
    out, ctx = lowrank(model, x, rank_ratio=0.25)
    assert list(ctx.notes["factorize.lowrank"]["ranks"]) == ["b"]
    assert isinstance(out.a, nn.Linear) and isinstance(out.enc.linear1, nn.Linear)
    assert out(x).shape == ref.shape


def test_a_pair_no_smaller_than_the_layer_is_not_made() -> None:
    with pytest.raises(InfeasibleError, match="no layer"):
        lowrank(make("mlp"), inputs("mlp"), rank_ratio=1.0)
    assert len(weight_layers(make("mlp"))) == 3


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"rank_ratio": None}, "rank_ratio"),
        ({"energy": 0.9}, "energy"),  # rank_ratio still at its default: both set
        ({"rank_ratio": 0.0}, "rank_ratio"),
        ({"rank_ratio": 1.5}, "rank_ratio"),
        ({"rank_ratio": None, "energy": 0.0}, "energy"),
        ({"rank_ratio": None, "energy": 1.01}, "energy"),
        ({"min_features": 0}, "min_features"),
    ],
)
def test_bad_configs_name_the_field(params: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        LowRankConfig(**params)
