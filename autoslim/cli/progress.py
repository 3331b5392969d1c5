"""Progress: rich bars on a terminal (the teacher's epochs, then the trials: count, best so far, time left); plain
log lines otherwise. Trials are named by their Optuna number (from 0), as in trials.csv and the front tables. The
expected end is the driver's estimate (median trial time over the workers; with --time-budget, capped by it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from autoslim.cli.text import shorten
from autoslim.search import Progress as SearchProgress
from autoslim.tasks.progress import TaskProgress, listening


def _clock(seconds: float) -> str:
    m, sec = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def ends_in(eta_s: float | None) -> str:
    return "" if eta_s is None else f"ends in ~{_clock(eta_s)}"


def _of(p: SearchProgress) -> str:
    return f"{p.done}/{p.budget}" if p.budget is not None else f"{p.done}"


class _Plain:
    """One line per event: what CI logs and `| tee` keep."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def _line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def teacher(self, p: TaskProgress) -> None:
        self._line(f"{p.what}: epoch {p.done}/{p.total}, {p.detail} ({p.elapsed_s:.0f} s)")

    def search(self, p: SearchProgress) -> None:
        if p.late_of is not None:
            self._line(f"trial {p.late_of}: promoted late to rung {p.promoted_to} (runs as trial {p.number})")
            return
        if p.result is None:
            self._line(f"search: {_of(p)} trials already finished")
            return
        r = p.result
        what = f"accuracy {r.accuracy:.2%}" if r.accuracy is not None else shorten(r.reason, 100)
        best = f" · {p.best}" if p.best else ""
        end = f" · {ends_in(p.eta_s)}" if p.eta_s is not None else ""
        if p.promoted_to is not None:
            self._line(f"trial {p.number}: rung {p.promoted_to - 1} {what} ({r.duration_s:.1f} s), promoted to rung "
                       f"{p.promoted_to} · {_of(p)} done{end}")  # fmt: skip
            return
        self._line(f"trial {p.number}: {r.status}, {what} ({r.duration_s:.1f} s) · {_of(p)} done{best}{end}")


class _Bars:
    """A bar for the teacher while it trains, then one for the search (added when the first trial can start, so
    the search's clock does not tick through the teacher's training)."""

    def __init__(self, bar: Progress, budget: int | None) -> None:
        self.bar, self.budget = bar, budget
        self.teacher_id: TaskID | None = None
        self.search_id: TaskID | None = None

    def teacher(self, p: TaskProgress) -> None:
        if self.teacher_id is None:
            self.teacher_id = self.bar.add_task(p.what, total=p.total, best="", eta="")
        rest = p.elapsed_s / p.done * (p.total - p.done) if p.done and p.total else None
        self.bar.update(self.teacher_id, completed=p.done, total=p.total, best=p.detail, eta=ends_in(rest))

    def search(self, p: SearchProgress) -> None:
        if self.search_id is None:
            self.search_id = self.bar.add_task("search", total=self.budget, best="", eta="")
        last = f"trial {p.number} {p.result.status}" if p.result is not None else ""
        if p.promoted_to is not None:
            late = "" if p.late_of is None else f" (trial {p.late_of}, late)"
            last = f"trial {p.number} → rung {p.promoted_to}{late}"
        self.bar.update(self.search_id, completed=p.done, best=" · ".join(x for x in (last, p.best) if x),
                        eta=ends_in(p.eta_s))  # fmt: skip


@contextmanager
def progress_reporter(console: Console, budget: int | None) -> Iterator[_Plain | _Bars]:
    """Yields an object with ``.search(Progress)`` (the driver's ``on_progress``); inside the block, the task's
    own progress (its teacher's epochs) is shown too."""
    if not console.is_terminal:
        plain = _Plain(console)
        with listening(plain.teacher):
            yield plain
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[best]}"),
               TimeElapsedColumn(), TextColumn("{task.fields[eta]}"))  # fmt: skip
    with Progress(*columns, console=console) as bar:
        bars = _Bars(bar, budget)
        with listening(bars.teacher):
            yield bars
