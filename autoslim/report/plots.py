"""Per-profile scatter: all trials, the Pareto front highlighted, the baseline marked."""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import matplotlib

matplotlib.use("Agg")  # files only; no display needed on servers and CI
import matplotlib.pyplot as plt
import pandas as pd

from autoslim.cost import HardwareProfile
from autoslim.report.frame import finite
from autoslim.safe_io import safe_write_bytes

_LABELS = {"latency_ms": "latency (ms, estimated)", "model_bytes": "model size (bytes, as stored)"}


def plot_front(df: pd.DataFrame, front: pd.DataFrame, profile: HardwareProfile, path: Path | BinaryIO) -> None:
    """Draw to ``path`` (a file is written beside itself and renamed, never through a symlink) or a stream."""
    if isinstance(path, (str, Path)):
        buf = io.BytesIO()
        plot_front(df, front, profile, buf)
        safe_write_bytes(Path(path), buf.getvalue())
        return
    col = f"{profile.name}.{profile.objective}"
    ok = df[df["status"] == "ok"]
    # Only finite points with a positive cost can be drawn (log axis; NaN limits make matplotlib raise).
    ok = ok[finite(ok[col]) & finite(ok["accuracy"])] if len(ok) else ok
    ok = ok[ok[col].astype(float) > 0] if len(ok) else ok
    ok = ok.assign(accuracy=ok["accuracy"].astype(float)) if len(ok) else ok
    front = front[front["trial"].isin(ok["trial"])] if len(front) else front
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.scatter(ok[col], ok["accuracy"] * 100, s=18, c="#b0b0b0", label=f"trials ({len(ok)})")
    if not front.empty:
        ax.step(front[col], front["accuracy"] * 100, where="post", c="#d62728", lw=1.2, alpha=0.7)
        ax.scatter(front[col], front["accuracy"] * 100, s=34, c="#d62728", label=f"Pareto front ({len(front)})")
    recipes = ok[ok["is_recipe"]] if "is_recipe" in ok else ok.iloc[:0]
    if not recipes.empty:
        ax.scatter(recipes[col], recipes["accuracy"] * 100, marker="D", s=40, facecolors="none", edgecolors="#2ca02c",
                   label="hand recipes", zorder=4)  # fmt: skip
    base = ok[ok["is_baseline"]]
    if not base.empty:
        ax.scatter(base[col], base["accuracy"] * 100, marker="*", s=220, c="#1f77b4", edgecolors="k",
                   label="baseline (uncompressed)", zorder=5)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel(_LABELS.get(profile.objective, profile.objective))
    ax.set_ylabel("validation accuracy (%)")
    if len(ok):
        top = ok["accuracy"].max() * 100
        ax.set_ylim(max(ok["accuracy"].min() * 100 - 1, top - 15), top + 0.5)
    ax.set_title(f"{profile.name}: accuracy vs. {profile.objective} (batch {profile.batch_size})")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
