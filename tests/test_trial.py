"""run_trial: copies the teacher, applies the plan, scores and prices it; never raises."""

from __future__ import annotations

import dataclasses
import json
from contextlib import contextmanager

import pytest
import torch

from autoslim.cost import estimate_cost
from autoslim.evaluate import evaluate
from autoslim.nn_utils import weight_layers
from autoslim.plan import CompressionPlan
from autoslim.techniques import ApplyContext, get_technique, registry
from autoslim.techniques.qat import is_fake_quantized
from autoslim.trial import TrialResult, TrialSpec, build_model, run_trial
from tests.conftest import n_params
from tests.tiny_task import tiny_task

FULL = {
    "prune.structured": {"ratio": 0.5},
    "prune.unstructured": {"amount": 0.5},
    "distill.kd": {"epochs": 2, "batch_size": 64},
    "quantize": {"weight_bits": 8, "act_bits": 8},
}


@pytest.fixture(scope="module")
def task():
    return tiny_task()


def spec(steps: dict, profiles, seed: int = 0) -> TrialSpec:
    return TrialSpec(CompressionPlan.from_params(steps).to_dict(), tuple(profiles.values()), seed=seed)


def test_baseline_scores_and_prices_the_teacher(task, profiles) -> None:
    result = run_trial(spec({}, profiles), task)
    assert result.status == "ok", result.reason
    teacher = task.teacher()
    assert result.accuracy == pytest.approx(evaluate(teacher, task.val))
    assert result.accuracy > 0.6  # the tiny teacher really learned something
    assert result.params == n_params(teacher)
    assert set(result.costs) == set(profiles)
    for name, p in profiles.items():
        assert result.costs[name] == estimate_cost(teacher, task.example_inputs, p).to_dict()
    assert [s["technique"] for s in result.steps] == ["teacher"]
    assert result.duration_s > 0
    assert result.reason == ""


def test_full_plan_is_ok_smaller_and_recorded_step_by_step(task, profiles) -> None:
    base = run_trial(spec({}, profiles), task)
    cache: dict = {}
    result = run_trial(spec(FULL, profiles), task, cache=cache)
    assert result.status == "ok", result.reason
    assert 0.0 <= result.accuracy <= 1.0
    assert result.accuracy > 0.4  # far better than chance (1/3) after KD recovery
    assert result.params < base.params
    for name in profiles:
        assert set(result.costs[name]) >= {"latency_ms", "model_bytes", "peak_activation_bytes", "macs"}
        assert result.costs[name]["model_bytes"] < base.costs[name]["model_bytes"]
        assert result.costs[name]["macs"] < base.costs[name]["macs"]
    techniques = [s["technique"] for s in result.steps]
    assert techniques == ["teacher", "prune.structured", "prune.unstructured", "distill.kd", "quantize"]
    params = [s["params"] for s in result.steps]
    assert params[1] < params[0] and params[1] == params[-1]
    bits = [s["weight_bits"] for s in result.steps]
    assert bits[0] > bits[1] > bits[2] and bits[4] < bits[3]  # fewer channels, zeros, then 8-bit weights
    assert set(result.notes) == set(FULL) | {"device"}
    assert "teacher_logits" in cache  # KD reuses the teacher's logits through the per-process cache
    json.dumps(result.to_dict())  # plain data: crosses process boundaries and goes into the journal
    assert TrialResult.from_dict(result.to_dict()) == result


def test_trial_never_changes_the_teacher(task, profiles) -> None:
    before = task.teacher()
    snapshot = {k: v.clone() for k, v in before.state_dict().items()}
    run_trial(spec({"cut.blocks": {"n_blocks": 2}, **FULL}, profiles), task)
    after = task.teacher()
    assert all(torch.equal(after.state_dict()[k], v) for k, v in snapshot.items())
    assert not any(m._forward_pre_hooks for m in after.modules())


def test_same_seed_same_result(task, profiles) -> None:
    a = run_trial(spec(FULL, profiles, seed=3), task)
    b = run_trial(spec(FULL, profiles, seed=3), task)
    assert (a.accuracy, a.costs, a.params) == (b.accuracy, b.costs, b.params)


def test_infeasible_plan_is_a_result_not_an_exception(task, profiles) -> None:
    result = run_trial(spec({"cut.blocks": {"n_blocks": 99}, "quantize": {}}, profiles), task)
    assert result.status == "infeasible"
    assert "99" in result.reason and "removable" in result.reason
    assert result.accuracy is None and result.costs == {}


def test_a_technique_that_throws_gives_failed(task, profiles, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(model, config, ctx):
        raise RuntimeError("kaboom in quantize")

    monkeypatch.setitem(registry._REGISTRY, "quantize", dataclasses.replace(get_technique("quantize"), apply=boom))
    result = run_trial(spec({"prune.structured": {"ratio": 0.5}, "quantize": {}}, profiles), task)
    assert result.status == "failed"
    assert result.reason.startswith("RuntimeError: kaboom in quantize")
    assert "Traceback" in result.reason
    assert result.accuracy is None
    assert [s["technique"] for s in result.steps] == ["teacher", "prune.structured"]  # what ran before


def test_a_failing_metric_gives_failed(task, profiles, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("autoslim.trial.score", lambda *a, **k: 1 / 0)
    result = run_trial(spec({}, profiles), task)
    assert result.status == "failed" and "ZeroDivisionError" in result.reason


def test_a_malformed_plan_gives_failed(task, profiles) -> None:
    bad = TrialSpec({"steps": [{"technique": "prune.magic", "config": {}}]}, tuple(profiles.values()))
    result = run_trial(bad, task)
    assert result.status == "failed" and "prune.magic" in result.reason


EVERY = {  # every built-in technique in one plan (low rank and sharing on top of FULL's steps)
    "cut.blocks": {"n_blocks": 1},
    "prune.structured": {"ratio": 0.3},
    "factorize.lowrank": {"rank_ratio": 0.5, "min_features": 4},
    "prune.unstructured": {"amount": 0.3},
    "share.weights": {"bits": 5},
    "distill.kd": {"epochs": 2, "batch_size": 64},
    "quantize": {"weight_bits": 6, "act_bits": 8},
}


def test_inputs_follow_the_model_and_leave_non_tensors_alone() -> None:
    from autoslim.nn_utils import _device_of, call_model, model_device, to_device

    cpu = torch.device("cpu")
    batch = {"x": torch.ones(2, 3), "flag": True, "pair": (torch.zeros(1), None)}
    assert to_device(batch, cpu)["flag"] is True and to_device(batch, cpu)["pair"][1] is None
    assert _device_of({"flag": True, "pair": (None, torch.zeros(1))}) == cpu and _device_of([None, 1]) is None
    assert model_device(torch.nn.ReLU()) == cpu  # no parameter or buffer: the CPU
    # A model on another device (meta stands in for a GPU here): CPU inputs fail as they are, call_model moves them.
    linear = torch.nn.Linear(3, 2).to("meta")
    with pytest.raises(RuntimeError):
        linear(torch.ones(4, 3))
    out = call_model(linear, torch.ones(4, 3))
    assert out.device.type == "meta" and out.shape == (4, 2)


def test_the_trial_records_where_it_ran_and_what_its_steps_did(task, profiles) -> None:
    result = run_trial(spec(EVERY, profiles), task, cache={})
    assert result.status == "ok", result.reason
    assert result.notes["device"] == "cpu" and result.notes["distill.kd"]["epochs_run"] == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on the CI machine)")
def test_a_gpu_worker_builds_fine_tunes_and_scores_on_the_gpu(task, profiles, monkeypatch) -> None:
    """Every technique on cuda:0: the model really lives there (KD on the GPU), and the trial matches the CPU one
    up to kernel numerics (accuracy within 10 pp on the tiny task, the same structure and so the same bytes)."""
    seen: list[torch.device] = []
    kd = registry.get_technique("distill.kd")
    original = kd.apply

    def watch(model, config, ctx):
        seen.append(next(model.parameters()).device)
        return original(model, config, ctx)

    monkeypatch.setitem(registry._REGISTRY, "distill.kd", dataclasses.replace(kd, apply=watch))
    cache: dict = {}
    gpu = run_trial(spec(EVERY, profiles), task, cache=cache, device="cuda:0")
    # with a front to beat, the early-stop preview (a quantized copy) is built and priced on the GPU model too
    fronts = {name: ((1e12, 0.0, 0),) for name in profiles}  # dominates nothing: the trial runs to the end
    checked = run_trial(dataclasses.replace(spec(EVERY, profiles), fronts=fronts), task, cache={}, device="cuda:0")
    assert checked.status == "ok" and checked.accuracy == gpu.accuracy, checked.reason
    cpu = run_trial(spec(EVERY, profiles), task, cache={})
    assert gpu.status == cpu.status == "ok", (gpu.reason, cpu.reason)
    assert seen and seen[0].type == "cuda" and cache["teacher_logits"].device.type == "cuda"
    assert abs(gpu.accuracy - cpu.accuracy) < 0.10
    for name in profiles:
        assert gpu.costs[name]["model_bytes"] == pytest.approx(cpu.costs[name]["model_bytes"], rel=0.02)


def test_a_repeated_technique_runs_every_time_it_appears(task, profiles) -> None:
    """prune -> KD -> prune -> KD: both prunes and both fine-tunes run, in the plan's order, and survive JSON."""
    plan = CompressionPlan.from_steps([
        ("prune.unstructured", {"amount": 0.3}), ("distill.kd", {"epochs": 1, "batch_size": 64}),
        ("prune.unstructured", {"amount": 0.6}), ("distill.kd", {"epochs": 1, "batch_size": 64}),
    ])  # fmt: skip
    zeros: list[tuple[str, float]] = []

    def record(name: str, model: torch.nn.Module) -> None:
        weights = torch.cat([m.weight.detach().flatten() for _, m in weight_layers(model)])
        zeros.append((name, round(float((weights == 0).float().mean()), 2)))

    build_model(CompressionPlan.from_json(plan.to_json()), task, on_step=record)
    assert zeros == [("teacher", 0.0), ("prune.unstructured", 0.3), ("distill.kd", 0.3),
                     ("prune.unstructured", 0.6), ("distill.kd", 0.6)]  # fmt: skip
    result = run_trial(TrialSpec(plan.to_dict(), tuple(profiles.values())), task)
    assert result.status == "ok", result.reason
    assert [s["technique"] for s in result.steps] == [name for name, _ in zeros]


def test_each_fine_tune_runs_inside_the_wrapper_of_the_next_step_that_has_one(task, monkeypatch) -> None:
    """KD -> w8 -> KD -> w4: the first KD trains for w8, the second for w4; a skipped step still wraps (export)."""
    active: list[int] = []
    seen: list[tuple[int, ...]] = []

    @contextmanager
    def wrapper(model, config, ctx):
        active.append(config.weight_bits)
        try:
            yield model
        finally:
            active.pop()

    def fine_tune(model, config, ctx):
        seen.append(tuple(active))
        return model

    quantize, kd = get_technique("quantize"), get_technique("distill.kd")
    monkeypatch.setitem(registry._REGISTRY, "quantize", dataclasses.replace(quantize, fine_tune_wrapper=wrapper))
    monkeypatch.setitem(registry._REGISTRY, "distill.kd", dataclasses.replace(kd, apply=fine_tune))
    plan = CompressionPlan.from_steps([("distill.kd", {}), ("quantize", {"weight_bits": 8}), ("distill.kd", {}),
                                       ("quantize", {"weight_bits": 4})])  # fmt: skip
    build_model(plan, task)
    assert seen == [(8,), (4,)] and active == []
    seen.clear()
    build_model(plan, task, skip=("quantize",))
    assert seen == [(8,), (4,)]
    seen.clear()
    build_model(CompressionPlan.from_steps([("quantize", {}), ("distill.kd", {})]), task)
    assert seen == [()]  # a numeric step before the fine-tune has delivered its numerics already


def test_qat_is_the_quantize_wrapper_and_ptq_wraps_nothing(task) -> None:
    wrap = get_technique("quantize").fine_tune_wrapper
    assert wrap is not None
    model = task.teacher()
    with wrap(model, get_technique("quantize").make_config({"mode": "ptq"}), ApplyContext(task.example_inputs)):
        assert not is_fake_quantized(model)
    qat = get_technique("quantize").make_config({"mode": "qat", "weight_bits": 4, "act_bits": 8})
    with wrap(model, qat, ApplyContext(task.example_inputs, calibration_inputs=task.calibration_inputs())):
        assert is_fake_quantized(model)
    assert not is_fake_quantized(model)
