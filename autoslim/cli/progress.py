"""Progress: a rich bar (count, best so far, time left) on a terminal; plain log lines otherwise."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from autoslim.search import Progress as SearchProgress


@contextmanager
def progress_reporter(console: Console, budget: int) -> Iterator[Callable[[SearchProgress], None]]:
    if not console.is_terminal:

        def plain(p: SearchProgress) -> None:
            if p.result is None:
                console.print(f"search: {p.done}/{p.budget} trials already finished", highlight=False)
                return
            r = p.result
            acc = f"acc {r.accuracy:.2%}" if r.accuracy is not None else r.reason.splitlines()[0][:80]
            console.print(
                f"trial {p.done}/{p.budget}: {r.status} {acc} ({r.duration_s:.1f}s) {p.best}", highlight=False
            )

        yield plain
        return
    columns = (TextColumn("search"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[best]}"),
               TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console) as bar:
        task_id = bar.add_task("search", total=budget, best="")

        def fancy(p: SearchProgress) -> None:
            bar.update(task_id, completed=p.done, best=p.best)

        yield fancy
