"""The report's top: the baseline, and per profile the cheapest front point within 1 and 2 pp of its accuracy with
the ready-to-run ``autoslim pick`` / ``autoslim export`` commands for it.

"Within d pp" is the rule of ``autoslim pick --max-accuracy-drop``: the cheapest point of the profile's front (its
objective) whose accuracy is at least the baseline's minus d."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from autoslim.cost import HardwareProfile
from autoslim.report.pick import Query, pick_from

DROPS = (0.01, 0.02)  # 1 pp and 2 pp, as fractions of accuracy


@dataclass(frozen=True)
class Best:
    profile: HardwareProfile
    drop: float  # the allowance, e.g. 0.01
    row: pd.Series | None  # the chosen front point, None when no front point is within the allowance

    def pick_command(self, folder: Path | str) -> str:
        return (f"autoslim pick {shlex.quote(str(folder))} --profile {shlex.quote(self.profile.name)} "
                f"--max-accuracy-drop {self.drop:g}")  # fmt: skip

    def export_command(self, folder: Path | str, task: str) -> str:
        assert self.row is not None
        out = shlex.quote(f"deploy/{self.profile.name}")
        return (f"autoslim export {shlex.quote(str(folder))} --trial {int(self.row['trial'])} --task "
                f"{shlex.quote(task)} --format {export_format(self.row)} --out {out}")  # fmt: skip


def best_within(df: pd.DataFrame, front: pd.DataFrame, profile: HardwareProfile, drop: float) -> Best:
    """The point ``autoslim pick --max-accuracy-drop drop`` chooses (the same code: the report never disagrees)."""
    return Best(profile, drop, pick_from(df, profile, Query(max_accuracy_drop=drop), front=front).row)


def best_points(df: pd.DataFrame, fronts: dict[str, pd.DataFrame], profiles: Sequence[HardwareProfile]) -> list[Best]:
    return [best_within(df, fronts[p.name], p, d) for p in profiles for d in DROPS]


def export_format(row: pd.Series) -> str:
    """``onnx-int8`` for a plan with a quantize step (its numerics are the int8 graph's), else float ``onnx``: an
    int8 export of a float plan would change the accuracy the search measured."""
    try:
        steps = json.loads(str(row.get("plan_json") or "{}")).get("steps", [])
    except (ValueError, AttributeError):
        steps = []
    quantized = any(str(s.get("technique", "")).startswith("quantize") for s in steps if isinstance(s, dict))
    return "onnx-int8" if quantized else "onnx"
