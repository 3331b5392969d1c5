"""Shared tiny models, data and fixtures. Everything here runs in milliseconds on one CPU thread."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from autoslim.cost import HardwareProfile, builtin_profiles
from autoslim.tasks.mnist1d_cnn import build_cnn
from autoslim.techniques import ApplyContext, get_technique

torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]


# --- tiny models -----------------------------------------------------------------------------------------


def make_mlp(seed: int = 0, width: int = 32, n_in: int = 12, n_out: int = 4) -> nn.Sequential:
    """Linear/ReLU stack with two same-width hidden Linear layers (the cut candidates)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(n_in, width), nn.ReLU(),
        nn.Linear(width, width), nn.ReLU(),
        nn.Linear(width, width), nn.ReLU(),
        nn.Linear(width, n_out),
    ).eval()  # fmt: skip


def make_cnn1d(seed: int = 0) -> nn.Sequential:
    """The package's residual 1-D CNN at small widths: 4 residual blocks, input (N, 1, 40), 10 classes."""
    torch.manual_seed(seed)
    model = build_cnn(c1=8, c2=16, hidden=16)
    _randomize_bn(model, inputs_for("cnn1d", 256, seed=99))
    return model.eval()


class ResBlock2d(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


def make_cnn2d(seed: int = 0) -> nn.Sequential:
    """Conv-BN-ReLU stem, one residual block, a strided conv, global pooling and a classifier. Input (N, 3, 12, 12)."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        ResBlock2d(16),
        nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 5),
    )  # fmt: skip
    _randomize_bn(model, inputs_for("cnn2d", 256, seed=99))
    return model.eval()


def _randomize_bn(model: nn.Module, data: torch.Tensor) -> None:
    """Give batch norms spread-out scales (bn_scale needs them) and running statistics measured on ``data``,
    as a trained model has: then train-mode and eval-mode behaviour agree on data from the same distribution."""
    gen = torch.Generator().manual_seed(123)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in bns:
            m.weight.copy_(0.2 + torch.rand(m.num_features, generator=gen))
            m.bias.copy_(0.1 * torch.randn(m.num_features, generator=gen))
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        model.train()
        for chunk in data.split(64):
            model(chunk)
        for m in bns:
            m.momentum = 0.1
    model.eval()


def inputs_for(kind: str, n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    shape = {"mlp": (n, 12), "cnn1d": (n, 1, 40), "cnn2d": (n, 3, 12, 12)}[kind]
    return torch.randn(*shape, generator=gen)


MODEL_FACTORIES: dict[str, Callable[..., nn.Module]] = {"mlp": make_mlp, "cnn1d": make_cnn1d, "cnn2d": make_cnn2d}


def make_model(kind: str, seed: int = 0) -> nn.Module:
    return MODEL_FACTORIES[kind](seed)


def make_ctx(kind: str, *, teacher: nn.Module | None = None, n_train: int = 0, seed: int = 0) -> ApplyContext:
    """A context with 4 example inputs and 64 calibration inputs; with ``n_train`` labelled samples if asked."""
    example = inputs_for(kind, 4, seed=1)
    calib = inputs_for(kind, 64, seed=2)
    train = None
    if n_train:
        x = inputs_for(kind, n_train, seed=3)
        with torch.no_grad():
            y = teacher(x).argmax(-1) if teacher is not None else torch.zeros(n_train, dtype=torch.long)
        train = (x, y)
    return ApplyContext(example_inputs=example, teacher=teacher, train_data=train, calibration_inputs=calib, seed=seed)


def apply(name: str, model: nn.Module, ctx: ApplyContext, **params) -> nn.Module:
    tech = get_technique(name)
    return tech.apply(model, tech.make_config(params), ctx)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- a tiny search set-up (driver and CLI tests) -------------------------------------------------------------

TINY_TASK = "tests.tiny_task:tiny_task"
TINY_PROFILES = ["x86-avx512-vnni", "mcu-cortex-m7"]
TINY_SPACE = {
    "name": "tiny",
    "profiles": TINY_PROFILES,
    "techniques": {
        "prune.structured": {"params": {"ratio": {"float": [0.2, 0.6]}}},
        "prune.unstructured": {"params": {"amount": {"float": [0.3, 0.8]}}},
        "distill.kd": {"when": "structural", "params": {"epochs": 1, "batch_size": 64}},
        "quantize": {"params": {"weight_bits": {"choice": [4, 8]}, "act_bits": {"choice": [8, None]}}},
    },
    "recipes": [{"quantize": {"weight_bits": 8, "act_bits": 8}}],
}


def write_space(path: Path, data: dict | None = None) -> Path:
    path.write_text(yaml.safe_dump(data if data is not None else TINY_SPACE, sort_keys=False))
    return path


# --- fixtures --------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(params=["mlp", "cnn1d", "cnn2d"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def profiles() -> dict[str, HardwareProfile]:
    return builtin_profiles()


@pytest.fixture(scope="session")
def x86(profiles: dict[str, HardwareProfile]) -> HardwareProfile:
    return profiles["x86-avx512-vnni"]


@pytest.fixture(scope="session")
def mcu(profiles: dict[str, HardwareProfile]) -> HardwareProfile:
    return profiles["mcu-cortex-m7"]


@pytest.fixture
def repo_root_on_path(monkeypatch: pytest.MonkeyPatch) -> Path:
    """cwd = repo root and PYTHONPATH including it, so ``tests.tiny_task`` imports here and in spawned workers."""
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    return REPO_ROOT


@pytest.fixture
def space_file(tmp_path: Path) -> Path:
    return write_space(tmp_path / "tiny_space.yaml")


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache folder of the test's own (sensitivity tables, teachers): nothing read from or left in the user's."""
    root = tmp_path / "cache"
    monkeypatch.setenv("AUTOSLIM_CACHE", str(root))
    return root


def resnet18_with_ctx() -> tuple[nn.Module, ApplyContext]:
    """torchvision's ResNet-18 as its authors wrote it (CIFAR-sized input), with a context to apply techniques."""
    from autoslim.tasks.zoo.resnet18 import resnet18

    torch.manual_seed(0)
    return resnet18(num_classes=10).eval(), ApplyContext(example_inputs=torch.randn(2, 3, 32, 32))
