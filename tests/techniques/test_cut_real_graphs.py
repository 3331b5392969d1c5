"""cut.blocks on models written the way real projects write them, not as an ``nn.Sequential``.

torchcrepe's Crepe (attributes called through a ``layer()`` helper), torchvision's ResNet-18 (``layer1..layer4``
stages of ``BasicBlock``), a VGG whose forward flattens with ``x.view``, and Hugging Face BERT. Each must offer
blocks at the granularity ``autoslim.techniques.cut`` documents, lose at least one, keep its output shape and
shrink; a block whose stand-in breaks the forward is never offered.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autoslim.tasks.zoo.resnet18 import resnet18
from autoslim.techniques import ApplyContext, InfeasibleError
from autoslim.techniques.cut import removable_blocks
from tests.conftest import apply, n_params, same_state
from tests.real_nets import Crepe

# --- a VGG-style net flattening with view ------------------------------------------------------------------


class VGGish(nn.Module):
    """Conv pairs and pooling, then ``x.view(-1, C * H * W)`` into a classifier; conv1_2, conv2_2 and fc2 keep
    their input's shape."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1_1, self.conv1_2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.conv2_1, self.conv2_2 = nn.Conv2d(8, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1, self.fc2, self.fc3 = nn.Linear(16 * 8 * 8, 32), nn.Linear(32, 32), nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1_2(F.relu(self.conv1_1(x)))))
        x = self.pool(F.relu(self.conv2_2(F.relu(self.conv2_1(x)))))
        x = x.view(-1, 16 * 8 * 8)
        x = F.relu(self.fc2(F.relu(self.fc1(x))))
        return self.fc3(x)


# --- helpers -----------------------------------------------------------------------------------------------


def ResNet() -> nn.Module:
    """torchvision's ResNet-18 (the zoo's copy of torchvision.models.resnet) at base width 8."""
    return resnet18(width=8, num_classes=10)


def _built(cls: Callable[[], nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return cls().eval()


def _ctx(inputs: torch.Tensor) -> ApplyContext:
    return ApplyContext(example_inputs=inputs[:2], calibration_inputs=inputs)


def _crepe_inputs(n: int) -> torch.Tensor:
    return torch.randn(n, 1024, generator=torch.Generator().manual_seed(0))


def _image_inputs(n: int) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


CASES = {
    "crepe": (Crepe, _crepe_inputs, {"conv3", "conv4"}),
    "resnet18": (
        ResNet,
        _image_inputs,
        # Stages hold two blocks each: layer1 offers both, the strided stages their second (same-shape) block and
        # the same-shape conv2 of the downsampling block, which no candidate holds.
        {
            "layer1.0",
            "layer1.1",
            "layer2.1",
            "layer3.1",
            "layer4.1",
            "layer2.0.conv2",
            "layer3.0.conv2",
            "layer4.0.conv2",
        },
    ),
    "vgg": (VGGish, _image_inputs, {"conv1_2", "conv2_2", "fc2"}),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_attribute_chained_models_offer_their_same_shape_blocks(kind: str) -> None:
    cls, inputs, expected = CASES[kind]
    model = _built(cls)
    reference = copy.deepcopy(model)
    assert set(removable_blocks(model, inputs(8))) == expected
    assert same_state(model, reference)  # verification swapped candidates in and out, and put them all back
    assert all(type(a) is type(b) for a, b in zip(model.modules(), reference.modules(), strict=True))
    assert not any(m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("kind", list(CASES))
@pytest.mark.parametrize("n_blocks", [1, 2])
def test_attribute_chained_models_lose_blocks_and_keep_their_output(kind: str, n_blocks: int) -> None:
    cls, inputs, _ = CASES[kind]
    model = _built(cls)
    x = inputs(8)
    before_shape, before_params = model(x).shape, n_params(model)
    ctx = _ctx(x)

    out = apply("cut.blocks", model, ctx, n_blocks=n_blocks)

    removed = ctx.notes["cut.blocks"]["removed"]
    assert len(removed) == n_blocks
    assert all(isinstance(out.get_submodule(n), nn.Identity) for n in removed)
    assert out(x).shape == before_shape
    assert n_params(out) < before_params
    scores = ctx.notes["cut.blocks"]["importance"]
    assert removed == sorted(scores, key=scores.__getitem__)[:n_blocks]


def test_a_resnet_stage_is_never_one_block_nor_are_a_blocks_convs() -> None:
    scores = removable_blocks(_built(ResNet), _image_inputs(8))
    assert not any(n.startswith("layer") and "." not in n for n in scores)  # no whole stage
    assert not any(n.startswith("layer1.") and n.count(".") > 1 for n in scores)  # no conv of a kept block


def test_cutting_every_resnet_block_still_runs() -> None:
    x = _image_inputs(8)
    ctx = _ctx(x)
    model = apply("cut.blocks", _built(ResNet), ctx, fraction=1.0)
    assert len(ctx.notes["cut.blocks"]["removed"]) == 8
    assert model(x).shape == (8, 10)


# --- Hugging Face BERT -------------------------------------------------------------------------------------


def test_bert_offers_its_layers_and_loses_one() -> None:
    pytest.importorskip("transformers")
    from tests.zoo import ZOO, build_model

    model = build_model("bert")
    inputs = ZOO["bert"].inputs(8, torch.Generator().manual_seed(0))
    # The layers, and the pooler's same-shape Linear (a single layer no candidate holds); the encoder holds most
    # of the parameters (it is the model, not a block) and a BertLayer's attention is cut with its layer. The
    # stack keeps one of its two layers.
    scores = removable_blocks(model, inputs)
    layers = {n for n in scores if n.startswith("bert.encoder.layer.")}
    assert set(scores) == layers | {"bert.pooler.dense"}
    assert len(layers) == 1 and layers < {"bert.encoder.layer.0", "bert.encoder.layer.1"}

    before_shape, before_params = model(**inputs).logits.shape, n_params(model)
    ctx = ApplyContext(example_inputs={k: v[:2] for k, v in inputs.items()}, calibration_inputs=inputs)
    out = apply("cut.blocks", model, ctx, n_blocks=1)
    assert sum(isinstance(layer, nn.Identity) for layer in out.bert.encoder.layer) == 1
    assert out(**inputs).logits.shape == before_shape
    assert n_params(out) < before_params
    assert ctx.notes["cut.blocks"]["removed"] == [min(scores, key=scores.__getitem__)]


# --- blocks whose removal breaks the forward ---------------------------------------------------------------


class Gated(nn.Module):
    """Same-shape hidden state out, plus a gate its caller multiplies by: its stand-in's ``None`` breaks that."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.proj, self.gate = nn.Linear(width, width), nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.relu(self.proj(x)), torch.sigmoid(self.gate(x))


class Paired(nn.Module):
    """Same-shape hidden state out plus a second one; its caller gives each a head and concatenates the logits,
    so its stand-in's ``(x, None)`` halves the output's width without raising."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.a(x), self.b(x)


class Fragile(nn.Module):
    """One cuttable layer (``mid``) and three same-shape modules that must not be offered."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Linear(6, width)
        self.mid = nn.Linear(width, width)
        self.gated = Gated(width)  # removal raises: the caller multiplies by None
        self.hidden_path = nn.Linear(width, width)
        self.path = [self.hidden_path]  # called through a plain list: replacing the attribute would cut nothing
        self.paired = Paired(width)  # removal changes the output shape: one head's logits instead of two
        self.head = nn.Linear(width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.mid(self.stem(x)))
        h, g = self.gated(x)
        x = self.path[0](h * g)
        return torch.cat([self.head(t) for t in self.paired(x) if t is not None], dim=-1)


def test_a_block_whose_removal_breaks_the_forward_is_not_offered() -> None:
    torch.manual_seed(0)
    model = Fragile().eval()
    x = torch.randn(8, 6)
    reference = copy.deepcopy(model)
    assert set(removable_blocks(model, x)) == {"mid"}
    assert same_state(model, reference)
    assert isinstance(model.gated, Gated) and isinstance(model.paired, Paired)

    ctx = _ctx(x)
    out = apply("cut.blocks", model, ctx, n_blocks=1)
    assert ctx.notes["cut.blocks"]["removed"] == ["mid"]
    assert out(x).shape == (8, 6)


def test_when_only_breaking_blocks_exist_the_reason_names_them() -> None:
    class OnlyGated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # A wide stem: the gated block must hold at most half of the parameters to be a candidate at all.
            self.stem, self.gated, self.head = nn.Linear(40, 16), Gated(16), nn.Linear(16, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h, g = self.gated(self.stem(x))
            return self.head(h * g)

    torch.manual_seed(0)
    x = torch.randn(8, 40)
    with pytest.raises(InfeasibleError, match="gated: TypeError"):
        apply("cut.blocks", OnlyGated().eval(), _ctx(x), n_blocks=1)


def test_the_first_layer_of_a_torch_transformer_encoder_is_not_offered() -> None:
    # nn.TransformerEncoder.forward reads ``self.layers[0].self_attn`` for its fast-path checks: a stand-in there
    # raises, so only the second layer is removable.
    from tests.zoo import make_task

    task = make_task("transformer")
    assert set(removable_blocks(task.teacher(), task.example_inputs)) == {"encoder.layers.1"}
