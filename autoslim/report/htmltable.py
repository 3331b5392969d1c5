"""Sortable HTML tables for the report: each cell shows a number in its unit and sorts by the number itself.

A click on a header sorts by that column (again: the other way); empty cells sort last either way. The script is
the one piece of hand-written JavaScript in the report: the plots are all Plotly's."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from autoslim.report import units


@dataclass(frozen=True)
class Column:
    header: str
    show: Callable[[pd.Series], str]  # the text in the cell (escaped here)
    sort: Callable[[pd.Series], object] | None = None  # what it sorts by; None: the text
    tip: str = ""  # the header's tooltip: what the column means
    link: Callable[[pd.Series], str] | None = None  # an in-page anchor ("#trial-3") the cell links to; "": none


def sortable_table(rows: pd.DataFrame, columns: Sequence[Column], *, row_id: Callable[[pd.Series], str] | None = None,
                   css: str = "") -> str:  # fmt: skip
    head = "".join(f'<th title="{html.escape(c.tip)}">{html.escape(c.header)}</th>' for c in columns)
    body = []
    for _, row in rows.iterrows():
        rid = f' id="{html.escape(row_id(row))}"' if row_id else ""
        body.append(f"<tr{rid}>" + "".join(_cell(c, row) for c in columns) + "</tr>")
    cls = f"sortable {css}".strip()
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _cell(column: Column, row: pd.Series) -> str:
    text = html.escape(column.show(row))
    href = column.link(row) if column.link is not None else ""
    if href:
        text = f'<a href="{html.escape(href)}">{text}</a>'
    if column.sort is None:
        return f"<td>{text}</td>"
    key = column.sort(row)
    value = units.number(key)
    sort = repr(value) if value is not None else key if isinstance(key, str) else ""  # "": no value, sorts last
    return f'<td data-sort="{html.escape(sort)}">{text}</td>'


def text_table(rows: Iterable[Sequence[str]], headers: Sequence[str]) -> str:
    """A plain sortable table of strings (preflight, settings-like lists)."""
    frame = pd.DataFrame([list(r) for r in rows], columns=list(headers))
    columns = [Column(h, _field(h)) for h in headers]
    return sortable_table(frame, columns)


def _field(name: str) -> Callable[[pd.Series], str]:
    return lambda row: str(row[name])


SORT_SCRIPT = """
document.querySelectorAll("table.sortable th").forEach(function (th) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0], i = th.cellIndex;
    var asc = th.dataset.dir !== "asc";
    table.querySelectorAll("th").forEach(function (h) { delete h.dataset.dir; });
    th.dataset.dir = asc ? "asc" : "desc";
    function key(td) {
      var v = td.dataset.sort !== undefined ? td.dataset.sort : td.textContent.trim();
      if (v === "" || v === "\\u2013") return null;
      var n = Number(v);
      return isNaN(n) ? v.toLowerCase() : n;
    }
    var rows = Array.prototype.slice.call(body.rows).map(function (r) { return [key(r.cells[i]), r]; });
    rows.sort(function (a, b) {
      if (a[0] === null || b[0] === null) return (a[0] === null) - (b[0] === null);
      if (typeof a[0] !== typeof b[0]) return typeof a[0] === "number" ? -1 : 1;
      var c = a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r[1]); });
  });
});
"""
