"""One journal append per recorded trial instead of one per user attribute.

Optuna's journal writes every operation on its own: take the file lock, append a line, ``fsync``. Recording a
finished trial sets ~13 user attributes and then tells the state: ~14 locked, fsynced appends, the largest share
of the driver's per-trial time on a millisecond task (``benchmarks/driver_overhead.py``). Inside
``one_append(study)`` the user-attribute lines wait and go to the file together with the next other operation
(the tell), in one append::

    with one_append(study):
        trial.set_user_attr("status", "ok"); trial.set_user_attr("accuracy", 0.97)   # held back
        study.tell(trial, values)                                 # attrs + state: one lock, one write, one fsync

Order on disk is unchanged, and nothing else reads a trial's user attributes while it is being recorded (the
``Trial`` object keeps its own copy), so readers see the same journal. A kill during the write tears at most the
last line, which ``check_journal`` drops; the trial then has no finished state and is marked interrupted, as
before. Any other storage (an RDB, memory) is left as it is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import optuna
from optuna.storages import JournalStorage

# Optuna keeps its op codes in a private module; the numbers are part of the journal's on-disk format.
from optuna.storages.journal._storage import JournalOperation

_HELD = int(JournalOperation.SET_TRIAL_USER_ATTR)


@contextlib.contextmanager
def one_append(study: optuna.Study) -> Iterator[None]:
    """Hold the journal's user-attribute lines back until the next other operation or the end of the block."""
    storage = study._storage
    backend = getattr(storage, "_backend", None) if isinstance(storage, JournalStorage) else None
    if backend is None or "append_logs" in vars(backend):  # not a journal, or a block already holds it
        yield
        return
    original = backend.append_logs
    held: list[dict[str, Any]] = []

    def append(logs: list[dict[str, Any]]) -> None:
        if all(log.get("op_code") == _HELD for log in logs):
            held.extend(logs)
            return
        batch = [*held, *logs]
        held.clear()
        original(batch)

    backend.append_logs = append  # an instance attribute shadows the class's method for this block only
    try:
        yield
    finally:
        del backend.append_logs
        if held:  # a block that set attributes and told nothing (or raised): they are still written
            original(held)
