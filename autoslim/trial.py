"""One trial: the only place a plan meets a model.

``run_trial(spec, task)`` copies the teacher, applies the plan's steps in canonical order (recording each step's
effect), scores the metric on held-out validation data and prices the result on every profile. It never raises:
a plan the model cannot take becomes ``status="infeasible"``; anything else that goes wrong, ``"failed"``.
"""

from __future__ import annotations

import copy
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from autoslim.cost import HardwareProfile, estimate_cost, layer_stats
from autoslim.evaluate import evaluate
from autoslim.plan import CompressionPlan
from autoslim.tasks import Task
from autoslim.techniques import ApplyContext, InfeasibleError, get_technique


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


def run_trial(spec: TrialSpec, task: Task, *, cache: dict[str, Any] | None = None) -> TrialResult:
    """Build, fine-tune, score and price one plan. ``cache`` carries per-process reuse (teacher logits)."""
    start = time.perf_counter()
    result = TrialResult(status="failed")
    try:
        torch.manual_seed(spec.seed)
        plan = CompressionPlan.from_dict(spec.plan)
        teacher = task.teacher()
        model = copy.deepcopy(teacher)
        ctx = ApplyContext(
            example_inputs=task.example_inputs,
            teacher=teacher,
            train_data=task.train,
            calibration_inputs=task.calibration_inputs(),
            seed=spec.seed,
            cache=cache if cache is not None else {},
        )
        result.steps.append({"technique": "teacher", **_footprint(model, task.example_inputs)})
        for step in plan.steps:
            model = get_technique(step.technique).apply(model, step.config, ctx)
            result.steps.append({"technique": step.technique, **_footprint(model, task.example_inputs)})
        model.eval()
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
