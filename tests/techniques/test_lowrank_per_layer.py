"""factorize.lowrank with a rank ratio per layer (``layer_ranks``) and allocated from the sensitivity table
(``policy: sensitivity``): on torchvision's ResNet-18 as its authors wrote it and end to end on a trained tiny task."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoslim.cost import builtin_profiles
from autoslim.plan import CompressionPlan
from autoslim.search.space import space_from_dict
from autoslim.techniques import get_technique
from autoslim.techniques.lowrank import LowRankConfig
from autoslim.trial import TrialSpec, build_model, run_trial
from tests.conftest import apply, n_params, resnet18_with_ctx
from tests.tiny_task import tiny_task

POLICY = get_technique("factorize.lowrank").layer_policy
MCU = "mcu-cortex-m7"
PROFILES = tuple(builtin_profiles()[n] for n in (MCU, "x86-avx512-vnni"))


pytestmark = pytest.mark.usefixtures("private_cache")


def test_resnet18_units_leave_out_the_output_layer_and_each_named_layer_takes_its_own_rank() -> None:
    model, ctx = resnet18_with_ctx()
    assert POLICY is not None and POLICY.units is not None
    units = POLICY.units(model, LowRankConfig(), ctx)
    assert "fc" not in units and "layer1.0.conv1" in units and "layer4.1.conv2" in units
    ranks = {"layer1.0.conv1": 0.25, "layer4.1.conv2": 0.5, "layer2.0.conv1": 1.0}
    out = apply("factorize.lowrank", model, ctx, layer_ranks=ranks)
    assert isinstance(out.layer1[0].conv1, nn.Sequential) and out.layer1[0].conv1[0].out_channels == 16  # 64 x 0.25
    assert isinstance(out.layer4[1].conv2, nn.Sequential) and out.layer4[1].conv2[0].out_channels == 256
    assert isinstance(out.layer2[0].conv1, nn.Conv2d)  # 1.0: kept
    assert isinstance(out.layer3[0].conv1, nn.Conv2d)  # not named: kept
    assert out(ctx.example_inputs).shape == (2, 10)


def test_an_allocation_that_keeps_every_layer_returns_the_model_and_bad_ratios_name_the_field() -> None:
    model, ctx = resnet18_with_ctx()
    assert apply("factorize.lowrank", model, ctx, layer_ranks={"layer1.0.conv1": 1.0}) is model
    with pytest.raises(ValueError, match="layer_ranks"):
        LowRankConfig(layer_ranks={"fc": 0.0})  # type: ignore[arg-type]


def test_describe_json_and_the_space_grid_holds_the_keep_value() -> None:
    plan = CompressionPlan.from_params({"factorize.lowrank": {"layer_ranks": [["a", 0.5], ["b", 1.0], ["c", 0.5]]}})
    assert CompressionPlan.from_json(plan.to_json()) == plan
    assert plan.describe() == "low-rank per layer: 50% on 2 layers, kept on 1"
    body = {"policy": ["uniform", "sensitivity"], "params": {"rank_ratio": {"float": [0.2, 0.6]}}}
    space = space_from_dict({"name": "s", "techniques": {"factorize.lowrank": body}}, source="t")
    (spec,) = space.techniques
    assert spec.candidates() == (0.2, 0.3, 0.4, 0.5, 0.6, 1.0)


def test_a_sensitivity_policy_meets_a_bytes_target_and_rebuilds_bit_for_bit() -> None:
    task = tiny_task()
    params = {"policy": "sensitivity", "target": 0.7, "target_profile": MCU, "candidates": [1.0, 0.5, 0.25],
              "min_features": 4}  # fmt: skip
    result = run_trial(TrialSpec(CompressionPlan.from_params({"factorize.lowrank": params}).to_dict(), PROFILES), task)
    assert result.status == "ok", result.reason
    teacher = run_trial(TrialSpec({"steps": []}, PROFILES), task)
    assert result.costs[MCU]["model_bytes"] <= 0.7 * teacher.costs[MCU]["model_bytes"]
    assert result.notes["factorize.lowrank.policy"]["fits"]
    built = CompressionPlan.from_dict(result.plan)
    ranks = dict(built.steps[0].config.layer_ranks)
    assert set(ranks.values()) <= {1.0, 0.5, 0.25} and any(r < 1.0 for r in ranks.values())
    a, _ = build_model(built, task)
    b, _ = build_model(CompressionPlan.from_json(built.to_json()), task)
    assert n_params(a) < n_params(task.teacher())
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
