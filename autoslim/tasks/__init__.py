"""Tasks: the trained model, its data and its metric. Loaded by built-in name or ``module:attr``."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from autoslim.tasks.base import Task
from autoslim.tasks.zoo import ZOO_TASKS

BUILTIN: dict[str, str] = {"mnist1d-cnn": "autoslim.tasks.mnist1d_cnn:load", **ZOO_TASKS}
DEFAULT_TASK = "mnist1d-cnn"


def load_task(ref: str = DEFAULT_TASK) -> Task:
    """A built-in name (``mnist1d-cnn``) or ``package.module:attr`` naming a Task or a function returning one."""
    target = BUILTIN.get(ref, ref)
    if ":" not in target:
        raise ValueError(f"unknown task {ref!r}: use a built-in name {sorted(BUILTIN)} or 'module:attr'")
    module_name, _, attr = target.partition(":")
    try:
        obj: Task | Callable[[], Task] = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load task {ref!r}: {exc}") from exc
    task = obj if isinstance(obj, Task) else obj()
    if not isinstance(task, Task):
        raise TypeError(f"task {ref!r} gave {type(task).__name__}, expected autoslim.tasks.Task")
    return task


__all__ = ["BUILTIN", "DEFAULT_TASK", "Task", "load_task"]
