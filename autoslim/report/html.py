"""``report.html``: one self-contained, offline file a person opens instead of the CSV.

Plotly's JavaScript is inlined once, at the end of the body (no CDN, no network request: it opens from a laptop,
a CI artifact or an air-gapped box); each figure is a div and its JSON, drawn by ``Plotly.newPlot`` once the
library is parsed, so the text shows first. From the top: the summary (the
baseline; per profile the cheapest point within 1 and 2 pp and the commands to pick and export it), all profiles'
fronts on one axis, each profile's interactive front, what the search explored (parallel coordinates, parameter
importance, history), every trial, the failures grouped by reason, and the settings."""

from __future__ import annotations

import base64
import html
import io
import json

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from autoslim.policy.sensitivity import SensitivityTable
from autoslim.policy.show import heatmap_png
from autoslim.report import units
from autoslim.report.explore import history_figure, importance_figure, importances, parallel_figure, status_word
from autoslim.report.figures import axis_title, fronts_figure, profile_figure
from autoslim.report.htmltable import SORT_SCRIPT, text_table
from autoslim.report.ladder import HEADERS as LADDER_HEADERS
from autoslim.report.ladder import ladder_rows
from autoslim.report.plots import not_drawn
from autoslim.report.results import StudyResults
from autoslim.report.sections import (
    failures_section,
    front_table,
    settings_table,
    summary_section,
    trials_table,
)
from autoslim.report.settings import settings_rows
from autoslim.safe_io import safe_write_text
from autoslim.trial import NOT_PROMOTED

_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f3f3f3;font-weight:600}table.sortable th{cursor:pointer}
table.sortable th:hover{background:#e6e6e6}th[data-dir=asc]::after{content:" ▲"}th[data-dir=desc]::after{content:" ▼"}
td[data-sort]{text-align:right;white-space:nowrap}tr:target{background:#fff3b0}h2{margin-top:2em;border-bottom:1px
solid #ddd}code,pre{background:#f6f6f6}code{padding:1px 4px}pre{padding:.6em;overflow-x:auto;font-size:12.5px}
.lead{font-size:1.1em}.note{color:#555;font-size:13px}nav a{margin-right:1em}.fig{margin:.5em 0}
table.settings th{width:14em}table.summary td:first-child{white-space:nowrap}
.wide{overflow-x:auto}table.trials td:nth-last-child(-n+2){min-width:20em}"""
_CONFIG = {"displaylogo": False, "responsive": True}
# The plots are drawn after the page's text: the library (4.6 MB of JavaScript) is inlined at the end of the body,
# so the summary and tables show at once and the plots fill in. Drawing every plot before the load event took 3 s
# in headless Chromium on a busy 2-core machine (a WebGL plot, parallel coordinates, alone 2-4 s: without a GPU the
# browser emulates WebGL), so only the plots in the first screen are drawn at once; the others draw as they come
# near the screen (IntersectionObserver), and, after the load event, one after another in the background, so a
# printed page, a search in the page or a jump to #trial-N finds them all drawn. The page marks
# ``autoslim:first-view`` (the first screen's plots drawn) and ``autoslim:all-drawn`` in its performance timeline:
# what the browser test and ``python -m tests.report.browser`` report. A click on a plotted point jumps to its
# trial's row (the point's customdata is its trial number).
_DRAW = """(function () {
  var figs = window.autoslimFigures || [];
  function draw(f) {
    if (!f.drawn) {
      f.drawn = Plotly.newPlot(f.id, f.figure.data, f.figure.layout, f.config).then(function (gd) {
        if (f.clickable) gd.on('plotly_click', function (e) {
          var p = e.points && e.points[0]; if (p && p.customdata !== undefined) location.hash = 'trial-' + p.customdata;
        });
      });
    }
    return f.drawn;
  }
  function visible(f) {
    var r = document.getElementById(f.id).getBoundingClientRect();
    return r.bottom > 0 && r.top < window.innerHeight;
  }
  Promise.all(figs.filter(visible).map(draw)).then(function () { performance.mark('autoslim:first-view'); });
  var byId = {};
  figs.forEach(function (f) { byId[f.id] = f; });
  if ('IntersectionObserver' in window) {
    var seen = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) { if (e.isIntersecting) { seen.unobserve(e.target); draw(byId[e.target.id]); } });
    }, {rootMargin: '300px'});
    figs.forEach(function (f) { seen.observe(document.getElementById(f.id)); });
  }
  function rest() {
    var i = 0;
    (function next() {
      if (i >= figs.length) { performance.mark('autoslim:all-drawn'); return; }
      draw(figs[i++]).then(function () { setTimeout(next, 0); });
    })();
  }
  if (document.readyState === 'complete') rest();
  else window.addEventListener('load', function () { setTimeout(rest, 0); });
})();"""


_QUEUE = "(window.autoslimFigures = window.autoslimFigures || [])"


def figure_html(fig: go.Figure, div_id: str, *, clickable: bool = True) -> str:
    """A figure as its div and its entry in the page's list of figures (drawn by ``_DRAW``)."""
    height = f"{fig.layout.height or 450}px"
    entry = (f'{{"id": "{div_id}", "figure": {pio.to_json(fig, validate=False)}, "config": {json.dumps(_CONFIG)}, '
             f'"clickable": {json.dumps(clickable)}}}')  # fmt: skip
    return (f'<div class="fig"><div id="{div_id}" class="plotly-graph-div" style="height:{height}"></div>'
            f"<script>{_QUEUE}.push({entry});</script></div>")  # fmt: skip


def build_html(results: StudyResults) -> str:
    df, profiles = results.trials, results.profiles
    fronts = {p.name: results.front(p.name) for p in profiles}
    meta = results.study.user_attrs.get("autoslim", {})
    task = str(meta.get("task", "TASK"))
    parts = [f"<h1>autoslim study <code>{html.escape(results.study.study_name)}</code></h1>",
             f"<p>{html.escape(_headline(df, meta))}</p>", _nav(profiles),
             '<h2 id="summary">Summary</h2>',
             summary_section(df, fronts, profiles, folder=results.folder, task=task)]  # fmt: skip
    if any(len(f) for f in fronts.values()):
        parts += ['<h2 id="fronts">All profiles\' fronts</h2>',
                  "<p class=note>Each profile's front against its own objective, as a fraction of the baseline's "
                  "cost there: further left is cheaper. Hover a point for its plan; click it for its row.</p>",
                  figure_html(fronts_figure(df, fronts, profiles), "fig-fronts")]  # fmt: skip
    for i, p in enumerate(profiles):
        parts += [f'<h2 id="profile-{html.escape(p.name)}">{html.escape(p.name)}: accuracy vs. '
                  f"{html.escape(axis_title(p))}</h2>",
                  f"<p class=note>{html.escape(p.description)} (batch {p.batch_size}). "
                  f"{html.escape(not_drawn(df, p))}</p>",
                  figure_html(profile_figure(df, fronts[p.name], p), f"fig-profile-{i}"),
                  front_table(fronts[p.name], p)]  # fmt: skip
    parts += _explore(results)
    parts += [
        '<h2 id="trials">All trials</h2>',
        f'<div class="wide">{trials_table(df, profiles)}</div>',
        '<h2 id="failures">Failed, infeasible, stopped and interrupted trials</h2>',
        failures_section(df),
    ]
    parts += _extras(results, df)
    parts += ['<h2 id="settings">Settings</h2>', settings_table(settings_rows(results.study, df))]
    body = "\n".join(parts)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>autoslim report: '
            f"{html.escape(results.study.study_name)}</title><style>{_STYLE}</style></head><body>{body}"
            f'<script>{SORT_SCRIPT}</script><script type="text/javascript">{get_plotlyjs()}</script>'
            f"<script>{_DRAW}</script></body></html>")  # fmt: skip


def _headline(df: pd.DataFrame, meta: dict) -> str:
    words_of = df["status"].map(status_word) if len(df) else pd.Series(dtype=str)
    if len(df) and "reason" in df:  # a multi-fidelity study's trials that ended below the top rung
        words_of = words_of.mask(df["reason"].fillna("").astype(str).str.startswith(NOT_PROMOTED), NOT_PROMOTED)
    counts = words_of.value_counts()
    words = ", ".join(f"{n} {'stopped (early stop)' if s == 'stopped' else s}" for s, n in counts.items())
    where = f"task {meta.get('task', '?')} · space {meta.get('space', '?')} · "
    return (f"{where}{len(df)} trials" + (f": {words}" if words else "") + ". Accuracy is measured on held-out "
            "validation data; costs are estimated per hardware profile.")  # fmt: skip


def _nav(profiles: list) -> str:
    links = [("summary", "summary"), ("fronts", "all fronts")]
    links += [(f"profile-{p.name}", p.name) for p in profiles]
    links += [("explore", "explore"), ("trials", "trials"), ("failures", "failures"), ("settings", "settings")]
    return "<nav>" + "".join(f'<a href="#{html.escape(a)}">{html.escape(t)}</a>' for a, t in links) + "</nav>"


def _explore(results: StudyResults) -> list[str]:
    df = results.trials
    parts = ['<h2 id="explore">What the search explored</h2>']
    parts += ["<h3>Sampled parameters (parallel coordinates)</h3>"]
    par = parallel_figure(df, results.profiles)
    if par is None:
        parts.append("<p>Too few ok trials with sampled parameters.</p>")
    else:
        parts += ["<p class=note>One line per ok trial; drag along an axis to filter. 'off': the technique was "
                  "not sampled in that trial (or the value is None). The last axes: accuracy and each profile's "
                  "reduction vs. the baseline.</p>",
                  f'<div class="wide">{figure_html(par, "fig-parallel", clickable=False)}</div>']  # fmt: skip
    table, note = importances(results.study, results.profiles)
    imp = importance_figure(table)
    parts += [
        "<h3>Parameter importance</h3>",
        "<p class=note>Optuna's importance evaluator, for accuracy and for each profile's objective (each "
        "column sums to 1); rough with few trials." + (f" {html.escape(note)}" if note else "") + "</p>",
    ]
    parts += [figure_html(imp, "fig-importance", clickable=False)] if imp else []
    hist = history_figure(df)
    parts += ["<h3>History</h3>", figure_html(hist, "fig-history", clickable=False)] if hist else []
    return parts


def _extras(results: StudyResults, df: pd.DataFrame) -> list[str]:
    """What a study may carry beside its trials: KD losses chosen, sensitivity tables, the preflight."""
    parts: list[str] = []
    losses = sorted({x for x in df.get("kd_loss", pd.Series(dtype=str)).fillna("") if x}) if len(df) else []
    if losses:  # what distill.kd chose for this model's outputs
        parts += ["<h2>Distillation loss</h2>", "<p>" + "; ".join(html.escape(x) for x in losses) + "</p>"]
    parts += _sensitivity(results, df)
    ladder = ladder_rows(results.study)
    if ladder:  # a multi-fidelity study: what each rung ran and promoted
        parts += ["<h2 id=\"ladder\">Promotion ladder</h2>",
                  "<p class=note>Every fine-tuning trial starts at rung 0 (a share of its fine-tune); the top share "
                  "of each rung by non-dominated rank over every profile (the study's rule) runs the next rung, "
                  "restarted at its longer "
                  "fine-tune. Only the last rung's results are on the fronts; the others are stopped "
                  "(not promoted).</p>",
                  f'<div class="wide">{text_table(ladder, LADDER_HEADERS)}</div>']  # fmt: skip
    preflight = results.study.user_attrs.get("preflight") or {}
    table = preflight.get("table") or []
    if table and isinstance(table[0], dict):  # autoslim.search.preflight: each technique tried once on the teacher
        headers = list(table[0])
        rows = [[_text(r.get(h)) for h in headers] for r in table]
        parts += [
            "<h2>Preflight: each technique tried on the teacher</h2>",
            f'<div class="wide">{text_table(rows, headers)}</div>',
        ]
    return parts


def _text(value: object) -> str:
    """A preflight cell: floats to 4 significant digits, the rest as written."""
    if value is None:
        return units.MISSING
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _sensitivity(results: StudyResults, df: pd.DataFrame) -> list[str]:
    """The per-layer sensitivity tables the study allocated from, as heat-maps, and how many trials used them."""
    tables = results.study.user_attrs.get("sensitivity") or {}
    if not tables:
        return []
    words = df["plan"].fillna("") if len(df) else pd.Series(dtype=str)
    used = int((words.str.contains("per layer") & ~words.str.contains("not allocated")).sum())
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
