"""quantize.embedding_bits: embedding tables rounded per row (weight-only) and priced at their bits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoslim.cost import estimate_cost, get_profile
from autoslim.cost.annotation import annotation_of
from autoslim.cost.layers import other_param_bits
from autoslim.plan import CompressionPlan
from autoslim.techniques import ApplyContext, get_technique
from autoslim.techniques.quantize import embedding_tables
from tests.zoo import ZOO, build_model

MCU = get_profile("mcu-cortex-m7")


def _apply(model: nn.Module, example, **params) -> nn.Module:
    tech = get_technique("quantize")
    ctx = ApplyContext(example_inputs=example, calibration_inputs=example)
    return tech.apply(model, tech.make_config(params), ctx)


def _example(name: str, n: int = 4):
    return ZOO[name].inputs(n, torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", [n for n in ("transformer", "bert") if n in ZOO])
@pytest.mark.parametrize("bits", [4, 8])
def test_tables_are_rounded_per_row_and_priced_smaller(name: str, bits: int) -> None:
    model = build_model(name)
    example = _example(name)
    tables = embedding_tables(model)
    assert tables, "the zoo model has embedding tables"
    before = {n: m.weight.detach().clone() for n, m in tables}
    fp32_embeddings = _apply(build_model(name), example, weight_bits=8, embedding_bits=None)
    out = _apply(model, example, weight_bits=8, embedding_bits=bits)
    for n, m in embedding_tables(out):
        assert annotation_of(m).weight_bits == bits
        assert not torch.equal(m.weight, before[n]), n  # really changed
        for row in m.weight.detach()[:16]:
            assert row.unique().numel() <= 2**bits - 1, n  # symmetric grid: -qmax..qmax
    bytes_fp32 = estimate_cost(fp32_embeddings, example, MCU).model_bytes
    bytes_q = estimate_cost(out, example, MCU).model_bytes
    table_numel = sum(m.weight.numel() for _, m in tables)
    rows = sum(m.weight.shape[0] for _, m in tables)
    # exactly the tables' saving: 32 -> bits per weight, plus one fp32 scale per row
    assert bytes_fp32 - bytes_q == pytest.approx((table_numel * (32 - bits) - rows * 32) / 8, abs=1)


def test_none_keeps_tables_in_float_and_the_default_is_int8() -> None:
    example = _example("transformer")
    model = _apply(build_model("transformer"), example, weight_bits=8, embedding_bits=None)
    assert torch.equal(model.embed.weight, build_model("transformer").embed.weight)
    assert not hasattr(model.embed, "autoslim_annotation")
    default = get_technique("quantize").make_config({})
    assert default.embedding_bits == 8


def test_a_table_tied_to_a_linear_layer_is_quantized_once_at_the_layer_bits() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(50, 16)
            self.head = nn.Linear(16, 50, bias=False)
            self.head.weight = self.embed.weight  # weight tying, as GPT-2 and BERT's MLM head do

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.head(self.embed(tokens)).mean(1)

    torch.manual_seed(0)
    model = Tied()
    tokens = torch.randint(0, 50, (4, 8))
    out = _apply(model, tokens, weight_bits=4, embedding_bits=8)
    assert embedding_tables(out) == []
    for row in out.head.weight.detach():
        assert row.unique().numel() <= 15  # 4-bit levels: not re-rounded at 8 bits
    assert other_param_bits(out) == 0  # the shared table is priced once, with the head


def test_describe_names_non_default_table_widths() -> None:
    describe = lambda **p: CompressionPlan.from_params({"quantize": p}).describe()  # noqa: E731
    assert describe(weight_bits=8, act_bits=8) == "w8/a8"
    assert describe(weight_bits=8, act_bits=8, embedding_bits=4) == "w8/a8, emb4"
    assert describe(weight_bits=8, embedding_bits=None) == "w8, emb fp32"


def test_bad_embedding_bits_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="embedding_bits"):
        get_technique("quantize").make_config({"embedding_bits": 5})
