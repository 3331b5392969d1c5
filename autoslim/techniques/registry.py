"""Technique registry: a dotted name -> (frozen config class, apply function, how the core treats it).

A technique is a frozen dataclass of parameters plus ``apply(model, config, ctx) -> model``. What the core needs
to know about it beyond that is declared here, so plan, trial, export and cost work for a plug-in as for a
built-in without naming it: its ``role``, how it ``describe``s a config, and, for a numeric technique that a
fine-tune should train for (quantization-aware training), a ``fine_tune_wrapper``. Adding one needs no change to
the core::

    from dataclasses import dataclass
    from autoslim.techniques import register, ApplyContext

    @dataclass(frozen=True)
    class ScaleConfig:
        factor: float = 1.0

    @register("demo.scale", ScaleConfig, role="structural", describe=lambda c: f"scale x{c.factor:g}")
    def apply(model, config: ScaleConfig, ctx: ApplyContext):
        ...
        return model

Check it with the shipped contract: ``autoslim.testing.check_technique("demo.scale", ScaleConfig())``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import torch
from torch import nn


class InfeasibleError(Exception):
    """The model cannot take this technique with this config; the trial becomes infeasible."""


class StoppedEarly(Exception):
    """A fine-tune was stopped because the model cannot reach the accuracy the search needs; the trial is pruned."""


@dataclass
class ApplyContext:
    """What a technique may need besides the model: data, the teacher, a seed, a record of effects."""

    example_inputs: Any
    teacher: nn.Module | None = None
    train_data: Any = None  # the training split: an autoslim.data.Data (an (inputs, targets) pair is wrapped)
    calibration_inputs: Any = None  # a batch of inputs for statistics (activation ranges, block importance)
    seed: int = 0
    # Where the model and teacher live (a GPU worker's cuda:0); example and calibration inputs are already there,
    # and call_model moves any other batch to the model's device.
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    notes: dict[str, Any] = field(default_factory=dict)  # techniques record what they did here
    cache: dict[str, Any] = field(default_factory=dict)  # per-process reuse across trials (teacher logits)
    # Called by fine-tunes after each epoch as ``epoch_callback(epoch, epochs, model)`` (epoch counts from 1); it
    # may raise StoppedEarly. The model is in train mode; the callback must leave its weights and buffers alone.
    epoch_callback: Callable[[int, int, nn.Module], None] | None = None
    # ... and only once they have taken this many optimizer steps (an early verdict needs enough training to go on)
    epoch_callback_min_steps: int = 0
    output: str | None = None  # the task's output field (a ModelOutput's logits by default)
    # The task's own distillation loss, (student_out, teacher_out, batch) -> loss; None: chosen by the output.
    distill_loss: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor] | None = None
    teacher_cache_bytes: float = 256e6  # teacher outputs on in-memory training data are cached below this size
    # The search's hardware profiles: a per-layer policy allocates against one of them (autoslim.policy)
    profiles: tuple[Any, ...] = ()
    # Share of its training a fine-tune runs, in (0, 1]: a multi-fidelity search's low rungs (autoslim.search.rungs)
    # run short fine-tunes (with the whole learning-rate schedule compressed into them), the last rung all of it.
    fidelity: float = 1.0
    # Continued rungs (a technique registered ``resumable=True`` reads these; others restart from their start):
    # ``fine_tune_resume`` is what the rung below left (``{"model", "optimizer": state dicts, "legs": the
    # fidelities done}``): go on from it up to ``fidelity``. ``fine_tune_legs`` rebuilds a continued trial: run
    # to each of these fidelities in turn, as its rungs did. With ``keep_fine_tune_state`` the technique leaves
    # the same kind of mapping in ``fine_tune_state`` when it ends, for the next rung (without it, only "legs").
    fine_tune_resume: Mapping[str, Any] | None = None
    fine_tune_legs: tuple[float, ...] | None = None
    keep_fine_tune_state: bool = False
    fine_tune_state: dict[str, Any] | None = None


ApplyFn = Callable[[nn.Module, Any, ApplyContext], nn.Module]
DescribeFn = Callable[[Any], str]
# (model, this technique's config, ctx) -> a context manager that a fine-tune step runs inside
FineTuneWrapper = Callable[[nn.Module, Any, ApplyContext], AbstractContextManager[Any]]

Role = Literal["structural", "fine-tune", "numeric"]
# structural: changes what the model computes or stores (cut, prune, factorize, share) and runs before the
# fine-tune that recovers it; fine-tune: trains the weights it is given (distill); numeric: changes the deployed
# numerics and runs last, so they are the ones measured (quantize). Export and runtimes act on roles, not names.
ROLES: tuple[Role, ...] = ("structural", "fine-tune", "numeric")


def role_for_order(order: float) -> Role:
    """The role a technique registered without one gets from its ``order``: < 60 structural, 60-69 fine-tune,
    >= 70 numeric (the built-ins' bands)."""
    if order < 60:
        return "structural"
    return "fine-tune" if order < 70 else "numeric"


@dataclass(frozen=True)
class LayerPolicy:
    """How a technique takes per-layer settings, so :mod:`autoslim.policy` can allocate them from a sensitivity
    table without naming the technique.

    ``knob`` is the config field a uniform trial sets for every layer (``weight_bits``); ``layer_field`` holds the
    per-layer overrides as ``((layer name, value), ...)`` (``layer_bits``). ``perturb(model, layer, value, config,
    ctx)`` applies ``value`` to that one layer only, in place, or returns the changed model (the sensitivity table
    measures each layer alone); ``restat(stats, value, config)`` says what the value does to the layer's cost-model
    facts (:class:`autoslim.cost.layers.LayerStats`), so the allocator prices a choice without building it.

    A setting that reshapes several layers at once (a channel width shared by a residual stream and every layer
    reading it) names its own units: ``units(model, config, ctx)`` lists the names per-layer settings key on
    (torch-pruning group roots), and ``restat`` is None: the allocator then prices each (unit, value) on the
    whole model ``perturb`` returns, and checks the combined choice the same way.
    """

    knob: str
    layer_field: str
    candidates: tuple[Any, ...]  # the values a table measures when the plan names none
    perturb: Callable[[nn.Module, str, Any, Any, ApplyContext], nn.Module | None]
    restat: Callable[[Any, Any, Any], Any] | None = None
    units: Callable[[nn.Module, Any, ApplyContext], list[str]] | None = None  # None: the model's weight layers
    neutral: Any = None  # the value that leaves a layer as it is (0 pruned, rank ratio 1): always a candidate
    # Other config fields the allocation decides besides ``knob`` (prune.structured's ``head_ratio``: heads are
    # allocated per attention unless it is set): a search samples them only for uniform trials.
    allocated: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.restat is None) == (self.units is None):
            raise ValueError("a LayerPolicy gives restat (per-layer costs) or units (priced on whole models)")


@dataclass(frozen=True)
class Technique:
    name: str
    config_cls: type
    apply: ApplyFn
    order: float  # position in a plan's canonical order (lower runs first)
    layer_policy: LayerPolicy | None = None  # per-layer settings allocated from a sensitivity table
    role: Role = "structural"
    describe_config: DescribeFn | None = None  # config -> words; None: ``name(field=value, ...)``
    fine_tune_wrapper: FineTuneWrapper | None = None  # wraps the plan's fine-tunes before this step (QAT)
    # A fine-tune that can go on from a saved state (ApplyContext.fine_tune_resume): a multi-fidelity search
    # continues its rungs instead of restarting them
    resumable: bool = False

    def describe(self, config: Any) -> str:
        """``config`` in words for a plan's description (``w4/a8``, ``prune 50% channels (l2)``)."""
        if self.describe_config is not None:
            return self.describe_config(config)
        return f"{self.name}({', '.join(f'{k}={v}' for k, v in asdict(config).items())})"

    def make_config(self, params: dict[str, Any]) -> Any:
        known = {f.name for f in fields(self.config_cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"{self.name}: unknown field(s) {unknown}; allowed: {sorted(known)}")
        return self.config_cls(**params)


_REGISTRY: dict[str, Technique] = {}


def register(
    name: str,
    config_cls: type,
    *,
    order: float = 55.0,
    layer_policy: LayerPolicy | None = None,
    role: Role | None = None,
    describe: DescribeFn | None = None,
    fine_tune_wrapper: FineTuneWrapper | None = None,
    resumable: bool = False,
) -> Callable[[ApplyFn], ApplyFn]:
    """Register ``apply`` under a stable dotted ``name``; a duplicate name raises.

    ``order`` places the technique in a plan's canonical order (the order a search samples it in). Built-ins:
    cut 10, structured pruning 20, low-rank 30, unstructured pruning 40, weight sharing 50, distillation 60,
    quantization 70. The default puts a plug-in after the structural steps and before the distillation fine-tune
    that recovers them. ``role`` (one of :data:`ROLES`) defaults from ``order`` (:func:`role_for_order`).
    ``describe(config) -> str`` words a config for reports (default ``name(field=value, ...)``).
    ``fine_tune_wrapper(model, config, ctx)`` returns a context manager the plan's fine-tune steps that come
    before this step run inside (quantize's QAT); it must return a no-op context when the config asks for none.
    ``resumable``: a fine-tune that honours ``ctx.fine_tune_resume`` / ``fine_tune_legs`` / ``keep_fine_tune_state``
    (see :class:`ApplyContext`), so a multi-fidelity search continues its rungs rather than restarting them.
    """
    role = role if role is not None else role_for_order(order)
    if role not in ROLES:
        raise ValueError(f"technique {name!r}: role must be one of {ROLES}, got {role!r}")

    def deco(fn: ApplyFn) -> ApplyFn:
        if name in _REGISTRY:
            raise ValueError(f"technique {name!r} is already registered")
        _REGISTRY[name] = Technique(
            name, config_cls, fn, order, layer_policy, role, describe, fine_tune_wrapper, resumable
        )
        return fn

    return deco


def get_technique(name: str) -> Technique:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown technique {name!r}; known: {sorted(_REGISTRY)}") from None


def list_techniques(pattern: str = "*", *, role: str | None = None) -> list[str]:
    """Registered names matching a glob, e.g. ``list_techniques("prune.*")``; only those of ``role`` when given
    (``list_techniques(role="fine-tune")``)."""
    return sorted(n for n, t in _REGISTRY.items() if fnmatch.fnmatch(n, pattern) and (role is None or t.role == role))
