"""One typed cost annotation per layer: techniques write it, cost, measurement and export read it."""

from __future__ import annotations

import copy

import torch
from torch import nn

from autoslim.cost import builtin_profiles, layer_stats
from autoslim.cost.annotation import ATTRIBUTE, LayerAnnotation, annotate, annotation_of, is_annotated
from autoslim.cost.estimate import estimate_cost
from autoslim.cost.measure import runs_int8
from autoslim.runtime.onnx_int8 import strip_autoslim
from autoslim.runtime.onnx_mixed import simulated_bits


def test_an_unmarked_layer_reads_as_float() -> None:
    layer = nn.Linear(4, 4)
    assert annotation_of(layer) == LayerAnnotation() and not is_annotated(layer)
    assert annotation_of(layer).weight_bits == 32 and annotation_of(layer).act_bits is None


def test_annotate_merges_into_what_earlier_steps_wrote() -> None:
    layer = nn.Linear(4, 4)
    annotate(layer, codebook_bits=3)  # weight sharing first ...
    annotate(layer, weight_bits=8, per_channel=False)  # ... then a quantize step stores its codebook at 8 bits
    assert annotation_of(layer) == LayerAnnotation(weight_bits=8, per_channel=False, codebook_bits=3)
    assert list(vars(layer)).count(ATTRIBUTE) == 1 and is_annotated(layer)
    assert annotation_of(copy.deepcopy(layer)) == annotation_of(layer)  # models are copied between steps


def test_the_cost_model_measurement_and_export_read_the_annotation() -> None:
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    x = torch.randn(2, 16)
    profile = builtin_profiles()["mcu-cortex-m7"]
    before = estimate_cost(model, x, profile).model_bytes
    annotate(model[0], weight_bits=4)
    assert not runs_int8(model)  # float activations: no integer kernel
    annotate(model[0], act_bits=8)
    first, second = layer_stats(model, x)
    assert (first.weight_bits, first.act_bits, second.weight_bits) == (4, 8, 32)
    assert estimate_cost(model, x, profile).model_bytes < before
    assert simulated_bits(model) == {"0": 4} and runs_int8(model)
    assert not any(is_annotated(m) for m in strip_autoslim(model).modules())
