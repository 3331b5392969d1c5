"""The report's interactive Plotly figures of the fronts: one scatter per profile and all profiles' fronts together.

Every point's hover says what a person picks by (trial, plan in words, accuracy, drop, cost, x smaller / faster) and
carries its trial number in ``customdata``, which the report uses to jump to that trial's row when it is clicked."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from autoslim.cost import HardwareProfile
from autoslim.report import units
from autoslim.report.plots import drawable

TEMPLATE = "plotly_white"
FRONT_COLOR = "#d62728"


def axis_title(profile: HardwareProfile, field: str | None = None) -> str:
    field = field or profile.objective
    words = units.COST_WORDS.get(field, field)
    unit = {"latency_ms": "ms, estimated", "model_bytes": "bytes, as stored", "energy_mj": "mJ"}.get(field, "")
    per = f" per batch of {profile.batch_size}" if profile.batch_size > 1 and field != "model_bytes" else ""
    return f"{words}{per}" + (f" ({unit})" if unit else "")


def hover(row: pd.Series, profile: HardwareProfile) -> str:
    """The lines under the cursor for one trial on one profile (Plotly's hover takes <br> and <b>)."""
    f = profile.objective
    col = f"{profile.name}.{f}"
    plan = _wrap(str(row.get("plan", "") or ""))
    lines = [
        f"<b>trial {int(row['trial'])}</b>" + (" (baseline)" if row.get("is_baseline") else ""),
        plan,
        f"accuracy {units.percent(row['accuracy'])} · drop {units.drop_pp(_drop(row))}",
        f"{units.COST_WORDS.get(f, f)} {units.cost(f, row[col])} · {units.gain(f, row.get(f'{col}_reduction'))}",
    ]
    if f != "model_bytes":
        lines.append(f"model size {units.size(row.get(f'{profile.name}.model_bytes'))}")
    if _false(row.get(f"{profile.name}.fits")):
        lines.append(f"does not fit: {html.escape(str(row.get(f'{profile.name}.fit_reason', '')))}")
    return "<br>".join(lines)


def profile_figure(df: pd.DataFrame, front: pd.DataFrame, profile: HardwareProfile) -> go.Figure:
    """All ok trials of one profile, its front numbered (the number ``export --trial`` takes), the baseline starred."""
    col = f"{profile.name}.{profile.objective}"
    ok = drawable(df, col)
    fig = go.Figure()
    if ok.empty or "trial" not in ok.columns:  # nothing finished ok (all failed, or a timeout before trial 1)
        fig.add_annotation(text="no trial finished ok on this profile", showarrow=False)
        return fig
    on_front = set(front["trial"]) if len(front) else set()
    rest = ok[~ok["trial"].isin(on_front)]
    fig.add_trace(_points(rest, profile, name=f"trials ({len(rest)})", color="#9a9a9a", size=7))
    recipes = ok[ok["is_recipe"]]
    if len(recipes):
        fig.add_trace(_points(recipes, profile, name="hand recipes", color="#2ca02c", size=11, symbol="diamond-open"))
    shown = front[front["trial"].isin(ok["trial"])] if len(front) else front
    if len(shown):
        trace = _points(shown, profile, name=f"Pareto front ({len(shown)})", color=FRONT_COLOR, size=10)
        numbers = [str(int(n)) for n in shown["trial"]]  # the number `autoslim export --trial N` takes
        trace.update(mode="lines+markers+text", line={"shape": "hv", "width": 1.5}, textposition="top left",
                     text=numbers, textfont={"size": 10, "color": FRONT_COLOR})  # fmt: skip
        fig.add_trace(trace)
    base = ok[ok["is_baseline"]]
    if len(base):
        fig.add_trace(_points(base, profile, name="baseline (uncompressed)", color="#1f77b4", size=16, symbol="star"))
    fig.update_layout(template=TEMPLATE, height=430, margin={"l": 60, "r": 20, "t": 30, "b": 50},
                      legend={"orientation": "h", "y": -0.22}, hovermode="closest")  # fmt: skip
    fig.update_xaxes(type="log", title=axis_title(profile), exponentformat="SI")
    fig.update_yaxes(title="validation accuracy (%)", ticksuffix="%")
    return fig


def fronts_figure(df: pd.DataFrame, fronts: dict[str, pd.DataFrame], profiles: list[HardwareProfile]) -> go.Figure:
    """Every profile's front on one axis: cost as a fraction of the baseline's (1 = the uncompressed model)."""
    fig = go.Figure()
    for p in profiles:
        col = f"{p.name}.{p.objective}"
        front = fronts.get(p.name, pd.DataFrame())
        if front.empty or f"{col}_reduction" not in front:
            continue
        share = 1 / pd.to_numeric(front[f"{col}_reduction"], errors="coerce")
        keep = share.notna() & (share > 0)
        rows = front[keep]
        fig.add_trace(go.Scatter(
            x=share[keep], y=rows["accuracy"].astype(float) * 100, mode="lines+markers",
            name=f"{p.name} ({p.objective})", line={"shape": "hv"}, customdata=rows["trial"].astype(int),
            hovertemplate="%{hovertext}<extra></extra>",
            hovertext=[f"<b>{html.escape(p.name)}</b><br>" + hover(r, p) for _, r in rows.iterrows()],
        ))  # fmt: skip
    base = df[df["is_baseline"] & (df["status"] == "ok")] if len(df) else df
    if len(base):
        fig.add_trace(go.Scatter(x=[1.0], y=[float(base["accuracy"].iloc[0]) * 100], mode="markers",
                                 name="baseline", marker={"symbol": "star", "size": 16, "color": "#1f77b4"},
                                 hovertemplate="baseline %{y:.2f}%<extra></extra>"))  # fmt: skip
    fig.update_layout(template=TEMPLATE, height=460, margin={"l": 60, "r": 20, "t": 30, "b": 50},
                      legend={"orientation": "h", "y": -0.2})  # fmt: skip
    fig.update_xaxes(type="log", title="cost ÷ the baseline's cost on that profile (its objective; lower is better)")
    fig.update_yaxes(title="validation accuracy (%)", ticksuffix="%")
    return fig


def _points(rows: pd.DataFrame, profile: HardwareProfile, *, name: str, color: str, size: int,
            symbol: str = "circle") -> go.Scatter:  # fmt: skip
    col = f"{profile.name}.{profile.objective}"
    return go.Scatter(
        x=rows[col], y=rows["accuracy"] * 100, mode="markers", name=name,
        marker={"color": color, "size": size, "symbol": symbol, "line": {"width": 0.5, "color": "#333"}},
        customdata=rows["trial"].astype(int), hovertext=[hover(r, profile) for _, r in rows.iterrows()],
        hovertemplate="%{hovertext}<extra></extra>",  # hovertext, not text: text labels the front's points
    )  # fmt: skip


def _drop(row: pd.Series) -> float | None:
    pp = units.number(row.get("accuracy_drop_pp"))
    return None if pp is None else pp / 100


def _false(value: object) -> bool:
    return isinstance(value, (bool, np.bool_)) and not value


def _wrap(text: str, width: int = 70) -> str:
    """A long plan on several hover lines (escaped), broken at the arrows between steps."""
    lines, line = [], ""
    for part in text.split(" → "):
        if line and len(line) + len(part) > width:
            lines.append(line + " →")
            line = part
        else:
            line = f"{line} → {part}" if line else part
    return "<br>".join(html.escape(x) for x in [*lines, line])
