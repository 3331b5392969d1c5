"""Where trials run: inline, in a process pool (Ray arrives in issue 6)."""

from autoslim.execution.base import Executor
from autoslim.execution.inline import InlineExecutor
from autoslim.execution.process import ProcessExecutor

__all__ = ["Executor", "InlineExecutor", "ProcessExecutor"]
