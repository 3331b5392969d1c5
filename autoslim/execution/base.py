"""Executors run ``run_trial``; they know nothing of Optuna (the driver is where search meets execution).

Contract (2 methods)::

    class MyExecutor:
        slots: int                                          # how many trials may run at once
        def submit(self, spec: TrialSpec) -> Future[TrialResult]: ...
        def close(self) -> None: ...
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Protocol

from autoslim.trial import TrialResult, TrialSpec


class Executor(Protocol):
    slots: int

    def submit(self, spec: TrialSpec) -> Future[TrialResult]: ...

    def close(self) -> None: ...
