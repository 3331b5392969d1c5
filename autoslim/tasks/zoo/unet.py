"""Built-in task ``zoo-unet``: a small U-Net segmenting generated shapes, scored by mean IoU (a streaming metric).

Data: generated here from a seed (nothing downloaded): 32x32 grey images of 1-3 filled circles, squares and
triangles of random size, position and contrast on a noisy, shaded background; per-pixel labels 0 = background,
1 = circle, 2 = square, 3 = triangle (a later shape covers an earlier one). 3,000 training and 600 disjoint
validation images as DataLoaders of ``(images (N, 1, 32, 32) float, masks (N, 32, 32) long)``; training images are
randomly flipped. Model: a U-Net (Ronneberger 2015) at widths 16/32/64: two down steps (conv-BN-ReLU pairs, max
pool), a bottleneck, two up steps (transposed conv, ``torch.cat`` with the skip, conv pair), a 1x1 head giving
NCHW logits (N, 4, 32, 32). Metric: :class:`MeanIoU`, a confusion matrix filled batch by batch. The teacher
trains on first use (about 50 s on 2 cores) and is cached under the hash of its recipe.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from autoslim.tasks.base import Task
from autoslim.tasks.zoo._common import (
    cache_folder,
    cached_teacher,
    cached_tensors,
    fit,
    loader,
    n_params,
    tensor_loader,
)

NAME = "unet"
CLASSES = 4  # background, circle, square, triangle
RECIPE: dict[str, Any] = {
    "data": {"size": 32, "n_train": 3000, "n_val": 600, "seed": 0, "noise": 0.35},
    "model": {"in_channels": 1, "classes": CLASSES, "width": 16},
    "train": {"epochs": 10, "batch_size": 32, "lr": 5e-3, "seed": 0},
    "version": 1,
}
SMALL: dict[str, Any] = {
    **RECIPE,
    "data": {**RECIPE["data"], "n_train": 1000, "n_val": 200},
    "train": {**RECIPE["train"], "epochs": 4},
}


# --- data ----------------------------------------------------------------------------------------------------


def make_shapes(n: int, size: int = 32, seed: int = 0, noise: float = 0.35) -> tuple[Tensor, Tensor]:
    """``n`` images (n, 1, size, size) and their label masks (n, size, size); see the module docstring."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    images = torch.empty(n, 1, size, size)
    masks = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        # background: a random linear shade plus pixel noise
        gy, gx = (torch.rand(2, generator=gen) - 0.5) * 2 / size
        img = gy * (yy - size / 2) + gx * (xx - size / 2) + noise * torch.randn(size, size, generator=gen)
        mask = masks[i]
        for _ in range(int(torch.randint(1, 4, (1,), generator=gen))):
            kind = int(torch.randint(1, CLASSES, (1,), generator=gen))
            r = float(torch.randint(3, 9, (1,), generator=gen))
            cy, cx = (float(v) for v in torch.randint(int(r), size - int(r), (2,), generator=gen))
            if kind == 1:  # circle
                inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            elif kind == 2:  # axis-aligned square
                inside = ((yy - cy).abs() <= r * 0.8) & ((xx - cx).abs() <= r * 0.8)
            else:  # upward triangle: apex at the top, base at the bottom
                t = (yy - (cy - r)) / (2 * r)
                inside = (t >= 0) & (t <= 1) & ((xx - cx).abs() <= t * r)
            contrast = (0.6 + 0.8 * float(torch.rand(1, generator=gen))) * (
                1 if torch.rand(1, generator=gen) < 0.7 else -1
            )
            img = torch.where(inside, contrast + noise * torch.randn(size, size, generator=gen), img)
            mask[inside] = kind
        images[i, 0] = img
    return images, masks


class FlipAugment(Dataset):
    """(image, mask) pairs, each flipped left-right at random (a triangle stays a triangle)."""

    def __init__(self, images: Tensor, masks: Tensor) -> None:
        self.images, self.masks = images, masks

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        img, mask = self.images[i], self.masks[i]
        if bool(torch.rand(()) < 0.5):
            img, mask = img.flip(-1), mask.flip(-1)
        return img, mask


# --- metric --------------------------------------------------------------------------------------------------


class MeanIoU:
    """Mean intersection-over-union over classes, from a confusion matrix filled batch by batch.

    ``update(outputs, batch)``: ``outputs`` NCHW logits, ``batch`` the loader's ``(images, masks)``;
    ``compute()``: the mean over classes that occur (in the labels or the predictions) of TP / (TP + FP + FN).
    """

    def __init__(self, classes: int = CLASSES) -> None:
        self.classes = classes
        self.confusion = torch.zeros(classes, classes, dtype=torch.long)

    def update(self, outputs: Tensor, batch: Any) -> None:
        pred = outputs.argmax(1).flatten()
        truth = batch[1].to(pred.device).flatten()
        idx = truth * self.classes + pred
        self.confusion += torch.bincount(idx, minlength=self.classes**2).reshape(self.classes, self.classes).cpu()

    def compute(self) -> float:
        cm = self.confusion.double()
        tp = cm.diag()
        union = cm.sum(0) + cm.sum(1) - tp
        present = union > 0
        return float((tp[present] / union[present]).mean()) if bool(present.any()) else float("nan")


# --- model ---------------------------------------------------------------------------------------------------


class DoubleConv(nn.Module):
    """(conv 3x3 -> BN -> ReLU) twice."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Up(nn.Module):
    """Transposed-conv upsampling, concatenation with the skip connection, a double conv."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin // 2, kernel_size=2, stride=2)
        self.conv = DoubleConv(cin // 2 + cout, cout)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = self.up(x)
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    def __init__(self, in_channels: int = 1, classes: int = CLASSES, width: int = 16) -> None:
        super().__init__()
        w = width
        self.inc = DoubleConv(in_channels, w)
        self.down1 = DoubleConv(w, 2 * w)
        self.down2 = DoubleConv(2 * w, 4 * w)
        self.up1 = Up(4 * w, 2 * w)
        self.up2 = Up(2 * w, w)
        self.outc = nn.Conv2d(w, classes, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        x1 = self.inc(x)
        x2 = self.down1(F.max_pool2d(x1, 2))
        x3 = self.down2(F.max_pool2d(x2, 2))
        x = self.up1(x3, x2)
        x = self.up2(x, x1)
        return self.outc(x)


# --- task ----------------------------------------------------------------------------------------------------


def _seg_loss(out: Tensor, batch: Any) -> Tensor:
    return F.cross_entropy(out, batch[1])


@torch.inference_mode()
def miou_on(model: nn.Module, data: Any) -> float:
    metric = MeanIoU()
    model.eval()
    for batch in data:
        metric.update(model(batch[0]), batch)
    return metric.compute()


def load(recipe: dict[str, Any] = RECIPE, *, verbose: bool = True) -> Task:
    """The task, training and caching the teacher on first use."""
    d, t = recipe["data"], recipe["train"]

    def make() -> dict[str, Tensor]:
        x_train, m_train = make_shapes(d["n_train"], d["size"], d["seed"], d["noise"])
        x_val, m_val = make_shapes(d["n_val"], d["size"], d["seed"] + 1, d["noise"])  # another seed: disjoint
        return {"x_train": x_train, "m_train": m_train, "x_val": x_val, "m_val": m_val}

    data = cached_tensors(cache_folder(NAME, recipe), "data", make)
    x_train, m_train, x_val, m_val = data["x_train"], data["m_train"], data["x_val"], data["m_val"]
    train = loader(FlipAugment(x_train, m_train), t["batch_size"], shuffle=True)
    val = tensor_loader(x_val, m_val, batch_size=100)
    torch.manual_seed(t["seed"])
    model: nn.Module = UNet(**recipe["model"])

    def train_teacher(m: nn.Module) -> dict[str, Any]:
        fit(m, train, _seg_loss, epochs=t["epochs"], lr=t["lr"], seed=t["seed"])
        return {"metric": "mIoU", "val_metric": miou_on(m, val)}

    model, meta, folder = cached_teacher(NAME, recipe, model, train_teacher, verbose=verbose)
    return Task(
        name=f"zoo-{NAME}",
        model=model,
        train=train,
        val=val,
        calibration=tensor_loader(x_train[:512], m_train[:512], batch_size=128),
        example_inputs=x_val[:4],
        metric=MeanIoU(),
        info={"cache": str(folder), "params": n_params(model), **meta},
    )
