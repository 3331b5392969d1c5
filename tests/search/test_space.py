"""Search spaces: YAML validated up front (errors name file and field), define-by-run sampling, recipes."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from autoslim.plan import CompressionPlan
from autoslim.search import SpaceError, default_space_path, load_space, space_from_dict
from autoslim.search.space import ParamSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)
REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, data: dict | str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def _error(tmp_path: Path, data: dict | str) -> str:
    path = _write(tmp_path, data)
    with pytest.raises(SpaceError) as info:
        load_space(path)
    msg = str(info.value)
    assert str(path) in msg  # every error names the file
    return msg


def _techniques(**body) -> dict:
    return {"name": "t", "techniques": body}


# --- the default space -----------------------------------------------------------------------------------


def test_default_space_loads() -> None:
    space = load_space(REPO / "search_spaces" / "default.yaml")
    assert space.name == "default"
    assert [t.name for t in space.techniques] == [
        "cut.blocks", "prune.structured", "prune.unstructured", "distill.kd", "quantize",
    ]  # fmt: skip
    assert space.profiles == ("gpu-a100", "x86-avx512-vnni", "arm-cortex-a76", "mcu-cortex-m7")
    assert len(space.recipes) == 4
    when = {t.name: t.when for t in space.techniques}
    assert when["distill.kd"] == "structural" and when["quantize"] == "optional"
    kd = next(t for t in space.techniques if t.name == "distill.kd")
    assert kd.params["lr"] == ParamSpec("float", low=1e-3, high=1e-2, log=True)
    q = next(t for t in space.techniques if t.name == "quantize")
    assert q.params["act_bits"].choices == (8, None)


def test_default_space_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(REPO)
    assert default_space_path() == Path.cwd() / "search_spaces" / "default.yaml"
    monkeypatch.chdir(tmp_path)  # elsewhere: the one beside the package
    assert default_space_path().resolve() == (REPO / "search_spaces" / "default.yaml").resolve()


def test_techniques_are_sorted_into_canonical_order(tmp_path: Path) -> None:
    space = load_space(_write(tmp_path, _techniques(**{"quantize": {}, "cut.blocks": {}, "prune.structured": {}})))
    assert [t.name for t in space.techniques] == ["cut.blocks", "prune.structured", "quantize"]
    assert space.name == "t"


def test_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    assert load_space(_write(tmp_path, {"techniques": {"quantize": None}})).name == "space"


# --- errors name the file and the field ------------------------------------------------------------------


def test_unknown_technique(tmp_path: Path) -> None:
    msg = _error(tmp_path, _techniques(**{"prune.magic": {}}))
    assert "techniques.prune.magic" in msg and "unknown technique" in msg


def test_unknown_param_field(tmp_path: Path) -> None:
    msg = _error(tmp_path, _techniques(quantize={"params": {"bits": {"choice": [4, 8]}}}))
    assert "techniques.quantize.params.bits" in msg and "not a field" in msg


def test_unknown_key_in_a_param(tmp_path: Path) -> None:
    msg = _error(
        tmp_path, _techniques(**{"prune.structured": {"params": {"ratio": {"float": [0.1, 0.5], "lgo": True}}}})
    )
    assert "techniques.prune.structured.params.ratio" in msg and "lgo" in msg


def test_bad_range_low_above_high(tmp_path: Path) -> None:
    msg = _error(tmp_path, _techniques(**{"prune.structured": {"params": {"ratio": {"float": [0.8, 0.2]}}}}))
    assert "techniques.prune.structured.params.ratio" in msg and "low <= high" in msg


@pytest.mark.parametrize("bounds", [[0.1], [0.1, 0.2, 0.3], ["a", "b"], 0.5])
def test_malformed_range(tmp_path: Path, bounds) -> None:
    msg = _error(tmp_path, _techniques(**{"prune.structured": {"params": {"ratio": {"float": bounds}}}}))
    assert "techniques.prune.structured.params.ratio" in msg


@pytest.mark.parametrize("low", [0.0, -1e-3])
def test_log_needs_positive_low(tmp_path: Path, low: float) -> None:
    msg = _error(tmp_path, _techniques(**{"distill.kd": {"params": {"lr": {"float": [low, 0.1], "log": True}}}}))
    assert "techniques.distill.kd.params.lr" in msg and "low > 0" in msg


def test_log_and_step_cannot_combine(tmp_path: Path) -> None:
    msg = _error(
        tmp_path, _techniques(**{"distill.kd": {"params": {"lr": {"float": [1e-3, 0.1], "log": True, "step": 0.01}}}})
    )
    assert "techniques.distill.kd.params.lr" in msg and "step" in msg


def test_exactly_one_kind(tmp_path: Path) -> None:
    msg = _error(tmp_path, _techniques(**{"cut.blocks": {"params": {"n_blocks": {"int": [1, 2], "choice": [1]}}}}))
    assert "techniques.cut.blocks.params.n_blocks" in msg and "exactly one" in msg


def test_empty_choice(tmp_path: Path) -> None:
    msg = _error(tmp_path, _techniques(quantize={"params": {"weight_bits": {"choice": []}}}))
    assert "techniques.quantize.params.weight_bits" in msg and "non-empty" in msg


def test_unknown_top_level_field(tmp_path: Path) -> None:
    msg = _error(tmp_path, {"name": "t", "technique": {"quantize": {}}, "techniques": {"quantize": {}}})
    assert "unknown field" in msg and "technique" in msg


def test_unknown_technique_field_and_bad_when(tmp_path: Path) -> None:
    msg = _error(tmp_path, _techniques(quantize={"param": {}}))
    assert "techniques.quantize" in msg and "param" in msg
    msg = _error(tmp_path, _techniques(quantize={"when": "sometimes"}))
    assert "techniques.quantize.when" in msg and "sometimes" in msg


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"quantize": {"params": {"weight_bits": {"choice": [5]}}}}, "weight_bits"),
        ({"quantize": {"params": {"weight_bits": 5}}}, "weight_bits"),
        ({"prune.structured": {"params": {"ratio": {"float": [1.2, 1.5]}}}}, "ratio"),
        ({"distill.kd": {"params": {"epochs": {"int": [-2, 3]}}}}, "epochs"),
    ],
)
def test_invalid_value_for_a_technique(tmp_path: Path, body: dict, field: str) -> None:
    msg = _error(tmp_path, _techniques(**body))
    technique = next(iter(body))
    assert f"techniques.{technique}" in msg and field in msg


@pytest.mark.parametrize(
    "body",
    [
        {"quantize": {"params": {"weight_bits": {"choice": [8, 5]}}}},
        {"prune.structured": {"params": {"ratio": {"float": [0.2, 1.2]}}}},
        {"cut.blocks": {"params": {"n_blocks": {"int": [1, 3]}, "fraction": {"choice": [0.5, 2.0]}}}},
    ],
)
def test_invalid_value_anywhere_in_the_space_is_caught_up_front(tmp_path: Path, body: dict) -> None:
    """Not only the first choice or the low end: a bad value must not wait for the trial that samples it."""
    technique, spec = next(iter(body.items()))
    msg = _error(tmp_path, _techniques(**body))
    assert f"techniques.{technique}" in msg and list(spec["params"])[-1] in msg


def test_techniques_must_be_a_non_empty_mapping(tmp_path: Path) -> None:
    assert "techniques" in _error(tmp_path, {"name": "t"})
    assert "techniques" in _error(tmp_path, {"name": "t", "techniques": []})


def test_profiles_must_be_a_list_of_names(tmp_path: Path) -> None:
    msg = _error(tmp_path, {**_techniques(quantize={}), "profiles": "gpu-a100"})
    assert "profiles" in msg


def test_bad_recipes(tmp_path: Path) -> None:
    base = _techniques(quantize={"params": {"weight_bits": {"choice": [4, 8]}}})
    msg = _error(tmp_path, {**base, "recipes": [{"cut.blocks": {"n_blocks": 1}}]})
    assert "recipes[0]" in msg
    msg = _error(tmp_path, {**base, "recipes": [{"quantize": {"weight_bits": 8}}, {"quantize": {"weight_bits": 5}}]})
    assert "recipes[1].quantize" in msg and "weight_bits" in msg
    msg = _error(tmp_path, {**base, "recipes": {"quantize": {}}})
    assert "recipes" in msg


def test_missing_file_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match="no such search space file"):
        load_space(tmp_path / "nope.yaml")
    assert "not valid YAML" in _error(tmp_path, "techniques: {quantize: [\n")
    assert "mapping" in _error(tmp_path, "- quantize\n")


# --- sampling ----------------------------------------------------------------------------------------------


SAMPLE_SPACE = {
    "techniques": {
        "cut.blocks": {"when": "optional", "params": {"n_blocks": {"int": [1, 3]}}},
        "prune.unstructured": {"params": {"amount": {"float": [0.3, 0.9], "step": 0.1}}},
        "distill.kd": {"when": "structural", "params": {"epochs": 2, "lr": {"float": [1e-4, 1e-2], "log": True}}},
        "quantize": {
            "when": "always",
            "params": {"weight_bits": {"choice": [4, 8]}, "act_bits": {"choice": [8, None]}},
        },
    }
}


def test_define_by_run_sampling_respects_the_space() -> None:
    space = space_from_dict(SAMPLE_SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_kd = seen_no_kd = 0
    for _ in range(40):
        trial = study.ask()
        steps = space.sample(trial)
        CompressionPlan.from_params(steps)  # every sample is a valid plan
        assert "quantize" in steps  # always
        assert steps["quantize"]["weight_bits"] in (4, 8) and steps["quantize"]["act_bits"] in (8, None)
        structural = "cut.blocks" in steps or "prune.unstructured" in steps
        assert ("distill.kd" in steps) == structural  # structural: on exactly when an earlier step changed the model
        if "distill.kd" in steps:
            seen_kd += 1
            assert steps["distill.kd"]["epochs"] == 2  # fixed value passes through
            assert 1e-4 <= steps["distill.kd"]["lr"] <= 1e-2
        else:
            seen_no_kd += 1
        if "cut.blocks" in steps:
            assert steps["cut.blocks"]["n_blocks"] in (1, 2, 3)
        if "prune.unstructured" in steps:
            amount = steps["prune.unstructured"]["amount"]
            assert 0.3 - 1e-9 <= amount <= 0.9 + 1e-9
            assert abs(amount * 10 - round(amount * 10)) < 1e-6  # step 0.1
        assert "distill.kd.epochs" not in trial.params  # fixed values are not search dimensions
        study.tell(trial, 0.0)
    assert seen_kd and seen_no_kd


def test_default_recipes_round_trip_through_an_enqueued_trial() -> None:
    space = load_space(REPO / "search_spaces" / "default.yaml")
    study = optuna.create_study()
    for recipe in space.recipes:
        study.enqueue_trial(space.recipe_params(recipe))
    for recipe in space.recipes:
        trial = study.ask()
        sampled = space.sample(trial)
        # The sampler sees the recipe's values, and the space's fixed values (KD's epochs_per_removed) are part
        # of every recipe that uses the technique, so sampling gives the recipe back exactly; a recipe that asks
        # for a per-layer policy gets the space's candidates (its grid over the knob's range) added.
        for name, params in sampled.items():
            if params.get("policy") == "sensitivity" and "candidates" not in recipe[name]:
                spec = next(t for t in space.techniques if t.name == name)
                assert params.pop("candidates") == list(spec.candidates())
        assert sampled == recipe
        if "distill.kd" in recipe:
            assert recipe["distill.kd"]["epochs_per_removed"] == 4
        study.tell(trial, 0.0)


def test_recipe_params_for_a_custom_space() -> None:
    space = space_from_dict({**SAMPLE_SPACE, "recipes": [{"quantize": {"weight_bits": 4, "act_bits": None}}]})
    assert space.recipe_params(space.recipes[0]) == {
        "cut.blocks": False, "prune.unstructured": False, "quantize.weight_bits": 4, "quantize.act_bits": None,
    }  # fmt: skip
    study = optuna.create_study()
    study.enqueue_trial(space.recipe_params(space.recipes[0]))
    assert space.sample(study.ask()) == space.recipes[0]


@pytest.mark.parametrize(
    ("space_params", "recipe"),
    [
        ({"ratio": {"float": [0.2, 0.8]}}, {"ratio": 0.5, "importance": "l1"}),
        ({"ratio": {"float": [0.2, 0.8]}, "importance": "l2"}, {"ratio": 0.5, "importance": "l1"}),
    ],
)
def test_recipe_runs_as_written_even_where_the_space_does_not_sample_it(space_params: dict, recipe: dict) -> None:
    # ... and where the space fixes a value (importance: l2), what the recipe writes (l1) wins.
    from autoslim.plan import CompressionPlan
    from autoslim.search.driver import _plan_for

    data = {"techniques": {"prune.structured": {"params": space_params}}, "recipes": [{"prune.structured": recipe}]}
    space = space_from_dict(data)
    study = optuna.create_study()
    study.enqueue_trial(space.recipe_params(space.recipes[0]), user_attrs={"recipe": space.recipes[0]})
    assert _plan_for(study.ask(), space) == CompressionPlan.from_params(space.recipes[0])
