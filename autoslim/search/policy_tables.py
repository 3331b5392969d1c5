"""Sensitivity tables measured by the driver before trial 1, for the techniques a space samples per layer.

Measuring once here (instead of in each worker at its first per-layer trial) puts the cost in one place with a
progress line, and lets every worker on this machine read the table from the disk cache. The tables go into the
study (user attr ``sensitivity``: plain JSON, so the report draws the heat-map from the study alone) and beside it
as ``sensitivity_<technique>.csv``. Workers on other machines (a Ray cluster) measure the same table themselves
on first use: it depends only on the teacher, the calibration inputs and the candidates, so they agree.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import optuna

from autoslim.cost import HardwareProfile
from autoslim.plan import CompressionPlan
from autoslim.policy.sensitivity import sensitivity_table
from autoslim.policy.show import table_frame
from autoslim.safe_io import replacing
from autoslim.search.space import SearchSpace
from autoslim.tasks import Task
from autoslim.techniques import get_technique

ATTR = "sensitivity"


def prepare_tables(study: optuna.Study, task: Task, space: SearchSpace, profiles: Sequence[HardwareProfile],
                   folder: Path, say: Callable[[str], None] | None = None) -> list[str]:  # fmt: skip
    """Measure (or read from cache) each per-layer technique's table; returns notes for the user."""
    techs = [t for t in space.techniques if "sensitivity" in t.policies]
    if not techs:
        return []
    from autoslim.trial import build_model  # the teacher with its data, as a trial sees it

    _, ctx = build_model(CompressionPlan(), task, profiles=profiles)
    stored = dict(study.user_attrs.get(ATTR) or {})
    notes = []
    for t in techs:
        start = time.perf_counter()
        if say:
            say(f"sensitivity table: {t.name} ({len(t.candidates())} values per layer)")
        table = sensitivity_table(t.name, t.candidates(), get_technique(t.name).make_config({}), ctx)
        took = time.perf_counter() - start
        stored[t.name] = table.to_dict()
        with replacing(folder / f"sensitivity_{t.name.replace('.', '_')}.csv") as tmp:
            table_frame(table).to_csv(tmp)
        how = "measured" if took > 0.5 * table.seconds else "from cache"
        notes.append(f"sensitivity table {t.name}: {len(table.layers)} layers x {len(table.candidates)} values, "
                     f"{how} ({table.seconds:.1f} s to measure)")  # fmt: skip
    study.set_user_attr(ATTR, stored)
    return notes
