"""What the search was run with, read from what the study stores (nothing is guessed).

The study's own attrs give task, space, profiles, objectives and constraints; the trials give their seeds, threads,
devices and timestamps. Budget, sampler, executor, workers, wall time and library versions are the run's: they are
shown from a ``run`` study attr where the driver stores one (``{"budget", "seed", "sampler", "executor", "workers",
"early_stop", "wall_s", "versions": {package: version}, ...}``), and otherwise said to be not recorded."""

from __future__ import annotations

import platform

import optuna
import pandas as pd

from autoslim.report import units
from autoslim.versions import installed_versions

NOT_RECORDED = "not recorded by this study"
_PACKAGES = ("autoslim", "torch", "optuna", "torch-pruning", "numpy", "pandas", "plotly")


def settings_rows(study: optuna.Study, df: pd.DataFrame) -> list[tuple[str, str]]:
    """(setting, value) pairs, in the order a person checks them."""
    attrs = study.user_attrs
    meta = attrs.get("autoslim") or {}
    run: dict = attrs["run"] if isinstance(attrs.get("run"), dict) else {}
    rows = [
        ("study", study.study_name),
        ("task", str(meta.get("task", NOT_RECORDED))),
        ("search space", str(meta.get("space", NOT_RECORDED))),
        ("profiles", ", ".join(meta.get("profiles", [])) or NOT_RECORDED),
        ("objectives", ", ".join(meta.get("objectives", [])) or NOT_RECORDED),
        ("constraints", _constraints(attrs.get("constraints") or {})),
    ]
    for key in ("budget", "sampler", "executor", "workers", "early_stop", "preflight", "storage"):
        value = run.get(key, NOT_RECORDED)
        if key == "budget" and key in run and value is None:
            value = "none (the time budget decides)"
        elif key == "workers" and key in run and value is None:
            value = "one per CPU core"
        rows.append((key.replace("_", " "), str(value)))
    rows.append(("time budget", _limit(run, "time_budget_s")))
    rows.append(("timeout", _limit(run, "timeout_s")))
    rows += [
        ("seed", str(run["seed"]) if "seed" in run else _seed(study)),
        ("torch threads per trial", _distinct(t.user_attrs.get("threads") for t in _ran(study))),
        ("device", _distinct((t.user_attrs.get("notes") or {}).get("device") for t in _ran(study))),
        ("wall time", _wall(run) if "wall_s" in run else _span(df)),
        ("trial time (sum)", units.seconds(float(df["duration_s"].sum())) if len(df) else units.MISSING),
        ("teacher sha256", str(attrs.get("teacher_sha256", NOT_RECORDED))),
        ("library versions", _versions(run.get("versions"))),
    ]
    return rows


def _limit(run: dict, key: str) -> str:
    if key not in run:
        return NOT_RECORDED
    return "none" if run[key] is None else units.seconds(float(run[key]))


def _wall(run: dict) -> str:
    """The latest run's wall time (teacher, preflight and reports included), and all runs' where it resumed."""
    text = f"{units.seconds(float(run['wall_s']))} (the latest run: teacher, preflight and reports included)"
    before = float(run.get("wall_s_runs_before") or 0.0)
    if before > 0:
        text += f"; {units.seconds(before + float(run['wall_s']))} over all runs of this study"
    return text


def _ran(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if "status" in t.user_attrs]


def _constraints(saved: dict) -> str:
    parts = [f"{k.replace('_', ' ')} {v}" for k, v in saved.items() if v not in (None, [], {})]
    return "; ".join(parts) or "none"


def _seed(study: optuna.Study) -> str:
    """A journal study seeds trial n with seed + n: one offset over every trial is the search's seed."""
    offsets = {t.user_attrs["seed"] - t.number for t in _ran(study) if isinstance(t.user_attrs.get("seed"), int)}
    if len(offsets) == 1:
        return f"{offsets.pop()} (trial n is built with seed + n)"
    return "per trial (see trials.csv)" if offsets else NOT_RECORDED


def _distinct(values: object) -> str:
    seen = sorted({str(v) for v in values if v is not None})  # type: ignore[attr-defined]
    return ", ".join(seen) or NOT_RECORDED


def _span(df: pd.DataFrame) -> str:
    """First trial start to last trial end: pauses between resumed runs included, teacher training not."""
    if df.empty or "datetime_start" not in df:
        return NOT_RECORDED
    start, end = pd.to_datetime(df["datetime_start"]).min(), pd.to_datetime(df["datetime_complete"]).max()
    if pd.isna(start) or pd.isna(end):
        return NOT_RECORDED
    return f"{units.seconds((end - start).total_seconds())} (first trial start to last trial end)"


def _versions(recorded: object) -> str:
    if isinstance(recorded, dict) and recorded:
        return ", ".join(f"{k} {v}" for k, v in recorded.items())
    here = [f"{k} {v}" for k, v in installed_versions(_PACKAGES).items()]
    return f"{NOT_RECORDED}; this report was built with python {platform.python_version()}, " + ", ".join(here)
