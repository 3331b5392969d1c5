"""Built-in task ``zoo-mobilenetv2``: MobileNetV2 as its authors (and torchvision) write it, width 0.5, on digits.

Model: ``features`` (a stride-2 stem, the paper's inverted-residual setting of depthwise-separable blocks with ReLU6
and linear bottlenecks, identity shortcuts where shapes match, a 1x1 conv to ``last_channel``), global average
pooling, ``classifier`` (dropout + linear); width multiplier 0.5, one input channel. Written out here (torchvision
is not a dependency). Data: scikit-learn's bundled ``load_digits`` (real 8x8 scans inside the scikit-learn wheel,
nothing downloaded) upsampled to 32x32 (1,297 training images with random shifts, 500 disjoint validation images),
as DataLoaders of ``(images (N, 1, 32, 32), labels)``. The teacher trains on first use (about 35 s on 2 cores) and
is cached under the hash of its recipe.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from autoslim.tasks.base import Task
from autoslim.tasks.zoo._common import digits_task

NAME = "mobilenetv2"
RECIPE: dict[str, Any] = {
    "data": {"size": 32, "n_val": 500, "seed": 0, "shift": 2},
    "model": {"width_mult": 0.5, "num_classes": 10, "in_channels": 1, "last_channel": 640},
    "train": {"epochs": 16, "batch_size": 64, "lr": 4e-3, "seed": 0},
    "version": 1,
}
SMALL: dict[str, Any] = {**RECIPE, "train": {**RECIPE["train"], "epochs": 4}}


def _make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of ``divisor``, never more than 10% down (from the reference implementation)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNReLU(nn.Sequential):
    def __init__(self, in_planes: int, out_planes: int, kernel_size: int = 3, stride: int = 1, groups: int = 1) -> None:
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_planes, out_planes, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_planes),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        self.stride = stride
        hidden_dim = round(inp * expand_ratio)
        self.use_res_connect = self.stride == 1 and inp == oup

        layers: list[nn.Module] = []
        if expand_ratio != 1:
            # pw
            layers.append(ConvBNReLU(inp, hidden_dim, kernel_size=1))
        layers.extend(
            [
                # dw
                ConvBNReLU(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim),
                # pw-linear
                nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
                nn.BatchNorm2d(oup),
            ]
        )
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        round_nearest: int = 8,
        in_channels: int = 3,
        last_channel: int = 1280,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        input_channel = 32
        inverted_residual_setting = [
            # t, c, n, s
            [1, 16, 1, 1],
            [6, 24, 2, 2],
            [6, 32, 3, 2],
            [6, 64, 4, 2],
            [6, 96, 3, 1],
            [6, 160, 3, 2],
            [6, 320, 1, 1],
        ]

        # building first layer
        input_channel = _make_divisible(input_channel * width_mult, round_nearest)
        self.last_channel = _make_divisible(last_channel * max(1.0, width_mult), round_nearest)
        features: list[nn.Module] = [ConvBNReLU(in_channels, input_channel, stride=2)]
        # building inverted residual blocks
        for t, c, n, s in inverted_residual_setting:
            output_channel = _make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                stride = s if i == 0 else 1
                features.append(InvertedResidual(input_channel, output_channel, stride, expand_ratio=t))
                input_channel = output_channel
        # building last several layers
        features.append(ConvBNReLU(input_channel, self.last_channel, kernel_size=1))
        # make it nn.Sequential
        self.features = nn.Sequential(*features)

        # building classifier
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(self.last_channel, num_classes),
        )

        # weight initialization
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        # Cannot use "squeeze" as batch-size can be 1
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        x = self.classifier(x)
        return x


def load(recipe: dict[str, Any] = RECIPE, *, verbose: bool = True) -> Task:
    """The task, training and caching the teacher on first use."""
    return digits_task(NAME, recipe, MobileNetV2, verbose=verbose)
