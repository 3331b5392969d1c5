"""A tiny deterministic task for driver and CLI tests: a small residual 1-D CNN on synthetic signals.

Loaded by reference (``--task tests.tiny_task:tiny_task``), also inside spawned worker processes, so it must be
cheap (well under a second), deterministic and free of any download or cache.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from autoslim.nn_utils import iter_batches
from autoslim.tasks import Task
from autoslim.tasks.mnist1d_cnn import build_cnn

LENGTH = 16
CLASSES = 3
WIDTHS = {"c1": 8, "c2": 16, "hidden": 16}


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy sinusoids whose frequency is the class: learnable by a small CNN in a few dozen steps."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (n,), generator=gen)
    t = torch.linspace(0, 1, LENGTH)
    phase = torch.rand(n, 1, generator=gen) * 6.28
    x = torch.sin(2 * torch.pi * (y[:, None] + 1) * t[None, :] + phase)
    x = x + 0.3 * torch.randn(n, LENGTH, generator=gen)
    return x.unsqueeze(1), y


@functools.lru_cache(maxsize=1)
def _trained_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = build_cnn(**WIDTHS, length=LENGTH, classes=CLASSES)
    train = make_data(256, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(4):
        for x, y, _idx in iter_batches(train, 64, shuffle=True, generator=gen):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return {k: v.clone() for k, v in model.state_dict().items()}


def tiny_task() -> Task:
    model = build_cnn(**WIDTHS, length=LENGTH, classes=CLASSES)
    model.load_state_dict(_trained_state())
    model.eval()
    train = make_data(256, seed=1)
    val = make_data(128, seed=2)
    return Task(
        name="tiny-cnn",
        model=model,
        train=train,
        val=val,
        example_inputs=val[0][:2],
        calibration=train[0][:64],
    )


class _DiesInWorkers(torch.nn.Module):
    """Kills the worker process that runs it (a segfault or an out-of-memory kill, as far as the pool can tell)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import multiprocessing
        import os

        if multiprocessing.parent_process() is not None:
            os._exit(3)
        return self.inner(x)


def crashing_task() -> Task:
    """The tiny task, except that any trial run in a worker process kills that process."""
    task = tiny_task()
    task.model = _DiesInWorkers(task.teacher())
    return task
