"""Per-layer policies end to end on a tiny trained task: table, allocation against a profile, a plan that
round-trips with its per-layer values and rebuilds bit for bit, cost under the target, a description."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autoslim.cost import builtin_profiles
from autoslim.plan import CompressionPlan
from autoslim.policy import sensitivity
from autoslim.trial import TrialSpec, build_model, run_trial
from tests.tiny_task import tiny_task

PROFILES = tuple(builtin_profiles()[n] for n in ("mcu-cortex-m7", "x86-avx512-vnni"))


pytestmark = pytest.mark.usefixtures("private_cache")


def _plan(target: float, profile: str = "mcu-cortex-m7", technique: str = "quantize") -> CompressionPlan:
    params = {"policy": "sensitivity", "target": target, "target_profile": profile}
    if technique == "quantize":
        params |= {"candidates": [2, 4, 8]}
    return CompressionPlan.from_params({technique: params})


def test_a_bytes_target_is_met_and_the_resolved_plan_rebuilds_bit_for_bit() -> None:
    task = tiny_task()
    result = run_trial(TrialSpec(_plan(0.15).to_dict(), PROFILES), task)
    assert result.status == "ok", result.reason
    assert result.plan is not None
    built = CompressionPlan.from_dict(result.plan)
    bits = dict(built.steps[0].config.layer_bits)
    assert len(bits) == 12 and set(bits.values()) <= {2, 4, 8} and len(set(bits.values())) > 1  # a real mix
    teacher_bytes = run_trial(TrialSpec({"steps": []}, PROFILES), task).costs["mcu-cortex-m7"]["model_bytes"]
    assert result.costs["mcu-cortex-m7"]["model_bytes"] <= 0.15 * teacher_bytes * 1.001
    note = result.notes["quantize.policy"]
    assert note["fits"] and note["profile"] == "mcu-cortex-m7"
    # the recorded plan carries the per-layer values: JSON round trip, the same weights without any table
    again = CompressionPlan.from_json(built.to_json())
    assert again == built
    a, _ = build_model(built, task)
    b, _ = build_model(again, task)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert "w2" in built.describe() or "w4" in built.describe()


def test_a_tighter_target_gives_fewer_bits_and_a_latency_profile_allocates_by_latency() -> None:
    task = tiny_task()
    loose, tight = (run_trial(TrialSpec(_plan(t).to_dict(), PROFILES), task) for t in (0.3, 0.1))
    mean = [sum(dict(CompressionPlan.from_dict(r.plan).steps[0].config.layer_bits).values()) for r in (loose, tight)]
    assert mean[1] < mean[0]
    lat = run_trial(TrialSpec(_plan(0.5, "x86-avx512-vnni").to_dict(), PROFILES), task)
    assert lat.status == "ok" and lat.notes["quantize.policy"]["objective"] == "latency_ms"


def test_the_table_is_measured_once_and_read_back_from_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    task = tiny_task()
    run_trial(TrialSpec(_plan(0.2).to_dict(), PROFILES), task)
    files = list(Path(sensitivity.cache_root(), "sensitivity").glob("*.json"))
    assert len(files) == 1
    table = sensitivity.SensitivityTable.from_dict(__import__("json").loads(files[0].read_text()))
    # every layer loses more at 2 bits than at 8
    assert all(row[0] > row[-1] for row in table.loss) and table.loss_kind == "kl"

    def boom(*_a, **_k):
        raise AssertionError("measured again")

    monkeypatch.setattr(sensitivity, "_measure", boom)
    assert run_trial(TrialSpec(_plan(0.2).to_dict(), PROFILES), task).status == "ok"
    # another sampled target on another profile reads the same table: a search samples a new target every trial
    again = run_trial(TrialSpec(_plan(0.1, "x86-avx512-vnni").to_dict(), PROFILES), task)
    assert again.status == "ok", again.reason


def test_unstructured_amounts_per_layer() -> None:
    task = tiny_task()
    result = run_trial(TrialSpec(_plan(0.5, technique="prune.unstructured").to_dict(), PROFILES), task)
    assert result.status == "ok", result.reason
    amounts = dict(CompressionPlan.from_dict(result.plan).steps[0].config.layer_amounts)
    assert len(set(amounts.values())) > 1  # layers differ
    model, _ = build_model(CompressionPlan.from_dict(result.plan), task)
    for name, amount in amounts.items():
        w = model.get_submodule(name).weight
        assert abs(float((w == 0).float().mean()) - amount) < 0.05


def test_an_unknown_target_profile_is_an_infeasible_trial() -> None:
    result = run_trial(TrialSpec(_plan(0.2, "gpu-a100").to_dict(), PROFILES), tiny_task())
    assert result.status == "infeasible" and "gpu-a100" in result.reason


def test_bad_per_layer_fields_name_the_field() -> None:
    with pytest.raises(ValueError, match="layer_bits"):
        CompressionPlan.from_params({"quantize": {"layer_bits": {"0": 5}}})
    with pytest.raises(ValueError, match="target"):
        CompressionPlan.from_params({"quantize": {"policy": "sensitivity"}})
    with pytest.raises(ValueError, match="policy"):
        CompressionPlan.from_params({"quantize": {"policy": "haq"}})


def test_an_allocation_of_zeros_everywhere_leaves_the_model_as_it_was() -> None:
    # A target above the model's cost: every layer keeps its weights (seen in a search as a false infeasible)
    task = tiny_task()
    result = run_trial(TrialSpec(_plan(1.0, technique="prune.unstructured").to_dict(), PROFILES), task)
    assert result.status == "ok", result.reason
    amounts = dict(CompressionPlan.from_dict(result.plan).steps[0].config.layer_amounts)
    assert set(amounts.values()) == {0.0}


def _after_pruning(step: dict) -> CompressionPlan:
    """Half the channels pruned uniformly, then ``step``: a per-layer step that receives an already smaller model."""
    first = {"technique": "prune.structured", "config": {"ratio": 0.5}}
    return CompressionPlan.from_dict({"steps": [first, step]})


def _mcu_bytes(plan: CompressionPlan) -> float:
    result = run_trial(TrialSpec(plan.to_dict(), PROFILES), tiny_task())
    assert result.status == "ok", result.reason
    return float(result.costs["mcu-cortex-m7"]["model_bytes"])


def test_a_target_of_the_input_is_a_share_of_what_earlier_steps_left() -> None:
    # 25% of the teacher's bytes is met by the pruning and w8 alone (no step would change); 25% of the pruned
    # model's bytes needs fewer bits on some layers.
    pruned = _mcu_bytes(_after_pruning({"technique": "prune.structured", "config": {"ratio": 0.0}}))
    q = {"policy": "sensitivity", "target": 0.25, "target_profile": "mcu-cortex-m7", "candidates": [2, 4, 8]}
    task = tiny_task()
    runs = {}
    for of in ("teacher", "input"):
        plan = _after_pruning({"technique": "quantize", "config": {**q, "target_of": of}})
        runs[of] = run_trial(TrialSpec(plan.to_dict(), PROFILES), task)
        assert runs[of].status == "ok", runs[of].reason
    bits = {of: dict(CompressionPlan.from_dict(r.plan).steps[1].config.layer_bits) for of, r in runs.items()}
    assert set(bits["teacher"].values()) == {8} and min(bits["input"].values()) < 8
    assert runs["input"].costs["mcu-cortex-m7"]["model_bytes"] <= 0.25 * pruned * 1.001
    note = runs["input"].notes["quantize.policy"]
    assert note["target_of"] == "input" and note["fits"] and note["cost_share"] <= 0.25 * 1.001
    assert "of its input's cost" in CompressionPlan.from_dict(runs["input"].plan).describe()


def test_a_channel_target_of_the_input_is_met_on_the_built_model() -> None:
    # units path (channel groups are priced on whole built models): a second structured step takes 60% of what the
    # first one left, and the trial's model is the one the resolver built (not pruned a second time)
    pruned = _mcu_bytes(_after_pruning({"technique": "prune.structured", "config": {"ratio": 0.0}}))
    step = {"policy": "sensitivity", "target": 0.6, "target_profile": "mcu-cortex-m7", "target_of": "input"}
    plan = _after_pruning({"technique": "prune.structured", "config": step})
    result = run_trial(TrialSpec(plan.to_dict(), PROFILES), tiny_task())
    assert result.status == "ok", result.reason
    got = result.costs["mcu-cortex-m7"]["model_bytes"]
    assert 0.3 * pruned < got <= 0.6 * pruned * 1.001
    assert result.notes["prune.structured.policy"]["builds"] >= 2
    # the model resolving built (the trial's) is the one the recorded plan rebuilds, weight for weight
    task = tiny_task()
    built, ctx = build_model(plan, task, profiles=PROFILES)
    rebuilt, _ = build_model(CompressionPlan.from_dict(ctx.notes["resolved_plan"]), task)
    assert ctx.notes["resolved_plan"] == result.plan
    assert all(
        torch.equal(x, y) for x, y in zip(built.state_dict().values(), rebuilt.state_dict().values(), strict=True)
    )
