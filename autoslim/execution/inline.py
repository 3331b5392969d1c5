"""Run trials one at a time in this process (tests, debugging, a single worker)."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from autoslim.tasks import Task
from autoslim.trial import TrialResult, TrialSpec, run_trial


class InlineExecutor:
    slots = 1

    def __init__(self, task: Task) -> None:
        self.task = task
        self._cache: dict[str, Any] = {}

    def submit(self, spec: TrialSpec) -> Future[TrialResult]:
        fut: Future[TrialResult] = Future()
        fut.set_result(run_trial(spec, self.task, cache=self._cache))
        return fut

    def close(self) -> None:
        self._cache.clear()
