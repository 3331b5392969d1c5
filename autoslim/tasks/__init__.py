"""Tasks: the trained model, its data and its metric. Loaded by built-in name or ``module:attr``."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from autoslim.tasks.base import Task

BUILTIN: dict[str, str] = {
    "mnist1d-cnn": "autoslim.tasks.mnist1d_cnn:load",
    "zoo-resnet18": "autoslim.tasks.zoo.resnet18:load",
    "zoo-mobilenetv2": "autoslim.tasks.zoo.mobilenetv2:load",
    "zoo-vgg": "autoslim.tasks.zoo.vgg:load",
    "zoo-attrnet": "autoslim.tasks.zoo.attrnet:load",
    "zoo-unet": "autoslim.tasks.zoo.unet:load",
    "zoo-bert-cls": "autoslim.tasks.zoo.bert_cls:load",
    "zoo-minilm-embed": "autoslim.tasks.zoo.minilm_embed:load",
    "zoo-multilabel": "autoslim.tasks.zoo.multilabel:load",
    "zoo-crepe-tiny": "autoslim.tasks.zoo.crepe_tiny:load",
}
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
