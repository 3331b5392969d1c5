"""Search spaces: YAML -> validated ``SearchSpace`` -> define-by-run sampling of a ``CompressionPlan``.

Grammar (see ``search_spaces/README.md``)::

    name: default
    profiles: [gpu-a100, x86-avx512-vnni]      # optional; --profile overrides
    techniques:
      prune.structured:
        when: optional                          # optional (sampled on/off) | always | structural
        params:
          ratio: {float: [0.2, 0.85]}           # float / int ranges, with optional log: true, step: x
          importance: {choice: [l1, l2]}
          round_to: 8                           # a plain value is fixed
    recipes:                                    # plans tried first (the baseline always is)
      - {quantize: {weight_bits: 8, act_bits: 8}}
    rungs: {fractions: [0.111, 0.333, 1], reduction_factor: 3, rule: hypervolume}   # optional: multi-fidelity (ASHA)

Every error names the file and the field, and is raised before any trial runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import optuna
import yaml

from autoslim.search.rungs import Rungs, rungs_from_config
from autoslim.techniques import get_technique, list_techniques
from autoslim.techniques.per_layer import POLICIES, TARGETS_OF

WHEN = ("optional", "always", "structural")


class SpaceError(ValueError):
    """A search space file is invalid; the message names the file and the field."""


@dataclass(frozen=True)
class ParamSpec:
    kind: str  # "int" | "float" | "choice" | "fixed"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    value: Any = None

    def sample(self, trial: optuna.Trial, name: str) -> Any:
        if self.kind == "fixed":
            return self.value
        if self.kind == "choice":
            return trial.suggest_categorical(name, list(self.choices))
        if self.kind == "int":
            assert self.low is not None and self.high is not None
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        assert self.low is not None and self.high is not None
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


DEFAULT_TARGET = ParamSpec("float", low=0.05, high=0.5, log=True)
GRID_POINTS = 5  # a float knob's range becomes this many candidates (plus the technique's "leave it" value)


@dataclass(frozen=True)
class TechniqueSpec:
    name: str
    when: str
    params: dict[str, ParamSpec]
    # Per-layer policies this technique may take (``uniform``: one value for every layer; ``sensitivity``: values
    # allocated per layer against a sampled cost target on a sampled profile, see autoslim.policy).
    policies: tuple[str, ...] = ("uniform",)
    target: ParamSpec = DEFAULT_TARGET
    target_profiles: tuple[str, ...] = ()  # empty: any of the search's profiles
    target_of: str = "teacher"  # what a sampled target is a share of: the teacher's cost, or the step's input's

    def candidates(self) -> tuple[Any, ...]:
        """The per-layer values a policy chooses among: the knob's choices, or a grid over its range."""
        policy = get_technique(self.name).layer_policy
        assert policy is not None
        spec = self.params.get(policy.knob)
        if spec is None:
            return policy.candidates
        if spec.kind == "choice":
            return tuple(v for v in spec.choices if v is not None)
        if spec.kind == "fixed":
            return (spec.value,)
        assert spec.low is not None and spec.high is not None
        if spec.kind == "int":
            return tuple(range(int(spec.low), int(spec.high) + 1))
        grid = [spec.low + (spec.high - spec.low) * i / (GRID_POINTS - 1) for i in range(GRID_POINTS)]
        values = tuple(round(v, 4) for v in grid)
        keep = policy.neutral if policy.neutral is not None else 0.0  # the "leave this layer" value
        if keep in values or not _allows(self.name, policy.knob, keep):
            return values
        return (keep, *values) if keep <= values[0] else (*values, keep)

    def profile_choices(self, profiles: tuple[str, ...]) -> tuple[str, ...]:
        return self.target_profiles or profiles


def _allows(technique: str, field_name: str, value: Any) -> bool:
    try:
        get_technique(technique).make_config({field_name: value})
    except (ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True)
class Constraints:
    """Limits a front point must meet; violators are infeasible (Optuna ``constraints_func``) and off the fronts."""

    max_accuracy_drop: float | None = None  # vs. the uncompressed baseline, in accuracy units (0.01 = 1 pp)
    min_accuracy: float | None = None
    max_model_bytes: tuple[tuple[str, float], ...] = ()  # (profile, limit)
    max_latency_ms: tuple[tuple[str, float], ...] = ()

    def violations(self, accuracy: float, baseline: float | None, costs: dict[str, dict[str, Any]]) -> list[float]:
        """One value per constraint; <= 0 means satisfied (Optuna's convention)."""
        out = []
        if self.max_accuracy_drop is not None:
            out.append((baseline - accuracy - self.max_accuracy_drop) if baseline is not None else 0.0)
        if self.min_accuracy is not None:
            out.append(self.min_accuracy - accuracy)
        for metric, limits in (("model_bytes", self.max_model_bytes), ("latency_ms", self.max_latency_ms)):
            for profile, limit in limits:
                value = costs.get(profile, {}).get(metric)
                out.append((float(value) - limit) / limit if value is not None else 0.0)
        return out

    @property
    def count(self) -> int:
        return (self.max_accuracy_drop is not None) + (self.min_accuracy is not None) + len(
            self.max_model_bytes) + len(self.max_latency_ms)  # fmt: skip

    def profiles(self) -> set[str]:
        return {p for p, _ in self.max_model_bytes + self.max_latency_ms}


@dataclass(frozen=True)
class SearchSpace:
    name: str
    techniques: tuple[TechniqueSpec, ...]  # canonical order
    profiles: tuple[str, ...] = ()
    recipes: tuple[dict[str, dict[str, Any]], ...] = ()
    source: str = "<space>"
    objectives: tuple[tuple[str, str], ...] = ()  # (profile, metric) overrides of a profile's own objective
    constraints: Constraints = field(default_factory=lambda: Constraints())
    # Multi-fidelity: fine-tunes run at rungs of their length, the top share of each rung goes on (None: off,
    # every trial runs its whole fine-tune). The space's `rungs:` mapping, or `autoslim search --multifidelity`.
    rungs: Rungs | None = None

    def sample(self, trial: optuna.Trial, profiles: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
        """Define-by-run: decide each technique on/off, then its policy and parameters; returns plan steps.

        A technique sampled with ``policy: sensitivity`` gets a ``target`` share and a ``target_profile`` (one of
        ``profiles``, the search's) instead of its knob (``weight_bits``): the knob is allocated per layer."""
        steps: dict[str, dict[str, Any]] = {}
        structural_on = False
        for t in self.techniques:
            if t.when == "always":
                on = True
            elif t.when == "structural":
                on = structural_on
            else:
                on = bool(trial.suggest_categorical(t.name, [True, False]))
            if not on:
                continue
            policy = t.policies[0]
            if len(t.policies) > 1:
                policy = str(trial.suggest_categorical(f"{t.name}.policy", list(t.policies)))
            if policy == "sensitivity":
                steps[t.name] = self._sample_policy(trial, t, profiles)
            else:
                steps[t.name] = {p: spec.sample(trial, f"{t.name}.{p}") for p, spec in t.params.items()}
            structural_on |= get_technique(t.name).role == "structural"
        return steps

    @staticmethod
    def _sample_policy(trial: optuna.Trial, t: TechniqueSpec, profiles: tuple[str, ...]) -> dict[str, Any]:
        policy = get_technique(t.name).layer_policy
        assert policy is not None
        skip = {policy.knob, *policy.allocated}  # allocated per layer, not sampled
        out = {p: spec.sample(trial, f"{t.name}.{p}") for p, spec in t.params.items() if p not in skip}
        out.update(policy="sensitivity", target=t.target.sample(trial, f"{t.name}.target"),
                   target_of=t.target_of, candidates=list(t.candidates()))  # fmt: skip
        choices = t.profile_choices(profiles)
        if len(choices) > 1:
            out["target_profile"] = trial.suggest_categorical(f"{t.name}.target_profile", list(choices))
        elif choices:
            out["target_profile"] = choices[0]
        return out

    def recipe_params(self, recipe: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Optuna params that make ``sample`` return ``recipe`` (for ``study.enqueue_trial``)."""
        out: dict[str, Any] = {}
        for t in self.techniques:
            if t.when == "optional":
                out[t.name] = t.name in recipe
            params = recipe.get(t.name, {})
            if t.name in recipe and len(t.policies) > 1:
                out[f"{t.name}.policy"] = params.get("policy", "uniform")
            for p, value in params.items():
                if p in ("target", "target_profile") and params.get("policy") == "sensitivity":
                    out[f"{t.name}.{p}"] = value  # (a fixed one is never suggested: Optuna ignores it)
                elif t.params.get(p, ParamSpec("fixed")).kind != "fixed":
                    out[f"{t.name}.{p}"] = value
        return out


_PARAM_KEYS = {"int", "float", "choice", "log", "step"}


def _as_number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _param(where: str, value: Any) -> ParamSpec:
    if not isinstance(value, dict):
        return ParamSpec("fixed", value=value)
    unknown = sorted(set(value) - _PARAM_KEYS)
    if unknown:
        raise SpaceError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(_PARAM_KEYS)}")
    kinds = [k for k in ("int", "float", "choice") if k in value]
    if len(kinds) != 1:
        raise SpaceError(f"{where}: give exactly one of int: [low, high], float: [low, high], choice: [...]")
    kind = kinds[0]
    if kind == "choice":
        choices = value["choice"]
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{where}: choice must be a non-empty list")
        return ParamSpec("choice", choices=tuple(choices))
    bounds = value[kind]
    if isinstance(bounds, list):  # PyYAML reads 1e-3 (no dot, no exponent sign) as a string
        bounds = [_as_number(b) for b in bounds]
    ok = isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, (int, float)) for b in bounds)
    if not ok or bounds[0] > bounds[1]:
        raise SpaceError(f"{where}: {kind} must be [low, high] with low <= high, got {bounds!r}")
    log = bool(value.get("log", False))
    if log and bounds[0] <= 0:
        raise SpaceError(f"{where}: log: true needs low > 0, got {bounds[0]}")
    if log and "step" in value:
        raise SpaceError(f"{where}: step and log: true cannot be combined")
    return ParamSpec(kind, low=bounds[0], high=bounds[1], log=log, step=value.get("step"))


def _check_values(where: str, technique: str, params: dict[str, ParamSpec]) -> None:
    """Build the config with every edge value of every parameter, so a bad value fails now, not in trial 37."""
    for p, spec in params.items():
        if spec.kind == "fixed":
            values: list[Any] = [spec.value]
        elif spec.kind == "choice":
            values = list(spec.choices)
        else:
            values = [spec.low, spec.high]
            values = [int(v or 0) for v in values] if spec.kind == "int" else values
        for v in values:
            try:
                get_technique(technique).make_config({p: v})
            except (ValueError, TypeError) as exc:
                raise SpaceError(f"{where}.params.{p}: value {v!r} is not allowed: {exc}") from exc


def space_from_dict(data: Any, *, source: str = "<space>") -> SearchSpace:
    if not isinstance(data, dict):
        raise SpaceError(f"{source}: a search space must be a mapping")
    unknown = sorted(set(data) - set(_TOP_LEVEL))
    if unknown:
        raise SpaceError(f"{source}: unknown field(s) {unknown}; allowed: {', '.join(_TOP_LEVEL)}")
    techs = data.get("techniques")
    if not isinstance(techs, dict) or not techs:
        raise SpaceError(f"{source}: field 'techniques' must map technique names to their settings")
    specs = []
    for name, body in techs.items():
        where = f"{source}: techniques.{name}"
        try:
            tech = get_technique(name)
        except KeyError:
            raise SpaceError(f"{where}: unknown technique; known: {list_techniques()}") from None
        body = body or {}
        extra = sorted(set(body) - set(_TECHNIQUE_KEYS))
        if extra:
            raise SpaceError(f"{where}: unknown field(s) {extra}; allowed: {', '.join(_TECHNIQUE_KEYS)}")
        when = body.get("when", "optional")
        if when not in WHEN:
            raise SpaceError(f"{where}.when: must be one of {WHEN}, got {when!r}")
        allowed = {f.name for f in fields(tech.config_cls)}
        params = {}
        for p, v in (body.get("params") or {}).items():
            if p not in allowed:
                raise SpaceError(f"{where}.params.{p}: not a field of {name}; allowed: {sorted(allowed)}")
            params[p] = _param(f"{where}.params.{p}", v)
        _check_values(where, name, params)
        policies, target, target_profiles, target_of = _policy(where, name, body)
        specs.append((tech.order, TechniqueSpec(name, when, params, policies, target, target_profiles, target_of)))
    specs.sort(key=lambda x: x[0])
    profiles = data.get("profiles", [])
    if not isinstance(profiles, list) or not all(isinstance(p, str) for p in profiles):
        raise SpaceError(f"{source}: field 'profiles' must be a list of profile names")
    space = SearchSpace(
        name=str(data.get("name", Path(source).stem)), techniques=tuple(s for _, s in specs),
        profiles=tuple(profiles), source=source,
    )  # fmt: skip
    recipes = data.get("recipes", []) or []
    if not isinstance(recipes, list):
        raise SpaceError(f"{source}: field 'recipes' must be a list of plans")
    names = {t.name for t in space.techniques}
    for i, r in enumerate(recipes):
        if not isinstance(r, dict) or not set(r) <= names:
            raise SpaceError(f"{source}: recipes[{i}]: every key must be a technique of this space: {sorted(names)}")
        for t, params in r.items():
            try:
                get_technique(t).make_config(dict(params or {}))
            except (ValueError, TypeError) as exc:
                raise SpaceError(f"{source}: recipes[{i}].{t}: {exc}") from exc
    objectives = _objectives(source, data.get("objectives"))
    constraints = _constraints(source, data.get("constraints"))
    return SearchSpace(
        space.name, space.techniques, space.profiles, _with_fixed(space, recipes), source, objectives=objectives,
        constraints=constraints, rungs=_rungs(source, data.get("rungs")),
    )  # fmt: skip


def _rungs(source: str, raw: Any) -> Rungs | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise SpaceError(f"{source}: field 'rungs' must be a mapping, e.g. {{fractions: [0.111, 0.333, 1]}}")
    try:
        return rungs_from_config(raw)
    except (ValueError, TypeError) as exc:
        raise SpaceError(f"{source}: rungs: {exc}") from exc


def _with_fixed(space: SearchSpace, recipes: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], ...]:
    """Each recipe with its techniques' fixed space values beneath what it writes: a space-wide setting such as
    KD's ``epochs_per_removed`` or ``min_epoch_steps`` holds for the hand recipes too (without it, the cnn space's
    mild-prune recipe got 21 KD steps per epoch and lost 2 pp on MobileNetV2), while what a recipe writes wins.
    A recipe step with ``policy: sensitivity`` also gets the space's ``target_of`` and candidates, as a sampled one
    does: a share of the step's input in the space is one in its recipes too."""
    by_name = {t.name: t for t in space.techniques}
    out = []
    for recipe in recipes:
        filled = {}
        for name, params in recipe.items():
            t = by_name[name]
            fixed = {p: spec.value for p, spec in t.params.items() if spec.kind == "fixed"}
            if (params or {}).get("policy") == "sensitivity":
                fixed |= {"target_of": t.target_of, "candidates": list(t.candidates())}
            filled[name] = {**fixed, **dict(params or {})}
        out.append(filled)
    return tuple(out)


_TECHNIQUE_KEYS = ("params", "policy", "target", "target_of", "target_profiles", "when")


def _policy(where: str, name: str, body: dict[str, Any]) -> tuple[tuple[str, ...], ParamSpec, tuple[str, ...], str]:
    raw = body.get("policy", "uniform")
    policies = tuple(raw) if isinstance(raw, list) else (raw,)
    if not policies or any(p not in POLICIES for p in policies) or len(set(policies)) != len(policies):
        raise SpaceError(f"{where}.policy: must be one of {list(POLICIES)} or a list of them, got {raw!r}")
    if "sensitivity" in policies and get_technique(name).layer_policy is None:
        with_policy = [n for n in list_techniques() if get_technique(n).layer_policy is not None]
        raise SpaceError(f"{where}.policy: {name} takes no per-layer policy; these do: {with_policy}")
    if "sensitivity" not in policies:
        for key in ("target", "target_profiles", "target_of"):
            if key in body:
                raise SpaceError(f"{where}.{key}: only meaningful with policy: sensitivity")
        return policies, DEFAULT_TARGET, (), "teacher"
    target = _param(f"{where}.target", body["target"]) if "target" in body else DEFAULT_TARGET
    lo = target.value if target.kind == "fixed" else target.low
    hi = target.value if target.kind == "fixed" else target.high
    if target.kind == "choice" or not all(isinstance(v, (int, float)) and 0 < v <= 1 for v in (lo, hi)):
        raise SpaceError(f"{where}.target: a share of the cost in (0, 1]: a number or float: [low, high]")
    profiles = body.get("target_profiles", [])
    if not isinstance(profiles, list) or not all(isinstance(p, str) for p in profiles):
        raise SpaceError(f"{where}.target_profiles: must be a list of profile names")
    target_of = body.get("target_of", "teacher")
    if target_of not in TARGETS_OF:
        raise SpaceError(
            f"{where}.target_of: one of {list(TARGETS_OF)} (what the target is a share of), got {target_of!r}"
        )
    return policies, target, tuple(profiles), target_of


_TOP_LEVEL = ("constraints", "description", "name", "objectives", "profiles", "recipes", "rungs", "techniques")
_METRICS = ("latency_ms", "model_bytes", "energy_mj", "peak_activation_bytes")


def _objectives(source: str, data: Any) -> tuple[tuple[str, str], ...]:
    if data is None:
        return ()
    if not isinstance(data, dict):
        raise SpaceError(f"{source}: field 'objectives' must map a profile name to one of {list(_METRICS)}")
    for profile, metric in data.items():
        if metric not in _METRICS:
            raise SpaceError(f"{source}: objectives.{profile}: must be one of {list(_METRICS)}, got {metric!r}")
    return tuple((str(p), str(m)) for p, m in data.items())


def _constraints(source: str, data: Any) -> Constraints:
    if data is None:
        return Constraints()
    allowed = ("max_accuracy_drop", "min_accuracy", "max_model_bytes", "max_latency_ms")
    if not isinstance(data, dict) or set(data) - set(allowed):
        bad = sorted(set(data) - set(allowed)) if isinstance(data, dict) else data
        raise SpaceError(f"{source}: constraints: unknown field(s) {bad}; allowed: {list(allowed)}")
    scalars: dict[str, float | None] = {}
    for key in ("max_accuracy_drop", "min_accuracy"):
        v = data.get(key)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1):
            raise SpaceError(f"{source}: constraints.{key}: must be a number in [0, 1] (accuracy units), got {v!r}")
        scalars[key] = None if v is None else float(v)
    per_profile: dict[str, tuple[tuple[str, float], ...]] = {}
    for key in ("max_model_bytes", "max_latency_ms"):
        v = data.get(key) or {}
        ok = isinstance(v, dict) and all(isinstance(x, (int, float)) and x > 0 for x in v.values())
        if not ok:
            raise SpaceError(f"{source}: constraints.{key}: must map a profile name to a positive limit, got {v!r}")
        per_profile[key] = tuple((str(p), float(x)) for p, x in v.items())
    return Constraints(scalars["max_accuracy_drop"], scalars["min_accuracy"], per_profile["max_model_bytes"],
                       per_profile["max_latency_ms"])  # fmt: skip


def load_space(path: str | Path) -> SearchSpace:
    path = Path(path)
    if not path.exists():
        raise SpaceError(f"{path}: no such search space file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpaceError(f"{path}: not valid YAML: {exc}") from exc
    return space_from_dict(data, source=str(path))


def default_space_path() -> Path:
    """``search_spaces/default.yaml`` in the working directory, else the one shipped in the package (a wheel holds
    the spaces as ``autoslim/search_spaces/``, see pyproject.toml), else the one beside an editable checkout."""
    here = Path.cwd() / "search_spaces" / "default.yaml"
    if here.exists():
        return here
    packaged = Path(__file__).resolve().parents[1] / "search_spaces" / "default.yaml"
    return packaged if packaged.exists() else Path(__file__).resolve().parents[2] / "search_spaces" / "default.yaml"
