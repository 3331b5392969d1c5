"""Preflight: before trial 1, try every technique of the space once on the teacher, so the budget goes to what applies.

Each technique runs alone on a fresh copy of the teacher (:func:`autoslim.trial.build_model` with a one-step plan),
at the two ends of its ranges: one config with every range at its low end, one with every range at its high end
(choices at one value; fine-tunes shortened to one step, see ``CHEAP``). The first config that applies is the base;
from it each range is tried at its other end and each choice at its other values. Then:

* a technique that applies at neither end is **removed** from the space, with its reason;
* a range that applies at one end only is **narrowed** by bisection (``BISECT_STEPS``) to the part that applies;
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
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import torch

from autoslim.cost import HardwareProfile
from autoslim.nn_utils import call_model
from autoslim.plan import CompressionPlan, Step
from autoslim.search.space import ParamSpec, SearchSpace, TechniqueSpec
from autoslim.tasks import Task
from autoslim.tasks.cache import cache_root
from autoslim.techniques import get_technique
from autoslim.trial import build_model, price

VERSION = 2  # bump when the procedure changes (2: cut.blocks keeps a layer of each ModuleList): old caches unused
BISECT_STEPS = 4
# Config fields shortened for the probe wherever a technique has them (fine-tunes): applicability does not depend
# on how long a fine-tune runs, and a range over them is not probed.
CHEAP: dict[str, Any] = {"epochs": 1, "epoch_steps": 1, "epochs_per_removed": 0}
STUDY_ATTR = "preflight"


@dataclass
class PreflightRow:
    technique: str
    applies: str  # "yes" | "no" | "narrowed"
    why: str
    config: dict[str, Any]  # the strong end that was priced (for "no": the first config tried)
    before: dict[str, Any]  # the teacher: {"params": n, "costs": {profile: {"objective", "value", "model_bytes"}}}
    after: dict[str, Any] | None  # the same for the technique's strong end (None: it applies nowhere)
    seconds: float
    probes: int = 0

    def flat(self) -> dict[str, Any]:
        """One CSV / HTML table row."""
        row: dict[str, Any] = {"technique": self.technique, "applies": self.applies, "why": self.why,
                               "config": json.dumps(self.config, sort_keys=True, default=repr),
                               "params_before": self.before.get("params"),
                               "params_after": (self.after or {}).get("params")}  # fmt: skip
        for name, c in self.before.get("costs", {}).items():
            a = (self.after or {}).get("costs", {}).get(name, {})
            row[f"{name}.{c['objective']}_before"], row[f"{name}.{c['objective']}_after"] = c["value"], a.get("value")
            row[f"{name}.model_bytes_before"], row[f"{name}.model_bytes_after"] = c["model_bytes"], a.get("model_bytes")
        row["seconds"] = round(self.seconds, 3)
        row["probes"] = self.probes
        return row


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


@dataclass
class _Probe:
    ok: bool
    reason: str = ""
    size: tuple[float, float] = (math.inf, math.inf)  # (model bytes summed over profiles, parameters)
    summary: dict[str, Any] | None = None


def _summary(model: torch.nn.Module, task: Task, profiles: Sequence[HardwareProfile]) -> dict[str, Any]:
    costs = price(model, task.example_inputs, profiles) if profiles else {}
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "costs": {p.name: {"objective": p.objective, "value": costs[p.name][p.objective],
                           "model_bytes": costs[p.name]["model_bytes"]} for p in profiles},
    }  # fmt: skip


def _size(summary: dict[str, Any]) -> tuple[float, float]:
    return (float(sum(c["model_bytes"] for c in summary["costs"].values())), float(summary["params"]))


def _reason(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0][:240]
    return text if type(exc).__name__ == "InfeasibleError" else f"{type(exc).__name__}: {text}"


class _Prober:
    def __init__(self, task: Task, profiles: Sequence[HardwareProfile]) -> None:
        self.task, self.profiles = task, profiles
        self.output = getattr(task, "output", None)
        with torch.no_grad():
            self.shape = tuple(call_model(task.teacher(), task.example_inputs, output=self.output).shape)
        self.teacher_summary = _summary(task.teacher(), task, profiles)
        self.memo: dict[str, _Probe] = {}
        self.cache: dict[str, Any] = {}  # build_model's per-process reuse (the teacher's logits), as in a worker
        self.runs = 0

    def __call__(self, technique: str, params: dict[str, Any]) -> _Probe:
        key = json.dumps([technique, params], sort_keys=True, default=repr)
        if key not in self.memo:
            self.memo[key] = self._run(technique, params)
        return self.memo[key]

    def _run(self, technique: str, params: dict[str, Any]) -> _Probe:
        self.runs += 1
        try:
            step = Step(technique, get_technique(technique).make_config(dict(params)))
            model, _ = build_model(CompressionPlan((step,)), self.task, seed=0, cache=self.cache)
            with torch.no_grad():
                out = call_model(model, self.task.example_inputs, output=self.output)
            if tuple(out.shape) != self.shape:
                return _Probe(False, f"the output shape changed: {self.shape} -> {tuple(out.shape)}")
            if not bool(torch.isfinite(out).all()):
                return _Probe(False, "the model's outputs are not finite")
            summary = _summary(model.cpu(), self.task, self.profiles)
        except Exception as exc:  # any failure means: this config does not apply
            return _Probe(False, _reason(exc))
        return _Probe(True, size=_size(summary), summary=summary)


def _cheap(tech: TechniqueSpec) -> dict[str, Any]:
    known = {f.name for f in fields(get_technique(tech.name).config_cls)}
    return {k: v for k, v in CHEAP.items() if k in known}


def _num(spec: ParamSpec, value: float) -> float | int:
    if spec.kind == "int":
        return int(value)
    return float(value)


def _mid(spec: ParamSpec, good: float, bad: float) -> float | int | None:
    """A point strictly between ``good`` and ``bad`` on the spec's grid, or None when there is none."""
    assert spec.low is not None
    m = math.sqrt(good * bad) if spec.log and good > 0 and bad > 0 else (good + bad) / 2
    if spec.kind == "int" or spec.step:
        step = float(spec.step or 1)
        k = (m - spec.low) / step
        m = spec.low + (math.floor(k) if good < bad else math.ceil(k)) * step  # round toward the good end
        if spec.kind == "int":
            m = round(m)
        if m == good:
            m = good + step if good < bad else good - step
        if not min(good, bad) < m < max(good, bad):
            return None
    return _num(spec, m)


def _narrow_range(probe: Any, name: str, base: dict[str, Any], p: str, spec: ParamSpec, good: float,
                  bad: float) -> float | int:  # fmt: skip
    """Bisect between an end that applies and one that does not; return the last value that applied."""
    for _ in range(BISECT_STEPS):
        m = _mid(spec, good, bad)
        if m is None:
            break
        if probe(name, {**base, p: m}).ok:
            good = m
        else:
            bad = m
    return _num(spec, good)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else repr(v)


def _check_technique(prober: _Prober, tech: TechniqueSpec) -> tuple[PreflightRow, dict[str, dict[str, Any]]]:
    start, runs0 = time.perf_counter(), prober.runs
    cheap = _cheap(tech)
    fixed = {p: s.value for p, s in tech.params.items() if s.kind == "fixed"}
    ranges = {p: s for p, s in tech.params.items() if s.kind in ("int", "float") and p not in cheap}
    choices = {p: s for p, s in tech.params.items() if s.kind == "choice" and p not in cheap}

    def ends(which: str) -> dict[str, Any]:
        return {p: _num(s, s.low if which == "low" else s.high) for p, s in ranges.items()}  # type: ignore[arg-type]

    first = {p: s.choices[0] for p, s in choices.items()}
    candidates = [{**ends(e), **first} for e in ("low", "high")]
    for p, s in choices.items():  # a first choice value that fails must not sink the technique
        candidates += [{**ends(e), **first, p: v} for v in s.choices[1:] for e in ("low", "high")]
    base, reasons = None, []
    for cand in candidates:
        params = {**fixed, **cand, **cheap}
        probe = prober(tech.name, params)
        if probe.ok:
            base = params
            break
        reasons += [probe.reason] if probe.reason not in reasons else []
    before = prober.teacher_summary
    if base is None:
        text = "; ".join(reasons[:2]) + (f" (and {len(reasons) - 2} other reason(s))" if len(reasons) > 2 else "")
        row = PreflightRow(tech.name, "no", text, {**fixed, **candidates[0], **cheap}, before, None,
                           time.perf_counter() - start, prober.runs - runs0)  # fmt: skip
        return row, {}

    new_specs: dict[str, dict[str, Any]] = {}
    why: list[str] = []
    strong = dict(base)
    ok_probes = [prober(tech.name, base)]
    for p, s in choices.items():
        kept: list[tuple[Any, _Probe]] = []
        failed: list[tuple[Any, _Probe]] = []
        best: tuple[tuple[float, float], Any] | None = None
        for v in s.choices:
            pr = prober(tech.name, {**base, p: v})
            (kept if pr.ok else failed).append((v, pr))
            if pr.ok:
                ok_probes.append(pr)
                if best is None or pr.size < best[0]:
                    best = (pr.size, v)
        if failed:
            new_specs[p] = asdict(dataclasses.replace(s, choices=tuple(v for v, _ in kept)))
            why += [f"{p}: dropped {_fmt(v)} ({pr.reason})" for v, pr in failed]
        assert best is not None
        strong[p] = best[1]
    for p, s in ranges.items():
        assert s.low is not None and s.high is not None
        lo, hi = _num(s, s.low), _num(s, s.high)
        at_lo, at_hi = prober(tech.name, {**base, p: lo}), prober(tech.name, {**base, p: hi})
        ok_probes += [pr for pr in (at_lo, at_hi) if pr.ok]
        if at_lo.ok and at_hi.ok:
            strong[p] = hi if at_hi.size < at_lo.size else lo if at_lo.size < at_hi.size else strong[p]
            continue
        good, bad, failing = (lo, hi, at_hi) if at_lo.ok else (hi, lo, at_lo)
        edge = _narrow_range(prober, tech.name, base, p, s, good, bad)
        low, high = (lo, edge) if at_lo.ok else (edge, hi)
        new_specs[p] = asdict(dataclasses.replace(s, low=low, high=high))
        why.append(f"{p} narrowed to [{_fmt(low)}, {_fmt(high)}] (at {_fmt(bad)}: {failing.reason})")
        at_edge = prober(tech.name, {**base, p: edge})
        strong[p] = edge if at_edge.ok and at_edge.size < prober(tech.name, {**base, p: good}).size else good
    final = prober(tech.name, strong)
    if final.ok:
        after = final
    else:  # each parameter applies at its strong end alone, but not all together: show the smallest that did
        after = min(ok_probes, key=lambda pr: pr.size)
        why.append(f"the strongest combination does not apply ({final.reason})")
    applies = "narrowed" if new_specs else "yes"
    text = "; ".join(why) if why else ("applies at every end and choice" if ranges or choices else "applies")
    row = PreflightRow(tech.name, applies, text, strong, before, after.summary, time.perf_counter() - start,
                       prober.runs - runs0)  # fmt: skip
    return row, new_specs


# --- the space after preflight -----------------------------------------------------------------------------


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
        techniques.append(TechniqueSpec(t.name, t.when, specs))
    by_name = {t.name: t for t in techniques}
    old = {t.name: t for t in space.techniques}
    recipes, notes = [], []
    for i, recipe in enumerate(space.recipes):
        gone = sorted(set(recipe) & set(removed))
        outside = [f"{t}.{p}={_fmt(v)}" for t, params in recipe.items() if t in by_name
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
    prober = _Prober(task, profiles)
    rows, removed, narrowed = [], {}, {}
    for tech in space.techniques:
        row, specs = _check_technique(prober, tech)
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
