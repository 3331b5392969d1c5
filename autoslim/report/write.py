"""Write a study's products: trials.csv, pareto_<profile>.csv and pareto_<profile>.png.

Each file is written to a temporary file in the folder and renamed over the old one (``autoslim.safe_io``), so a
kill while writing, or two drivers of one shared study writing at once, leave the old file or the new one,
never a torn mix.

The CSV files are the trials table (``autoslim.report.frame``) laid out for someone opening them in pandas or a
spreadsheet: a cost that is per batch on a profile served at batch > 1 says so in its name
(``gpu-a100.latency_ms_per_batch64``), and columns no trial of this study filled (energy on a profile without energy
constants, measured latency on a profile that is not timed for real) are left out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from autoslim.cost import HardwareProfile
from autoslim.report.frame import front_frame
from autoslim.report.plots import plot_front
from autoslim.safe_io import replacing

# Scale with the batch: MACs, activations and energy add up over samples; latency is that of one whole batch.
PER_BATCH = ("latency_ms", "measured_latency_ms", "peak_activation_bytes", "macs", "energy_mj")
# Always written, filled or not: a script reading trials.csv of any study finds them.
CORE = ("trial", "status", "accuracy", "accuracy_drop_pp", "n_params", "duration_s", "datetime_start",
        "datetime_complete", "plan", "is_baseline", "is_recipe", "feasible", "reason", "plan_json")  # fmt: skip


def file_columns(df: pd.DataFrame, profiles: Sequence[HardwareProfile]) -> pd.DataFrame:
    """``df`` as the CSV files hold it: per-batch costs labelled with the batch, never-filled columns left out."""
    empty = [c for c in df.columns if c not in CORE and _never_filled(df[c])]
    return df.drop(columns=empty).rename(columns=batch_labels(profiles))


def batch_labels(profiles: Sequence[HardwareProfile]) -> dict[str, str]:
    """``{column: labelled name}`` for the per-batch costs of the profiles served at batch > 1."""
    labels = {}
    for p in profiles:
        for f in PER_BATCH if p.batch_size > 1 else ():
            labels[f"{p.name}.{f}"] = f"{p.name}.{f}_per_batch{p.batch_size}"  # a ratio (…_reduction) has no unit
    return labels


def _never_filled(values: pd.Series) -> bool:
    return bool((values.isna() | (values.astype(str).str.strip() == "")).all())


def write_report(folder: Path, df: pd.DataFrame, profiles: Sequence[HardwareProfile]) -> dict[str, pd.DataFrame]:
    """Write every file; return each profile's front (in the table's own column names)."""
    folder.mkdir(parents=True, exist_ok=True)
    with replacing(folder / "trials.csv") as tmp:
        file_columns(df, profiles).to_csv(tmp, index=False)
    fronts = {}
    for p in profiles:
        front = front_frame(df, p) if len(df) else df
        objective = f"{p.name}.{p.objective}"
        cols = ["trial", "accuracy", "accuracy_drop_pp", f"{p.name}.latency_ms", f"{p.name}.model_bytes",
                f"{p.name}.peak_activation_bytes", f"{objective}_reduction", "n_params", "plan",
                "plan_json"]  # fmt: skip
        table = front.reindex(columns=cols) if len(front) else pd.DataFrame(columns=cols)
        with replacing(folder / f"pareto_{p.name}.csv") as tmp:  # one layout in every study: nothing left out
            table.rename(columns=batch_labels([p])).to_csv(tmp, index=False)
        if len(df):
            with replacing(folder / f"pareto_{p.name}.png") as tmp:
                plot_front(df, front, p, tmp)
        fronts[p.name] = front
    return fronts
