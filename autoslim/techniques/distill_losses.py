"""Distillation losses by output kind, and the rule that picks one from what the teacher outputs.

See :mod:`autoslim.techniques.distill` for the kinds. Picking is done once per fine-tune, on the teacher's outputs
for (at most) 64 calibration inputs and the targets of the first training batch, so the choice is the same for
every trial of a task and cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

KINDS = ("auto", "kl", "probs", "bce", "mse", "cosine")
EPS = 1e-6


@dataclass(frozen=True)
class LossChoice:
    kind: str  # one of KINDS but "auto", or "custom"
    class_dim: int
    why: str

    def describe(self) -> str:
        return f"{self.kind} ({self.why})"


def pick_loss(
    teacher_out: torch.Tensor,
    targets: Any,
    *,
    requested: str = "auto",
    label_free: str = "auto",
    class_dim: int | None = None,
    custom: bool = False,
) -> LossChoice:
    """The loss for a model whose teacher outputs ``teacher_out`` on a few inputs, trained on ``targets``."""
    dim = class_dim if class_dim is not None else (1 if teacher_out.dim() >= 4 else -1)
    if custom:
        return LossChoice("custom", dim, "the task's distill_loss")
    if requested != "auto":
        return LossChoice(requested, dim, "set in the plan")
    labels = isinstance(targets, torch.Tensor) and not targets.is_floating_point()
    if teacher_out.is_floating_point() and teacher_out.numel():
        lo, hi = float(teacher_out.min()), float(teacher_out.max())
        bounded = lo >= 0.0 and hi <= 1.0
        sums = teacher_out.sum(dim=dim)
        if bounded and bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-3)):
            return LossChoice("probs", dim, "outputs are distributions over classes")
        if bounded and teacher_out.dim() >= 2 and teacher_out.shape[dim] > 1:
            return LossChoice("bce", dim, "outputs are per-unit probabilities in [0, 1]")
    if labels:
        return LossChoice("kl", dim, "class logits with integer labels")
    if label_free != "auto":
        return LossChoice(label_free, dim, "label-free, label_free_loss set")
    if targets is None and teacher_out.dim() == 2:
        return LossChoice("cosine", dim, "label-free vectors (embeddings)")
    return LossChoice("mse", dim, "label-free outputs (float targets or none)")


def _flat(x: torch.Tensor, dim: int) -> torch.Tensor:
    """(positions, classes): the class dimension last, every other dimension a position."""
    return x.movedim(dim, -1).reshape(-1, x.shape[dim])


def _labels_like(y: Any, out: torch.Tensor, dim: int) -> torch.Tensor | None:
    """Integer labels matching ``out``'s positions, or None when there are none that fit."""
    if not isinstance(y, torch.Tensor) or y.is_floating_point():
        return None
    positions = out.numel() // out.shape[dim]
    return y.reshape(-1).to(out.device) if y.numel() == positions else None


def output_loss(
    choice: LossChoice, student: torch.Tensor, teacher: torch.Tensor, y: Any, *, temperature: float, alpha: float
) -> torch.Tensor:
    """The distillation loss of one batch (``teacher`` detached)."""
    kind, dim = choice.kind, choice.class_dim
    if kind == "cosine":
        return 1.0 - F.cosine_similarity(student.flatten(1), teacher.flatten(1), dim=1).mean()
    if kind == "mse":
        return F.mse_loss(student, teacher)
    if kind == "bce":
        loss = F.binary_cross_entropy(student.clamp(EPS, 1 - EPS), teacher.clamp(0.0, 1.0))
        if isinstance(y, torch.Tensor) and y.is_floating_point() and y.shape == student.shape:
            hard = F.binary_cross_entropy(student.clamp(EPS, 1 - EPS), y.to(student.device).clamp(0.0, 1.0))
            loss = alpha * loss + (1.0 - alpha) * hard
        return loss
    s, t = _flat(student, dim), _flat(teacher, dim)
    labels = _labels_like(y, student, dim)
    if kind == "probs":
        log_s = s.clamp_min(EPS).log()
        soft = F.kl_div(log_s, t.clamp_min(EPS).log(), reduction="batchmean", log_target=True)
        return soft if labels is None else alpha * soft + (1.0 - alpha) * F.nll_loss(log_s, labels)
    soft = F.kl_div(
        F.log_softmax(s / temperature, dim=-1),
        F.log_softmax(t / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    if labels is None:
        return temperature * temperature * soft
    # This association order is the one earlier releases used: a trial rebuilds bit for bit across versions.
    return alpha * temperature * temperature * soft + (1.0 - alpha) * F.cross_entropy(s, labels, ignore_index=-100)
