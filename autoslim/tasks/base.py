"""The Task contract: what gets compressed, with which data, judged by which metric.

A custom task in a few lines::

    from autoslim.tasks import Task

    def my_task() -> Task:
        model = torch.load("model.pt", weights_only=False)          # the trained teacher
        return Task(name="my-model", model=model,
                    train=(x_train, y_train), val=(x_val, y_val),     # val: held-out, never trained on
                    example_inputs=x_val[:2])

    # autoslim search --task mypkg.tasks:my_task
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from autoslim.evaluate import Metric, accuracy
from autoslim.nn_utils import take


@dataclass
class Task:
    name: str
    model: nn.Module | Callable[[], nn.Module]  # the trained teacher, or a factory that returns it
    train: tuple[Any, torch.Tensor]  # (inputs, targets) used by fine-tunes (distillation)
    val: tuple[Any, torch.Tensor]  # held-out (inputs, targets) every trial is scored on
    example_inputs: Any  # a small batch (>= 2 samples) for tracing and costing
    calibration: Any = None  # inputs for statistics (activation ranges, block importance); default: train[:512]
    metric: Metric = accuracy  # higher is better
    test: tuple[Any, torch.Tensor] | None = None  # optional final test split, reported, never searched on
    info: dict[str, Any] = field(default_factory=dict)  # free-form facts shown to the user

    def teacher(self) -> nn.Module:
        """A fresh copy-safe instance of the trained model in eval mode."""
        model = self.model if isinstance(self.model, nn.Module) else self.model()
        return model.eval()

    def calibration_inputs(self) -> Any:
        if self.calibration is not None:
            return self.calibration
        return take(self.train[0], slice(0, 512))
