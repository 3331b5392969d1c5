"""Built-in task ``zoo-attrnet``: a plain CNN whose layers are attributes (``conv1``, ``bn1``, ``conv2``, ...) that
``forward`` calls in order with functional ReLUs and pooling between them: no ``nn.Sequential`` to index.

Model: conv1 (1->16) / pool / conv2 (16->32) / conv3 and conv4 (32->32, same shape in and out: either can be cut) /
pool / conv5 (32->64) / conv6 (64->64, same shape) / global average pool / fc, each conv followed by its batch norm.
Data: scikit-learn's bundled ``load_digits`` (real 8x8 scans inside the scikit-learn wheel, nothing downloaded)
upsampled to 32x32 (1,297 training images with random shifts, 500 disjoint validation images), as DataLoaders of
``(images (N, 1, 32, 32), labels)``. The teacher trains on first use (about 25 s on 2 cores) and is cached under the
hash of its recipe.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autoslim.tasks.base import Task
from autoslim.tasks.zoo._common import digits_task

NAME = "attrnet"
RECIPE: dict[str, Any] = {
    "data": {"size": 32, "n_val": 500, "seed": 0, "shift": 2},
    "model": {"num_classes": 10, "in_channels": 1, "width": 16},
    "train": {"epochs": 25, "batch_size": 64, "lr": 3e-3, "seed": 0},
    "version": 1,
}
SMALL: dict[str, Any] = {**RECIPE, "train": {**RECIPE["train"], "epochs": 4}}


class AttrNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16) -> None:
        super().__init__()
        w1, w2, w3 = width, 2 * width, 4 * width
        self.conv1 = nn.Conv2d(in_channels, w1, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w1)
        self.conv2 = nn.Conv2d(w1, w2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(w2)
        self.conv3 = nn.Conv2d(w2, w2, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(w2)
        self.conv4 = nn.Conv2d(w2, w2, 3, padding=1, bias=False)
        self.bn4 = nn.BatchNorm2d(w2)
        self.conv5 = nn.Conv2d(w2, w3, 3, padding=1, bias=False)
        self.bn5 = nn.BatchNorm2d(w3)
        self.conv6 = nn.Conv2d(w3, w3, 3, padding=1, bias=False)
        self.bn6 = nn.BatchNorm2d(w3)
        self.fc = nn.Linear(w3, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, 2)
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        x = F.relu(self.bn4(self.conv4(x)))
        x = F.max_pool2d(x, 2)
        x = F.relu(self.bn5(self.conv5(x)))
        x = F.relu(self.bn6(self.conv6(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


def load(recipe: dict[str, Any] = RECIPE, *, verbose: bool = True) -> Task:
    """The task, training and caching the teacher on first use."""
    return digits_task(NAME, recipe, AttrNet, verbose=verbose)
