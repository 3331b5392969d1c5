"""``policy:`` in a search space: parsed with errors that name the field, sampled as a target and a profile
instead of the knob, recorded among the study's distributions, and mapped back from a recipe."""

from __future__ import annotations

import optuna
import pytest

from autoslim.search.space import SpaceError, space_from_dict
from autoslim.search.space_check import space_distributions

PROFILES = ("mcu-cortex-m7", "x86-avx512-vnni")


def _space(**quantize):
    body = {"when": "always", "params": {"weight_bits": {"choice": [2, 4, 8]}, "act_bits": 8}, **quantize}
    return space_from_dict({"name": "t", "techniques": {"quantize": body}}, source="t.yaml")


def test_both_policies_are_sampled_and_a_sensitivity_trial_gets_target_profile_and_candidates() -> None:
    space = _space(policy=["uniform", "sensitivity"], target={"float": [0.1, 0.4]})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(20):
        trial = study.ask()
        steps = space.sample(trial, PROFILES)
        q = steps["quantize"]
        if q.get("policy") == "sensitivity":
            assert "weight_bits" not in q and 0.1 <= q["target"] <= 0.4
            assert q["target_profile"] in PROFILES and q["candidates"] == [2, 4, 8] and q["act_bits"] == 8
        else:
            assert q["weight_bits"] in (2, 4, 8) and "target" not in q
        seen.add(q.get("policy", "uniform"))
        study.tell(trial, 0.0)
    assert seen == {"uniform", "sensitivity"}
    dists = space_distributions(space, PROFILES)
    assert {"quantize.policy", "quantize.target", "quantize.target_profile", "quantize.weight_bits"} <= set(dists)


def test_target_of_reaches_every_sensitivity_trial() -> None:
    space = _space(policy="sensitivity", target={"float": [0.1, 0.4]}, target_of="input")
    steps = space.sample(optuna.create_study().ask(), PROFILES)
    assert steps["quantize"]["target_of"] == "input"
    assert _space(policy="sensitivity").sample(optuna.create_study().ask(), PROFILES)["quantize"]["target_of"] == (
        "teacher"
    )


def test_target_profiles_restrict_the_profile_and_a_float_knob_becomes_a_grid() -> None:
    space = space_from_dict({"techniques": {"prune.unstructured": {
        "when": "always", "policy": "sensitivity", "target_profiles": ["mcu-cortex-m7"],
        "params": {"amount": {"float": [0.3, 0.9]}}}}})  # fmt: skip
    steps = space.sample(optuna.create_study().ask(), PROFILES)
    p = steps["prune.unstructured"]
    assert p["target_profile"] == "mcu-cortex-m7" and p["candidates"] == [0.0, 0.3, 0.45, 0.6, 0.75, 0.9]


def test_head_ratio_is_sampled_for_uniform_trials_only_under_a_channel_policy() -> None:
    """prune.structured allocates heads per attention unless head_ratio is set: a sensitivity trial must not get a
    sampled one (every attention would lose the same share again)."""
    space = space_from_dict({"techniques": {"prune.structured": {
        "when": "always", "policy": ["uniform", "sensitivity"], "target": {"float": [0.2, 0.8]},
        "params": {"ratio": {"float": [0.1, 0.5]}, "head_ratio": {"float": [0.0, 0.5]}}}}})  # fmt: skip
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(16):
        trial = study.ask()
        p = space.sample(trial, PROFILES)["prune.structured"]
        if p.get("policy") == "sensitivity":
            assert "head_ratio" not in p and "ratio" not in p
        else:
            assert 0.0 <= p["head_ratio"] <= 0.5
        seen.add(p.get("policy", "uniform"))
        study.tell(trial, 0.0)
    assert seen == {"uniform", "sensitivity"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"policy": "haq"}, "techniques.quantize.policy"),
        ({"policy": "uniform", "target": 0.2}, "techniques.quantize.target"),
        ({"policy": "sensitivity", "target": {"float": [0.1, 2.0]}}, "techniques.quantize.target"),
        ({"policy": "sensitivity", "target_profiles": "mcu"}, "techniques.quantize.target_profiles"),
        ({"policy": "sensitivity", "target_of": "student"}, "techniques.quantize.target_of"),
        ({"policy": "uniform", "target_of": "input"}, "techniques.quantize.target_of"),
    ],
)
def test_bad_policy_fields_are_named(body: dict, field: str) -> None:
    with pytest.raises(SpaceError, match=field.replace(".", r"\.")):
        _space(**body)


def test_a_technique_without_per_layer_settings_refuses_the_policy() -> None:
    with pytest.raises(SpaceError, match="takes no per-layer policy"):
        space_from_dict({"techniques": {"cut.blocks": {"policy": "sensitivity"}}})


def test_a_sensitivity_recipe_maps_back_to_its_params() -> None:
    recipe = {"quantize": {"policy": "sensitivity", "target": 0.2, "target_profile": "mcu-cortex-m7"}}
    space = space_from_dict({"techniques": {"quantize": {
        "policy": ["uniform", "sensitivity"], "params": {"weight_bits": {"choice": [2, 4, 8]}}}},
        "recipes": [recipe]})  # fmt: skip
    params = space.recipe_params(space.recipes[0])
    assert params == {"quantize": True, "quantize.policy": "sensitivity", "quantize.target": 0.2,
                      "quantize.target_profile": "mcu-cortex-m7"}  # fmt: skip


def test_a_sensitivity_recipe_takes_the_spaces_target_of_and_candidates() -> None:
    # (a recipe that ran with a share of the teacher where the space samples shares of the input stayed at w8)
    recipe = {"quantize": {"policy": "sensitivity", "target": 0.14, "target_profile": "mcu-cortex-m7"}}
    space = space_from_dict({"techniques": {"quantize": {
        "policy": ["uniform", "sensitivity"], "target_of": "input", "params": {"weight_bits": {"choice": [2, 4, 8]}}}},
        "recipes": [recipe, {"quantize": {"weight_bits": 4}}]})  # fmt: skip
    step = space.recipes[0]["quantize"]
    assert step["target_of"] == "input" and step["candidates"] == [2, 4, 8] and step["target"] == 0.14
    assert "target_of" not in space.recipes[1]["quantize"]  # a uniform recipe step gets no policy fields
