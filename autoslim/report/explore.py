"""What the search tried, as optuna-dashboard shows it: parallel coordinates of the sampled parameters, the trial
history and parameter importance (Optuna's own evaluator, per objective)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import optuna
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from autoslim.cost import HardwareProfile
from autoslim.report.figures import TEMPLATE
from autoslim.report.frame import STOPPED, finite

OFF = "off"  # a conditional parameter a trial did not sample (its technique was switched off)
STATUS_COLORS = {"ok": "#2ca02c", "infeasible": "#ff7f0e", "failed": "#d62728", "stopped": "#9467bd",
                 "interrupted": "#7f7f7f"}  # fmt: skip


def status_word(status: object) -> str:
    """'stopped' for a fine-tune stopped early, whichever word the study used (Optuna's was "pruned")."""
    return "stopped" if status in STOPPED else str(status)


def parallel_figure(df: pd.DataFrame, profiles: Sequence[HardwareProfile]) -> go.Figure | None:
    """One line per ok trial through every sampled parameter, then accuracy and each profile's x-reduction."""
    ok = df[(df["status"] == "ok") & ~df["is_baseline"] & finite(df["accuracy"])] if len(df) else df
    params = [c for c in df.columns if c.startswith("params_")]
    if len(ok) < 2 or not params:
        return None
    dims = [d for c in params if (d := _dimension(ok[c], c.removeprefix("params_"))) is not None]
    accuracy = ok["accuracy"].astype(float) * 100
    dims.append({"label": "accuracy (%)", "values": accuracy, "tickformat": ".2f"})
    for p in profiles:
        col = f"{p.name}.{p.objective}_reduction"
        if col in ok and finite(ok[col]).all():
            dims.append({"label": f"{p.name} ×", "values": ok[col].astype(float), "tickformat": ".3g"})
    line = {"color": accuracy, "colorscale": "Viridis", "showscale": True, "colorbar": {"title": "acc %"}}
    fig = go.Figure(go.Parcoords(dimensions=dims, line=line, labelangle=-30, labelside="bottom"))
    # Wide enough for every axis to keep its labels apart; the page scrolls it sideways.
    fig.update_layout(template=TEMPLATE, height=500, width=max(1100, 75 * len(dims) + 150),
                      margin={"l": 70, "r": 80, "t": 40, "b": 130})  # fmt: skip
    return fig


def _dimension(values: pd.Series, label: str) -> dict | None:
    """A numeric axis, or a categorical one (switches, choices, ``off`` where not sampled); None if constant."""
    present = values.dropna()
    numeric = len(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
    # A float knob (a ratio, a learning rate) is an axis; a few integer choices (bits, epochs) are ticks.
    if numeric and (present.nunique() > 5 or any(float(v) != int(v) for v in present)):
        lo, hi = float(present.min()), float(present.max())
        ticks = list(np.linspace(lo, hi, 4)) if hi > lo else [lo]
        text = [f"{t:.3g}" for t in ticks]
        if values.isna().any():  # "off" sits below the range, on its own tick
            off = lo - 0.15 * (hi - lo or 1.0)
            ticks, text = [off, *ticks], [OFF, *text]
        return {"label": label, "values": values.astype(float).fillna(ticks[0]), "tickvals": ticks, "ticktext": text}
    words = values.map(lambda v: OFF if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
    choices = sorted(set(words), key=lambda w: (w != OFF, _sort_key(w)))
    if len(choices) < 2:
        return None
    index = {w: i for i, w in enumerate(choices)}
    return {"label": label, "values": words.map(index), "tickvals": list(range(len(choices))), "ticktext": choices}


def _sort_key(word: str) -> tuple[int, float, str]:
    try:
        return (0, float(word), word)
    except ValueError:
        return (1, 0.0, word)


def history_figure(df: pd.DataFrame) -> go.Figure | None:
    """Accuracy by trial number with the best so far; below, every trial's status (what did not finish ok)."""
    if df.empty:
        return None
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.78, 0.22], vertical_spacing=0.04)
    ok = df[(df["status"] == "ok") & finite(df["accuracy"])]
    acc = ok["accuracy"].astype(float) * 100
    fig.add_trace(go.Scatter(x=ok["trial"], y=acc, mode="markers", name="ok trial", marker={"color": "#1f77b4"},
                             text=ok["plan"], hovertemplate="trial %{x}: %{y:.2f}%<br>%{text}<extra></extra>"),
                  row=1, col=1)  # fmt: skip
    fig.add_trace(go.Scatter(x=ok["trial"], y=acc.cummax(), mode="lines", name="best so far",
                             line={"shape": "hv", "color": "#d62728"}, hoverinfo="skip"), row=1, col=1)  # fmt: skip
    words = df["status"].map(status_word)
    for word in dict.fromkeys(words):
        rows = df[words == word]
        fig.add_trace(go.Scatter(x=rows["trial"], y=[word] * len(rows), mode="markers", name=word, showlegend=False,
                                 marker={"symbol": "square", "size": 9, "color": STATUS_COLORS.get(word, "#333")},
                                 text=rows["reason"].fillna("").astype(str).str.split("\n").str[0].str[:120],
                                 hovertemplate="trial %{x}: " + word + "<br>%{text}<extra></extra>"),
                      row=2, col=1)  # fmt: skip
    fig.update_layout(template=TEMPLATE, height=430, margin={"l": 80, "r": 20, "t": 30, "b": 40},
                      legend={"orientation": "h", "y": 1.08})  # fmt: skip
    fig.update_yaxes(title="accuracy (%)", ticksuffix="%", row=1, col=1)
    fig.update_xaxes(title="trial number (as `export --trial` takes it)", row=2, col=1)
    return fig


def importances(study: optuna.Study, profiles: Sequence[HardwareProfile]) -> tuple[pd.DataFrame, str]:
    """Optuna's parameter importance for accuracy and for each profile's objective: a (parameter × objective)
    table, and a note on what could not be computed (too few trials, an evaluator that failed)."""
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if t.params]
    if len(done) < 4:
        return pd.DataFrame(), f"needs at least 4 finished trials with sampled parameters; this study has {len(done)}"
    # Multi-objective studies need a target per objective; PED-ANOVA wants lower = better, so accuracy is negated.
    targets: dict[str, Callable[[optuna.trial.FrozenTrial], float]] = {"accuracy": lambda t: -t.values[0]}
    for i, p in enumerate(profiles, start=1):
        targets[f"{p.name}: {p.objective}"] = _objective(i)
    columns, failed = {}, []
    for name, target in targets.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # experimental-feature and "too few trials" warnings
                columns[name] = optuna.importance.get_param_importances(study, target=target)
        except Exception as exc:  # a dynamic space an older evaluator refuses, a degenerate study: say so
            failed.append(f"{name} ({type(exc).__name__}: {str(exc)[:120]})")
    table = pd.DataFrame(columns).fillna(0.0)
    note = f"not computed for: {'; '.join(failed)}" if failed else ""
    return table, note


def _objective(i: int) -> Callable[[optuna.trial.FrozenTrial], float]:
    return lambda t: t.values[i]


def importance_figure(table: pd.DataFrame) -> go.Figure | None:
    """Parameters (rows, most important on top) × objectives; each column sums to 1."""
    if table.empty:
        return None
    table = table.loc[table.mean(axis=1).sort_values().index]
    fig = go.Figure(go.Heatmap(
        z=table.to_numpy(), x=list(table.columns), y=list(table.index), colorscale="Blues", zmin=0,
        text=[[f"{v:.2f}" for v in row] for row in table.to_numpy()], texttemplate="%{text}",
        hovertemplate="%{y} → %{x}: %{z:.3f}<extra></extra>", colorbar={"title": "importance"},
    ))  # fmt: skip
    fig.update_layout(template=TEMPLATE, height=max(260, 28 * len(table) + 120),
                      margin={"l": 220, "r": 20, "t": 30, "b": 80})  # fmt: skip
    return fig
