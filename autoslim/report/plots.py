"""Per-profile static PNG (docs, CI logs): all trials, the Pareto front numbered, the baseline marked.

Nothing is clipped silently: trials far below the best accuracy are drawn under a marked axis break (with how many),
and trials with nothing to draw (failed, infeasible, stopped early: no accuracy or cost) are counted in a note."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, BinaryIO

import matplotlib

matplotlib.use("Agg")  # files only; no display needed on servers and CI
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes

from autoslim.cost import HardwareProfile
from autoslim.report.frame import STOPPED, finite
from autoslim.safe_io import safe_write_bytes

_LABELS = {"latency_ms": "latency (ms, estimated)", "model_bytes": "model size (bytes, as stored)"}
BAND_PP = 15.0  # the main panel spans this many pp below the best accuracy; trials below it go under the break


def plot_front(df: pd.DataFrame, front: pd.DataFrame, profile: HardwareProfile, path: Path | BinaryIO) -> None:
    """Draw to ``path`` (a file is written beside itself and renamed, never through a symlink) or a stream."""
    if isinstance(path, (str, Path)):
        buf = io.BytesIO()
        plot_front(df, front, profile, buf)
        safe_write_bytes(Path(path), buf.getvalue())
        return
    col = f"{profile.name}.{profile.objective}"
    ok = drawable(df, col)
    front = front[front["trial"].isin(ok["trial"])] if len(front) else front
    acc = ok["accuracy"] * 100
    top = float(acc.max()) if len(ok) else 100.0
    floor = max(float(acc.min()) - 1, top - BAND_PP) if len(ok) else 0.0
    far = ok[acc < floor]
    if far.empty:
        fig, main = plt.subplots(figsize=(7, 4.8), dpi=110)
        axes = [main]
    else:  # a broken y axis: the far-off trials keep their true accuracy in a strip below
        fig, (main, low) = plt.subplots(2, 1, sharex=True, figsize=(7, 5.4), dpi=110,
                                        gridspec_kw={"height_ratios": [5, 1.3]})  # fmt: skip
        axes = [main, low]
    for ax in axes:
        _draw(ax, ok, front, col)
    main.set_ylim(floor, top + 0.5)
    if len(axes) == 2:
        far_acc = far["accuracy"] * 100
        axes[1].set_ylim(float(far_acc.min()) - 1, float(far_acc.max()) + 1)
        _mark_break(main, axes[1])
        axes[1].text(0.01, 0.92, f"{len(far)} trial(s) below {floor:.1f}% (down to {far_acc.min():.1f}%), "
                     "shown under the break", transform=axes[1].transAxes, fontsize=7, va="top")  # fmt: skip
    if len(ok):  # a log axis with nothing on it raises (every trial failed)
        axes[-1].set_xscale("log")
    axes[-1].set_xlabel(_LABELS.get(profile.objective, profile.objective))
    main.set_ylabel("validation accuracy (%)")
    main.set_title(f"{profile.name}: accuracy vs. {profile.objective} (batch {profile.batch_size})")
    main.legend(loc="lower right", fontsize=8)
    note = not_drawn(df, profile)
    if note:
        fig.text(0.01, 0.005, note, fontsize=7, color="#555", va="bottom")
    fig.tight_layout(rect=(0, 0.03 if note else 0, 1, 1))
    if len(axes) == 2:
        fig.subplots_adjust(hspace=0.08)  # the break: two panels close together (tight_layout refuses a set hspace)
    fig.savefig(path, format="png")
    plt.close(fig)


def drawable(df: pd.DataFrame, col: str) -> pd.DataFrame:
    """The ok trials with a finite accuracy and a finite, positive cost (a log axis takes nothing else)."""
    if df.empty:
        return df
    ok = df[(df["status"] == "ok") & finite(df[col]) & finite(df["accuracy"])]
    ok = ok[ok[col].astype(float) > 0]
    return ok.assign(accuracy=ok["accuracy"].astype(float), **{col: ok[col].astype(float)})


def _draw(ax: Axes, ok: pd.DataFrame, front: pd.DataFrame, col: str) -> None:
    ax.scatter(ok[col], ok["accuracy"] * 100, s=18, c="#b0b0b0", label=f"trials ({len(ok)})")
    if not front.empty:
        ax.step(front[col], front["accuracy"] * 100, where="post", c="#d62728", lw=1.2, alpha=0.7)
        ax.scatter(front[col], front["accuracy"] * 100, s=34, c="#d62728", label=f"Pareto front ({len(front)})")
        for n, x, y in zip(front["trial"], front[col], front["accuracy"] * 100, strict=True):
            # the number `autoslim export --trial N` takes
            ax.annotate(str(int(n)), (x, y), xytext=(3, 4), textcoords="offset points", fontsize=7, color="#a01c1c",
                        annotation_clip=True)  # fmt: skip
    recipes = ok[ok["is_recipe"]] if "is_recipe" in ok else ok.iloc[:0]
    if not recipes.empty:
        ax.scatter(recipes[col], recipes["accuracy"] * 100, marker="D", s=40, facecolors="none", edgecolors="#2ca02c",
                   label="hand recipes", zorder=4)  # fmt: skip
    base = ok[ok["is_baseline"]]
    if not base.empty:
        ax.scatter(base[col], base["accuracy"] * 100, marker="*", s=220, c="#1f77b4", edgecolors="k",
                   label="baseline (uncompressed)", zorder=5)  # fmt: skip
    ax.grid(alpha=0.3, which="both")


def _mark_break(upper: Axes, lower: Axes) -> None:
    """The two diagonal strokes that say "the axis is cut here" (matplotlib's broken-axis recipe)."""
    upper.spines["bottom"].set_visible(False)
    lower.spines["top"].set_visible(False)
    upper.tick_params(labelbottom=False, bottom=False)
    kw: dict[str, Any] = {"marker": [(-1, -0.5), (1, 0.5)], "markersize": 10, "linestyle": "none", "color": "k",
                          "mec": "k", "mew": 1, "clip_on": False}  # fmt: skip
    upper.plot([0, 1], [0, 0], transform=upper.transAxes, **kw)
    lower.plot([0, 1], [1, 1], transform=lower.transAxes, **kw)


def not_drawn(df: pd.DataFrame, profile: HardwareProfile) -> str:
    """'not drawn (no accuracy or cost): 2 failed, 1 stopped (early stop)', or '' when every trial is drawn."""
    if df.empty:
        return ""
    drawn = drawable(df, f"{profile.name}.{profile.objective}")
    rest = df[~df["trial"].isin(drawn["trial"])]
    status = rest["status"].map(lambda s: "stopped (early stop)" if s in STOPPED else "ok, no usable cost" if s == "ok"
                                else str(s))  # fmt: skip
    counts = status.value_counts()
    return "not drawn (no accuracy or cost): " + ", ".join(f"{n} {s}" for s, n in counts.items()) if len(counts) else ""
