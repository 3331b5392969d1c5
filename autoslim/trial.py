"""One trial: the only place a plan meets a model.

``run_trial(spec, task)`` copies the teacher, applies the plan's steps in canonical order (recording each step's
effect), scores the metric on held-out validation data and prices the result on every profile. It never raises:
a plan the model cannot take becomes ``status="infeasible"``; anything else that goes wrong, ``"failed"``.

``build_model(plan, task)`` is the building half on its own (export rebuilds a front point's model with it). When
the plan's ``quantize`` step asks for ``mode="qat"``, the fine-tune steps run under fake quantization
(:func:`autoslim.techniques.qat.fake_quantized`): the one place two techniques meet, so it lives here.
"""

from __future__ import annotations

import copy
import time
import traceback
from collections.abc import Callable, Collection
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from autoslim.cost import HardwareProfile, layer_stats
from autoslim.cost.estimate import cost_from_stats
from autoslim.cost.layers import other_param_count
from autoslim.cost.measure import measure_latency_ms
from autoslim.evaluate import evaluate
from autoslim.nn_utils import take
from autoslim.plan import CompressionPlan
from autoslim.tasks import Task
from autoslim.techniques import ApplyContext, InfeasibleError, StoppedEarly, get_technique
from autoslim.techniques.qat import fake_quantized


@dataclass(frozen=True)
class TrialSpec:
    plan: dict[str, Any]  # CompressionPlan.to_dict(): plain data, so it crosses process boundaries
    profiles: tuple[HardwareProfile, ...]
    seed: int = 0
    number: int | None = None  # the study's trial number, for logs
    min_accuracy: float | None = None  # the accuracy the search needs; a fine-tune that cannot reach it stops early


@dataclass
class TrialResult:
    status: str  # "ok" | "infeasible" | "failed" | "pruned" (stopped early: cannot reach spec.min_accuracy)
    accuracy: float | None = None
    costs: dict[str, dict[str, Any]] = field(default_factory=dict)  # profile name -> Cost.to_dict()
    params: int | None = None
    reason: str = ""
    duration_s: float = 0.0
    steps: list[dict[str, Any]] = field(default_factory=list)  # per-step effect: params and MACs after it
    notes: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None  # what the model was built with: with the thread count, it rebuilds bit for bit
    threads: int | None = None  # torch CPU threads (kernels split reductions by thread count)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialResult:
        return cls(**data)


def _footprint(model: torch.nn.Module, example_inputs: Any) -> dict[str, int]:
    stats = layer_stats(model, example_inputs)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "macs": sum(s.macs for s in stats),
        "weight_bits": sum(s.weight_nonzero * s.weight_bits for s in stats),
    }


TRAINING_STEPS = ("distill.kd",)  # steps that fine-tune: a QAT plan runs them under fake quantization


def build_model(
    plan: CompressionPlan,
    task: Task,
    *,
    seed: int = 0,
    cache: dict[str, Any] | None = None,
    skip: Collection[str] = (),
    on_step: Callable[[str, nn.Module], None] | None = None,
    device: str | torch.device = "cpu",
    epoch_callback: Callable[[int, int, nn.Module], None] | None = None,
) -> tuple[nn.Module, ApplyContext]:
    """A copy of the task's teacher with ``plan`` applied (steps named in ``skip`` left out), in eval mode.

    ``on_step(name, model)`` is called after the teacher copy (``"teacher"``) and after every step. ``device`` is
    handed to the steps as ``ctx.device`` (the built-in techniques still run on the CPU). Raises what the steps
    raise (:class:`InfeasibleError` for a plan the model cannot take). ``epoch_callback`` becomes
    ``ctx.epoch_callback`` (fine-tunes call it between epochs; see :func:`early_stop`).
    """
    torch.manual_seed(seed)
    teacher = task.teacher()
    model = copy.deepcopy(teacher)
    ctx = ApplyContext(
        example_inputs=task.example_inputs,
        teacher=teacher,
        train_data=task.train,
        calibration_inputs=task.calibration_inputs(),
        seed=seed,
        cache=cache if cache is not None else {},
        device=torch.device(device),
        epoch_callback=epoch_callback,
    )
    qat = next((s.config for s in plan.steps if s.technique == "quantize" and s.config.mode == "qat"), None)
    if on_step is not None:
        on_step("teacher", model)
    for step in plan.steps:
        if step.technique in skip:
            continue
        # QAT reads the quantize config even when the quantize step itself is skipped (export builds the float
        # model that an int8 runtime then quantizes): the fine-tuned weights are the QAT-trained ones either way.
        with fake_quantized(model, qat, ctx) if qat is not None and step.technique in TRAINING_STEPS else nullcontext():
            model = get_technique(step.technique).apply(model, step.config, ctx)
        if on_step is not None:
            on_step(step.technique, model)
    model.eval()
    return model, ctx


EARLY_STOP_SAMPLES = 1024  # validation samples the early-stop check scores (accuracy s.d. ~0.4 pp near 98%)


def early_stop(task: Task, min_accuracy: float) -> Callable[[int, int, nn.Module], None]:
    """An epoch callback that stops a fine-tune whose model cannot reach ``min_accuracy`` (raises StoppedEarly).

    Rule: after epoch ``e`` of ``E``, stop when the validation error ``1 - acc`` exceeds ``(1 - min_accuracy) * E / e``:
    reaching the target would need the error to shrink faster than in proportion to the part of the fine-tune done.
    In accuracy terms the slack below ``min_accuracy`` is ``(1 - min_accuracy) * (E / e - 1)``, shrinking to 0 at
    the last epoch (where the callback is not called: stopping then saves nothing). Calibrated on 4-epoch KD
    fine-tunes of the default space on mnist1d-cnn (cosine LR): the error left after epoch 1 / 2 / 3 never shrank
    below x0.37 / x0.65 / x0.97 by the end; the rule allows x0.25 / x0.5 / x0.75.

    The check scores the model on the first ``EARLY_STOP_SAMPLES`` validation samples (a fixed subset: scoring all
    6,000 of mnist1d-cnn cost ~8% of a 4-epoch fine-tune, more than the stops saved), in eval mode and read-only:
    weights, buffers and the fine-tune's random stream are untouched, so a trial that is not stopped reports exactly
    the accuracy it would without the check (measured once, at the end, on the full validation split).
    """
    allowed = 1.0 - min_accuracy
    inputs, targets = task.val
    subset = (take(inputs, slice(0, EARLY_STOP_SAMPLES)), targets[:EARLY_STOP_SAMPLES])

    def check(epoch: int, epochs: int, model: nn.Module) -> None:
        acc = evaluate(model, subset, task.metric)
        if 1.0 - acc > allowed * epochs / epoch:
            raise StoppedEarly(
                f"stopped early: accuracy {acc:.4f} after epoch {epoch}/{epochs} cannot reach {min_accuracy:.4f}"
            )

    return check


def run_trial(
    spec: TrialSpec, task: Task, *, cache: dict[str, Any] | None = None, device: str | torch.device = "cpu"
) -> TrialResult:
    """Build, fine-tune, score and price one plan. ``cache`` carries per-process reuse (teacher logits); ``device``
    is the worker's device, passed to the steps as ``ctx.device``."""
    start = time.perf_counter()
    result = TrialResult(status="failed", seed=spec.seed, threads=torch.get_num_threads())

    def record(name: str, model: nn.Module) -> None:
        result.steps.append({"technique": name, **_footprint(model, task.example_inputs)})

    try:
        plan = CompressionPlan.from_dict(spec.plan)
        stop = early_stop(task, spec.min_accuracy) if spec.min_accuracy is not None else None
        model, ctx = build_model(
            plan, task, seed=spec.seed, cache=cache, on_step=record, device=device, epoch_callback=stop
        )
        result.accuracy = evaluate(model, task.val, task.metric)
        # One traced forward serves every profile: the per-layer facts do not depend on the hardware.
        stats, others = layer_stats(model, task.example_inputs), other_param_count(model)
        result.costs = {p.name: cost_from_stats(stats, others, p).to_dict() for p in spec.profiles}
        for p in spec.profiles:
            if p.measure_latency:  # the machine running the search: time the model for real beside the estimate
                result.costs[p.name].update(_measured(model, task, p.batch_size))
        result.params = sum(p.numel() for p in model.parameters())
        result.notes = _jsonable(ctx.notes)
        result.status = "ok"
    except InfeasibleError as exc:
        result.status, result.reason = "infeasible", str(exc)
    except StoppedEarly as exc:
        result.status, result.reason = "pruned", str(exc)
    except Exception as exc:  # failure is a result: the search goes on
        result.status = "failed"
        result.reason = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"
    result.duration_s = time.perf_counter() - start
    return result


def _measured(model: nn.Module, task: Task, batch_size: int) -> dict[str, Any]:
    try:
        ms, backend = measure_latency_ms(
            model, task.example_inputs, batch_size=batch_size, calibration_inputs=task.calibration_inputs()
        )
    except Exception as exc:  # a model the runtime cannot export is still a valid trial; say why it is unmeasured
        return {"measured_latency_ms": None, "measured_backend": f"failed: {type(exc).__name__}: {exc}"[:300]}
    return {"measured_latency_ms": ms, "measured_backend": backend}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (int, float, str, bool)) or obj is None:
        return obj
    return repr(obj)
