"""The promotion ladder of a multi-fidelity study: per rung, how many trials ran it, how many went on, and what
the runs scored and took (from each trial's recorded ``rungs``, see ``autoslim.search.ladder``)."""

from __future__ import annotations

import statistics
from typing import Any

import optuna

HEADERS = ["rung", "share of the fine-tune", "runs", "ok", "promoted to the next rung", "median accuracy",
           "median seconds"]  # fmt: skip


def ladder_rows(study: optuna.Study) -> list[list[str]]:
    """One row per rung (none for a study without rungs). Interrupted runs are not counted (they ran again)."""
    config = study.user_attrs.get("rungs_config") or {}
    fractions = list(config.get("fractions") or [])
    if not fractions:
        return []
    runs: list[list[dict[str, Any]]] = [[] for _ in fractions]
    promoted = [0 for _ in fractions]
    requeued = {t.user_attrs.get("requeue_of") for t in study.get_trials(deepcopy=False)}
    for t in study.get_trials(deepcopy=False):
        if t.number in requeued:  # its rungs were carried over to the trial that took its place
            continue
        entries = t.user_attrs.get("rungs") or []
        for e in entries:
            r = int(e.get("rung", -1))
            if 0 <= r < len(fractions):
                runs[r].append(e)
        reached = {int(e.get("rung", -1)) for e in entries}
        for r in reached:
            if r + 1 in reached and 0 <= r < len(fractions):
                promoted[r] += 1
    rows = []
    for r, (f, got) in enumerate(zip(fractions, runs, strict=True)):
        accs = [float(e["accuracy"]) for e in got if isinstance(e.get("accuracy"), (int, float))]
        secs = [float(e["duration_s"]) for e in got if isinstance(e.get("duration_s"), (int, float))]
        last = r == len(fractions) - 1
        ran = str(len(got))
        if r > 0 and config.get("fine_tune") == "continue":  # went on from the rung below; the rest restarted
            ran += f" ({sum(e.get('continued_from') is not None for e in got)} continued)"
        rows.append([str(r), f"{float(f):.3g}", ran, str(sum(e.get("status") == "ok" for e in got)),
                     "—" if last else str(promoted[r]),
                     f"{statistics.median(accs):.4f}" if accs else "—",
                     f"{statistics.median(secs):.2f}" if secs else "—"])  # fmt: skip
    return rows
