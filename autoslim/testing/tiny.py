"""Tiny built-in tasks for contract tests: built in well under a second, deterministic, nothing downloaded.

``tiny_task()`` is a small residual 1-D CNN (batch norm, a residual block a cut can remove, convolutions and linear
layers every built-in technique applies to) trained for a few steps on noisy sinusoids whose frequency is the
class. ``no_weight_layers_task()`` has the same data and a model with no Conv or Linear layer at all: what a
technique that needs weight layers must refuse with :class:`~autoslim.techniques.InfeasibleError`.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from autoslim.nn_utils import iter_batches
from autoslim.tasks import Task
from autoslim.tasks.mnist1d_cnn import build_cnn

LENGTH = 16
CLASSES = 3
WIDTHS = {"c1": 8, "c2": 16, "hidden": 16}


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` noisy sinusoids of shape (1, LENGTH) whose frequency is the class: learnt in a few dozen steps."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (n,), generator=gen)
    t = torch.linspace(0, 1, LENGTH)
    phase = torch.rand(n, 1, generator=gen) * 6.28
    x = torch.sin(2 * torch.pi * (y[:, None] + 1) * t[None, :] + phase) + 0.3 * torch.randn(n, LENGTH, generator=gen)
    return x.unsqueeze(1), y


@functools.lru_cache(maxsize=1)
def _trained_state() -> dict[str, torch.Tensor]:
    # Trained, not random: a random teacher's batch norm statistics blow activations up through the residual, and
    # an accuracy near chance cannot show a technique that breaks the model.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_cnn(**WIDTHS, length=LENGTH, classes=CLASSES)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        gen = torch.Generator().manual_seed(0)
        model.train()
        for _ in range(4):
            for x, y, _idx in iter_batches(make_data(256, seed=1), 64, shuffle=True, generator=gen):
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return {k: v.clone() for k, v in model.state_dict().items()}


def _task(name: str, model: nn.Module) -> Task:
    train, val = make_data(256, seed=1), make_data(128, seed=2)
    return Task(name=name, model=model.eval(), train=train, val=val, example_inputs=val[0][:2],
                calibration=train[0][:64])  # fmt: skip


def tiny_task() -> Task:
    """A trained residual 1-D CNN (3 classes, inputs (N, 1, 16)) with train, validation and calibration data."""
    model = build_cnn(**WIDTHS, length=LENGTH, classes=CLASSES)
    model.load_state_dict(_trained_state())
    return _task("autoslim-testing-tiny", model)


def no_weight_layers_task() -> Task:
    """The tiny task's data with a model that has parameters (a layer norm) but no Conv or Linear layer."""
    model = nn.Sequential(nn.AdaptiveAvgPool1d(CLASSES), nn.Flatten(), nn.LayerNorm(CLASSES))
    return _task("autoslim-testing-no-weight-layers", model)
