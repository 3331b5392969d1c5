"""Tasks: the trained model, its data and its metric. Loaded by built-in name or ``module:attr``."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

from autoslim.tasks.base import Task
from autoslim.tasks.zoo import ZOO_TASKS

BUILTIN: dict[str, str] = {"mnist1d-cnn": "autoslim.tasks.mnist1d_cnn:load", **ZOO_TASKS}
DEFAULT_TASK = "mnist1d-cnn"


def load_task(ref: str = DEFAULT_TASK) -> Task:
    """A built-in name (``mnist1d-cnn``) or ``package.module:attr`` naming a Task or a function returning one;
    the module is imported from the current directory too (``mypkg/`` beside the command)."""
    target = BUILTIN.get(ref, ref)
    if ":" not in target:
        raise ValueError(f"unknown task {ref!r}: use a built-in name {sorted(BUILTIN)} or 'module:attr'")
    module_name, _, attr = target.partition(":")
    _import_from_cwd()
    try:
        obj: Task | Callable[[], Task] = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load task {ref!r}: {exc}") from exc
    task = obj if isinstance(obj, Task) else obj()
    if not isinstance(task, Task):
        raise TypeError(f"task {ref!r} gave {type(task).__name__}, expected autoslim.tasks.Task")
    return task


def _import_from_cwd() -> None:
    """Let ``mypkg.tasks:my_task`` import from the current directory, as ``uvicorn`` and ``celery -A`` do.

    An installed ``autoslim`` script puts its own folder first on ``sys.path``, not the folder it runs in (only
    ``python -m`` and ``python -c`` add that, as ``""``). Inserted first, where ``python -m`` puts it; spawned
    worker processes inherit the path and load the task through here again."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
        importlib.invalidate_caches()  # a folder made after start-up (a test's tmp dir) is then found


__all__ = ["BUILTIN", "DEFAULT_TASK", "Task", "load_task"]
