"""The fields a technique with per-layer settings shares, and their checks.

A config that takes per-layer settings has ``policy`` (``uniform``: one value for every layer, as before;
``sensitivity``: allocated per layer by :mod:`autoslim.policy` at trial time), ``target`` (the share of the uncompressed
teacher's cost the model after the step may have, on ``target_profile``'s objective), ``target_of`` (``teacher``, the
default, or ``input``: the target is a share of the cost of the model the step receives, so "halve what the
earlier steps left" is one target whatever they removed), ``candidates`` (the values the
allocator may give a layer) and one per-layer field (``layer_bits``, ``layer_amounts``) that holds the outcome as
``((layer name, value), ...)``. A config whose per-layer field is set is applied as written, whatever ``policy``
says: that is how a resolved plan rebuilds bit for bit without the sensitivity table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

POLICIES = ("uniform", "sensitivity")
TARGETS_OF = ("teacher", "input")  # what a target is a share of


def normalise_layers(value: Any, field: str, check: Callable[[Any], Any]) -> tuple[tuple[str, Any], ...]:
    """``{name: v}`` or ``[[name, v], ...]`` (as JSON gives it back) -> ``((name, v), ...)``, each v checked."""
    items = value.items() if isinstance(value, dict) else value
    try:
        pairs = [(k, v) for k, v in items]
    except (TypeError, ValueError):
        raise ValueError(f"{field} must map layer names to values, got {value!r}") from None
    out = []
    for name, v in pairs:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{field}: layer names must be non-empty strings, got {name!r}")
        try:
            out.append((name, check(v)))
        except ValueError as exc:
            raise ValueError(f"{field}[{name!r}]: {exc}") from None
    if len({n for n, _ in out}) != len(out):
        raise ValueError(f"{field}: a layer is named twice")
    return tuple(out)


def check_policy(config: Any, field: str, check: Callable[[Any], Any]) -> None:
    """Validate and normalise the policy fields of a frozen ``config`` (call from ``__post_init__``)."""
    object.__setattr__(config, field, normalise_layers(getattr(config, field), field, check))
    object.__setattr__(config, "candidates", tuple(check(v) for v in (config.candidates or ())))
    if config.policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {config.policy!r}")
    if config.target is not None and not (isinstance(config.target, (int, float)) and 0.0 < config.target <= 1.0):
        raise ValueError(f"target must be a share of the cost in (0, 1], got {config.target!r}")
    if config.policy == "sensitivity" and config.target is None and not getattr(config, field):
        raise ValueError("policy 'sensitivity' needs a target (a share of the teacher's cost, e.g. 0.05)")
    if config.target_of not in TARGETS_OF:
        raise ValueError(f"target_of must be one of {TARGETS_OF}, got {config.target_of!r}")
    if config.target_profile is not None and not isinstance(config.target_profile, str):
        raise ValueError(f"target_profile must be a profile name, got {config.target_profile!r}")


def describe_counts(pairs: tuple[tuple[str, Any], ...], fmt: Callable[[Any], str], noun: str = "layer") -> str:
    """``w4 on 9 layers, w8 on 3``: the most common value first."""
    counts: dict[Any, int] = {}
    for _, v in pairs:
        counts[v] = counts.get(v, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
    parts = [f"{fmt(v)} on {n} {noun}{'s' if n != 1 else ''}" if i == 0 else f"{fmt(v)} on {n}"
             for i, (v, n) in enumerate(ranked)]  # fmt: skip
    return ", ".join(parts)


def perturb_one(technique: str, layer_field: str, **fixed: Any) -> Callable[..., Any]:
    """A ``LayerPolicy.perturb`` for a technique whose per-layer field applies as written: the technique applied
    with only ``unit`` at ``value`` (and ``fixed`` fields, e.g. a uniform ratio of 0 so nothing else moves)."""

    def perturb(model: Any, unit: str, value: Any, config: Any, ctx: Any) -> Any:
        from autoslim.techniques.registry import get_technique  # the registry imports the techniques

        only = dataclasses.replace(config, **fixed, **{layer_field: ((unit, value),)}, policy="uniform", target=None)
        return get_technique(technique).apply(model, only, ctx)

    return perturb
