"""CompressionPlan: canonical order, JSON round trip, words, validation."""

from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass

import pytest

from autoslim.plan import CompressionPlan, Step
from autoslim.techniques import list_techniques, register
from autoslim.techniques.distill import KDConfig
from autoslim.techniques.quantize import QuantizeConfig

FULL = {
    "cut.blocks": {"n_blocks": 1},
    "prune.structured": {"ratio": 0.5, "importance": "l2"},
    "prune.unstructured": {"amount": 0.8},
    "distill.kd": {"epochs": 3, "lr": 0.003, "temperature": 4.0},
    "quantize": {"weight_bits": 4, "act_bits": 8},
}
CANONICAL = ["cut.blocks", "prune.structured", "prune.unstructured", "distill.kd", "quantize"]


@pytest.mark.parametrize("order", list(itertools.permutations(CANONICAL))[::7])
def test_steps_are_sorted_into_canonical_order(order: tuple[str, ...]) -> None:
    plan = CompressionPlan.from_params({name: FULL[name] for name in order})
    assert [s.technique for s in plan.steps] == CANONICAL


def test_subsets_keep_relative_canonical_order() -> None:
    plan = CompressionPlan.from_params({"quantize": {}, "cut.blocks": {}, "distill.kd": {}})
    assert [s.technique for s in plan.steps] == ["cut.blocks", "distill.kd", "quantize"]


def test_configs_are_validated_and_filled_with_defaults() -> None:
    plan = CompressionPlan.from_params({"distill.kd": {"epochs": 2}, "quantize": {"weight_bits": 4}})
    kd, q = (s.config for s in plan.steps)
    assert kd == KDConfig(epochs=2)
    assert kd.lr == 3e-3 and kd.optimizer == "adam"
    assert q == QuantizeConfig(weight_bits=4, act_bits=None, per_channel=True)


def test_json_round_trip() -> None:
    plan = CompressionPlan.from_params(FULL)
    text = plan.to_json()
    again = CompressionPlan.from_json(text)
    assert again == plan
    assert again.to_json() == text
    data = json.loads(text)
    assert [s["technique"] for s in data["steps"]] == CANONICAL
    assert data["steps"][-1]["config"].items() >= {"weight_bits": 4, "act_bits": 8, "per_channel": True}.items()


def test_dict_round_trip_and_input_order_does_not_matter() -> None:
    a = CompressionPlan.from_params(FULL)
    b = CompressionPlan.from_params(dict(reversed(list(FULL.items()))))
    assert a == b
    assert a.to_json() == b.to_json()
    assert CompressionPlan.from_dict(a.to_dict()) == a


def test_step_to_dict() -> None:
    step = Step("quantize", QuantizeConfig(weight_bits=8, act_bits=8))
    data = step.to_dict()
    assert data["technique"] == "quantize"
    assert data["config"] == json.loads(json.dumps(dataclasses.asdict(QuantizeConfig(weight_bits=8, act_bits=8))))
    assert data["config"]["weight_bits"] == 8 and data["config"]["act_bits"] == 8


def test_baseline() -> None:
    plan = CompressionPlan()
    assert plan.is_baseline
    assert plan.describe() == "baseline (uncompressed)"
    assert CompressionPlan.from_json(plan.to_json()) == plan
    assert not CompressionPlan.from_params({"quantize": {}}).is_baseline


def test_describe_full_plan() -> None:
    text = CompressionPlan.from_params(FULL).describe()
    assert (
        text == "cut 1 block(s) → prune 50% channels (l2) → zero 80% weights (global) → KD 3 ep lr 0.003 T4.0 → w4/a8"
    )


def test_describe_variants() -> None:
    plan = CompressionPlan.from_params({"cut.blocks": {"fraction": 0.25}, "quantize": {"weight_bits": 8}})
    assert plan.describe() == "cut 25% of blocks → w8"


def test_unknown_technique_raises() -> None:
    with pytest.raises(KeyError, match=r"prune\.magic"):
        CompressionPlan.from_params({"prune.magic": {}})
    with pytest.raises(KeyError, match=r"prune\.magic"):
        CompressionPlan.from_json('{"steps": [{"technique": "prune.magic", "config": {}}]}')


def test_unknown_field_raises_and_names_it() -> None:
    with pytest.raises(ValueError, match=r"quantize: unknown field\(s\) \['bits'\]"):
        CompressionPlan.from_params({"quantize": {"bits": 4}})


def test_invalid_value_raises() -> None:
    with pytest.raises(ValueError, match="weight_bits"):
        CompressionPlan.from_params({"quantize": {"weight_bits": 5}})
    with pytest.raises(ValueError, match="ratio"):
        CompressionPlan.from_json(json.dumps({"steps": [{"technique": "prune.structured", "config": {"ratio": 1.2}}]}))


@dataclass(frozen=True)
class _ScaleConfig:
    factor: float = 2.0


if "tests.scale" not in list_techniques():

    @register("tests.scale", _ScaleConfig)
    def _apply_scale(model, config, ctx):  # pragma: no cover - never applied here
        return model


def test_plugin_technique_sorts_after_structural_steps_and_before_distillation() -> None:
    plan = CompressionPlan.from_params(
        {"quantize": {}, "distill.kd": {}, "tests.scale": {"factor": 3.0}, "cut.blocks": {}}
    )
    assert [s.technique for s in plan.steps] == ["cut.blocks", "tests.scale", "distill.kd", "quantize"]
    assert "tests.scale(factor=3.0)" in plan.describe()
    assert CompressionPlan.from_json(plan.to_json()) == plan


def test_duplicate_registration_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register("quantize", _ScaleConfig)(lambda m, c, x: m)


REPEATED = [
    ("prune.unstructured", {"amount": 0.3}),
    ("distill.kd", {"epochs": 1}),
    ("prune.unstructured", {"amount": 0.6}),
    ("distill.kd", {"epochs": 2}),
]


def test_a_plan_from_steps_keeps_their_order_and_repeats_through_json() -> None:
    plan = CompressionPlan.from_steps(REPEATED)
    assert [(s.technique, s.config) for s in plan.steps] == [
        (name, CompressionPlan.from_params({name: params}).steps[0].config) for name, params in REPEATED
    ]
    data = json.loads(plan.to_json())
    assert [s["technique"] for s in data["steps"]] == [name for name, _ in REPEATED]
    assert CompressionPlan.from_json(plan.to_json()) == plan == CompressionPlan.from_dict(plan.to_dict())
    assert plan.describe() == (
        "zero 30% weights (global) → KD 1 ep lr 0.003 T4.0 → zero 60% weights (global) → KD 2 ep lr 0.003 T4.0"
    )


def test_a_saved_plan_runs_in_its_saved_order() -> None:
    """from_dict does not re-sort: a plan is what was saved (a saved canonical plan loads as it was)."""
    data = {"steps": [{"technique": "quantize", "config": {}}, {"technique": "distill.kd", "config": {}}]}
    assert [s.technique for s in CompressionPlan.from_dict(data).steps] == ["quantize", "distill.kd"]
    canonical = CompressionPlan.from_params(FULL)
    assert CompressionPlan.from_dict(json.loads(canonical.to_json())) == canonical


def test_descriptions_come_from_the_registry_with_the_per_layer_suffix() -> None:
    plan = CompressionPlan.from_params(
        {"quantize": {"policy": "sensitivity", "target": 0.2, "target_profile": "mcu-cortex-m7"}}
    )
    # not allocated yet (a trial stopped before the step): what was asked, not the uniform knob's unused default
    assert plan.describe() == "quantize per layer, to 20% of cost on mcu-cortex-m7 (not allocated)"
    resolved = CompressionPlan.from_params({"quantize": {"policy": "sensitivity", "target": 0.2, "target_of": "input",
                                                         "target_profile": "mcu-cortex-m7",
                                                         "layer_bits": {"a": 4, "b": 8}, "act_bits": 8}})  # fmt: skip
    assert resolved.describe() == "w4 on 1 layer, w8 on 1, a8 (per layer, 20% of its input's cost on mcu-cortex-m7)"
    layered = CompressionPlan.from_params({"quantize": {"layer_bits": {"a": 4, "b": 4, "c": 8}, "act_bits": 8}})
    assert layered.describe() == "w4 on 2 layers, w8 on 1, a8"
