"""Preflight: before trial 1, try every technique of the space once on the teacher, so the budget goes to what applies.

Each technique runs alone on a fresh copy of the teacher (:func:`autoslim.trial.build_model` with a one-step plan),
at the two ends of its ranges: one config with every range at its low end, one with every range at its high end
(choices at one value; fine-tunes shortened to one step, see ``preflight_probe.CHEAP``). The first config that
applies is the base; from it each range is tried at its other end and each choice at its other values. Then:

* a technique that applies at neither end is **removed** from the space, with its reason;
* a range that applies at one end only is **narrowed** by bisection (``preflight_probe.BISECT_STEPS``) to the part
  that applies;
* a choice value that fails is dropped;
* a recipe that uses a removed technique, or a value preflight took out of the space, is dropped with a note.

"Applies" means: no exception (``InfeasibleError`` or any other), and the model still runs on the example inputs
with the teacher's output shape and finite outputs. Which end is the strong one is not assumed: it is the end whose
model is smaller (model bytes on the profiles, then parameters). The table has one row per technique: whether it
applies (``yes`` / ``no`` / ``narrowed``), why, the strong-end config, and the teacher's and that model's size and
cost (each profile's objective and model bytes), and the seconds it took.

Results are cached per (teacher weights, space content, profiles) as JSON under
``cache_root()/"preflight"/<key>.json``; a study stores its result (``study.user_attrs["preflight"]``) and every
later run of that study uses the stored one, so Optuna's distributions never change within a study.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import torch

from autoslim.cost import HardwareProfile
from autoslim.search.preflight_probe import PreflightRow, Prober, check_technique, fmt_value
from autoslim.search.space import ParamSpec, SearchSpace
from autoslim.tasks import Task
from autoslim.tasks.cache import cache_root

VERSION = 2  # bump when the procedure changes (2: cut.blocks keeps a layer of each ModuleList): old caches unused
STUDY_ATTR = "preflight"


@dataclass
class PreflightResult:
    space: SearchSpace  # the narrowed space the search runs on
    rows: list[PreflightRow]
    key: str
    seconds: float  # what the preflight took when it ran (a cached result keeps its original time)
    removed: dict[str, str] = field(default_factory=dict)  # technique -> reason
    narrowed: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # technique -> param -> ParamSpec
    dropped_recipes: list[str] = field(default_factory=list)  # one note per recipe taken out
    cached: bool = False

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([r.flat() for r in self.rows])

    def lines(self) -> list[str]:
        """What a search prints (and keeps in ``SearchOutcome.notes``)."""
        n = {k: sum(r.applies == k for r in self.rows) for k in ("yes", "narrowed", "no")}
        head = (f"preflight{' (cached)' if self.cached else ''}: {len(self.rows)} technique(s) tried on the teacher "
                f"in {self.seconds:.1f} s: {n['yes']} apply, {n['narrowed']} narrowed, {n['no']} removed")  # fmt: skip
        out = [head]
        out += [f"  {r.technique}: {r.applies}: {r.why}" for r in self.rows if r.applies != "yes"]
        out += [f"  {note}" for note in self.dropped_recipes]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"version": VERSION, "key": self.key, "seconds": self.seconds, "removed": self.removed,
                "narrowed": self.narrowed, "rows": [asdict(r) for r in self.rows],
                "table": [r.flat() for r in self.rows]}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any], space: SearchSpace, *, cached: bool = True) -> PreflightResult:
        """The result stored by ``to_dict``, applied to ``space`` (the space as loaded, before narrowing)."""
        removed, narrowed = dict(data["removed"]), {t: dict(p) for t, p in data["narrowed"].items()}
        new_space, dropped = narrow_space(space, removed, narrowed)
        rows = [PreflightRow(**r) for r in data["rows"]]
        return cls(new_space, rows, data["key"], float(data["seconds"]), removed, narrowed, dropped, cached=cached)


# --- keys --------------------------------------------------------------------------------------------------


def model_hash(model: torch.nn.Module) -> str:
    """sha256 over the state dict: names, dtypes, shapes and the tensors' bytes."""
    h = hashlib.sha256()
    for name, value in model.state_dict().items():
        h.update(name.encode())
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous().reshape(-1)
            h.update(f"{t.dtype}{tuple(value.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(repr(value).encode())
    return h.hexdigest()


def space_content(space: SearchSpace) -> str:
    """The parts of a space preflight depends on (techniques, their params and recipes), as canonical JSON."""
    data = {"techniques": [asdict(t) for t in space.techniques], "recipes": list(space.recipes)}
    return json.dumps(data, sort_keys=True, default=repr)


def _with_objectives(space: SearchSpace, profiles: Sequence[HardwareProfile]) -> list[HardwareProfile]:
    overrides = dict(space.objectives)
    return [dataclasses.replace(p, objective=overrides.get(p.name, p.objective)) for p in profiles]


def preflight_key(task: Task, space: SearchSpace, profiles: Sequence[HardwareProfile]) -> str:
    """The cache key: the teacher's weights, the space's techniques and recipes, the profiles' objectives."""
    profiles = _with_objectives(space, profiles)
    h = hashlib.sha256()
    for part in (f"v{VERSION}", model_hash(task.teacher()), space_content(space),
                 json.dumps([(p.name, p.objective) for p in profiles])):  # fmt: skip
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def cache_path(key: str) -> Path:
    return cache_root() / "preflight" / f"{key}.json"


# --- the probe ---------------------------------------------------------------------------------------------


def _spec(data: dict[str, Any]) -> ParamSpec:
    return ParamSpec(**{**data, "choices": tuple(data.get("choices", ()))})


def _contains(spec: ParamSpec, value: Any) -> bool:
    if spec.kind == "choice":
        return value in spec.choices
    if spec.kind in ("int", "float") and isinstance(value, (int, float)):
        assert spec.low is not None and spec.high is not None
        return spec.low - 1e-12 <= value <= spec.high + 1e-12
    return True


def narrow_space(space: SearchSpace, removed: dict[str, str], narrowed: dict[str, dict[str, dict[str, Any]]]
                 ) -> tuple[SearchSpace, list[str]]:  # fmt: skip
    """``space`` without the removed techniques, with the narrowed ParamSpecs, and without the recipes that use
    either; returns it with one note per dropped recipe."""
    techniques = []
    for t in space.techniques:
        if t.name in removed:
            continue
        specs = {p: _spec(narrowed[t.name][p]) if p in narrowed.get(t.name, {}) else s for p, s in t.params.items()}
        techniques.append(dataclasses.replace(t, params=specs))  # its policies and target kept
    by_name = {t.name: t for t in techniques}
    old = {t.name: t for t in space.techniques}
    recipes, notes = [], []
    for i, recipe in enumerate(space.recipes):
        gone = sorted(set(recipe) & set(removed))
        outside = [f"{t}.{p}={fmt_value(v)}" for t, params in recipe.items() if t in by_name
                   for p, v in (params or {}).items() if p in by_name[t].params
                   and _contains(old[t].params[p], v) and not _contains(by_name[t].params[p], v)]  # fmt: skip
        if gone:
            notes.append(f"recipe {i + 1} dropped: it uses {', '.join(gone)}, which does not apply")
        elif outside:
            notes.append(f"recipe {i + 1} dropped: {', '.join(outside)} is outside what applies")
        else:
            recipes.append(recipe)
    return dataclasses.replace(space, techniques=tuple(techniques), recipes=tuple(recipes)), notes


# --- entry points ------------------------------------------------------------------------------------------


def preflight(task: Task, space: SearchSpace, profiles: Sequence[HardwareProfile], *, cache: bool = True
              ) -> PreflightResult:  # fmt: skip
    """Try each technique of ``space`` on ``task``'s teacher; return the narrowed space and the table.

    With ``cache`` (the default) a result for the same teacher weights, space and profiles is read from
    ``cache_root()/"preflight"/<key>.json`` instead of running again, and a fresh result is written there."""
    profiles = _with_objectives(space, profiles)
    key = preflight_key(task, space, profiles)
    path = cache_path(key)
    if cache and path.exists():
        try:
            data = json.loads(path.read_text())
            if data.get("version") == VERSION and data.get("key") == key:
                return PreflightResult.from_dict(data, space, cached=True)
        except (ValueError, KeyError, TypeError):
            pass  # a damaged entry: run again and overwrite it
    start = time.perf_counter()
    prober = Prober(task, profiles)
    rows, removed, narrowed = [], {}, {}
    for tech in space.techniques:
        row, specs = check_technique(prober, tech)
        rows.append(row)
        if row.applies == "no":
            removed[tech.name] = row.why
        elif specs:
            narrowed[tech.name] = specs
    new_space, dropped = narrow_space(space, removed, narrowed)
    result = PreflightResult(new_space, rows, key, time.perf_counter() - start, removed, narrowed, dropped)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result.to_dict(), indent=1, default=repr))
        tmp.replace(path)
    return result


def study_preflight(study: optuna.Study, task: Task, space: SearchSpace, profiles: Sequence[HardwareProfile], *,
                    enabled: bool, fresh: bool) -> tuple[SearchSpace, PreflightResult | None, list[str]]:  # fmt: skip
    """The space a study searches: the one it stored when it began (so distributions never change between runs),
    else, for a fresh study, a new preflight (stored with it), else the space as given. Returns (space, result,
    notes)."""
    stored = study.user_attrs.get(STUDY_ATTR)
    if isinstance(stored, dict) and "rows" in stored:
        result = PreflightResult.from_dict(stored, space, cached=True)
        notes = result.lines()
        if result.key != preflight_key(task, space, profiles):
            notes.append("  (the teacher or the space changed since this study began: it keeps its preflight)")
        return result.space, result, notes
    if stored is not None or not fresh:  # began without preflight (--no-preflight, or before preflight existed)
        note = ["preflight: off for this study (it began without it); the full space is searched"] if enabled else []
        return space, None, note
    if not enabled:
        study.set_user_attr(STUDY_ATTR, {"skipped": True})
        return space, None, []
    result = preflight(task, space, profiles)
    if not result.space.techniques:
        reasons = "; ".join(f"{t}: {why}" for t, why in result.removed.items())
        raise ValueError(f"{space.source}: no technique of the space applies to this model ({reasons})")
    study.set_user_attr(STUDY_ATTR, result.to_dict())
    return result.space, result, result.lines()
