"""The sensitivity table: how much the model's output moves when one layer alone takes one candidate setting.

For every weight layer of the teacher and every candidate value of a technique's per-layer knob (weight bits,
pruning amount), the technique's ``perturb`` applies that value to that one layer of a teacher copy, and the table
records the distillation loss of the perturbed model against the teacher on the task's calibration inputs (the
loss the recovery fine-tune minimises, picked for the output kind: KL of logits, BCE of sigmoid outputs, cosine of
embeddings; see :mod:`autoslim.techniques.distill_losses`). The loss is a smooth proxy for the metric drop: a
single layer at 4 bits rarely moves accuracy by one sample on 512 inputs, but it always moves the outputs.
``benchmarks/policies.py`` checks the proxy against measured per-layer metric drops (Spearman rho).

Tables are computed once per (teacher weights, technique, candidates, inputs) and cached as JSON under
``$AUTOSLIM_CACHE/sensitivity/``: every process (and every night's search) of the same task reuses them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from autoslim.nn_utils import call_model, take, weight_layers
from autoslim.tasks.cache import cache_root
from autoslim.tasks.fingerprint import teacher_sha256
from autoslim.techniques.registry import ApplyContext, InfeasibleError, get_technique

SAMPLES = 512  # calibration inputs each entry is measured on (the task's calibration batch is 512 by default)
# 2: prune.structured lists a Hugging Face attention's head group as a unit (a table cached before has no row for
# it, and an allocation would read it as the median layer)
VERSION = 2


@dataclass(frozen=True)
class SensitivityTable:
    technique: str
    knob: str
    candidates: tuple[Any, ...]
    layers: tuple[str, ...]  # weight layers in the teacher's module order
    loss: tuple[tuple[float, ...], ...]  # loss[layer][candidate]: distillation loss vs the teacher
    loss_kind: str
    seconds: float
    teacher: str  # sha256 of the teacher's weights

    def of(self, layer: str) -> dict[Any, float]:
        return dict(zip(self.candidates, self.loss[self.layers.index(layer)], strict=True))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SensitivityTable:
        return cls(
            technique=str(data["technique"]), knob=str(data["knob"]), candidates=tuple(data["candidates"]),
            layers=tuple(data["layers"]), loss=tuple(tuple(float(v) for v in row) for row in data["loss"]),
            loss_kind=str(data["loss_kind"]), seconds=float(data["seconds"]), teacher=str(data["teacher"]),
        )  # fmt: skip


def _key(teacher: str, technique: str, candidates: Sequence[Any], inputs_sig: str, config: Any) -> str:
    blob = json.dumps([VERSION, teacher, technique, list(candidates), inputs_sig, repr(config)], default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _inputs_signature(inputs: Any) -> str:
    """A cheap fingerprint of the calibration inputs: shapes plus a checksum."""
    tensors = (
        [inputs] if isinstance(inputs, torch.Tensor) else list(inputs.values()) if isinstance(inputs, dict) else []
    )
    return "|".join(f"{tuple(t.shape)}:{float(t.double().sum()):.6g}" for t in tensors)


def teacher_hash(ctx: ApplyContext) -> str:
    assert ctx.teacher is not None
    if "teacher_sha256" not in ctx.cache:
        ctx.cache["teacher_sha256"] = teacher_sha256(ctx.teacher)
    return str(ctx.cache["teacher_sha256"])


def sensitivity_table(
    technique: str,
    candidates: Sequence[Any],
    config: Any,
    ctx: ApplyContext,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> SensitivityTable:
    """The table of ``technique``'s per-layer ``candidates`` on ``ctx.teacher`` (cached in memory and on disk).

    ``config`` is the technique's config the perturbations are made with (its other fields: per-channel or not,
    activation bits are not part of a weight-bits table). ``progress(done, total)`` is called per entry.
    """
    policy = get_technique(technique).layer_policy
    if policy is None:
        raise ValueError(f"{technique} takes no per-layer policy")
    assert ctx.teacher is not None
    inputs = ctx.calibration_inputs if ctx.calibration_inputs is not None else ctx.example_inputs
    inputs = take(inputs, slice(0, SAMPLES))
    teacher = teacher_hash(ctx)
    base_config = neutral_config(config, policy.layer_field)
    key = _key(teacher, technique, candidates, _inputs_signature(inputs), base_config)
    if f"sensitivity:{key}" in ctx.cache:
        cached: SensitivityTable = ctx.cache[f"sensitivity:{key}"]
        return cached
    path = cache_root() / "sensitivity" / f"{key}.json"
    table = _load(path)
    if table is None:
        table = _measure(technique, tuple(candidates), base_config, ctx, inputs, teacher, progress)
        _save(table, path)
    ctx.cache[f"sensitivity:{key}"] = table
    return table


def neutral_config(config: Any, layer_field: str) -> Any:
    """``config`` without its per-layer settings and without what only the allocation reads (the sampled target,
    its profile, the policy itself): what a perturbation starts from, and so what the table is keyed on. A search
    samples a new target every trial; the table of the teacher is the same for all of them."""
    import dataclasses

    allocation = {"policy": "uniform", "target": None, "target_profile": None, "target_of": "teacher", "candidates": ()}
    names = {f.name for f in dataclasses.fields(config)}
    return dataclasses.replace(config, **{layer_field: ()}, **{k: v for k, v in allocation.items() if k in names})


def _measure(technique: str, candidates: tuple[Any, ...], config: Any, ctx: ApplyContext, inputs: Any,
             teacher_sha: str, progress: Callable[[int, int], None] | None) -> SensitivityTable:  # fmt: skip
    from autoslim.techniques.distill import KDConfig, _choose_loss
    from autoslim.techniques.distill_losses import output_loss

    policy = get_technique(technique).layer_policy
    assert policy is not None and ctx.teacher is not None
    start = time.perf_counter()
    teacher = ctx.teacher.eval()
    choice, _ = _choose_loss(KDConfig(), ctx, ctx.train_data)
    with torch.no_grad():
        reference = call_model(teacher, inputs, output=ctx.output)
    names = table_units(technique, teacher, config, ctx)
    total, done = len(names) * len(candidates), 0
    rows = []
    for name in names:
        row = []
        for value in candidates:
            try:
                model = perturbed(technique, teacher, name, value, config, ctx)
            except InfeasibleError:  # the unit cannot take this value (a width the forward pins): never chosen
                row.append(float("inf"))
            else:
                with torch.no_grad():
                    out = call_model(model.eval(), inputs, output=ctx.output)
                    loss = float(output_loss(choice, out, reference, None, temperature=1.0, alpha=1.0))
                # NaN: the layer cannot take it at all; a tiny negative KL is rounding
                row.append(max(loss, 0.0) if loss == loss else float("inf"))
            done += 1
            if progress is not None:
                progress(done, total)
        rows.append(tuple(row))
    return SensitivityTable(
        technique=technique, knob=policy.knob, candidates=candidates, layers=tuple(names), loss=tuple(rows),
        loss_kind=choice.kind, seconds=time.perf_counter() - start, teacher=teacher_sha,
    )  # fmt: skip


def table_units(technique: str, model: torch.nn.Module, config: Any, ctx: ApplyContext) -> list[str]:
    """The names ``technique``'s per-layer settings key on in ``model``: its weight layers, or the technique's own
    units (torch-pruning group roots for channel widths)."""
    policy = get_technique(technique).layer_policy
    assert policy is not None
    if policy.units is not None:
        return policy.units(model, config, ctx)
    return [name for name, _ in weight_layers(model)]


def perturbed(technique: str, model: torch.nn.Module, unit: str, value: Any, config: Any,
              ctx: ApplyContext) -> torch.nn.Module:  # fmt: skip
    """A copy of ``model`` with only ``unit`` at ``value`` (``model`` is left as it is)."""
    policy = get_technique(technique).layer_policy
    assert policy is not None
    work = copy.deepcopy(model)
    out = policy.perturb(work, unit, value, config, ctx)
    return out if out is not None else work


def _load(path: Path) -> SensitivityTable | None:
    try:
        return SensitivityTable.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or damaged: measured again


def _save(table: SensitivityTable, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(table.to_dict()))
    os.replace(tmp, path)  # concurrent workers measuring the same table write the same content
