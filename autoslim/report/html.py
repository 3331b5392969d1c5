"""``report.html``: one self-contained file (plots inlined) with every profile's front, failures and settings."""

from __future__ import annotations

import base64
import html
import io
import json

import pandas as pd

from autoslim.policy.sensitivity import SensitivityTable
from autoslim.policy.show import heatmap_png
from autoslim.report.plots import plot_front
from autoslim.report.results import StudyResults
from autoslim.safe_io import safe_write_text

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px}
th{background:#f3f3f3}h2{margin-top:2em;border-bottom:1px solid #ddd}code{background:#f6f6f6;padding:1px 4px}"""


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, escape=True, border=0, float_format=lambda v: f"{v:.4g}")


def build_html(results: StudyResults) -> str:
    df = results.trials
    settings = results.study.user_attrs.get("autoslim", {})
    parts = [f"<h1>autoslim study <code>{html.escape(results.study.study_name)}</code></h1>"]
    counts = df["status"].value_counts().to_dict() if len(df) else {}
    parts.append(f"<p>{len(df)} trials: {html.escape(json.dumps(counts))}. Accuracy is measured on held-out "
                 "validation data; costs are estimated per hardware profile.</p>")  # fmt: skip
    for p in results.profiles:
        front = results.front(p.name)
        buf = io.BytesIO()
        if len(df):
            plot_front(df, front, p, buf)
        img = base64.b64encode(buf.getvalue()).decode()
        cols = ["trial", "accuracy", f"{p.name}.latency_ms", f"{p.name}.model_bytes", "params", "plan"]
        parts += [
            f"<h2>{html.escape(p.name)}: accuracy vs. {html.escape(p.objective)}</h2>",
            f"<p>{html.escape(p.description)} (batch {p.batch_size})</p>",
            f'<img alt="front {html.escape(p.name)}" src="data:image/png;base64,{img}">' if img else "",
            _table(front[cols]) if len(front) else "<p>No feasible trial yet.</p>",
        ]
    bad = df[df["status"] != "ok"] if len(df) else df
    parts.append("<h2>Failed, infeasible and interrupted trials</h2>")
    if len(bad):
        bad = bad.assign(reason=bad["reason"].fillna("").str.split("\n").str[0])
        parts.append(_table(bad[["trial", "status", "plan", "reason"]]))
    else:
        parts.append("<p>None.</p>")
    losses = sorted({x for x in df.get("kd_loss", pd.Series(dtype=str)).fillna("") if x}) if len(df) else []
    if losses:  # what distill.kd chose for this model's outputs
        parts += ["<h2>Distillation loss</h2>", "<p>" + "; ".join(html.escape(x) for x in losses) + "</p>"]
    parts += _sensitivity(results, df)
    preflight = results.study.user_attrs.get("preflight") or {}
    if preflight.get("table"):  # autoslim.search.preflight: each technique tried once on the teacher first
        parts += ["<h2>Preflight: each technique tried on the teacher</h2>", _table(pd.DataFrame(preflight["table"]))]
    constraints = results.study.user_attrs.get("constraints", {})
    parts += ["<h2>Settings</h2>", f"<pre>{html.escape(json.dumps(settings, indent=2))}</pre>",
              f"<pre>constraints: {html.escape(json.dumps(constraints, indent=2))}</pre>"]  # fmt: skip
    body = "\n".join(parts)
    return f'<!doctype html><html><head><meta charset="utf-8"><title>autoslim report</title><style>{_STYLE}</style></head><body>{body}</body></html>'  # noqa: E501


def _sensitivity(results: StudyResults, df: pd.DataFrame) -> list[str]:
    """The per-layer sensitivity tables the study allocated from, as heat-maps, and how many trials used them."""
    tables = results.study.user_attrs.get("sensitivity") or {}
    if not tables:
        return []
    words = df["plan"].fillna("") if len(df) else pd.Series(dtype=str)
    used = int(words.str.contains("per layer").sum())
    parts = ["<h2>Per-layer sensitivity</h2>",
             f"<p>{used} trial(s) took per-layer settings allocated from these tables: the loss against the teacher "
             "when only that layer takes that value (log scale; brighter is more sensitive).</p>"]  # fmt: skip
    for name, data in sorted(tables.items()):
        try:
            table = SensitivityTable.from_dict(data)
        except (KeyError, TypeError, ValueError):
            continue  # a damaged attr: the rest of the report still renders
        buf = io.BytesIO()
        heatmap_png(table, buf)
        img = base64.b64encode(buf.getvalue()).decode()
        parts.append(f'<img alt="sensitivity {html.escape(name)}" src="data:image/png;base64,{img}">')
    return parts


def write_html(results: StudyResults) -> str:
    path = results.folder / "report.html"
    safe_write_text(path, build_html(results), root=results.folder)  # never through a planted symlink
    return str(path)
