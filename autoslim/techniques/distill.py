"""``distill.kd``: recovery fine-tune with knowledge distillation from the uncompressed teacher.

Loss = alpha * T^2 * KL(student_T || teacher_T) + (1 - alpha) * CE(student, labels). The teacher's logits
on the training set are computed once per process and cached in ``ctx.cache`` (the teacher never changes).
Unstructured-pruning masks and weight sharing are re-applied after every step so zeros stay zero.
``ctx.epoch_callback`` (when set) runs after every epoch but the last; it may stop a hopeless fine-tune by raising
:class:`~autoslim.techniques.registry.StoppedEarly` (the search's early stop, see :mod:`autoslim.trial`).

Label-free tasks (targets ``None`` or a float tensor: regression, embeddings, no class indices) match the
teacher's outputs directly with ``label_free_loss`` (``mse`` or ``cosine``); ``alpha`` and ``temperature`` then do
not apply. ``feature_weight`` > 0 adds intermediate-feature matching: the MSE between the outputs of student and
teacher Conv/Linear layers of the same name whose output shapes agree (layers untouched by pruning), averaged over
those layers; the last layer is left out (its output is the logits, matched already). Teacher features are
recomputed per batch rather than cached: they would take far more memory than the logits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from autoslim.nn_utils import batch_size_of, call_model, eval_forward, execution_order, iter_batches, weight_layers
from autoslim.techniques.prune_unstructured import enforce_masks
from autoslim.techniques.registry import ApplyContext, InfeasibleError, register
from autoslim.techniques.share import enforce_sharing

SCHEDULES = ("cosine", "constant", "step")  # step: x0.1 at 2/3 of the steps


@dataclass(frozen=True)
class KDConfig:
    epochs: int = 3
    # Extra epochs per unit of the teacher's parameters removed by the earlier steps (structured and unstructured
    # pruning, cuts, low rank): the fine-tune runs ``epochs + round(epochs_per_removed * removed)`` epochs, so a
    # model pruned by 75% gets 3 more epochs at 4.0. Heavily pruned models need a longer recovery than mildly
    # compressed ones, or a short fine-tune ranks them wrongly (measured on mnist1d-cnn; see the default space).
    epochs_per_removed: float = 0.0
    lr: float = 3e-3
    temperature: float = 4.0
    alpha: float = 0.7  # weight of the soft (teacher) loss; 1 - alpha goes to the hard label loss
    batch_size: int = 128
    optimizer: Literal["adam", "sgd"] = "adam"
    schedule: Literal["cosine", "constant", "step"] = "cosine"  # a decaying LR recovers pruned models far better
    grad_clip: float | None = 5.0  # max global gradient norm; None: no clipping
    feature_weight: float = 0.0  # weight of the intermediate-feature MSE; 0 turns feature matching off
    label_free_loss: Literal["mse", "cosine"] = "mse"  # output matching when the task has no class labels

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if not self.epochs_per_removed >= 0:
            raise ValueError(f"epochs_per_removed must be >= 0, got {self.epochs_per_removed}")
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
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if not self.feature_weight >= 0:
            raise ValueError(f"feature_weight must be >= 0, got {self.feature_weight}")
        if self.label_free_loss not in ("mse", "cosine"):
            raise ValueError(f"label_free_loss must be 'mse' or 'cosine', got {self.label_free_loss!r}")


def _indexable(data: tuple[Any, torch.Tensor | None]) -> tuple[Any, torch.Tensor]:
    """``data`` with placeholder targets when it has none, so batching code can slice it."""
    inputs, targets = data
    return (inputs, targets) if targets is not None else (inputs, torch.zeros(batch_size_of(inputs)))


def is_label_free(targets: torch.Tensor | None) -> bool:
    """No class indices to train on: no targets, or float targets (regression, embeddings, soft labels)."""
    return targets is None or targets.is_floating_point()


def teacher_logits(ctx: ApplyContext) -> torch.Tensor:
    """The teacher's outputs on the whole training set, on the teacher's device, cached per process."""
    cached = ctx.cache.get("teacher_logits")
    if cached is None:
        assert ctx.teacher is not None
        ctx.teacher.eval()
        with torch.no_grad():
            batches = iter_batches(_indexable(ctx.train_data), 1024)
            cached = torch.cat([call_model(ctx.teacher, x) for x, _, _ in batches])
        ctx.cache["teacher_logits"] = cached
    return cached


def removed_fraction(model: nn.Module, teacher: nn.Module) -> float:
    """The share of the teacher's non-zero parameters that ``model`` no longer has (0 when it has as many or more)."""
    with torch.no_grad():
        kept = sum(int(torch.count_nonzero(p)) for p in model.parameters())
        full = sum(int(torch.count_nonzero(p)) for p in teacher.parameters())
    return max(0.0, 1.0 - kept / full) if full else 0.0


def _scheduler(opt: torch.optim.Optimizer, schedule: str, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    if schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[max(1, round(2 * total_steps / 3))], gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _s: 1.0)


class _FeatureMatch:
    """Hooks that record the outputs of same-named student / teacher layers whose output shapes agree."""

    def __init__(self, student: nn.Module, teacher: nn.Module, example_inputs: Any) -> None:
        s_layers, t_layers = dict(weight_layers(student)), dict(weight_layers(teacher))
        order = execution_order(teacher, example_inputs)
        last = order[-1] if order else None  # its output is the logits: matched by the main loss already
        names = [n for n in s_layers if n in t_layers and t_layers[n] is not last]
        s_shapes, t_shapes = (
            _output_shapes(student, s_layers, example_inputs),
            _output_shapes(teacher, t_layers, example_inputs),
        )
        self.names = [n for n in names if n in s_shapes and s_shapes.get(n) == t_shapes.get(n)]
        self.outputs: dict[tuple[str, str], torch.Tensor] = {}
        self.handles = [
            layers[n].register_forward_hook(self._recorder(side, n))
            for side, layers in (("s", s_layers), ("t", t_layers))
            for n in self.names
        ]

    def _recorder(self, side: str, name: str) -> Any:
        def hook(_m: nn.Module, _args: tuple, out: torch.Tensor) -> None:
            self.outputs[(side, name)] = out

        return hook

    def loss(self) -> torch.Tensor:
        terms = [F.mse_loss(self.outputs[("s", n)], self.outputs[("t", n)].detach()) for n in self.names]
        self.outputs.clear()
        return torch.stack(terms).mean()

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.outputs.clear()


def _output_shapes(model: nn.Module, layers: Mapping[str, nn.Module], inputs: Any) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}

    def recorder(name: str) -> Any:
        def hook(_m: nn.Module, _args: tuple, out: torch.Tensor) -> None:  # returns None: leaves the output alone
            shapes.setdefault(name, tuple(out.shape))

        return hook

    handles = [m.register_forward_hook(recorder(n)) for n, m in layers.items()]
    eval_forward(model, inputs, hooks=handles)
    return shapes


def _output_loss(
    logits: torch.Tensor, teacher_out: torch.Tensor, y: torch.Tensor, config: KDConfig, label_free: bool
) -> torch.Tensor:
    if label_free:
        if config.label_free_loss == "cosine":
            return 1.0 - F.cosine_similarity(logits.flatten(1), teacher_out.flatten(1), dim=1).mean()
        return F.mse_loss(logits, teacher_out)
    t = config.temperature
    soft = F.kl_div(
        F.log_softmax(logits / t, dim=-1),
        F.log_softmax(teacher_out / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    return config.alpha * t * t * soft + (1.0 - config.alpha) * F.cross_entropy(logits, y)


@register("distill.kd", KDConfig, order=60)
def apply(model: nn.Module, config: KDConfig, ctx: ApplyContext) -> nn.Module:
    if ctx.teacher is None or ctx.train_data is None:
        raise InfeasibleError("distill.kd: the task provides no teacher or no training data")
    teacher = ctx.teacher
    removed = removed_fraction(model, teacher) if config.epochs_per_removed else 0.0
    epochs = config.epochs + math.floor(config.epochs_per_removed * removed + 0.5)  # half rounds up: 4 x 62.5% -> 3
    if epochs == 0:
        return model
    label_free = is_label_free(ctx.train_data[1])
    data = _indexable(ctx.train_data)
    soft_targets = teacher_logits(ctx)
    params = [p for p in model.parameters() if p.requires_grad]
    opt: torch.optim.Optimizer
    if config.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=config.lr)
    else:
        opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9, nesterov=True)
    n = batch_size_of(data[0])
    sched = _scheduler(opt, config.schedule, epochs * math.ceil(n / config.batch_size))
    note: dict[str, Any] = {"label_free": label_free, "epochs_run": epochs, "removed": round(removed, 4)}
    ctx.notes["distill.kd"] = note  # recorded up front: a fine-tune stopped early keeps it too
    features = _FeatureMatch(model, teacher, ctx.example_inputs) if config.feature_weight > 0 else None
    if features is not None:
        note["feature_layers"] = features.names or "no same-named layer with the same output shape: skipped"
        if not features.names:
            features.remove()
            features = None
    gen = torch.Generator().manual_seed(ctx.seed)
    model.train()
    teacher.eval()
    loss = torch.tensor(0.0)
    try:
        for _epoch in range(epochs):
            for x, y, idx in iter_batches(data, config.batch_size, shuffle=True, generator=gen):
                logits = call_model(model, x)  # moves the batch to the model's device (a GPU worker's)
                target = soft_targets[idx.to(soft_targets.device)].to(logits.device)
                loss = _output_loss(logits, target, y.to(logits.device), config, label_free)
                if features is not None:
                    with torch.no_grad():
                        call_model(teacher, x)  # fills the teacher's side of the feature hooks
                    loss = loss + config.feature_weight * features.loss()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                opt.step()
                sched.step()
                enforce_masks(model)
                enforce_sharing(model)
            if not torch.isfinite(loss.detach()):
                raise RuntimeError(f"distill.kd: loss became {float(loss)} in epoch {_epoch}")
            if ctx.epoch_callback is not None and _epoch + 1 < epochs:  # after the last epoch: nothing to save
                ctx.epoch_callback(_epoch + 1, epochs, model)
                model.train()  # the callback may have evaluated the model
    finally:
        if features is not None:
            features.remove()
    model.eval()
    note["final_loss"] = float(loss.detach())
    return model
