"""Shared pieces of the zoo: the teacher cache, a plain training loop, DataLoaders, the digits images.

Every zoo task caches its teacher (and anything slow to compute) under ``cache_root()/zoo-<name>-<recipe hash>``,
so a changed recipe trains anew and a second ``load()`` reads the files back in well under a second.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from autoslim.tasks.base import Task
from autoslim.tasks.cache import atomic_save, cache_root, recipe_key

Batch = Any
LossFn = Callable[[Any, Batch], torch.Tensor]  # (model output, batch) -> loss


def cache_folder(name: str, recipe: Mapping[str, Any]) -> Path:
    return cache_root() / f"zoo-{name}-{recipe_key(dict(recipe))}"


def cached_teacher(
    name: str,
    recipe: Mapping[str, Any],
    model: nn.Module,
    train: Callable[[nn.Module], dict[str, Any]],
    *,
    verbose: bool = True,
) -> tuple[nn.Module, dict[str, Any], Path]:
    """``model`` with the cached weights of ``recipe``, or trained by ``train(model) -> facts`` and cached.
    Returns (model in eval mode, meta with the facts and ``train_seconds``, the cache folder)."""
    folder = cache_folder(name, recipe)
    weights, meta_path = folder / "teacher.pt", folder / "meta.json"
    if weights.exists() and meta_path.exists():
        model.load_state_dict(torch.load(weights, weights_only=True))
        meta = json.loads(meta_path.read_text())
    else:
        if verbose:
            print(f"Training the zoo-{name} teacher once (cached in {folder}) ...", flush=True)
        t0 = time.perf_counter()
        facts = train(model)
        meta = {**facts, "train_seconds": round(time.perf_counter() - t0, 1)}
        atomic_save(model.state_dict(), weights)
        meta_path.write_text(json.dumps(meta, indent=2))
        if verbose:
            print(f"zoo-{name} teacher trained in {meta['train_seconds']} s: {facts}", flush=True)
    return model.eval(), meta, folder


def cached_tensors(folder: Path, name: str, make: Callable[[], Any]) -> Any:
    """``make()`` (tensors, or dicts/lists of them) computed once and kept in ``folder/name.pt``."""
    path = folder / f"{name}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)
    value = make()
    atomic_save(value, path)
    return value


def fit(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: LossFn,
    *,
    epochs: int,
    lr: float,
    weight_decay: float = 1e-4,
    seed: int = 0,
    call: Callable[[nn.Module, Batch], Any] | None = None,
) -> None:
    """AdamW with a one-cycle schedule over ``epochs`` passes of ``loader``; ``call(model, batch)`` runs the model
    (default: ``model(batch[0])``), ``loss_fn(output, batch)`` scores it."""
    torch.manual_seed(seed)  # the loader's shuffling and any dropout
    call = call or (lambda m, b: m(b[0]))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, epochs * len(loader)))
    model.train()
    for _ in range(epochs):
        for batch in loader:
            loss = loss_fn(call(model, batch), batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()


def cross_entropy(out: torch.Tensor, batch: Batch) -> torch.Tensor:
    return F.cross_entropy(out, batch[1])


def loader(dataset: Dataset, batch_size: int, *, shuffle: bool = False, collate_fn: Any = None) -> DataLoader:
    """A single-process DataLoader (a shuffled one reshuffles every pass from torch's global generator)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=collate_fn)


def tensor_loader(*tensors: torch.Tensor, batch_size: int, shuffle: bool = False) -> DataLoader:
    return loader(TensorDataset(*tensors), batch_size, shuffle=shuffle)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.inference_mode()
def accuracy_on(model: nn.Module, data: DataLoader) -> float:
    """Top-1 accuracy over ``(inputs, labels)`` batches."""
    model.eval()
    hits = total = 0
    for x, y in data:
        hits += int((model(x).argmax(-1) == y).sum())
        total += len(y)
    return hits / total


# --- token batches -------------------------------------------------------------------------------------------


def pad_collate(samples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """Samples ``{"input_ids": list[int], ...}`` into one dict batch right-padded with 0 to its longest sample:
    ``input_ids``, ``attention_mask`` (1 = token, 0 = padding) and every other key stacked (``labels``, ...)."""
    width = max(len(s["input_ids"]) for s in samples)
    ids = torch.zeros(len(samples), width, dtype=torch.long)
    mask = torch.zeros(len(samples), width, dtype=torch.long)
    for i, s in enumerate(samples):
        n = len(s["input_ids"])
        ids[i, :n] = torch.as_tensor(s["input_ids"], dtype=torch.long)
        mask[i, :n] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    for key in samples[0]:
        if key != "input_ids":
            batch[key] = torch.stack([torch.as_tensor(s[key]) for s in samples])
    return batch


class TokenDataset(Dataset):
    """Variable-length token sequences (lists of ids) with optional per-sample extras (``labels``, ``index``)."""

    def __init__(self, ids: list[list[int]], **extras: torch.Tensor) -> None:
        self.ids, self.extras = ids, extras

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.ids[i], **{k: v[i] for k, v in self.extras.items()}}


# --- the digits images (scikit-learn's bundled copy of the UCI handwritten digits) ----------------------------


@lru_cache(maxsize=4)
def digits(size: int = 32, n_val: int = 500, seed: int = 0) -> dict[str, torch.Tensor]:
    """scikit-learn's ``load_digits`` (1,797 8x8 grey images shipped inside the scikit-learn wheel; nothing is
    downloaded), scaled to [0, 1], standardised, upsampled bilinearly to ``size`` x ``size``, shape (N, 1, H, W);
    a seeded random split into ``n_val`` validation images and the rest for training (disjoint)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x - 0.3) / 0.35  # about zero mean, unit variance
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    val, train = perm[:n_val], perm[n_val:]
    return {"x_train": x[train], "y_train": y[train], "x_val": x[val], "y_val": y[val]}


class ShiftAugment(Dataset):
    """Images with a random shift of up to ``shift`` pixels each way (pad and crop), as light train-time
    augmentation; yields ``(image, label)``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, shift: int = 2) -> None:
        self.images, self.labels, self.shift = images, labels, shift

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img, s = self.images[i], self.shift
        if s:
            h, w = img.shape[-2:]
            dy, dx = (int(v) for v in torch.randint(0, 2 * s + 1, (2,)))
            img = F.pad(img, (s, s, s, s), value=float(img.min()))[..., dy : dy + h, dx : dx + w]
        return img, self.labels[i]


def digits_loaders(
    size: int, batch_size: int, n_val: int = 500, seed: int = 0, shift: int = 2
) -> tuple[DataLoader, DataLoader, DataLoader, torch.Tensor]:
    """(train with shifts, val, calibration = un-augmented train, example inputs) over :func:`digits`."""
    d = digits(size, n_val, seed)
    train = loader(ShiftAugment(d["x_train"], d["y_train"], shift), batch_size, shuffle=True)
    val = tensor_loader(d["x_val"], d["y_val"], batch_size=256)
    calib = tensor_loader(d["x_train"], d["y_train"], batch_size=256)
    return train, val, calib, d["x_val"][:4]


def digits_task(name: str, recipe: dict[str, Any], build: Callable[..., nn.Module], *, verbose: bool) -> Task:
    """A digits classifier task (shared by the zoo's image classifiers): DataLoaders, cached teacher, accuracy."""
    d, t = recipe["data"], recipe["train"]
    train, val, calib, example = digits_loaders(d["size"], t["batch_size"], d["n_val"], d["seed"], d["shift"])
    torch.manual_seed(t["seed"])
    model = build(**recipe["model"])

    def train_teacher(m: nn.Module) -> dict[str, Any]:
        fit(m, train, cross_entropy, epochs=t["epochs"], lr=t["lr"], seed=t["seed"])
        return {"metric": "accuracy", "val_metric": accuracy_on(m, val)}

    model, meta, folder = cached_teacher(name, recipe, model, train_teacher, verbose=verbose)
    return Task(
        name=f"zoo-{name}",
        model=model,
        train=train,
        val=val,
        calibration=calib,
        example_inputs=example,
        info={"cache": str(folder), "params": n_params(model), **meta},
    )
