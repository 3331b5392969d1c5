"""``distill.kd``: recovery fine-tune with knowledge distillation from the uncompressed teacher.

The loss is chosen by what the model outputs (``loss: auto``; the choice is recorded in the trial notes as
``distill.kd.loss``), judged on the teacher's outputs on calibration inputs and the training targets:

* ``kl`` — class logits with integer labels: alpha * T^2 * KL(student_T || teacher_T) + (1 - alpha) * CE(labels).
  The class dimension is ``class_dim`` (default -1; 1 for 4-D outputs such as NCHW segmentation logits);
* ``probs`` — outputs that are already distributions (non-negative, summing to 1): KL to the teacher's
  distribution + NLL of the labels;
* ``bce`` — per-unit probabilities (sigmoid outputs, multi-label, per-bin activations), values in [0, 1]: binary
  cross-entropy to the teacher's activations (+ to float labels of the same shape);
* ``cosine`` / ``mse`` — label-free outputs (embeddings: cosine when there are no targets; regression with float
  targets: MSE), also forced with ``label_free_loss``; ``alpha`` and ``temperature`` then do not apply;
* ``custom`` — the task's own ``distill_loss(student_out, teacher_out, batch)``.

Hugging Face ``ModelOutput``s are read as their ``logits`` (or the task's ``output`` field); tuples as their first
item. Length is ``epochs`` passes over the training data, or, with ``epoch_steps``, epochs of that many optimizer
steps (cycling the data), so a trial's cost does not grow with the dataset. The teacher's outputs on in-memory
training data are computed once per process and cached in ``ctx.cache`` when they fit
``ctx.teacher_cache_bytes``; otherwise (and for DataLoaders) they are computed batch by batch.
Unstructured-pruning masks and weight sharing are re-applied after every step so zeros stay zero.
``ctx.epoch_callback`` (when set) runs after every epoch but the last; it may stop a hopeless fine-tune by raising
:class:`~autoslim.techniques.registry.StoppedEarly` (the search's early stop, see :mod:`autoslim.trial`).
``feature_weight`` > 0 adds intermediate-feature matching: the MSE between the outputs of student and
teacher Conv/Linear layers of the same name whose output shapes agree (layers untouched by pruning), averaged over
those layers; the last layer is left out (its output is the logits, matched already). Teacher features are
recomputed per batch rather than cached: they would take far more memory than the logits.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from autoslim.data import Batch, Data, TensorData, as_data, cycle
from autoslim.nn_utils import call_model, eval_forward, execution_order, take, weight_layers
from autoslim.techniques.bn_stats import frozen_batch_norms, reestimate
from autoslim.techniques.distill_losses import KINDS, LossChoice, output_loss, pick_loss
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
    # output matching when the task has no class labels; auto: cosine for vectors without targets, else mse
    label_free_loss: Literal["auto", "mse", "cosine"] = "auto"
    loss: Literal["auto", "kl", "probs", "bce", "mse", "cosine"] = "auto"  # auto: chosen by the outputs
    class_dim: int | None = None  # the class dimension of the outputs; None: -1, or 1 for 4-D (NCHW) outputs
    epoch_steps: int | None = None  # an epoch is this many optimizer steps (cycling the data); None: one pass
    # or: an epoch is one pass but at least this many steps (cycling the data). A small dataset (1,300 digits: 21
    # steps) gives a pruned model too few steps to recover: MobileNetV2 pruned 30% + int8 kept 95.6% at 21
    # steps/epoch and 98.2% at 60 (teacher 97.8%); a large dataset's epoch is left as it is.
    min_epoch_steps: int | None = None
    # Dropout and other train-only randomness (drop path, attention dropout) during the fine-tune. "off": every
    # module but batch norm runs as in eval while training. auto: off when matching label-free outputs (an
    # encoder's embeddings) or under the task's own distillation loss: the teacher's targets are deterministic, and
    # a student with dropout on only matches them on average; on the pretrained all-MiniLM-L6-v2, 120 KD steps with
    # dropout on took the unmodified model from cosine 1.000 to 0.994. On for class labels, where it regularizes as
    # in the teacher's own training.
    dropout: Literal["auto", "on", "off"] = "auto"

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
        if self.dropout not in ("auto", "on", "off"):
            raise ValueError(f"dropout must be 'auto', 'on' or 'off', got {self.dropout!r}")
        if self.label_free_loss not in ("auto", "mse", "cosine"):
            raise ValueError(f"label_free_loss must be 'auto', 'mse' or 'cosine', got {self.label_free_loss!r}")
        if self.loss not in KINDS:
            raise ValueError(f"loss must be one of {KINDS}, got {self.loss!r}")
        if self.epoch_steps is not None and self.epoch_steps < 1:
            raise ValueError(f"epoch_steps must be >= 1 or None, got {self.epoch_steps}")
        if self.min_epoch_steps is not None and self.min_epoch_steps < 1:
            raise ValueError(f"min_epoch_steps must be >= 1 or None, got {self.min_epoch_steps}")


def is_label_free(targets: torch.Tensor | None) -> bool:
    """No class indices to train on: no targets, or float targets (regression, embeddings, soft labels)."""
    return targets is None or targets.is_floating_point()


def train_split(ctx: ApplyContext) -> Data:
    return ctx.train_data if isinstance(ctx.train_data, Data) else as_data(ctx.train_data)


def teacher_logits(ctx: ApplyContext) -> torch.Tensor:
    """The teacher's outputs on the whole in-memory training split, on the teacher's device, cached per process."""
    cached = ctx.cache.get("teacher_logits")
    if cached is None:
        assert ctx.teacher is not None
        data = train_split(ctx)
        assert isinstance(data, TensorData)
        ctx.teacher.eval()
        with torch.no_grad():
            cached = torch.cat(
                [call_model(ctx.teacher, b.inputs, output=ctx.output) for b in data.batches(batch_size=1024)]
            )
        ctx.cache["teacher_logits"] = cached
    return cached


class _TeacherOutputs:
    """The teacher's outputs for a training batch: from the per-process cache when the split is in memory and
    its outputs fit ``ctx.teacher_cache_bytes``, else computed for the batch."""

    def __init__(self, ctx: ApplyContext, data: Data, probe: torch.Tensor) -> None:
        assert ctx.teacher is not None
        self.teacher, self.output = ctx.teacher, ctx.output
        fits = isinstance(data, TensorData) and probe[:1].numel() * probe.element_size() * len(data) <= float(
            ctx.teacher_cache_bytes
        )
        self.cached = teacher_logits(ctx) if fits or "teacher_logits" in ctx.cache else None

    def __call__(self, batch: Batch, device: torch.device) -> torch.Tensor:
        if self.cached is not None and batch.index is not None:
            return self.cached[batch.index.to(self.cached.device)].to(device)
        with torch.no_grad():
            return call_model(self.teacher, batch.inputs, output=self.output).to(device)


def choose_loss(config: KDConfig, ctx: ApplyContext, data: Data) -> tuple[LossChoice, torch.Tensor]:
    """The loss for this task (see the module) and the teacher's outputs it was judged on; cached per process
    (the teacher and the data do not change between trials)."""
    key = f"kd_loss:{config.loss}:{config.label_free_loss}:{config.class_dim}:{ctx.distill_loss is not None}"
    if key not in ctx.cache:
        ctx.cache[key] = _choose_loss(config, ctx, data)
    return ctx.cache[key]


def _choose_loss(config: KDConfig, ctx: ApplyContext, data: Data) -> tuple[LossChoice, torch.Tensor]:
    assert ctx.teacher is not None
    probe_inputs = ctx.calibration_inputs if ctx.calibration_inputs is not None else ctx.example_inputs
    probe_inputs = take(probe_inputs, slice(0, 64))
    probe = eval_forward(ctx.teacher, probe_inputs) if ctx.output is None else None
    if probe is None:
        with torch.no_grad():
            probe = call_model(ctx.teacher.eval(), probe_inputs, output=ctx.output)
    first = next(data.batches(), None)
    if first is None:
        raise InfeasibleError("distill.kd: the training data yielded no batch")
    choice = pick_loss(
        probe.detach(), first.targets, requested=config.loss, label_free=config.label_free_loss,
        class_dim=config.class_dim, custom=ctx.distill_loss is not None,
    )  # fmt: skip
    return choice, probe


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


def _epoch_plan(data: Data, config: KDConfig) -> tuple[bool, int]:
    """(whether an epoch is one pass over the data, optimizer steps per epoch)."""
    fixed = config.epoch_steps
    if fixed is None:
        steps = data.num_batches(config.batch_size)
        if steps is None:  # a loader that cannot tell its length: count one pass
            steps = sum(1 for _ in data.batches())
        if config.min_epoch_steps is None or steps >= config.min_epoch_steps:
            return True, steps
        fixed = config.min_epoch_steps
    return False, fixed


def _epoch_batches(data: Data, config: KDConfig, gen: torch.Generator, plan: tuple[bool, int]) -> Any:
    """An epoch -> its batches (one pass, or ``steps`` drawn from the cycled data), as :func:`_epoch_plan` says."""
    one_pass, steps = plan
    if one_pass:
        return lambda: data.batches(shuffle=True, generator=gen, batch_size=config.batch_size)
    stream = cycle(data, shuffle=True, generator=gen, batch_size=config.batch_size)
    return lambda: (next(stream) for _ in range(steps))


def training_mode(model: nn.Module, *, dropout_off: bool) -> None:
    """``model.train()``; with ``dropout_off`` every module but batch norm then goes back to eval behaviour (a
    module's ``training`` flag is what dropout, drop path and Hugging Face's attention dropout all read)."""
    model.train()
    if dropout_off:
        for m in model.modules():
            if not isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.training = False


def describe(c: KDConfig) -> str:
    more = f"(+{c.epochs_per_removed:g}×removed)" if c.epochs_per_removed else ""
    return f"KD {c.epochs}{more} ep lr {c.lr:.1g} T{c.temperature:.1f}"


@register("distill.kd", KDConfig, order=60, role="fine-tune", describe=describe, resumable=True)
def apply(model: nn.Module, config: KDConfig, ctx: ApplyContext) -> nn.Module:
    if ctx.teacher is None or ctx.train_data is None:
        raise InfeasibleError("distill.kd: the task provides no teacher or no training data")
    teacher = ctx.teacher
    removed = removed_fraction(model, teacher) if config.epochs_per_removed else 0.0
    epochs = config.epochs + math.floor(config.epochs_per_removed * removed + 0.5)  # half rounds up: 4 x 62.5% -> 3
    if epochs == 0:
        return model
    data = train_split(ctx)
    choice, probe = choose_loss(config, ctx, data)
    label_free = choice.kind in ("mse", "cosine")
    teacher_out = _TeacherOutputs(ctx, data, probe)
    params = [p for p in model.parameters() if p.requires_grad]
    opt: torch.optim.Optimizer
    if config.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=config.lr)
    else:
        opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9, nesterov=True)
    epoch_plan = _epoch_plan(data, config)
    steps_per_epoch = epoch_plan[1]
    planned = epochs * steps_per_epoch
    legs = fine_tune_legs(ctx)
    resume = ctx.fine_tune_resume
    note: dict[str, Any] = {
        "label_free": label_free, "loss": choice.describe(), "removed": round(removed, 4),
        "steps_per_epoch": steps_per_epoch,
        "teacher_outputs": "cached" if teacher_out.cached is not None else "per batch",
    }  # fmt: skip
    if legs[-1][1] < 1.0:
        note.update(fidelity=round(legs[-1][1], 4), steps_planned=planned)
    ctx.notes["distill.kd"] = note  # recorded up front: a fine-tune stopped early keeps it too
    if resume is not None:  # a multi-fidelity rung that goes on from the one below (autoslim.search.ladder)
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        note["continued_from"] = round(legs[0][0], 4)
    features = _FeatureMatch(model, teacher, ctx.example_inputs) if config.feature_weight > 0 else None
    if features is not None:
        note["feature_layers"] = features.names or "no same-named layer with the same output shape: skipped"
        if not features.names:
            features.remove()
            features = None
    frozen = frozen_batch_norms(model)
    # auto: off when the student only chases the teacher's outputs: label-free outputs, or the task's own
    # distillation loss (a task defines one where its targets are not class labels, e.g. embedding similarity)
    matching = label_free or ctx.distill_loss is not None
    dropout_off = config.dropout == "off" or (config.dropout == "auto" and matching)
    note["dropout"] = "off" if dropout_off else "on"
    loss = torch.tensor(0.0)
    run = _Leg(
        model, teacher, config, ctx, data, choice, teacher_out, opt, params, features, frozen, dropout_off, epoch_plan
    )
    try:
        for lo, hi in legs:
            begin, end = steps_at(lo, planned), steps_at(hi, planned)
            loss = run(begin, end, planned, note)
    finally:
        if features is not None:
            features.remove()
    model.eval()
    note["final_loss"] = float(loss.detach())
    done = [*(resume["legs"] if resume is not None else []), *(hi for _lo, hi in legs)]
    if len(done) > 1:
        note["legs"] = [round(f, 6) for f in done]
    ctx.fine_tune_state = {"legs": done}
    if ctx.keep_fine_tune_state:  # what the next rung goes on from: copies, as later steps (quantize) may round
        # the weights in place before the trial hands the state over
        weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        ctx.fine_tune_state.update(model=weights, optimizer=_to_cpu(copy.deepcopy(opt.state_dict())))
    return model


def _to_cpu(obj: Any) -> Any:
    """Tensors in a (nested) state dict moved to the CPU: a GPU worker's state loads on any worker."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


def steps_at(fidelity: float, planned: int) -> int:
    """The optimizer steps done by the end of ``fidelity`` of a ``planned``-step fine-tune (at least 1 above 0)."""
    if fidelity <= 0.0:
        return 0
    return planned if fidelity >= 1.0 else max(1, math.ceil(fidelity * planned - 1e-9))


def fine_tune_legs(ctx: ApplyContext) -> list[tuple[float, float]]:
    """The (from, to) shares of its fine-tune this apply runs, in order. One leg (0, fidelity) but for a
    multi-fidelity search's continued rungs: a rung resumed from the one below runs (its fidelity, the rung's),
    and a rebuild (``ctx.fine_tune_legs``: the fidelities a trial's rungs ended at) runs every leg again in turn."""
    if ctx.fine_tune_legs:
        ends = [float(f) for f in ctx.fine_tune_legs]
        return list(zip([0.0, *ends[:-1]], ends, strict=True))
    if ctx.fine_tune_resume is not None:
        return [(float(ctx.fine_tune_resume["legs"][-1]), float(ctx.fidelity))]
    return [(0.0, float(ctx.fidelity))]


class _Leg:
    """One leg of the fine-tune: steps ``begin`` to ``end`` with the whole learning-rate schedule in them.

    The first leg (from step 0) is the fine-tune as it always ran: batches drawn with ``ctx.seed``. A later leg
    (a continued rung) restarts the schedule at ``lr`` and decays it again over its own steps (a warm restart, as
    SGDR), keeping the optimizer's state; its batch order and dropout draw from a seed of (``ctx.seed``, ``begin``),
    so a search's rung run in another worker and a rebuild that runs every leg in one process give the same model.
    """

    def __init__(self, model: nn.Module, teacher: nn.Module, config: KDConfig, ctx: ApplyContext, data: Data,
                 choice: LossChoice, teacher_out: _TeacherOutputs, opt: torch.optim.Optimizer,
                 params: list[nn.Parameter], features: _FeatureMatch | None, frozen: Any,
                 dropout_off: bool, epoch_plan: tuple[bool, int]) -> None:  # fmt: skip
        self.model, self.teacher, self.config, self.ctx, self.data = model, teacher, config, ctx, data
        self.choice, self.teacher_out, self.opt, self.params = choice, teacher_out, opt, params
        self.features, self.frozen, self.dropout_off, self.epoch_plan = features, frozen, dropout_off, epoch_plan

    def __call__(self, begin: int, end: int, planned: int, note: dict[str, Any]) -> torch.Tensor:
        model, config, ctx, teacher = self.model, self.config, self.ctx, self.teacher
        loss = torch.tensor(0.0)
        total = end - begin
        if total <= 0:  # equal neighbouring rungs: nothing more to train
            return loss
        if begin == 0:
            gen = torch.Generator().manual_seed(ctx.seed)
        else:
            leg_seed = (ctx.seed * 1_000_003 + begin) % (2**63)
            torch.manual_seed(leg_seed)
            gen = torch.Generator().manual_seed(leg_seed)
        if begin > 0:  # a warm restart: back to lr (a scheduler built on an optimizer whose last schedule
            for group in self.opt.param_groups:  # ended at 0 would start, and stay, at 0)
                group["lr"] = group["initial_lr"] = config.lr
        note["lr_at_start"] = self.opt.param_groups[0]["lr"]
        epoch_batches = _epoch_batches(self.data, config, gen, self.epoch_plan)
        steps_per_epoch = self.epoch_plan[1]
        epochs = math.ceil(total / steps_per_epoch)
        sched = _scheduler(self.opt, config.schedule, total)
        note["epochs_run"] = note.get("epochs_run", 0) + epochs
        if begin > 0 or end < note.get("steps_planned", end):
            note["steps_run"] = note.get("steps_run", 0) + total

        def stats_batches() -> Iterator[Any]:
            return (b.inputs for b in self.data.batches(shuffle=True, generator=gen, batch_size=config.batch_size))

        partial = begin > 0 or end < planned
        training_mode(model, dropout_off=self.dropout_off)
        teacher.eval()
        steps_done = 0
        for _epoch in range(epochs):
            for batch in epoch_batches():
                if partial and steps_done == total:  # the leg's last, partial epoch (a whole fine-tune runs
                    break  # every batch its epochs give, as before rungs existed)
                steps_done += 1
                out = call_model(model, batch.inputs, output=ctx.output)  # moves the batch to the model's device
                target = self.teacher_out(batch, out.device)
                if ctx.distill_loss is not None:
                    loss = ctx.distill_loss(out, target, batch.raw)
                else:
                    y = batch.targets.to(out.device) if isinstance(batch.targets, torch.Tensor) else batch.targets
                    loss = output_loss(self.choice, out, target, y, temperature=config.temperature,
                                       alpha=config.alpha)  # fmt: skip
                if self.features is not None:
                    with torch.no_grad():
                        call_model(teacher, batch.inputs)  # fills the teacher's side of the feature hooks
                    loss = loss + config.feature_weight * self.features.loss()
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(self.params, config.grad_clip)
                self.opt.step()
                sched.step()
                enforce_masks(model)
                enforce_sharing(model)
            if not torch.isfinite(loss.detach()):
                raise RuntimeError(f"distill.kd: loss became {float(loss)} in epoch {_epoch}")
            checkable = (_epoch + 1) * steps_per_epoch >= ctx.epoch_callback_min_steps
            if ctx.epoch_callback is not None and _epoch + 1 < epochs and checkable:  # after the last: nothing to save
                if self.frozen:  # an early-stop check scores the model: with stale statistics it would score too low
                    reestimate(model, self.frozen, stats_batches())
                ctx.epoch_callback(_epoch + 1, epochs, model)
                training_mode(model, dropout_off=self.dropout_off)  # the callback may have evaluated the model
        if self.frozen:  # their statistics did not follow the fine-tune (see bn_stats)
            used = reestimate(model, self.frozen, stats_batches())
            note["bn_reestimated"] = {"layers": len(self.frozen), "batches": used}
        return loss
