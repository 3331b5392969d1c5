"""The report's tables as HTML: the summary at the top, each profile's front, every trial, failures, settings.

Numbers are shown in their units (``autoslim.report.units``) and sort by their values; trial numbers link to the
trial's row in the table of all trials (``#trial-N``), the row a click on a plotted point jumps to as well."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from autoslim.cost import HardwareProfile
from autoslim.report import units
from autoslim.report.explore import status_word
from autoslim.report.failures import failure_groups, first_line
from autoslim.report.frame import baseline_row
from autoslim.report.htmltable import Column, sortable_table
from autoslim.report.summary import Best, best_points


def trial_anchor(row: pd.Series) -> str:
    return f"#trial-{int(row['trial'])}"


TRIAL = Column("trial", lambda r: str(int(r["trial"])), sort=lambda r: r["trial"], link=trial_anchor,
               tip="Optuna's trial number: the one `autoslim export --trial N` takes")  # fmt: skip
ACCURACY = Column("accuracy", lambda r: units.percent(r["accuracy"]), sort=lambda r: r["accuracy"])
DROP = Column(
    "drop",
    lambda r: units.drop_pp(_drop(r)),
    sort=lambda r: r.get("accuracy_drop_pp"),
    tip="baseline accuracy minus this trial's, in percentage points (negative: better than the baseline)",
)
PLAN = Column("plan", lambda r: str(r.get("plan", "") or ""))


def _drop(row: pd.Series) -> float | None:
    pp = units.number(row.get("accuracy_drop_pp"))
    return None if pp is None else pp / 100


def cost_columns(profile: HardwareProfile) -> list[Column]:
    """The profile's objective in its unit and 'x smaller / faster' than the baseline, then size and latency."""
    f, col = profile.objective, f"{profile.name}.{profile.objective}"
    per = f" (per batch of {profile.batch_size})" if profile.batch_size > 1 else ""
    cols = [
        _cost(profile, f, per if f != "model_bytes" else ""),
        Column("vs. baseline", lambda r: units.gain(f, r.get(f"{col}_reduction")),
               sort=lambda r: r.get(f"{col}_reduction"), tip="baseline ÷ this trial on the profile's objective"),
    ]  # fmt: skip
    return cols + [_cost(profile, g, per if g == "latency_ms" else "") for g in ("model_bytes", "latency_ms") if g != f]


def _cost_and_gain(profile: HardwareProfile) -> Column:
    """One compact cell per profile for the wide table of all trials: '60.3 µs · 1.7x'."""
    f, col = profile.objective, f"{profile.name}.{profile.objective}"
    return Column(
        profile.name,
        lambda r: f"{units.cost(f, r.get(col))} · {units.ratio(r.get(f'{col}_reduction'))}",
        sort=lambda r: r.get(col),
        tip=f"{units.COST_WORDS.get(f, f)} on {profile.name} · x vs. baseline",
    )


def _cost(profile: HardwareProfile, field: str, per: str) -> Column:
    col = f"{profile.name}.{field}"
    return Column(units.COST_WORDS[field] + per, lambda r: units.cost(field, r.get(col)), sort=lambda r: r.get(col))


def summary_section(df: pd.DataFrame, fronts: dict[str, pd.DataFrame], profiles: Sequence[HardwareProfile],
                    *, folder: Path | str, task: str) -> str:  # fmt: skip
    base = baseline_row(df)
    if base is None:
        return "<p>No finished baseline yet: accuracy drops and reductions need it (trial 0 runs it).</p>"
    size = units.size(base.get(f"{profiles[0].name}.model_bytes")) if profiles else units.MISSING
    parts = [f"<p class=lead>Baseline (trial {int(base['trial'])}, uncompressed): <b>{units.percent(base['accuracy'])}"
             f"</b> accuracy · {units.count(base.get('n_params'))} parameters · {size} stored.</p>"]  # fmt: skip
    bests = best_points(df, fronts, profiles)
    rows = pd.DataFrame(_merged([_best_row(b) for b in bests]))
    columns = [
        Column("profile", lambda r: r["profile"]),
        Column("within", lambda r: r["within_words"], sort=lambda r: r["within"]),
        Column("trial", lambda r: _int(r["trial"]) or units.MISSING, sort=lambda r: r["trial"],
               link=lambda r: f"#trial-{_int(r['trial'])}" if _int(r["trial"]) else ""),
        ACCURACY, DROP,
        Column("cost", lambda r: r["cost"], sort=lambda r: r["cost_value"], tip="on the profile's objective"),
        Column("vs. baseline", lambda r: r["gain"], sort=lambda r: r["reduction"]),
        PLAN,
    ]  # fmt: skip
    parts.append(sortable_table(rows, columns, css="summary"))
    parts.append("<p>Ready to run (the cheapest front point within 1 pp; the 2 pp one where it differs):</p>")
    parts.append("<pre class=commands>" + html.escape(_commands(bests, folder, task)) + "</pre>")
    return "\n".join(parts)


def _best_row(b: Best) -> dict:
    f, col = b.profile.objective, f"{b.profile.name}.{b.profile.objective}"
    r = b.row
    if r is None:
        return {"profile": b.profile.name, "within": b.drop, "trial": None, "accuracy": None, "accuracy_drop_pp": None,
                "cost": "no front point", "cost_value": None, "gain": "", "reduction": None, "plan": ""}  # fmt: skip
    return {"profile": b.profile.name, "within": b.drop, "trial": int(r["trial"]), "accuracy": r["accuracy"],
            "accuracy_drop_pp": r.get("accuracy_drop_pp"), "cost": units.cost(f, r[col]), "cost_value": r[col],
            "gain": units.gain(f, r.get(f"{col}_reduction")), "reduction": r.get(f"{col}_reduction"),
            "plan": r.get("plan", "")}  # fmt: skip


def _merged(rows: list[dict]) -> list[dict]:
    """One row per profile and chosen trial: "1 and 2 pp" where both allowances pick the same point."""
    out: list[dict] = []
    for row in rows:
        words = f"{row['within'] * 100:g} pp"
        same = out and out[-1]["profile"] == row["profile"] and out[-1]["trial"] == row["trial"]
        if same and row["trial"] is not None:
            out[-1]["within_words"] = out[-1]["within_words"].replace(" pp", f" and {words}")
        else:
            out.append({**row, "within_words": words})
    return out


def _int(value: object) -> str:
    v = units.number(value)
    return "" if v is None else str(int(v))


def _commands(bests: Sequence[Best], folder: Path | str, task: str) -> str:
    lines, shown = [], set()
    for b in bests:
        if b.row is None or (b.profile.name, int(b.row["trial"])) in shown:
            continue
        shown.add((b.profile.name, int(b.row["trial"])))
        f = b.profile.objective
        lines += [f"# {b.profile.name}, within {b.drop * 100:g} pp: trial {int(b.row['trial'])}, "
                  f"{units.percent(b.row['accuracy'])}, {units.gain(f, b.row.get(f'{b.profile.name}.{f}_reduction'))}",
                  b.pick_command(folder), b.export_command(folder, task), ""]  # fmt: skip
    return "\n".join(lines).strip() or "(no front point within 2 pp of the baseline yet)"


def front_table(front: pd.DataFrame, profile: HardwareProfile) -> str:
    if front.empty:
        return "<p>No feasible trial on this profile yet.</p>"
    return sortable_table(front, [TRIAL, ACCURACY, DROP, *cost_columns(profile), PLAN])


def trials_table(df: pd.DataFrame, profiles: Sequence[HardwareProfile]) -> str:
    """Every trial, one row each (``id="trial-N"``: where links and clicks on plotted points land)."""
    if df.empty:
        return "<p>No finished trial yet.</p>"
    columns = [
        TRIAL,
        Column("status", lambda r: status_word(r["status"]), sort=lambda r: status_word(r["status"])),
        ACCURACY, DROP,
        Column("parameters", lambda r: units.count(r.get("n_params")), sort=lambda r: r.get("n_params")),
        *[_cost_and_gain(p) for p in profiles],
        Column("time", lambda r: units.seconds(r.get("duration_s")), sort=lambda r: r.get("duration_s")),
        PLAN,
        Column("reason", lambda r: first_line(r.get("reason"))[:200]),
    ]  # fmt: skip
    return sortable_table(df, columns, row_id=lambda r: f"trial-{int(r['trial'])}", css="trials")


def failures_section(df: pd.DataFrame) -> str:
    groups = failure_groups(df)
    if not groups:
        return "<p>None: every trial finished ok.</p>"
    rows = pd.DataFrame([{"status": g.status, "count": len(g.trials), "reason": g.reason,
                          "trials": ", ".join(str(n) for n in g.trials)} for g in groups])  # fmt: skip
    columns = [Column("status", lambda r: r["status"], sort=lambda r: r["status"]),
               Column("trials", lambda r: str(r["count"]), sort=lambda r: r["count"]),
               Column("reason (first trial's)", lambda r: r["reason"]),
               Column("which", lambda r: r["trials"])]  # fmt: skip
    note = ("<p>stopped = a fine-tune stopped early (it could not reach the accuracy floor or the front); "
            "infeasible = a plan step the model cannot take; failed = an error.</p>")  # fmt: skip
    return note + sortable_table(rows, columns)


def settings_table(rows: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="settings">{body}</table>'
