"""Write a study's products: trials.csv, pareto_<profile>.csv and pareto_<profile>.png.

Each file is written to a temporary file in the folder and renamed over the old one (``autoslim.safe_io``), so a
kill while writing, or two drivers of one shared study writing at once, leave the old file or the new one,
never a torn mix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from autoslim.cost import HardwareProfile
from autoslim.report.frame import front_frame
from autoslim.report.plots import plot_front
from autoslim.safe_io import replacing


def write_report(folder: Path, df: pd.DataFrame, profiles: Sequence[HardwareProfile]) -> dict[str, pd.DataFrame]:
    """Write every file; return each profile's front."""
    folder.mkdir(parents=True, exist_ok=True)
    with replacing(folder / "trials.csv") as tmp:
        df.to_csv(tmp, index=False)
    fronts = {}
    for p in profiles:
        front = front_frame(df, p) if len(df) else df
        cols = ["trial", "accuracy", f"{p.name}.latency_ms", f"{p.name}.model_bytes",
                f"{p.name}.peak_activation_bytes", "params", "plan", "plan_json"]  # fmt: skip
        with replacing(folder / f"pareto_{p.name}.csv") as tmp:
            (front[cols] if len(front) else pd.DataFrame(columns=cols)).to_csv(tmp, index=False)
        if len(df):
            with replacing(folder / f"pareto_{p.name}.png") as tmp:
                plot_front(df, front, p, tmp)
        fronts[p.name] = front
    return fronts
