"""The study as a table: one row per trial with its plan, accuracy, every profile's costs and status.

Columns follow Optuna's ``trials_dataframe`` where it has a word for them (``params_<name>`` for the sampled values,
``datetime_start`` / ``datetime_complete``); costs are ``<profile>.<field>`` (per batch of the profile's
``batch_size``; ``<profile>.<objective>`` is the column each front is drawn against). Against the baseline:
``accuracy_drop_pp`` (baseline minus trial, in percentage points) and ``<profile>.<objective>_reduction`` (baseline
÷ trial: 4.0 means 4x smaller or faster)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import optuna
import pandas as pd

from autoslim.cost import HardwareProfile
from autoslim.report.pareto import hypervolume_2d, pareto_front
from autoslim.trial import superseded

COST_FIELDS = ("latency_ms", "measured_latency_ms", "measured_backend", "model_bytes", "peak_activation_bytes", "macs",
               "energy_mj", "fits", "fit_reason")  # fmt: skip
STOPPED = ("stopped", "pruned")  # a fine-tune stopped early; "pruned" is the word of studies made before the rename


def trials_frame(study: optuna.Study, profiles: Sequence[HardwareProfile]) -> pd.DataFrame:
    rows = []
    trials = study.get_trials(deepcopy=False)
    # A trial promoted late (multi-fidelity) carries the rungs of the turned-down trial it went on from: one row
    # per plan, as the budget counts them.
    gone = superseded(t.user_attrs for t in trials if t.user_attrs.get("status") not in (None, "interrupted"))
    for t in trials:
        a = t.user_attrs
        if "status" not in a or t.number in gone:
            continue  # never ran (queued), still running, or went on as a late promotion
        row: dict = {
            "trial": t.number,
            "status": a["status"],
            "accuracy": a.get("accuracy"),
            "accuracy_drop_pp": None,  # filled below, once the baseline is known
            "n_params": a.get("params"),  # the model's parameter count (``params_*`` are the sampled values)
            "duration_s": round(_number(a.get("duration_s")) or 0.0, 2),
            "datetime_start": t.datetime_start,
            "datetime_complete": t.datetime_complete,
            "plan": a.get("plan_words", ""),
            "is_baseline": bool(a.get("baseline", False)),
            "is_recipe": bool(a.get("recipe", False)),
            # The space's constraints (max accuracy drop, max bytes / latency): violators stay off every front.
            "feasible": all(_number(v) is not None and v <= 0 for v in a.get("constraints") or []),
        }
        costs = a.get("costs", {})
        for p in profiles:
            for f in COST_FIELDS:
                row[f"{p.name}.{f}"] = costs.get(p.name, {}).get(f)
        row.update({f"params_{k}": v for k, v in t.params.items()})
        # The distillation loss picked for this model's outputs (logits, sigmoid, embeddings, ...): see distill.kd.
        row["kd_loss"] = (a.get("notes") or {}).get("distill.kd", {}).get("loss", "")
        # A multi-fidelity study: the highest rung the trial ran (autoslim.search.ladder); None otherwise.
        reached = [e.get("rung") for e in a.get("rungs") or () if isinstance(e, dict)]
        row["rung"] = max((r for r in reached if isinstance(r, int)), default=None)
        row["reason"] = a.get("reason", "")
        row["plan_json"] = json.dumps(a.get("plan", {}), sort_keys=True)
        rows.append(row)
    return _against_baseline(pd.DataFrame(rows), profiles)


def baseline_row(df: pd.DataFrame) -> pd.Series | None:
    """The finished uncompressed baseline (the first, should a study hold two), or None."""
    if df.empty:
        return None
    base = df[df["is_baseline"] & (df["status"] == "ok") & finite(df["accuracy"])]
    return base.iloc[0] if len(base) else None


def _against_baseline(df: pd.DataFrame, profiles: Sequence[HardwareProfile]) -> pd.DataFrame:
    if df.empty:
        return df
    base = baseline_row(df)
    accuracy = pd.to_numeric(df["accuracy"], errors="coerce")
    if base is not None:
        df["accuracy_drop_pp"] = ((float(base["accuracy"]) - accuracy) * 100).round(4)
    extra = {}
    for p in profiles:
        col = f"{p.name}.{p.objective}"
        cost = pd.to_numeric(df[col], errors="coerce")
        reference = float("nan") if base is None else pd.to_numeric(pd.Series([base[col]]), errors="coerce").iloc[0]
        extra[f"{col}_reduction"] = (reference / cost.where(cost > 0)).round(3)
    df = pd.concat([df, pd.DataFrame(extra, index=df.index)], axis=1)
    # Read left to right: what the trial is, how it scored, each profile's costs beside its reduction, what was
    # sampled, why it failed, the plan as JSON last (long).
    head = [c for c in df.columns if "." not in c and not c.startswith("params_") and c not in _TAIL]
    costs = [c for p in profiles for c in df.columns if c.startswith(f"{p.name}.")]
    params = [c for c in df.columns if c.startswith("params_")]
    return df[head + costs + params + [c for c in _TAIL if c in df.columns]]


_TAIL = ("kd_loss", "reason", "plan_json")


def _number(value: object) -> float | None:
    """A recorded number, or None for anything else (a journal is data: it may hold null, NaN or text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def finite(values: pd.Series) -> pd.Series:
    """Which values are finite numbers (not None, NaN, inf or text): the only ones a front or a plot can use."""
    return pd.Series(np.isfinite(pd.to_numeric(values, errors="coerce").astype(float)), index=values.index)


def front_frame(df: pd.DataFrame, profile: HardwareProfile) -> pd.DataFrame:
    """This profile's Pareto front (accuracy vs. its objective), sorted by cost."""
    col = f"{profile.name}.{profile.objective}"
    # A model too big for the profile's memory or storage is infeasible there: it stays off this front.
    if df.empty:
        return df
    fits = df[f"{profile.name}.fits"].fillna(True).astype(bool)
    # NaN / inf accuracy or cost (a trial can record them; evaluate fails such trials, old journals may not) are
    # never on a front: nothing dominates NaN, and an infinite cost would stretch every hypervolume.
    ok = df[(df["status"] == "ok") & finite(df[col]) & finite(df["accuracy"]) & fits & df["feasible"]]
    if ok.empty:
        return ok
    mask = pareto_front(ok["accuracy"].tolist(), ok[col].tolist())
    front = ok[mask].sort_values([col, "trial"], kind="stable")
    # Equal points (same accuracy and cost) are one configuration: keep the first trial.
    return front.drop_duplicates(subset=["accuracy", col])


def front_hypervolumes(
    df: pd.DataFrame, profiles: Sequence[HardwareProfile], *, among: pd.DataFrame | None = None
) -> dict[str, float]:
    """Each profile's front hypervolume, costs as a share of 1.1x the baseline's (the box ``autoslim compare`` and
    the benchmarks use, so figures read alike on every profile). ``among`` (rows of ``df``, e.g. the trials finished
    by some time) limits the front to those trials; the baseline in ``df`` still sets the box."""
    base = baseline_row(df)
    rows = df if among is None else among
    out = {}
    for p in profiles:
        col = f"{p.name}.{p.objective}"
        front = front_frame(rows, p) if len(rows) else rows
        if base is None or not len(front):
            out[p.name] = 0.0
            continue
        ref = 1.1 * float(base[col])
        out[p.name] = hypervolume_2d(front["accuracy"].tolist(), (front[col] / ref).tolist(), ref_cost=1.0)
    return out
