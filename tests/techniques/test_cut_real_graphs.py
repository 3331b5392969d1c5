"""cut.blocks on models written the way real projects write them, not as an ``nn.Sequential``.

torchcrepe's Crepe (attributes called through a ``layer()`` helper), torchvision's ResNet-18 (``layer1..layer4``
stages of ``BasicBlock``), a VGG whose forward flattens with ``x.view``, and Hugging Face BERT. Each must offer
blocks at the granularity ``autoslim.techniques.cut`` documents, lose at least one, keep its output shape and
shrink; a block whose stand-in breaks the forward is never offered.
"""

from __future__ import annotations

import copy
import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autoslim.techniques import ApplyContext, InfeasibleError
from autoslim.techniques.cut import removable_blocks
from tests.conftest import apply, n_params, same_state

# --- torchcrepe's Crepe, at small widths -------------------------------------------------------------------


class Crepe(nn.Module):
    """torchcrepe.Crepe as it is written (``torchcrepe/model.py``) at half the "tiny" widths. ``layer()`` pads
    before each conv, so no conv maps a tensor to one of its shape; conv3 and conv4 (8 -> 8 channels, stride 1)
    give back the length they were given before padding: the layer cuts."""

    def __init__(self) -> None:
        super().__init__()
        in_channels = [1, 16, 8, 8, 8, 16]
        out_channels = [16, 8, 8, 8, 16, 32]
        self.in_features = 32 * 4
        kernel_sizes = [(512, 1)] + 5 * [(64, 1)]
        strides = [(4, 1)] + 5 * [(1, 1)]
        batch_norm_fn = functools.partial(nn.BatchNorm2d, eps=0.0010000000474974513, momentum=0.0)
        for i in range(6):
            conv = nn.Conv2d(in_channels[i], out_channels[i], kernel_sizes[i], stride=strides[i])
            setattr(self, f"conv{i + 1}", conv)
            setattr(self, f"conv{i + 1}_BN", batch_norm_fn(num_features=out_channels[i]))
        self.classifier = nn.Linear(self.in_features, 360)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        x = self.layer(x, self.conv6, self.conv6_BN)
        x = x.permute(0, 2, 1, 3).reshape(-1, self.in_features)
        return torch.sigmoid(self.classifier(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, None, :, None]
        x = self.layer(x, self.conv1, self.conv1_BN, (0, 0, 254, 254))
        x = self.layer(x, self.conv2, self.conv2_BN)
        x = self.layer(x, self.conv3, self.conv3_BN)
        x = self.layer(x, self.conv4, self.conv4_BN)
        return self.layer(x, self.conv5, self.conv5_BN)

    def layer(self, x: torch.Tensor, conv: nn.Module, batch_norm: nn.Module, padding=(0, 0, 31, 32)) -> torch.Tensor:
        x = F.pad(x, padding)
        x = conv(x)
        x = F.relu(x)
        x = batch_norm(x)
        return F.max_pool2d(x, (2, 1), (2, 1))


# --- torchvision's ResNet-18, at width 8 --------------------------------------------------------------------


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision.models.resnet.ResNet with BasicBlock, layers [2, 2, 2, 2], base width ``width``."""

    def __init__(self, layers: tuple[int, ...] = (2, 2, 2, 2), width: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


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


def _built(cls: type[nn.Module]) -> nn.Module:
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
