"""A task given only as DataLoaders (variable-length dict batches, streaming metric, custom distill_loss) runs
trials inline and in process workers, which rebuild it from its reference instead of unpickling its data."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from autoslim.cost import get_profile
from autoslim.evaluate import NotFiniteError, score
from autoslim.plan import CompressionPlan
from autoslim.search import SearchConfig, run_search
from autoslim.search.space import space_from_dict
from autoslim.tasks import Task, load_task
from autoslim.trial import TrialSpec, run_trial
from tests.conftest import TINY_PROFILES
from tests.loader_task import CUSTOM_LOSS_CALLS, loader_task

REF = "tests.loader_task:loader_task"
PLAN = {"prune.unstructured": {"amount": 0.5}, "distill.kd": {"epochs": 1}, "quantize": {"weight_bits": 8}}
SPACE = {
    "name": "loader",
    "techniques": {
        "prune.unstructured": {"params": {"amount": {"float": [0.3, 0.6]}}},
        "distill.kd": {"when": "structural", "params": {"epochs": 1}},
        "quantize": {"params": {"weight_bits": {"choice": [4, 8]}}},
    },
}


def test_the_task_data_really_cannot_be_pickled() -> None:
    with pytest.raises(TypeError, match="must not be pickled"):
        pickle.dumps(loader_task().train)


def test_a_loader_task_trial_uses_the_streaming_metric_and_the_custom_loss() -> None:
    task = loader_task()
    assert score(task.teacher(), task) == 1.0  # labels are the teacher's predictions
    CUSTOM_LOSS_CALLS.clear()
    spec = TrialSpec(CompressionPlan.from_params(PLAN).to_dict(), tuple(get_profile(p) for p in TINY_PROFILES))
    result = run_trial(spec, task)
    assert result.status == "ok", result.reason
    assert 0.3 < result.accuracy <= 1.0
    assert len(CUSTOM_LOSS_CALLS) == 6  # 96 samples / 16 per batch, one epoch
    assert result.notes["distill.kd"]["loss"].startswith("custom")
    assert result.notes["distill.kd"]["teacher_outputs"] == "per batch"


def test_epoch_steps_bound_a_fine_tune_whatever_the_data_size() -> None:
    task = loader_task(n_train=400)
    CUSTOM_LOSS_CALLS.clear()
    plan = CompressionPlan.from_params({"distill.kd": {"epochs": 2, "epoch_steps": 3}})
    result = run_trial(TrialSpec(plan.to_dict(), (get_profile(TINY_PROFILES[0]),)), task)
    assert result.status == "ok", result.reason
    assert len(CUSTOM_LOSS_CALLS) == 6 and result.notes["distill.kd"]["steps_per_epoch"] == 3


@pytest.mark.parametrize(("n_train", "steps"), [(96, 10), (400, 25)])  # 6 batches cycle to 10; 25 are left alone
def test_min_epoch_steps_lengthens_only_a_short_epoch(n_train: int, steps: int) -> None:
    task = loader_task(n_train=n_train)
    CUSTOM_LOSS_CALLS.clear()
    plan = CompressionPlan.from_params({"distill.kd": {"epochs": 1, "min_epoch_steps": 10}})
    result = run_trial(TrialSpec(plan.to_dict(), (get_profile(TINY_PROFILES[0]),)), task)
    assert result.status == "ok", result.reason
    assert len(CUSTOM_LOSS_CALLS) == steps and result.notes["distill.kd"]["steps_per_epoch"] == steps


def test_nan_outputs_and_nan_metrics_fail_the_trial() -> None:
    task = loader_task()
    spec = TrialSpec(CompressionPlan().to_dict(), (get_profile(TINY_PROFILES[0]),))
    with torch.no_grad():
        task.model.head.bias.fill_(float("nan"))  # type: ignore[union-attr]
    result = run_trial(spec, task)
    assert result.status == "failed" and "NaN" in result.reason
    nan_metric = Task(name="t", model=loader_task().model, train=task.train, val=task.val,
                      evaluate=lambda m, d, dev: float("nan"))  # fmt: skip
    with pytest.raises(NotFiniteError):
        score(nan_metric.teacher(), nan_metric)
    assert run_trial(spec, nan_metric).status == "failed"


@pytest.mark.slow
@pytest.mark.usefixtures("repo_root_on_path")
def test_process_workers_rebuild_a_loader_task_from_its_reference(tmp_path: Path) -> None:
    cfg = SearchConfig(space=space_from_dict(SPACE), profiles=[get_profile(p) for p in TINY_PROFILES], budget=4,
                       task=REF, study="s", results_dir=tmp_path, workers=2, executor="process")  # fmt: skip
    outcome = run_search(cfg)
    assert (outcome.trials["status"] == "ok").all(), outcome.trials["reason"].tolist()
    assert load_task(REF).name == "loader-task"
