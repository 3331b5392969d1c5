"""Where trials run: inline, in a process pool, or on Ray (`autoslim.execution.ray_executor`, imported lazily)."""

from autoslim.execution.base import Executor
from autoslim.execution.inline import InlineExecutor
from autoslim.execution.process import ProcessExecutor

__all__ = ["Executor", "InlineExecutor", "ProcessExecutor"]
