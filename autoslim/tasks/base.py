"""The Task contract: what gets compressed, with which data, judged by which metric.

A custom task in a few lines, with the DataLoaders you already have::

    from autoslim.tasks import Task

    def my_task() -> Task:
        model = torch.load("model.pt", weights_only=False)          # the trained teacher
        return Task(name="my-model", model=model,
                    train=train_loader, val=val_loader)             # val: held-out, never trained on

    # autoslim search --task mypkg.tasks:my_task

Each split (``train``, ``val``, ``calibration``, ``test``) may be a ``DataLoader`` or any re-iterable of batches,
a map-style ``Dataset`` (batched with ``batch_size``) or an in-memory ``(inputs, targets)`` pair (the fast path);
see :mod:`autoslim.data` for batches and the ``batch_to_inputs`` / ``batch_to_targets`` hooks, and
:mod:`autoslim.evaluate` for the three kinds of metric. ``distill_loss(student_out, teacher_out, batch)`` replaces
the distillation loss autoslim picks from the output (:mod:`autoslim.techniques.distill`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from autoslim.data import Data, TensorData, as_data
from autoslim.evaluate import Metric, StreamingMetric, accuracy
from autoslim.nn_utils import take

CALIBRATION_SAMPLES = 512  # default calibration set: the first samples of the training split
EVAL_BATCH = 1024  # batch size for scoring in-memory splits (inference only: bigger is faster)


@dataclass
class Task:
    name: str
    model: nn.Module | Callable[[], nn.Module]  # the trained teacher, or a factory that returns it
    train: Any  # data the fine-tunes (distillation) train on
    val: Any  # held-out data every trial is scored on
    example_inputs: Any = None  # a small batch (>= 2 samples) for tracing and costing; default: from val
    calibration: Any = None  # inputs (or data) for statistics: activation ranges, block importance; default: train
    metric: Metric | StreamingMetric = accuracy  # higher is better
    test: Any = None  # optional final test split, reported, never searched on
    info: dict[str, Any] = field(default_factory=dict)  # free-form facts shown to the user
    batch_to_inputs: Callable[[Any], Any] | None = None  # a batch -> model inputs (default: see autoslim.data)
    batch_to_targets: Callable[[Any], Any] | None = None  # a batch -> targets, or None (label-free)
    evaluate: Callable[[nn.Module, Any, torch.device], float] | None = None  # whole-dataset metric; wins
    distill_loss: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor] | None = None
    output: str | None = None  # field of a ModelOutput / dict output to score and distill (default: logits)
    batch_size: int = 128  # how autoslim batches a map-style Dataset
    teacher_cache_mb: float = 256.0  # the teacher's outputs on the training split are cached below this size

    def __post_init__(self) -> None:
        if self.example_inputs is None:
            self.example_inputs = self.val_data().inputs_head(2)

    def teacher(self) -> nn.Module:
        """A fresh copy-safe instance of the trained model in eval mode."""
        model = self.model if isinstance(self.model, nn.Module) else self.model()
        return model.eval()

    def as_data(self, obj: Any, *, shuffle: bool = False, batch_size: int | None = None) -> Data:
        return as_data(
            obj,
            batch_size=batch_size or self.batch_size,
            to_inputs=self.batch_to_inputs,
            to_targets=self.batch_to_targets,
            shuffle=shuffle,
        )

    def train_data(self) -> Data:
        return self.as_data(self.train, shuffle=True)

    def val_data(self) -> Data:
        return self.as_data(self.val, batch_size=EVAL_BATCH)

    def calibration_inputs(self) -> Any:
        """One batch of inputs for statistics: ``calibration`` itself when it is inputs, the first
        ``CALIBRATION_SAMPLES`` of it when it is data, else of the training split."""
        if self.calibration is not None:
            if _is_inputs(self.calibration):
                return self.calibration
            return self.as_data(self.calibration).inputs_head(CALIBRATION_SAMPLES)
        train = self.train_data()
        if isinstance(train, TensorData):
            return take(train.inputs, slice(0, CALIBRATION_SAMPLES))
        return train.inputs_head(CALIBRATION_SAMPLES)

    @property
    def in_memory(self) -> bool:
        """Every split is tensors in memory: cheap to ship whole to a worker."""
        splits = (self.train, self.val, self.calibration, self.test)
        return all(s is None or _is_inputs(s) or isinstance(as_data(s), TensorData) for s in splits if s is not None)


def _is_inputs(obj: Any) -> bool:
    """A tensor or a dict of tensors: model inputs, not a split of data."""
    if isinstance(obj, torch.Tensor):
        return True
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())
