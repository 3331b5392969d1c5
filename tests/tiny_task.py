"""A tiny deterministic task for driver and CLI tests: a small residual 1-D CNN on synthetic signals.

Loaded by reference (``--task tests.tiny_task:tiny_task``), also inside spawned worker processes, so it must be
cheap (well under a second), deterministic and free of any download or cache.
"""

from __future__ import annotations

import dataclasses

import torch

from autoslim.tasks import Task
from autoslim.testing.tiny import CLASSES, LENGTH, WIDTHS, make_data  # noqa: F401  (re-exported for tests)
from autoslim.testing.tiny import tiny_task as _shipped_tiny_task


def tiny_task() -> Task:
    """The contract kit's tiny task (autoslim.testing.tiny) under the name the driver and CLI tests expect."""
    return dataclasses.replace(_shipped_tiny_task(), name="tiny-cnn")


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
