"""``distill.kd``: recovery fine-tune with knowledge distillation from the uncompressed teacher.

Loss = alpha * T^2 * KL(student_T || teacher_T) + (1 - alpha) * CE(student, labels). The teacher's logits
on the training set are computed once per process and cached in ``ctx.cache`` (the teacher never changes).
Unstructured-pruning masks are re-applied after every step so zeros stay zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from autoslim.nn_utils import call_model, iter_batches
from autoslim.techniques.prune_unstructured import enforce_masks
from autoslim.techniques.registry import ApplyContext, InfeasibleError, register


@dataclass(frozen=True)
class KDConfig:
    epochs: int = 3
    lr: float = 3e-3
    temperature: float = 4.0
    alpha: float = 0.7  # weight of the soft (teacher) loss; 1 - alpha goes to the hard label loss
    batch_size: int = 128
    optimizer: Literal["adam", "sgd"] = "adam"
    schedule: Literal["cosine", "constant"] = "cosine"  # a decaying LR recovers pruned models far better

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")


def teacher_logits(ctx: ApplyContext) -> torch.Tensor:
    cached = ctx.cache.get("teacher_logits")
    if cached is None:
        assert ctx.teacher is not None
        ctx.teacher.eval()
        with torch.no_grad():
            cached = torch.cat([call_model(ctx.teacher, x) for x, _, _ in iter_batches(ctx.train_data, 1024)])
        ctx.cache["teacher_logits"] = cached
    return cached


@register("distill.kd", KDConfig, order=60)
def apply(model: nn.Module, config: KDConfig, ctx: ApplyContext) -> nn.Module:
    if ctx.teacher is None or ctx.train_data is None:
        raise InfeasibleError("distill.kd: the task provides no teacher or no training data")
    if config.epochs == 0:
        return model
    soft_targets = teacher_logits(ctx)
    params = [p for p in model.parameters() if p.requires_grad]
    opt: torch.optim.Optimizer
    if config.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=config.lr)
    else:
        opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9, nesterov=True)
    n = len(ctx.train_data[1])
    total_steps = config.epochs * math.ceil(n / config.batch_size)
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
        if config.schedule == "cosine"
        else torch.optim.lr_scheduler.LambdaLR(opt, lambda _s: 1.0)
    )
    gen = torch.Generator().manual_seed(ctx.seed)
    t = config.temperature
    model.train()
    loss = torch.tensor(0.0)
    for _epoch in range(config.epochs):
        for x, y, idx in iter_batches(ctx.train_data, config.batch_size, shuffle=True, generator=gen):
            logits = call_model(model, x)
            soft = F.kl_div(
                F.log_softmax(logits / t, dim=-1),
                F.log_softmax(soft_targets[idx] / t, dim=-1),
                reduction="batchmean",
                log_target=True,
            )
            loss = config.alpha * t * t * soft + (1.0 - config.alpha) * F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            sched.step()
            enforce_masks(model)
        if not torch.isfinite(loss.detach()):
            raise RuntimeError(f"distill.kd: loss became {float(loss)} in epoch {_epoch}")
    model.eval()
    ctx.notes["distill.kd"] = {"final_loss": float(loss.detach())}
    return model
