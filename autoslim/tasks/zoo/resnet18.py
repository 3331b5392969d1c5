"""Built-in task ``zoo-resnet18``: ResNet-18 written as torchvision writes it, at base width 16, on handwritten digits.

Model: torchvision's ``resnet18`` layout (``BasicBlock`` with a ``downsample`` branch, attributes ``conv1``/``bn1``/
``relu``/``maxpool``/``layer1``..``layer4``/``avgpool``/``fc``, ``forward`` calling them in order and
``torch.flatten``) with the base width cut from 64 to 16 and one input channel, so it trains on a CPU. Written out
here (torchvision is not a dependency). Data: scikit-learn's bundled ``load_digits`` (1,797 real 8x8 scans,
nothing downloaded) upsampled to 32x32: 1,297 training images (random shifts of up to 2 pixels) and 500 disjoint
validation images, as DataLoaders of ``(images (N, 1, 32, 32), labels (N,))``. The teacher trains on first use
(about 30 s on 2 cores) and is cached under the hash of its recipe.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from autoslim.tasks.base import Task
from autoslim.tasks.zoo._common import digits_task

NAME = "resnet18"
RECIPE: dict[str, Any] = {
    "data": {"size": 32, "n_val": 500, "seed": 0, "shift": 2},
    "model": {"width": 16, "layers": [2, 2, 2, 2], "num_classes": 10, "in_channels": 1},
    "train": {"epochs": 30, "batch_size": 64, "lr": 4e-3, "seed": 0},
    "version": 1,
}
SMALL: dict[str, Any] = {**RECIPE, "train": {**RECIPE["train"], "epochs": 6}}  # for tests: a few seconds


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding"""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution"""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion: int = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x

        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)

        if self.downsample is not None:
            identity = self.downsample(x)

        out += identity
        out = self.relu(out)

        return out


class ResNet(nn.Module):
    def __init__(
        self,
        block: type[BasicBlock],
        layers: list[int],
        num_classes: int = 1000,
        width: int = 64,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, block: type[BasicBlock], planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes))
        return nn.Sequential(*layers)

    def _forward_impl(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)

        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)

        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)

        return x

    def forward(self, x: Tensor) -> Tensor:
        return self._forward_impl(x)


def resnet18(**kwargs: Any) -> ResNet:
    layers = kwargs.pop("layers", [2, 2, 2, 2])
    return ResNet(BasicBlock, layers, **kwargs)


def load(recipe: dict[str, Any] = RECIPE, *, verbose: bool = True) -> Task:
    """The task, training and caching the teacher on first use."""
    return digits_task(NAME, recipe, resnet18, verbose=verbose)
