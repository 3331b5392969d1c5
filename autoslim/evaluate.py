"""The metric on held-out data: batched, inference mode, model in eval mode. Higher is better.

Three kinds of metric (a task's ``metric`` or ``evaluate``):

* ``metric(outputs, targets) -> float`` — today's contract: outputs and targets of the whole split, joined
  (for loader batches that cannot be joined, e.g. variable-length sequences, the batch-size-weighted mean of
  per-batch values);
* a streaming metric, an object with ``update(outputs, batch)`` and ``compute() -> float`` (mAP, mIoU, a tolerance
  over frames): deep-copied before every evaluation so it starts empty, then fed every batch as the loader gave it;
* ``task.evaluate(model, val_data, device) -> float``: the user's own loop over their own data.

A model whose outputs hold NaN or infinity, or a metric that returns either, raises :class:`NotFiniteError`: a
trial reports it as failed, never as a score.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import nn

from autoslim.data import Batch, Data
from autoslim.nn_utils import batch_size_of, call_model, model_device, take

if TYPE_CHECKING:
    from autoslim.tasks.base import Task

Metric = Callable[[torch.Tensor, torch.Tensor], float]


@runtime_checkable
class StreamingMetric(Protocol):
    """A whole-dataset metric fed batch by batch, e.g. a confusion matrix for mIoU::

    class MeanIoU:
        def __init__(self, classes): self.cm = torch.zeros(classes, classes)
        def update(self, outputs, batch): ...   # outputs: model outputs (CPU), batch: as the loader gave it
        def compute(self) -> float: ...
    """

    def update(self, outputs: torch.Tensor, batch: Any) -> None: ...

    def compute(self) -> float: ...


class NotFiniteError(ArithmeticError):
    """The model's outputs or the metric are NaN or infinite: a failed trial, not a score."""


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 accuracy in [0, 1]."""
    return float((logits.argmax(dim=-1) == targets).float().mean())


def predict(model: nn.Module, inputs: Any, *, batch_size: int = 1024, output: str | None = None) -> torch.Tensor:
    """Outputs for all of in-memory ``inputs``, computed in batches without autograd, on the model's device;
    returned on the CPU beside the targets."""
    model.eval()
    n = batch_size_of(inputs)
    with torch.inference_mode():
        return torch.cat(
            [
                call_model(model, take(inputs, slice(i, i + batch_size)), output=output).cpu()
                for i in range(0, n, batch_size)
            ]
        )


def evaluate(model: nn.Module, data: tuple[Any, torch.Tensor], metric: Metric = accuracy) -> float:
    """``metric`` of ``model`` on an in-memory ``(inputs, targets)`` pair; higher is better."""
    inputs, targets = data
    return metric(predict(model, inputs), targets)


def score(model: nn.Module, task: Task, data: Any = None, *, max_samples: int | None = None) -> float:
    """The task's metric of ``model`` on ``data`` (default: the validation split), any kind of metric and data;
    ``max_samples`` scores the first samples only (whole batches). Raises NotFiniteError (see the module)."""
    split = task.val_data() if data is None else task.as_data(data, batch_size=1024)
    if max_samples is not None:
        split = split.head(max_samples)
    model.eval()
    if task.evaluate is not None:
        if max_samples is not None:
            raise ValueError("a task's own evaluate() scores its whole data: max_samples does not apply")
        with torch.inference_mode():
            value = float(task.evaluate(model, task.val if data is None else data, model_device(model)))
    elif isinstance(task.metric, StreamingMetric):
        value = _streaming(model, task, split)
    else:
        value = _per_split(model, task, split)
    if not math.isfinite(value):
        raise NotFiniteError(f"the metric returned {value}")
    return value


def _outputs(model: nn.Module, task: Task, split: Data) -> Iterator[tuple[Batch, torch.Tensor]]:
    """(batch, outputs on the CPU) for every batch; checks outputs are finite."""
    with torch.inference_mode():
        for b in split.batches():
            out = call_model(model, b.inputs, output=task.output).cpu()
            if out.is_floating_point() and not bool(torch.isfinite(out).all()):
                raise NotFiniteError("the model outputs NaN or infinity on validation data")
            yield b, out


def _streaming(model: nn.Module, task: Task, split: Data) -> float:
    metric = copy.deepcopy(task.metric)  # a fresh, empty state per evaluation
    assert isinstance(metric, StreamingMetric)
    for b, out in _outputs(model, task, split):
        metric.update(out, b.raw)
    return float(metric.compute())


def _per_split(model: nn.Module, task: Task, split: Data) -> float:
    metric: Metric = task.metric  # type: ignore[assignment]
    outs, targets, sizes = [], [], []
    for b, out in _outputs(model, task, split):
        outs.append(out)
        targets.append(b.targets.cpu() if isinstance(b.targets, torch.Tensor) else b.targets)
        sizes.append(b.size)
    if not outs:
        raise ValueError("the validation data yielded no batch")
    try:
        joined_t = torch.cat(targets) if all(isinstance(t, torch.Tensor) for t in targets) else None
        return float(metric(torch.cat(outs), joined_t))  # type: ignore[arg-type]
    except RuntimeError:  # variable-length batches cannot be joined: the weighted mean of per-batch values
        return sum(float(metric(o, t)) * n for o, t, n in zip(outs, targets, sizes, strict=True)) / sum(sizes)
