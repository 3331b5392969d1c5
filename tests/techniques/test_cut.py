"""cut.blocks: removes the least important same-shape blocks, keeps the output shape, refuses the impossible."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from autoslim.cost import estimate_cost
from autoslim.techniques import ApplyContext, InfeasibleError, get_technique
from autoslim.techniques.cut import CropSkip, CutBlocksConfig, removable_blocks
from tests.conftest import apply, inputs_for, make_ctx, make_model, n_params, same_state


def test_candidates_are_the_same_shape_blocks() -> None:
    mlp, cnn1d, cnn2d = make_model("mlp"), make_model("cnn1d"), make_model("cnn2d")
    # MLP: only the two hidden width->width Linear layers map a tensor to one of the same shape.
    assert set(removable_blocks(mlp, inputs_for("mlp", 8))) == {"2", "4"}
    # 1-D CNN: the four residual blocks (the strided conv changes the shape; norms and ReLUs are never blocks).
    assert set(removable_blocks(cnn1d, inputs_for("cnn1d", 8))) == {"3", "4", "8", "9"}
    assert set(removable_blocks(cnn2d, inputs_for("cnn2d", 8))) == {"3"}


def test_scoring_leaves_the_model_mode_alone() -> None:
    model = make_model("cnn1d").train()
    removable_blocks(model, inputs_for("cnn1d", 8))
    assert model.training
    assert not any(m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("kind", ["mlp", "cnn1d", "cnn2d"])
def test_cut_one_block_keeps_output_shape_and_lowers_params_and_macs(kind: str, x86) -> None:
    model = make_model(kind)
    ctx = make_ctx(kind)
    x = inputs_for(kind, 5)
    before_out = model(x)
    before_params, before_cost = n_params(model), estimate_cost(model, ctx.example_inputs, x86)

    out = apply("cut.blocks", model, ctx, n_blocks=1)

    assert out(x).shape == before_out.shape
    assert n_params(out) < before_params
    cost = estimate_cost(out, ctx.example_inputs, x86)
    assert cost.macs < before_cost.macs
    assert cost.latency_ms < before_cost.latency_ms
    removed = ctx.notes["cut.blocks"]["removed"]
    assert len(removed) == 1
    assert isinstance(out.get_submodule(removed[0]), nn.Identity)


def test_cut_removes_the_least_important_blocks() -> None:
    model = make_model("cnn1d")
    ctx = make_ctx("cnn1d")
    scores = removable_blocks(copy.deepcopy(model), ctx.calibration_inputs)
    expected = sorted(scores, key=scores.__getitem__)[:2]

    out = apply("cut.blocks", model, ctx, n_blocks=2)

    assert ctx.notes["cut.blocks"]["removed"] == expected
    assert ctx.notes["cut.blocks"]["importance"] == pytest.approx(scores)
    kept = set(scores) - set(expected)
    assert all(isinstance(out.get_submodule(n), nn.Identity) for n in expected)
    assert not any(isinstance(out.get_submodule(n), nn.Identity) for n in kept)


def test_cut_prefers_the_block_that_changes_its_input_least() -> None:
    model = make_model("mlp")
    with torch.no_grad():  # block "4" becomes (almost) the identity map: nothing is lost by cutting it
        model[4].weight.copy_(torch.eye(32))
        model[4].bias.zero_()
    ctx = make_ctx("mlp")
    apply("cut.blocks", model, ctx, n_blocks=1)
    assert ctx.notes["cut.blocks"]["removed"] == ["4"]


def test_fraction_of_blocks_rounds_down() -> None:
    ctx = make_ctx("cnn1d")
    apply("cut.blocks", make_model("cnn1d"), ctx, fraction=0.6)  # 0.6 * 4 = 2.4 -> 2
    assert len(ctx.notes["cut.blocks"]["removed"]) == 2


def test_zero_blocks_changes_nothing() -> None:
    model = make_model("cnn1d")
    reference = copy.deepcopy(model)
    out = apply("cut.blocks", model, make_ctx("cnn1d"), n_blocks=0)
    assert same_state(out, reference)


def test_cut_blocks_in_a_module_list() -> None:
    class Looped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Linear(6, 8)
            self.blocks = nn.ModuleList(nn.Linear(8, 8) for _ in range(3))
            self.head = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.stem(x)
            for b in self.blocks:
                x = torch.relu(b(x))
            return self.head(x)

    torch.manual_seed(0)
    model = Looped().eval()
    x = torch.randn(16, 6)
    ctx = ApplyContext(example_inputs=x[:2], calibration_inputs=x)
    out = apply("cut.blocks", model, ctx, n_blocks=2)
    removed = ctx.notes["cut.blocks"]["removed"]
    assert len(removed) == 2 and all(n.startswith("blocks.") for n in removed)
    assert sum(isinstance(b, nn.Identity) for b in out.blocks) == 2
    assert out(x).shape == (16, 2)


def test_a_module_list_keeps_its_most_important_layer() -> None:
    # Cutting every layer of a stack leaves embeddings feeding a head (chance accuracy on the zoo's BERT) and
    # nothing for a structured prune after the cut: the most important layer is not offered.
    class Stack(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList(nn.Linear(8, 8) for _ in range(3))
            self.head = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for b in self.blocks:
                x = torch.relu(b(x))
            return self.head(x)

    torch.manual_seed(0)
    model = Stack().eval()
    with torch.no_grad():  # blocks 0 and 2 pass a positive input on unchanged: blocks.1 matters most
        for i in (0, 2):
            model.blocks[i].weight.copy_(torch.eye(8))
            model.blocks[i].bias.zero_()
    x = torch.rand(32, 8)
    assert set(removable_blocks(model, x)) == {"blocks.0", "blocks.2"}
    with pytest.raises(InfeasibleError, match="only 2 are removable"):
        apply("cut.blocks", model, ApplyContext(example_inputs=x[:2], calibration_inputs=x), n_blocks=3)


class _Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.fc(x))


def test_a_module_holding_most_parameters_is_no_block() -> None:
    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Linear(4, 16)
            self.trunk = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), _Residual(16))  # most of the model
            self.head = nn.Linear(16, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.trunk(self.stem(x)))

    torch.manual_seed(0)
    # Were the trunk a block it would be offered whole (it holds one block); as it is the model, what it holds is.
    assert set(removable_blocks(Wrapped().eval(), torch.randn(8, 4))) == {"trunk.0", "trunk.2"}


def test_a_module_called_twice_is_no_block() -> None:
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.head = nn.Linear(4, 8), nn.Linear(8, 2)
            self.once, self.twice = nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.twice(self.twice(self.once(self.stem(x)))))

    torch.manual_seed(0)
    assert set(removable_blocks(Shared().eval(), torch.randn(8, 4))) == {"once"}


def test_a_stage_offers_its_blocks_and_a_block_is_not_split() -> None:
    class Staged(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Linear(4, 16)
            self.stage = nn.Sequential(_Residual(16), _Residual(16), _Residual(16))
            self.lonely = nn.Sequential(_Residual(16))  # holds one block: kept whole
            self.head = nn.Linear(16, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.lonely(self.stage(self.stem(x))))

    torch.manual_seed(0)
    assert set(removable_blocks(Staged().eval(), torch.randn(8, 4))) == {"stage.0", "stage.1", "stage.2", "lonely"}


def test_a_conv_on_input_padded_outside_it_is_cut_to_a_crop() -> None:
    class PadThenConv(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv1d(1, 4, 3, padding=1)
            self.valid = nn.Conv1d(4, 4, 5)  # called on F.pad(x, (2, 2)): back to the length it was given
            self.strided = nn.Conv1d(4, 4, 3, stride=2)  # shorter output from its stride: no border to crop
            self.head = nn.Linear(4 * 9, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.valid(torch.nn.functional.pad(torch.relu(self.stem(x)), (2, 2)))
            return self.head(self.strided(torch.relu(x)).flatten(1))

    torch.manual_seed(0)
    x = torch.randn(8, 1, 20)
    ctx = ApplyContext(example_inputs=x[:2], calibration_inputs=x)
    out = apply("cut.blocks", PadThenConv().eval(), ctx, n_blocks=1)
    assert ctx.notes["cut.blocks"]["removed"] == ["valid"]
    assert isinstance(out.valid, CropSkip) and out.valid.trim == (4,)
    assert out(x).shape == (8, 2)
    padded = torch.nn.functional.pad(x, (2, 2))
    assert torch.equal(out.valid(padded), x)  # the centre tap's input: the unpadded signal


def test_cut_is_deterministic() -> None:
    a = apply("cut.blocks", make_model("cnn1d"), make_ctx("cnn1d"), n_blocks=2)
    b = apply("cut.blocks", make_model("cnn1d"), make_ctx("cnn1d"), n_blocks=2)
    assert same_state(a, b)
    x = inputs_for("cnn1d", 4)
    assert torch.equal(a(x), b(x))


def test_more_blocks_than_removable_is_infeasible() -> None:
    with pytest.raises(InfeasibleError, match="only 4 are removable"):
        apply("cut.blocks", make_model("cnn1d"), make_ctx("cnn1d"), n_blocks=99)


def test_model_without_removable_block_is_infeasible() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    with pytest.raises(InfeasibleError, match="no block"):
        apply("cut.blocks", model, make_ctx("mlp"), n_blocks=1)


@pytest.mark.parametrize("params", [{"n_blocks": -1}, {"fraction": 1.5}, {"fraction": -0.1}])
def test_invalid_config_raises(params: dict) -> None:
    with pytest.raises(ValueError):
        get_technique("cut.blocks").make_config(params)


def test_unknown_field_raises() -> None:
    with pytest.raises(ValueError, match="blocks_to_cut"):
        get_technique("cut.blocks").make_config({"blocks_to_cut": 1})


def test_config_is_frozen() -> None:
    cfg = CutBlocksConfig(n_blocks=2)
    with pytest.raises(AttributeError):
        cfg.n_blocks = 3  # type: ignore[misc]
