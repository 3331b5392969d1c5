"""Built-in task ``zoo-vgg``: a small VGG whose forward flattens with a hard-coded ``x.view(-1, 64 * 4 * 4)``.

Model: VGG-style ``features`` (three stages of two 3x3 conv-BN-ReLU and a 2x2 max-pool: 16, 32, 64 channels, 32x32
-> 4x4) and ``classifier`` (linear-ReLU-dropout-linear), as the classic CIFAR tutorials write it: the flatten size
is fixed in the code, so anything that changes the last stage's channels must keep 64 of them (or the forward
breaks). Data: scikit-learn's bundled ``load_digits`` (real 8x8 scans inside the scikit-learn wheel, nothing
downloaded) upsampled to 32x32 (1,297 training images with random shifts, 500 disjoint validation images), as
DataLoaders of ``(images (N, 1, 32, 32), labels)``. The teacher trains on first use (about 20 s on 2 cores) and is
cached under the hash of its recipe.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from autoslim.tasks.base import Task
from autoslim.tasks.zoo._common import digits_task

NAME = "vgg"
RECIPE: dict[str, Any] = {
    "data": {"size": 32, "n_val": 500, "seed": 0, "shift": 2},
    "model": {"num_classes": 10, "in_channels": 1},
    "train": {"epochs": 25, "batch_size": 64, "lr": 3e-3, "seed": 0},
    "version": 1,
}
SMALL: dict[str, Any] = {**RECIPE, "train": {**RECIPE["train"], "epochs": 4}}


def _stage(cin: int, cout: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.MaxPool2d(2, 2),
    ]  # fmt: skip


class VGG(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(*_stage(in_channels, 16), *_stage(16, 32), *_stage(32, 64))
        self.classifier = nn.Sequential(
            nn.Linear(64 * 4 * 4, 128), nn.ReLU(inplace=True), nn.Dropout(0.3), nn.Linear(128, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = x.view(-1, 64 * 4 * 4)
        x = self.classifier(x)
        return x


def load(recipe: dict[str, Any] = RECIPE, *, verbose: bool = True) -> Task:
    """The task, training and caching the teacher on first use."""
    return digits_task(NAME, recipe, VGG, verbose=verbose)
