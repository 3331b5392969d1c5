"""Tasks for the Ray executor tests, imported by reference inside Ray workers (the cluster's PYTHONPATH has the repo).

``dying_task``: the tiny task, except that running its model inside a worker of the test cluster kills that worker
(the cluster sets ``AUTOSLIM_TEST_RAY_WORKER``), as an out-of-memory kill or a lost node would.
"""

from __future__ import annotations

import os

import torch

from autoslim.tasks import Task
from tests.tiny_task import tiny_task


class _DiesInRayWorkers(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if os.environ.get("AUTOSLIM_TEST_RAY_WORKER"):
            os._exit(3)
        return self.inner(x)


def dying_task() -> Task:
    task = tiny_task()
    task.model = _DiesInRayWorkers(task.teacher())
    return task
