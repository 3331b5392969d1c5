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

from autoslim.cost import HardwareProfile, estimate_cost, layer_stats
from autoslim.evaluate import evaluate
from autoslim.plan import CompressionPlan
from autoslim.tasks import Task
from autoslim.techniques import ApplyContext, InfeasibleError, get_technique
from autoslim.techniques.qat import fake_quantized


@dataclass(frozen=True)
class TrialSpec:
    plan: dict[str, Any]  # CompressionPlan.to_dict(): plain data, so it crosses process boundaries
    profiles: tuple[HardwareProfile, ...]
    seed: int = 0
    number: int | None = None  # the study's trial number, for logs


@dataclass
class TrialResult:
    status: str  # "ok" | "infeasible" | "failed"
    accuracy: float | None = None
    costs: dict[str, dict[str, Any]] = field(default_factory=dict)  # profile name -> Cost.to_dict()
    params: int | None = None
    reason: str = ""
    duration_s: float = 0.0
    steps: list[dict[str, Any]] = field(default_factory=list)  # per-step effect: params and MACs after it
    notes: dict[str, Any] = field(default_factory=dict)

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
) -> tuple[nn.Module, ApplyContext]:
    """A copy of the task's teacher with ``plan`` applied (steps named in ``skip`` left out), in eval mode.

    ``on_step(name, model)`` is called after the teacher copy (``"teacher"``) and after every step. Raises what
    the steps raise (:class:`InfeasibleError` for a plan the model cannot take).
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


def run_trial(spec: TrialSpec, task: Task, *, cache: dict[str, Any] | None = None) -> TrialResult:
    """Build, fine-tune, score and price one plan. ``cache`` carries per-process reuse (teacher logits)."""
    start = time.perf_counter()
    result = TrialResult(status="failed")

    def record(name: str, model: nn.Module) -> None:
        result.steps.append({"technique": name, **_footprint(model, task.example_inputs)})

    try:
        plan = CompressionPlan.from_dict(spec.plan)
        model, ctx = build_model(plan, task, seed=spec.seed, cache=cache, on_step=record)
        result.accuracy = evaluate(model, task.val, task.metric)
        result.costs = {p.name: estimate_cost(model, task.example_inputs, p).to_dict() for p in spec.profiles}
        result.params = sum(p.numel() for p in model.parameters())
        result.notes = _jsonable(ctx.notes)
        result.status = "ok"
    except InfeasibleError as exc:
        result.status, result.reason = "infeasible", str(exc)
    except Exception as exc:  # failure is a result: the search goes on
        result.status = "failed"
        result.reason = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"
    result.duration_s = time.perf_counter() - start
    return result


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (int, float, str, bool)) or obj is None:
        return obj
    return repr(obj)
