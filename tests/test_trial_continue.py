"""Continued fine-tunes: a multi-fidelity rung goes on from the rung below, and a rebuild runs the same legs."""

from __future__ import annotations

import dataclasses
import io

import pytest
import torch

from autoslim.evaluate import score
from autoslim.plan import CompressionPlan, Step
from autoslim.techniques import get_technique
from autoslim.trial import TrialResult, TrialSpec, build_model, run_trial
from tests.tiny_task import tiny_task

STEPS = {
    "prune.structured": {"ratio": 0.5},
    "distill.kd": {"epochs": 3, "batch_size": 32, "epoch_steps": 9},  # 27 steps: rungs end at 3, 9, 27
    "quantize": {"weight_bits": 8, "act_bits": 8},
}


@pytest.fixture(scope="module")
def task():
    return tiny_task()


def _spec(profiles, steps: dict = STEPS, **kw) -> TrialSpec:
    return TrialSpec(CompressionPlan.from_params(steps).to_dict(), tuple(profiles.values()), seed=3, **kw)


def _chain(task, profiles, steps: dict = STEPS) -> list[TrialResult]:
    """Rungs 1/9, 1/3 and 1, each going on from the one below, as the driver runs them (state through bytes)."""
    results, state = [], None
    for fidelity, keep in ((1 / 9, True), (1 / 3, True), (1.0, False)):
        r = run_trial(_spec(profiles, steps, fidelity=fidelity, resume=state, keep_state=keep), task)
        assert r.status == "ok", r.reason
        results.append(r)
        state = r.checkpoint
    return results


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if v.is_floating_point()}


def test_a_continued_rung_trains_only_the_steps_the_rung_below_did_not(task, profiles) -> None:
    low, mid, top = _chain(task, profiles)
    assert [r.notes["distill.kd"].get("steps_run") for r in (low, mid, top)] == [3, 6, 18]
    assert low.checkpoint and mid.checkpoint and top.checkpoint is None  # the top rung keeps nothing
    assert low.fine_tune_legs is None  # one leg: the plan and seed rebuild it as they always did
    assert mid.fine_tune_legs == pytest.approx([1 / 9, 1 / 3])
    assert top.fine_tune_legs == pytest.approx([1 / 9, 1 / 3, 1.0])
    assert top.notes["distill.kd"]["continued_from"] == pytest.approx(1 / 3, abs=1e-4)
    assert "checkpoint" not in top.to_dict()  # never journaled


def test_a_rebuild_with_the_legs_gives_the_continued_model_bit_for_bit(task, profiles) -> None:
    top = _chain(task, profiles)[-1]
    plan = CompressionPlan.from_params(STEPS)
    rebuilt, _ = build_model(plan, task, seed=3, legs=top.fine_tune_legs)
    assert score(rebuilt, task) == top.accuracy
    restarted, _ = build_model(plan, task, seed=3)  # the same plan fine-tuned in one go
    a, b = _weights(rebuilt), _weights(restarted)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # so the legs are what made the model


def test_continued_builds_hand_over_the_fine_tuned_weights_not_the_quantized_ones(task) -> None:
    """The state a rung leaves is the fine-tune's (the plan's quantize step rounds the weights in place after it):
    going on through bytes gives the weights a rebuild with the legs gives, bit for bit."""
    plan = CompressionPlan.from_params(STEPS)
    state = None
    for fidelity in (1 / 9, 1 / 3, 1.0):
        model, ctx = build_model(plan, task, seed=3, fidelity=fidelity, resume=state, keep_state=fidelity < 1)
        if fidelity < 1:
            buffer = io.BytesIO()
            torch.save(ctx.fine_tune_state, buffer)
            state = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    assert ctx.fine_tune_state is not None
    rebuilt, _ = build_model(plan, task, seed=3, legs=ctx.fine_tune_state["legs"])
    a, b = _weights(model), _weights(rebuilt)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_one_leg_is_the_fine_tune_as_before(task, profiles) -> None:
    """No resume, no legs: the fine-tune runs from step 0 with the seed's batches, whatever keep_state says."""
    plan = CompressionPlan.from_params(STEPS)
    kept, ctx = build_model(plan, task, seed=3, fidelity=1 / 3, keep_state=True)
    plain, _ = build_model(plan, task, seed=3, fidelity=1 / 3)
    assert all(torch.equal(x, y) for x, y in zip(_weights(kept).values(), _weights(plain).values(), strict=True))
    assert ctx.fine_tune_state is not None and ctx.fine_tune_state["legs"] == [pytest.approx(1 / 3)]


def test_a_continued_rung_starts_where_the_rung_below_ended_and_trains_at_lr_again(task, profiles) -> None:
    """Going on from a state: a leg of no steps (equal neighbouring rungs) leaves the loaded weights as they were;
    a real leg starts its schedule at ``lr`` again (the rung below ended at 0) and moves the weights."""
    low = run_trial(_spec(profiles, fidelity=1 / 9, keep_state=True), task)
    state = torch.load(io.BytesIO(low.checkpoint), weights_only=True)
    plan = CompressionPlan.from_params(STEPS)
    float_plan = dataclasses.replace(plan, steps=plan.steps[:2])  # no quantize: the fine-tune's own weights
    same, _ = build_model(float_plan, task, seed=3, fidelity=1 / 9, resume=state)
    for k, v in _weights(same).items():
        assert torch.equal(v, state["model"][k]), k
    moved, ctx = build_model(float_plan, task, seed=3, fidelity=1.0, resume=state)
    assert ctx.notes["distill.kd"]["lr_at_start"] == pytest.approx(STEPS["distill.kd"].get("lr", 3e-3))
    convs = [k for k in state["model"] if k.endswith("weight") and state["model"][k].dim() == 3]
    assert convs and all((moved.state_dict()[k] - state["model"][k]).abs().max() > 1e-4 for k in convs)


def test_a_plan_without_one_resumable_fine_tune_cannot_continue(task) -> None:
    kd = Step("distill.kd", get_technique("distill.kd").make_config({"epochs": 1}))
    twice = CompressionPlan((kd, kd))
    with pytest.raises(ValueError, match="one resumable fine-tune"):
        build_model(twice, task, keep_state=True)
    with pytest.raises(ValueError, match="one resumable fine-tune"):
        build_model(CompressionPlan.from_params({"quantize": {"weight_bits": 8}}), task, legs=[0.5, 1.0])
