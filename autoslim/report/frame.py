"""The study as a table: one row per trial with its plan, accuracy, every profile's costs and status."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import optuna
import pandas as pd

from autoslim.cost import HardwareProfile
from autoslim.report.pareto import pareto_front

COST_FIELDS = ("latency_ms", "measured_latency_ms", "model_bytes", "peak_activation_bytes", "macs", "energy_mj", "fits",
               "fit_reason")  # fmt: skip


def trials_frame(study: optuna.Study, profiles: Sequence[HardwareProfile]) -> pd.DataFrame:
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        if "status" not in a:
            continue  # never ran (queued) or still running
        row: dict = {
            "trial": t.number,
            "status": a["status"],
            "accuracy": a.get("accuracy"),
            "params": a.get("params"),
            "duration_s": round(_number(a.get("duration_s")) or 0.0, 2),
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
        row.update({f"param.{k}": v for k, v in t.params.items()})
        # The distillation loss picked for this model's outputs (logits, sigmoid, embeddings, ...): see distill.kd.
        row["kd_loss"] = (a.get("notes") or {}).get("distill.kd", {}).get("loss", "")
        row["reason"] = a.get("reason", "")
        row["plan_json"] = json.dumps(a.get("plan", {}), sort_keys=True)
        rows.append(row)
    return pd.DataFrame(rows)


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
