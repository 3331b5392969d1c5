"""A sensitivity table as people read it: a DataFrame (layers x candidates) and a heat-map PNG."""

from __future__ import annotations

import math
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from autoslim.policy.sensitivity import SensitivityTable


def table_frame(table: SensitivityTable) -> pd.DataFrame:
    """One row per layer, one column per candidate value, the loss against the teacher in the cells."""
    cols = [f"{table.knob}={c}" for c in table.candidates]
    return pd.DataFrame(list(table.loss), index=list(table.layers), columns=cols).rename_axis("layer")


def heatmap_png(table: SensitivityTable, path: Path | BinaryIO, *, title: str | None = None) -> Path | BinaryIO:
    """log10 of each entry (losses span orders of magnitude), layers top to bottom in module order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = [[math.log10(max(v, 1e-7)) if math.isfinite(v) else 3.0 for v in row] for row in table.loss]
    fig, ax = plt.subplots(figsize=(2.0 + 0.7 * len(table.candidates), 1.0 + 0.28 * len(table.layers)), dpi=100)
    im = ax.imshow(data, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(table.candidates)), [str(c) for c in table.candidates])
    ax.set_yticks(range(len(table.layers)), list(table.layers), fontsize=7)
    ax.set_xlabel(table.knob)
    ax.set_title(title or f"{table.technique}: log10 {table.loss_kind} vs the teacher", fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path
