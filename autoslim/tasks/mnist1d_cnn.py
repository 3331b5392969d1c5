"""Built-in task ``mnist1d-cnn``: a residual 1-D CNN teacher on MNIST-1D, generated offline.

MNIST-1D (Greydanus 2020) is generated locally by the ``mnist1d`` package; nothing is downloaded. The teacher
(~234k parameters, ~1.9M MACs per sample) is trained on first use (about 30 s on 2 CPU cores) and cached under
the hash of its recipe. Splits: 18,000 training samples (teacher and fine-tunes), 6,000 validation samples
(what every trial is scored on: ~0.2 pp standard error at 98%) and 6,000 test samples, all disjoint.
"""

from __future__ import annotations

import json
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from autoslim.evaluate import evaluate
from autoslim.nn_utils import iter_batches
from autoslim.tasks.base import Task
from autoslim.tasks.cache import atomic_save, cache_root, recipe_key
from autoslim.tasks.progress import is_listened, report_progress

RECIPE: dict[str, Any] = {
    "data": {"num_samples": 30000, "train_split": 0.6, "seed": 42, "n_val": 6000},
    "model": {"c1": 32, "c2": 64, "hidden": 128, "length": 40, "classes": 10},
    "train": {"epochs": 15, "batch_size": 128, "lr": 3e-3, "max_lr": 6e-3, "weight_decay": 1e-4, "seed": 0},
    "version": 1,
}


class ResBlock1d(nn.Module):
    """conv-bn-relu-conv-bn plus identity: a cuttable block (input and output shapes match)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(channels)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


def build_cnn(c1: int = 32, c2: int = 64, hidden: int = 128, length: int = 40, classes: int = 10) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(1, c1, 5, padding=2, bias=False), nn.BatchNorm1d(c1), nn.ReLU(),
        ResBlock1d(c1), ResBlock1d(c1),
        nn.Conv1d(c1, c2, 3, stride=2, padding=1, bias=False), nn.BatchNorm1d(c2), nn.ReLU(),
        ResBlock1d(c2), ResBlock1d(c2),
        nn.Flatten(), nn.Linear(c2 * (length // 2), hidden), nn.ReLU(), nn.Linear(hidden, classes),
    )  # fmt: skip


def _make_data(cfg: dict[str, Any]) -> dict[str, torch.Tensor]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = cfg["num_samples"], cfg["train_split"], cfg["seed"]
    d = make_dataset(args)  # generated locally; never download=True
    x = torch.tensor(d["x"], dtype=torch.float32).unsqueeze(1)
    xt = torch.tensor(d["x_test"], dtype=torch.float32).unsqueeze(1)
    y, yt = torch.tensor(d["y"]), torch.tensor(d["y_test"])
    nv = cfg["n_val"]
    return {"x_train": x, "y_train": y, "x_val": xt[:nv], "y_val": yt[:nv], "x_test": xt[nv:], "y_test": yt[nv:]}


def _train(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor], cfg: dict[str, Any],
           val: tuple[torch.Tensor, torch.Tensor]) -> None:  # fmt: skip
    torch.manual_seed(cfg["seed"])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    steps = cfg["epochs"] * -(-len(train[1]) // cfg["batch_size"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["max_lr"], total_steps=steps)
    gen = torch.Generator().manual_seed(cfg["seed"])
    t0 = time.perf_counter()
    model.train()
    for epoch in range(1, cfg["epochs"] + 1):
        for x, y, _idx in iter_batches(train, cfg["batch_size"], shuffle=True, generator=gen):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if is_listened():  # scored only for a listener; eval mode and no RNG draw, so the weights are the same
            acc = evaluate(model.eval(), val)
            model.train()
            report_progress("mnist1d-cnn teacher", epoch, cfg["epochs"], f"val accuracy {acc:.2%}",
                            time.perf_counter() - t0)  # fmt: skip
    model.eval()


def load(recipe: dict[str, Any] = RECIPE, *, verbose: bool = True) -> Task:
    """The task, training and caching the teacher on first use."""
    folder = cache_root() / f"mnist1d-cnn-{recipe_key(recipe)}"
    data_path, model_path, meta_path = folder / "data.pt", folder / "teacher.pt", folder / "meta.json"
    if data_path.exists():
        data = torch.load(data_path, weights_only=True)
    else:
        data = _make_data(recipe["data"])
        atomic_save(data, data_path)
    model = build_cnn(**recipe["model"])
    if model_path.exists():
        model.load_state_dict(torch.load(model_path, weights_only=True))
        meta = json.loads(meta_path.read_text())
    else:
        if verbose:
            print(f"Training the mnist1d-cnn teacher once (cached in {folder}) ...", flush=True)
        t0 = time.perf_counter()
        _train(model, (data["x_train"], data["y_train"]), recipe["train"], (data["x_val"], data["y_val"]))
        meta = {
            "val_accuracy": evaluate(model, (data["x_val"], data["y_val"])),
            "test_accuracy": evaluate(model, (data["x_test"], data["y_test"])),
            "train_seconds": round(time.perf_counter() - t0, 1),
        }
        atomic_save(model.state_dict(), model_path)
        meta_path.write_text(json.dumps(meta, indent=2))
        if verbose:
            print(f"Teacher trained in {meta['train_seconds']} s: test accuracy {meta['test_accuracy']:.2%}")
    model.eval()
    return Task(
        name="mnist1d-cnn",
        model=model,
        train=(data["x_train"], data["y_train"]),
        val=(data["x_val"], data["y_val"]),
        test=(data["x_test"], data["y_test"]),
        example_inputs=data["x_val"][:2],
        calibration=data["x_train"][:512],
        info={"cache": str(folder), **meta},
    )
