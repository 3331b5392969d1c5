"""Built-in task ``zoo-multilabel``: a 1-D CNN tagging which of 5 event types occur in a noisy signal (multi-label,
sigmoid outputs), scored by macro-F1 at 0.5.

Data: generated from a seed (nothing downloaded): 256-sample signals of Gaussian noise holding each of 5 event
types independently with probability 0.4, at a random place, amplitude and sign: 0 = fast sine burst, 1 = slow sine
burst, 2 = rectangular pulse, 3 = rising chirp, 4 = a pair of sharp spikes. 8,000 training and 2,000 disjoint
validation signals (another seed) as DataLoaders of ``(signals (N, 1, 256), targets (N, 5) float 0/1)``.
Model: a stem conv, three residual stages (conv-BN-ReLU pairs with a strided 1x1 shortcut), global max and
average pooling concatenated, a linear head and ``torch.sigmoid``: outputs are per-label probabilities. The teacher
trains on first use (about 40 s on 2 cores) and is cached under the hash of its recipe.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autoslim.tasks.base import Task
from autoslim.tasks.zoo._common import cache_folder, cached_teacher, cached_tensors, fit, n_params, tensor_loader

NAME = "multilabel"
LABELS = ("fast_burst", "slow_burst", "pulse", "chirp", "spike_pair")
RECIPE: dict[str, Any] = {
    "data": {"n_train": 8000, "n_val": 2000, "length": 256, "p": 0.4, "noise": 0.5, "seed": 0},
    "model": {"width": 24, "labels": len(LABELS)},
    "train": {"epochs": 12, "batch_size": 64, "lr": 4e-3, "seed": 0},
    "version": 1,
}
SMALL: dict[str, Any] = {
    **RECIPE,
    "data": {**RECIPE["data"], "n_train": 2000, "n_val": 500},
    "train": {**RECIPE["train"], "epochs": 4},
}


def _event(kind: int, length: int, gen: torch.Generator) -> Tensor:
    """One event of ``kind`` (unit amplitude) placed at random in a zero signal of ``length``."""
    t = torch.arange(length, dtype=torch.float32)
    center = float(torch.randint(24, length - 24, (1,), generator=gen))
    phase = 2 * math.pi * float(torch.rand(1, generator=gen))
    if kind == 0:  # fast sine burst
        return torch.exp(-(((t - center) / 8) ** 2)) * torch.sin(2 * math.pi * 0.22 * t + phase)
    if kind == 1:  # slow sine burst
        return torch.exp(-(((t - center) / 14) ** 2)) * torch.sin(2 * math.pi * 0.05 * t + phase)
    if kind == 2:  # rectangular pulse
        half = float(torch.randint(4, 10, (1,), generator=gen))
        return ((t - center).abs() <= half).float()
    if kind == 3:  # rising chirp over 40 samples
        u = (t - center + 20).clamp(0, 40)
        return ((u > 0) & (u < 40)).float() * torch.sin(2 * math.pi * (0.02 * u + 0.004 * u**2) + phase)
    spikes = torch.zeros(length)  # a pair of spikes 6 samples apart
    c = int(center)
    spikes[c], spikes[c + 6] = 1.5, 1.5
    return spikes


def make_signals(n: int, length: int, p: float, noise: float, seed: int) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    targets = (torch.rand(n, len(LABELS), generator=gen) < p).float()
    x = noise * torch.randn(n, 1, length, generator=gen)
    for i in range(n):
        for k in targets[i].nonzero().flatten().tolist():
            amp = (0.8 + 0.6 * float(torch.rand(1, generator=gen))) * (1 if torch.rand(1, generator=gen) < 0.5 else -1)
            x[i, 0] += amp * _event(k, length, gen)
    return x, targets


def macro_f1(outputs: Tensor, targets: Tensor) -> float:
    """Mean over labels of F1 with predictions ``outputs > 0.5`` (a label never present nor predicted scores 1)."""
    pred, truth = outputs > 0.5, targets > 0.5
    tp = (pred & truth).sum(0).double()
    fp = (pred & ~truth).sum(0).double()
    fn = (~pred & truth).sum(0).double()
    denom = 2 * tp + fp + fn
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.ones_like(denom))
    return float(f1.mean())


class Stage(nn.Module):
    """conv(stride 2)-BN-ReLU-conv-BN plus a strided 1x1 conv shortcut, then ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(cin, cout, 5, stride=2, padding=2, bias=False)
        self.bn1 = nn.BatchNorm1d(cout)
        self.conv2 = nn.Conv1d(cout, cout, 5, padding=2, bias=False)
        self.bn2 = nn.BatchNorm1d(cout)
        self.shortcut = nn.Sequential(nn.Conv1d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm1d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class EventTagger(nn.Module):
    def __init__(self, width: int = 24, labels: int = len(LABELS)) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(1, width, 7, padding=3, bias=False), nn.BatchNorm1d(width), nn.ReLU())
        self.stage1 = Stage(width, width)
        self.stage2 = Stage(width, 2 * width)
        self.stage3 = Stage(2 * width, 2 * width)
        self.head = nn.Linear(4 * width, labels)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stage3(self.stage2(self.stage1(self.stem(x))))
        pooled = torch.cat([x.amax(-1), x.mean(-1)], dim=1)
        return torch.sigmoid(self.head(pooled))


def _bce(probs: Tensor, batch: Any) -> Tensor:
    return F.binary_cross_entropy(probs, batch[1])


@torch.inference_mode()
def f1_on(model: nn.Module, data: Any) -> float:
    model.eval()
    outs, targets = zip(*[(model(x), y) for x, y in data], strict=True)
    return macro_f1(torch.cat(outs), torch.cat(targets))


def load(recipe: dict[str, Any] = RECIPE, *, verbose: bool = True) -> Task:
    """The task, training and caching the teacher on first use."""
    d, t = recipe["data"], recipe["train"]

    def make() -> dict[str, Tensor]:
        x_train, y_train = make_signals(d["n_train"], d["length"], d["p"], d["noise"], d["seed"])
        x_val, y_val = make_signals(d["n_val"], d["length"], d["p"], d["noise"], d["seed"] + 1)
        return {"x_train": x_train, "y_train": y_train, "x_val": x_val, "y_val": y_val}

    data = cached_tensors(cache_folder(NAME, recipe), "data", make)
    train = tensor_loader(data["x_train"], data["y_train"], batch_size=t["batch_size"], shuffle=True)
    val = tensor_loader(data["x_val"], data["y_val"], batch_size=500)
    torch.manual_seed(t["seed"])
    model: nn.Module = EventTagger(**recipe["model"])

    def train_teacher(m: nn.Module) -> dict[str, Any]:
        fit(m, train, _bce, epochs=t["epochs"], lr=t["lr"], seed=t["seed"])
        return {"metric": "macro-F1@0.5", "val_metric": f1_on(m, val)}

    model, meta, folder = cached_teacher(NAME, recipe, model, train_teacher, verbose=verbose)
    return Task(
        name=f"zoo-{NAME}",
        model=model,
        train=train,
        val=val,
        calibration=tensor_loader(data["x_train"][:512], data["y_train"][:512], batch_size=128),
        example_inputs=data["x_val"][:4],
        metric=macro_f1,
        info={"cache": str(folder), "params": n_params(model), "labels": list(LABELS), **meta},
    )
