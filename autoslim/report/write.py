"""Write a study's products: trials.csv, pareto_<profile>.csv and pareto_<profile>.png."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from autoslim.cost import HardwareProfile
from autoslim.report.frame import front_frame
from autoslim.report.plots import plot_front


def write_report(folder: Path, df: pd.DataFrame, profiles: Sequence[HardwareProfile]) -> dict[str, pd.DataFrame]:
    """Write every file; return each profile's front."""
    folder.mkdir(parents=True, exist_ok=True)
    df.to_csv(folder / "trials.csv", index=False)
    fronts = {}
    for p in profiles:
        front = front_frame(df, p) if len(df) else df
        cols = ["trial", "accuracy", f"{p.name}.latency_ms", f"{p.name}.model_bytes",
                f"{p.name}.peak_activation_bytes", "params", "plan", "plan_json"]  # fmt: skip
        (front[cols] if len(front) else pd.DataFrame(columns=cols)).to_csv(folder / f"pareto_{p.name}.csv", index=False)
        if len(df):
            plot_front(df, front, p, folder / f"pareto_{p.name}.png")
        fronts[p.name] = front
    return fronts
