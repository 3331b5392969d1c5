"""prune.structured with a ratio per dependency group (``layer_ratios``) and allocated from the sensitivity table
(``policy: sensitivity``): on torchvision's ResNet-18 as its authors wrote it, on a Hugging Face BERT, on a net
whose flatten width is written in code, and end to end on a trained tiny task."""

from __future__ import annotations

import pytest
import torch
import transformers

from autoslim.cost import builtin_profiles
from autoslim.data import TensorData
from autoslim.plan import CompressionPlan
from autoslim.policy import sensitivity
from autoslim.techniques import get_technique
from autoslim.techniques.prune_structured import StructuredPruneConfig
from autoslim.techniques.registry import ApplyContext
from autoslim.trial import TrialSpec, build_model, run_trial
from tests.conftest import apply, n_params, resnet18_with_ctx
from tests.techniques.test_prune_structured_real import _vgg
from tests.tiny_task import tiny_task

POLICY = get_technique("prune.structured").layer_policy
MCU = "mcu-cortex-m7"
PROFILES = tuple(builtin_profiles()[n] for n in (MCU, "x86-avx512-vnni"))


pytestmark = pytest.mark.usefixtures("private_cache")


def test_resnet18_units_are_its_channel_groups_and_one_ratio_narrows_only_that_group() -> None:
    model, ctx = resnet18_with_ctx()
    assert POLICY is not None and POLICY.units is not None
    units = POLICY.units(model, StructuredPruneConfig(), ctx)
    # four residual streams (one per stage, shared by its blocks and downsample) + one inner width per block
    assert len(units) == 4 + 8 and len(set(units)) == len(units)
    assert "layer2.0.conv1" in units and "fc" not in units  # the output layer keeps its width
    out = apply("prune.structured", model, ctx, layer_ratios={"layer2.0.conv1": 0.5})
    assert out.layer2[0].conv1.out_channels == out.layer2[0].conv2.in_channels == 64
    assert out.layer2[1].conv1.out_channels == 128  # the other block of the stage is untouched
    assert out.layer2[0].conv2.out_channels == out.layer2[0].downsample[0].out_channels == 128
    assert out(ctx.example_inputs).shape == (2, 10)
    assert model.layer2[0].conv1.out_channels == 128  # the caller's model is untouched


def test_a_residual_stream_ratio_narrows_every_member_of_its_group() -> None:
    model, ctx = resnet18_with_ctx()
    units = POLICY.units(model, StructuredPruneConfig(), ctx)  # type: ignore[union-attr]
    assert "layer3.0.downsample.0" in units and "layer3.0.conv2" not in units  # one name per stream
    out = apply("prune.structured", model, ctx, layer_ratios={"layer3.0.downsample.0": 0.25, "layer1.0.conv1": 0.5})
    l3 = out.layer3
    widths = {l3[0].conv2.out_channels, l3[1].conv2.out_channels, l3[0].downsample[0].out_channels}
    assert widths | {out.layer4[0].conv1.in_channels, l3[1].conv1.in_channels} == {192}
    assert out.layer1[0].conv1.out_channels == 32 and out.layer1[1].conv1.out_channels == 64


def test_a_zero_allocation_leaves_the_model_and_names_are_checked() -> None:
    model, ctx = resnet18_with_ctx()
    assert apply("prune.structured", model, ctx, layer_ratios={"layer1.0.conv1": 0.0}) is model
    from autoslim.techniques import InfeasibleError

    with pytest.raises(InfeasibleError, match="lacks"):
        apply("prune.structured", model, ctx, layer_ratios={"no.such.layer": 0.5})
    with pytest.raises(ValueError, match="layer_ratios"):
        StructuredPruneConfig(layer_ratios={"fc": 1.0})  # type: ignore[arg-type]


def test_describe_and_json_round_trip() -> None:
    plan = CompressionPlan.from_params({"prune.structured": {"layer_ratios": [["a", 0.5], ["b", 0.5], ["c", 0.0]]}})
    assert CompressionPlan.from_json(plan.to_json()) == plan
    assert plan.describe() == "prune channels per group: 50% on 2 groups, 0% on 1 (l2)"


def _bert(init: float = 0.02) -> tuple[transformers.BertForSequenceClassification, ApplyContext]:
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=16, num_labels=3,
                                     initializer_range=init)  # fmt: skip
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config).eval()
    ids = torch.randint(1, 100, (3, 8))
    return model, ApplyContext(example_inputs={"input_ids": ids, "attention_mask": torch.ones_like(ids)})


def test_bert_ffn_and_head_groups_are_units_and_each_layer_gets_its_own_width_and_head_count() -> None:
    model, ctx = _bert()
    units = POLICY.units(model, StructuredPruneConfig(), ctx)  # type: ignore[union-attr]
    ffn = ["bert.encoder.layer.0.intermediate.dense", "bert.encoder.layer.1.intermediate.dense"]
    heads = [u for u in units if u not in ffn]
    assert set(ffn) <= set(units) and len(heads) == 2  # one head group per attention, named by a projection
    assert all(h.startswith(f"bert.encoder.layer.{i}.attention.self.") for i, h in enumerate(heads))
    out = apply("prune.structured", model, ctx, layer_ratios={ffn[0]: 0.5, ffn[1]: 0.25, heads[0]: 0.5})
    layers = out.bert.encoder.layer
    assert [layer.intermediate.dense.out_features for layer in layers] == [32, 48]
    # the head entry is a share of that attention's heads; the other attention keeps all of its own
    assert [layer.attention.self.num_attention_heads for layer in layers] == [2, 4]
    assert [layer.attention.self.query.out_features for layer in layers] == [16, 32]  # whole heads, 8 wide
    assert out(**ctx.example_inputs).logits.shape == (3, 3)
    only_heads = apply("prune.structured", model, ctx, layer_ratios={heads[1]: 0.75})
    assert [layer.attention.self.num_attention_heads for layer in only_heads.bert.encoder.layer] == [4, 1]
    assert [layer.intermediate.dense.out_features for layer in only_heads.bert.encoder.layer] == [64, 64]


def test_an_explicit_head_ratio_takes_every_attention_and_heads_are_then_no_unit() -> None:
    model, ctx = _bert()
    units = POLICY.units(model, StructuredPruneConfig(head_ratio=0.5), ctx)  # type: ignore[union-attr]
    assert units == ["bert.encoder.layer.0.intermediate.dense", "bert.encoder.layer.1.intermediate.dense"]
    out = apply("prune.structured", model, ctx, layer_ratios={units[0]: 0.5}, head_ratio=0.5)
    assert [layer.attention.self.num_attention_heads for layer in out.bert.encoder.layer] == [2, 2]


def test_a_group_pinned_by_a_width_in_code_is_never_chosen() -> None:
    model, x = _vgg()
    data = TensorData(x, torch.zeros(len(x), dtype=torch.long))
    ctx = ApplyContext(example_inputs=x, teacher=model, calibration_inputs=x, train_data=data)
    cfg = StructuredPruneConfig(policy="sensitivity", target=0.5, target_profile=MCU)
    table = sensitivity.sensitivity_table("prune.structured", (0.0, 0.5), cfg, ctx)
    pinned = [n for n, row in zip(table.layers, table.loss, strict=True) if row[1] == float("inf")]
    assert pinned == ["features.5"]  # the conv before the flatten with its width written out
    assert all(row[0] == 0.0 for row in table.loss)


def _policy_plan(target: float) -> CompressionPlan:
    params = {"policy": "sensitivity", "target": target, "target_profile": MCU, "candidates": [0.0, 0.25, 0.5, 0.75]}
    return CompressionPlan.from_params({"prune.structured": params})


def test_a_sensitivity_policy_meets_a_bytes_target_and_the_resolved_plan_rebuilds_bit_for_bit() -> None:
    task = tiny_task()
    result = run_trial(TrialSpec(_policy_plan(0.4).to_dict(), PROFILES), task)
    assert result.status == "ok", result.reason
    teacher = run_trial(TrialSpec({"steps": []}, PROFILES), task)
    assert result.costs[MCU]["model_bytes"] <= 0.4 * teacher.costs[MCU]["model_bytes"]
    note = result.notes["prune.structured.policy"]
    assert note["fits"] and note["units"] >= 2
    built = CompressionPlan.from_dict(result.plan)
    ratios = dict(built.steps[0].config.layer_ratios)
    assert set(ratios.values()) <= {0.0, 0.25, 0.5, 0.75} and any(ratios.values())
    a, _ = build_model(built, task)
    b, _ = build_model(CompressionPlan.from_json(built.to_json()), task)
    assert n_params(a) < n_params(task.teacher())
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    looser = run_trial(TrialSpec(_policy_plan(0.8).to_dict(), PROFILES), task)
    assert looser.costs[MCU]["model_bytes"] > result.costs[MCU]["model_bytes"]


def test_a_uniform_ratio_that_would_take_every_head_keeps_one() -> None:
    """ceil(0.8 * 4) heads would be all four (torch-pruning then divides by zero): each attention keeps one."""
    model, ctx = _bert()
    out = apply("prune.structured", model, ctx, ratio=0.8)
    assert [layer.attention.self.num_attention_heads for layer in out.bert.encoder.layer] == [1, 1]
    assert out(**ctx.example_inputs).logits.shape == (3, 3)


def test_the_sensitivity_table_of_a_bert_measures_its_head_groups() -> None:
    model, ctx = _bert(init=0.3)  # weights large enough that half the heads change the logits measurably
    x = ctx.example_inputs
    data = TensorData(x, torch.zeros(len(x["input_ids"]), dtype=torch.long))
    ctx = ApplyContext(example_inputs=x, teacher=model, calibration_inputs=x, train_data=data)
    cfg = StructuredPruneConfig(policy="sensitivity", target=0.5, target_profile=MCU)
    table = sensitivity.sensitivity_table("prune.structured", (0.0, 0.5), cfg, ctx)
    heads = [n for n in table.layers if ".attention.self." in n]
    assert len(heads) == 2 and len(table.layers) == 4
    assert all(table.of(h)[0.0] == 0.0 and 0.0 < table.of(h)[0.5] < float("inf") for h in heads)
