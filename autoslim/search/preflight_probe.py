"""Preflight's probes: one technique at a time on a fresh copy of the teacher, at the ends of its ranges, with
ranges bisected to the part that applies (the procedure is described in :mod:`autoslim.search.preflight`)."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from autoslim.cost import HardwareProfile
from autoslim.nn_utils import call_model
from autoslim.plan import CompressionPlan, Step
from autoslim.search.space import ParamSpec, TechniqueSpec
from autoslim.tasks import Task
from autoslim.techniques import get_technique
from autoslim.trial import build_model, price

BISECT_STEPS = 4
# Config fields shortened for the probe wherever a technique has them (fine-tunes): applicability does not depend
# on how long a fine-tune runs, and a range over them is not probed.
CHEAP: dict[str, Any] = {"epochs": 1, "epoch_steps": 1, "epochs_per_removed": 0}


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


class Prober:
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


def fmt_value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else repr(v)


def check_technique(prober: Prober, tech: TechniqueSpec) -> tuple[PreflightRow, dict[str, dict[str, Any]]]:
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
            why += [f"{p}: dropped {fmt_value(v)} ({pr.reason})" for v, pr in failed]
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
        why.append(f"{p} narrowed to [{fmt_value(low)}, {fmt_value(high)}] (at {fmt_value(bad)}: {failing.reason})")
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
