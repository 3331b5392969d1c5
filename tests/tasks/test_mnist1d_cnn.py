"""The built-in mnist1d-cnn task end to end: data generated locally, teacher trained once and cached.

Slow: training the teacher takes ~45 s on 2 idle cores. The cache goes to a session-scoped temporary folder, so the
suite never reads or writes the user's ~/.cache/autoslim.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from autoslim.cost import builtin_profiles
from autoslim.evaluate import evaluate
from autoslim.plan import CompressionPlan
from autoslim.tasks import Task, load_task
from autoslim.tasks.mnist1d_cnn import load
from autoslim.trial import TrialSpec, run_trial

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def default_task(tmp_path_factory: pytest.TempPathFactory):
    cache = tmp_path_factory.mktemp("autoslim-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTOSLIM_CACHE", str(cache))
        threads = torch.get_num_threads()
        torch.set_num_threads(os.cpu_count() or 1)  # training is the slow part: use every core for it
        try:
            task = load_task("mnist1d-cnn")
        finally:
            torch.set_num_threads(threads)
        yield task, cache


def test_teacher_is_accurate_and_splits_are_as_documented(default_task: tuple[Task, Path]) -> None:
    task, _ = default_task
    assert task.name == "mnist1d-cnn"
    assert len(task.train[1]) == 18000 and len(task.val[1]) == 6000
    assert task.test is not None and len(task.test[1]) == 6000
    assert task.example_inputs.shape == (2, 1, 40)
    assert task.info["val_accuracy"] > 0.97
    assert evaluate(task.teacher(), task.val) == pytest.approx(task.info["val_accuracy"], abs=1e-6)


def test_teacher_and_data_are_cached_and_reloaded(default_task: tuple[Task, Path], monkeypatch) -> None:
    task, cache = default_task
    folders = list(cache.glob("mnist1d-cnn-*"))
    assert len(folders) == 1
    assert {p.name for p in folders[0].iterdir()} >= {"data.pt", "teacher.pt", "meta.json"}
    monkeypatch.setenv("AUTOSLIM_CACHE", str(cache))
    again = load(verbose=False)  # from the cache: no retraining
    state, state2 = task.teacher().state_dict(), again.teacher().state_dict()
    assert all(torch.equal(state[k], state2[k]) for k in state)
    assert torch.equal(again.val[0], task.val[0])


def test_int8_recipe_keeps_accuracy_and_shrinks_the_model(default_task: tuple[Task, Path]) -> None:
    task, _ = default_task
    profiles = tuple(builtin_profiles().values())
    base = run_trial(TrialSpec(CompressionPlan().to_dict(), profiles), task)
    plan = CompressionPlan.from_params({"quantize": {"weight_bits": 8, "act_bits": 8}})
    q = run_trial(TrialSpec(plan.to_dict(), profiles), task)
    assert base.status == q.status == "ok", (base.reason, q.reason)
    assert q.accuracy > base.accuracy - 0.01
    for p in profiles:
        assert q.costs[p.name]["model_bytes"] < 0.35 * base.costs[p.name]["model_bytes"], p.name
