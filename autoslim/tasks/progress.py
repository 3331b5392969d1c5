"""Progress of the work a task does before the first trial (training its teacher), for whoever shows it.

A task whose loading takes long reports each step; the CLI listens and shows it (a bar on a terminal, one line per
step otherwise). Nobody listening, nothing is printed and no extra work is done, so a library caller sees
nothing new::

    from autoslim.tasks.progress import listening, report_progress

    def my_task() -> Task:
        for epoch in range(1, epochs + 1):
            train_one_epoch(model)
            report_progress("my-model teacher", epoch, epochs, f"val accuracy {evaluate(model):.2%}")
        ...

    with listening(lambda p: print(p.what, p.done, p.total, p.detail)):
        task = load_task("mypkg.tasks:my_task")

:func:`is_listened` lets a task skip work only a listener would read (scoring the teacher after every epoch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class TaskProgress:
    what: str  # what is being done, e.g. "mnist1d-cnn teacher"
    done: int  # steps done (epochs), from 1
    total: int
    detail: str = ""  # e.g. "val accuracy 97.12%"
    elapsed_s: float = 0.0


Listener = Callable[[TaskProgress], None]
_LISTENER: ContextVar[Listener | None] = ContextVar("autoslim_task_progress", default=None)


def report_progress(what: str, done: int, total: int, detail: str = "", elapsed_s: float = 0.0) -> None:
    listener = _LISTENER.get()
    if listener is not None:
        listener(TaskProgress(what, done, total, detail, elapsed_s))


def is_listened() -> bool:
    return _LISTENER.get() is not None


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Send the progress reported inside this block to ``listener``."""
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)
