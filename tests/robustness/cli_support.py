"""Broken tasks and helpers for the CLI robustness tests (test_cli_*.py, test_security_*.py).

Tests name each case's category in its function name (``test_crash_*``, ``test_poor_*``, ``test_security_*``):
what the case did before it was fixed. benchmarks/robustness.py tallies them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import torch
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from typer.testing import CliRunner

from autoslim.cli import app
from autoslim.tasks import Task
from tests.tiny_task import tiny_task

TASKS = "tests.robustness.cli_support"


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), env=env)


def assert_no_traceback(result) -> None:
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


def dict_task() -> dict:
    """A task function that returns a dict instead of a Task."""
    return {"model": tiny_task().teacher()}


class _NaNOut(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * float("nan")


def nan_output_task() -> Task:
    """The tiny task whose model outputs NaN (argmax of NaN would score as 'the first class')."""
    task = tiny_task()
    task.model = _NaNOut(task.teacher())
    return task


def nan_metric_task() -> Task:
    task = tiny_task()
    task.metric = lambda logits, targets: float("nan")
    return task


def load(folder: Path) -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(folder / "study.journal")))
    return optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)


def copy_study(folder: Path, results: Path) -> Path:
    """A copy under another results folder, keeping the study's folder name (a copy, not a fork)."""
    dst = results / folder.name
    shutil.copytree(folder, dst)
    return dst
