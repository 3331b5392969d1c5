"""Metric on held-out data: batched, inference mode, model in eval mode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from autoslim.nn_utils import batch_size_of, call_model, take

Metric = Callable[[torch.Tensor, torch.Tensor], float]


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 accuracy in [0, 1]."""
    return float((logits.argmax(dim=-1) == targets).float().mean())


def predict(model: nn.Module, inputs: Any, *, batch_size: int = 1024) -> torch.Tensor:
    """Logits for all of ``inputs``, computed in batches without autograd, on the model's device; returned on the
    CPU beside the targets."""
    model.eval()
    n = batch_size_of(inputs)
    with torch.inference_mode():
        return torch.cat(
            [call_model(model, take(inputs, slice(i, i + batch_size))).cpu() for i in range(0, n, batch_size)]
        )


def evaluate(model: nn.Module, data: tuple[Any, torch.Tensor], metric: Metric = accuracy) -> float:
    """``metric`` of ``model`` on an in-memory ``(inputs, targets)`` pair; higher is better."""
    inputs, targets = data
    return metric(predict(model, inputs), targets)
