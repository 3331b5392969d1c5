"""Turn a step's ``policy: sensitivity`` into concrete per-layer settings, on the model the step receives.

The step's config names a ``target`` (a share of the uncompressed teacher's cost on ``target_profile``'s objective,
or with ``target_of: input`` of the cost of the model the step receives: the whole model's cost after the step is
allocated to stay under it) and the candidate values. The resolver reads the technique's sensitivity table
(teacher, once per task), prices every layer at every candidate on that profile with the cost model (the layer's
stats as the technique's ``restat`` says the candidate leaves them), and lets :func:`autoslim.policy.allocate.allocate`
choose.
The resolved config carries the per-layer values in the technique's ``layer_field``, so the plan a trial records is
the one it built: it round-trips to JSON and rebuilds bit for bit without the table.

Which layers take part: the weight layers of the model the step receives. A layer the table does not know (a
low-rank factor ``fc.0`` / ``fc.1`` of a teacher layer ``fc``) takes its teacher layer's row; one with no such
ancestor takes each candidate's median over the table. Objectives: ``model_bytes`` and ``latency_ms`` are priced
per layer exactly as :mod:`autoslim.cost.estimate` does; ``energy_mj`` and ``peak_activation_bytes`` (not sums
of per-layer terms) are allocated by latency, the closest additive cost.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import statistics
from collections import Counter
from typing import Any

from torch import nn

from autoslim.cost.estimate import cost_from_stats, layer_cost, weight_storage_bits
from autoslim.cost.layers import LayerStats, layer_stats, other_param_bits
from autoslim.cost.profiles import HardwareProfile
from autoslim.nn_utils import shape_key, weight_layers
from autoslim.plan import Step
from autoslim.policy.allocate import allocate
from autoslim.policy.sensitivity import (
    SensitivityTable,
    neutral_config,
    perturbed,
    sensitivity_table,
    table_units,
)
from autoslim.techniques.registry import ApplyContext, InfeasibleError, get_technique

FLOOR_SLACK = 0.01


def wants_policy(step: Step) -> bool:
    policy = get_technique(step.technique).layer_policy
    cfg = step.config
    return (
        policy is not None
        and getattr(cfg, "policy", "uniform") == "sensitivity"
        and not getattr(cfg, policy.layer_field)
    )


def resolve_step(step: Step, model: nn.Module, ctx: ApplyContext) -> Step:
    """``step`` with its per-layer settings allocated (unchanged when it asks for no policy or is resolved)."""
    return resolve_built(step, model, ctx)[0]


def resolve_built(step: Step, model: nn.Module, ctx: ApplyContext) -> tuple[Step, nn.Module | None]:
    """:func:`resolve_step`, and the model the resolved step makes of ``model`` where resolving had to build it
    (allocations that reshape layers are built to be priced), so the caller need not apply the step again; None
    where it did not. ``model`` itself is left as it is."""
    if not wants_policy(step):
        return step, None
    tech = get_technique(step.technique)
    policy = tech.layer_policy
    assert policy is not None
    cfg = step.config
    profile = _profile(cfg.target_profile, ctx)
    candidates = tuple(cfg.candidates) or policy.candidates
    table = sensitivity_table(step.technique, candidates, cfg, ctx)
    if policy.restat is None:
        return _resolve_units(step, model, ctx, profile, candidates, table)
    names = [name for name, _ in weight_layers(model)]
    stats = {s.name: s for s in layer_stats(model, ctx.example_inputs)}
    names = [n for n in names if n in stats]  # layers that run
    if not names:
        raise InfeasibleError(f"{step.technique}: no weight layer to allocate per-layer settings to")
    metric = profile.objective if profile.objective in ("model_bytes", "latency_ms") else "latency_ms"
    fixed, cached, whole = _fixed_cost(model, stats, names, profile, metric)
    teacher = whole if cfg.target_of == "input" else _teacher_cost(ctx, profile, metric)
    options = []
    for n in names:
        row = _row(table, n)
        options.append([
            (_layer_cost(policy.restat(stats[n], v, cfg), profile, metric, cached), row[v]) for v in candidates
        ])  # fmt: skip
    # A target below what the cheapest allocation reaches gets that cheapest cost plus 1%: paying a large loss for
    # the last fraction of a percent of cost (2-bit weights that save 0.2% of an int8 CPU's latency) is never
    # what a search wants, and the sampler still learns that the target was out of reach (notes["fits"]).
    cheapest = fixed + sum(min(c for c, _ in o) for o in options)
    budget = max(cfg.target * teacher, cheapest * (1.0 + FLOOR_SLACK)) - fixed
    result = allocate(options, max(budget, 0.0))
    chosen = tuple((n, candidates[c]) for n, c in zip(names, result.choice, strict=True))
    ctx.notes[f"{step.technique}.policy"] = {
        "profile": profile.name, "objective": metric, "target": cfg.target, "target_of": cfg.target_of,
        "fits": result.fits and cfg.target * teacher >= cheapest,
        "cost_share": (result.cost + fixed) / teacher if teacher else None, "loss": result.loss,
        "counts": {str(k): v for k, v in sorted(Counter(v for _, v in chosen).items(), key=lambda kv: str(kv[0]))},
        "table_seconds": table.seconds, "loss_kind": table.loss_kind,
    }  # fmt: skip
    return Step(step.technique, dataclasses.replace(cfg, **{policy.layer_field: chosen})), None


def _resolve_units(step: Step, model: nn.Module, ctx: ApplyContext, profile: HardwareProfile,
                   candidates: tuple[Any, ...], table: SensitivityTable) -> tuple[Step, nn.Module | None]:  # fmt: skip
    """Allocation for a technique whose values reshape several layers (channel widths): each (unit, value) is
    priced on the whole model with only that unit changed, and the savings are taken as additive. They are not
    quite (a layer between two narrowed groups loses ``a + b - ab`` of its work, not ``a + b``), so each allocation
    is built and priced, and the estimated budget is bisected for the largest one whose built model meets the
    target (``CHECKS`` steps at most, after the cheapest and the straight allocation; an allocation met twice is
    built once). Prices are cached per process by the model's shapes: every trial that reaches the step with the
    same architecture reuses them. The chosen allocation's model is handed back, with the notes its build wrote."""
    tech = get_technique(step.technique)
    policy = tech.layer_policy
    assert policy is not None
    cfg = step.config
    metric = profile.objective
    names = table_units(step.technique, model, cfg, ctx)
    if not names:
        raise InfeasibleError(f"{step.technique}: nothing to allocate per-layer settings to")
    base = _whole_cost(model, ctx, profile, metric)
    saved = _unit_savings(step.technique, model, names, candidates, neutral_config(cfg, policy.layer_field), ctx,
                          profile, base)  # fmt: skip
    most = [max([0.0, *row]) for row in saved]
    options = [
        [(m - s, _row(table, n)[v]) for v, s in zip(candidates, row, strict=True)]
        for n, row, m in zip(names, saved, most, strict=True)
    ]
    fixed = base - sum(most)
    reference = base if cfg.target_of == "input" else _teacher_cost(ctx, profile, metric)
    built: dict[tuple[int, ...], _Built] = {}

    def attempt(budget: float) -> _Built:
        """The allocation at ``budget`` (estimated), built and priced (each distinct allocation once)."""
        result = allocate(options, max(budget, 0.0))
        if result.choice not in built:
            chosen = tuple((n, candidates[c]) for n, c in zip(names, result.choice, strict=True))
            resolved = dataclasses.replace(cfg, **{policy.layer_field: chosen})
            scratch = dataclasses.replace(ctx, notes={})  # only the chosen build's notes reach the trial
            made = (
                tech.apply(copy.deepcopy(model), resolved, scratch)
                if any(v != policy.neutral for _, v in chosen)
                else None
            )
            cost = _whole_cost(made if made is not None else model, ctx, profile, metric)
            built[result.choice] = _Built(result.loss, resolved, made, cost, scratch.notes)
        return built[result.choice]

    # The cheapest allocation, built: a target below it gets it plus 1% (as per-layer costs do above).
    found = cheapest = attempt(0.0)
    goal = max(cfg.target * reference, cheapest.cost * (1.0 + FLOOR_SLACK))
    lo, hi = 0.0, max(goal - fixed, 0.0)
    top = attempt(hi)
    if top.cost <= goal:
        found = top
    else:  # bisect the estimated budget on the built cost: the largest budget whose model is within the goal
        for _ in range(CHECKS):
            mid = (lo + hi) / 2
            trial = attempt(mid)
            if trial.cost <= goal:
                found, lo = trial, mid
            else:
                hi = mid
    chosen = getattr(found.config, policy.layer_field)
    ctx.notes.update(found.notes)
    ctx.notes[f"{step.technique}.policy"] = {
        "profile": profile.name, "objective": metric, "target": cfg.target, "target_of": cfg.target_of,
        "fits": found.cost <= cfg.target * reference,
        "cost_share": found.cost / reference if reference else None, "loss": found.loss,
        "counts": {str(k): v for k, v in sorted(Counter(v for _, v in chosen).items(), key=lambda kv: str(kv[0]))},
        "units": len(names), "builds": len(built), "table_seconds": table.seconds, "loss_kind": table.loss_kind,
    }  # fmt: skip
    return Step(step.technique, found.config), found.model


@dataclasses.dataclass
class _Built:
    """One allocation of :func:`_resolve_units`: its summed sensitivity, resolved config, built model (None:
    every unit left as it was) with the notes its build wrote, and its whole cost on the target's profile."""

    loss: float
    config: Any
    model: nn.Module | None
    cost: float
    notes: dict[str, Any]


CHECKS = 4  # bisection steps on the budget when the additive estimate misses (each builds one model)


def _whole_cost(model: nn.Module, ctx: ApplyContext, profile: HardwareProfile, metric: str) -> float:
    return cost_from_stats(layer_stats(model, ctx.example_inputs), other_param_bits(model), profile).objective(metric)


def _unit_savings(technique: str, model: nn.Module, names: list[str], candidates: tuple[Any, ...], cfg: Any,
                  ctx: ApplyContext, profile: HardwareProfile, base: float) -> list[list[float]]:  # fmt: skip
    """``saved[unit][value]``: how much cheaper the whole model is with only that unit at that value (0 where the
    unit cannot take it), for ``cfg`` without its allocation fields (:func:`neutral_config`: the cache key holds
    only what prices depend on). Each (unit, value) model is built once and priced on every profile of the search,
    so a trial allocating for another profile later reads its prices from the cache."""
    shapes = shape_key(model)

    def key(p: HardwareProfile) -> str:
        blob = repr((technique, cfg, shapes, p.name, p.objective, candidates))
        return "unit_savings:" + hashlib.sha256(blob.encode()).hexdigest()

    if key(profile) in ctx.cache:
        return list(ctx.cache[key(profile)])
    profiles = [profile, *(p for p in ctx.profiles if p.name != profile.name)]
    bases = [base, *(_whole_cost(model, ctx, p, p.objective) for p in profiles[1:])]
    saved: list[list[list[float]]] = [[] for _ in profiles]
    for n in names:
        rows: list[list[float]] = [[] for _ in profiles]
        for v in candidates:
            try:
                built = perturbed(technique, model, n, v, cfg, ctx) if v else model
            except InfeasibleError:
                built = model  # the unit cannot take this value: it saves nothing (and its loss is inf)
            stats, others = layer_stats(built, ctx.example_inputs), other_param_bits(built)
            for row, p, b in zip(rows, profiles, bases, strict=True):
                row.append(b - cost_from_stats(stats, others, p).objective(p.objective))
        for i, row in enumerate(rows):
            saved[i].append(row)
    for p, table in zip(profiles, saved, strict=True):
        ctx.cache[key(p)] = table
    return saved[0]


def _teacher_cost(ctx: ApplyContext, profile: HardwareProfile, metric: str) -> float:
    """The uncompressed teacher's cost on ``profile`` (what a target is a share of), once per process."""
    from autoslim.cost.estimate import cost_from_stats

    key = f"teacher_cost:{profile.name}:{metric}"
    if key not in ctx.cache:
        assert ctx.teacher is not None
        cost = cost_from_stats(layer_stats(ctx.teacher, ctx.example_inputs), other_param_bits(ctx.teacher), profile)
        ctx.cache[key] = cost.objective(metric)
    return float(ctx.cache[key])


def _profile(name: str | None, ctx: ApplyContext) -> HardwareProfile:
    by_name = {p.name: p for p in ctx.profiles}
    if name is None and ctx.profiles:
        return ctx.profiles[0]
    if name not in by_name:
        raise InfeasibleError(f"policy: target profile {name!r} is not one of this search's profiles {sorted(by_name)}")
    return by_name[name]


def _row(table: SensitivityTable, name: str) -> dict[Any, float]:
    probe = name
    while probe:
        if probe in table.layers:
            return table.of(probe)
        probe = probe.rpartition(".")[0]
    return {
        v: statistics.median(row[i] for row in table.loss) for i, v in enumerate(table.candidates)
    }  # a layer the teacher did not have


def _layer_cost(s: LayerStats, profile: HardwareProfile, metric: str, cached: bool) -> float:
    if metric == "model_bytes":
        scales = (s.out_channels if s.per_channel else 1) * 32 if s.weight_bits < 16 else 0
        return (weight_storage_bits(s, profile) + scales) / 8
    return layer_cost(s, profile, weights_cached=cached).seconds * 1e3


def _fixed_cost(model: nn.Module, stats: dict[str, LayerStats], names: list[str], profile: HardwareProfile,
                metric: str) -> tuple[float, bool, float]:  # fmt: skip
    """The cost the allocation cannot change (biases, norms, layers it does not set), whether weights stay in
    cache (judged on the model as it enters the step: the allocation only shrinks it), and the whole model's cost
    as it enters (what a ``target_of: input`` target is a share of)."""
    from autoslim.cost.estimate import cost_from_stats

    whole = cost_from_stats(list(stats.values()), other_param_bits(model), profile)
    cached = profile.cache_bytes is not None and whole.model_bytes <= profile.cache_bytes
    others = [s for n, s in stats.items() if n not in set(names)]
    entering = whole.objective(metric)
    if metric == "model_bytes":
        return entering - sum(_layer_cost(stats[n], profile, metric, cached) for n in names), cached, entering
    return sum(_layer_cost(s, profile, metric, cached) for s in others), cached, entering
