"""estimate_cost: a per-layer roofline priced from a real forward pass, on hand-built layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoslim.cost import Cost, HardwareProfile, builtin_profiles, estimate_cost, layer_stats
from autoslim.cost.annotation import annotate
from autoslim.cost.estimate import compute_dtype
from autoslim.techniques import ApplyContext, get_technique


def custom(**overrides) -> HardwareProfile:
    """Compute-bound by default: huge bandwidth, negligible overhead, one fp32 rate, no alignment, dense storage."""
    base = {
        "name": "test", "kind": "cpu", "description": "", "objective": "latency_ms",
        "peak_ops_per_s": {"fp32": 1e9}, "memory_bandwidth_bytes_per_s": 1e18, "layer_overhead_s": 1e-15,
        "channel_multiple": 1, "sparse_storage": False,
    }  # fmt: skip
    return HardwareProfile(**{**base, **overrides})


def linear(
    n_in: int, n_out: int, *, bias: bool = True, w_bits: int | None = None, a_bits: int | None = None
) -> nn.Linear:
    torch.manual_seed(0)
    layer = nn.Linear(n_in, n_out, bias=bias).eval()
    if w_bits is not None:
        annotate(layer, weight_bits=w_bits)
    if a_bits is not None:
        annotate(layer, act_bits=a_bits)
    return layer


def cost(model: nn.Module, x: torch.Tensor, profile: HardwareProfile) -> Cost:
    return estimate_cost(model, x, profile)


X256 = torch.randn(2, 256)


def test_layer_stats_linear_and_conv() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(4, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(80, 17, bias=False)
    ).eval()  # fmt: skip
    conv, lin = layer_stats(model, torch.randn(3, 4, 10))
    assert (conv.kind, conv.in_channels, conv.out_channels, conv.groups) == ("conv1d", 4, 8, 1)
    assert conv.macs == 8 * 10 * 4 * 3
    assert (conv.in_elems, conv.out_elems, conv.spatial) == (40, 80, 10)
    assert (conv.weight_numel, conv.bias_numel, conv.weight_bits, conv.act_bits) == (96, 8, 32, None)
    assert (lin.kind, lin.macs, lin.in_elems, lin.out_elems, lin.bias_numel) == ("linear", 80 * 17, 80, 17, 0)


def test_layer_stats_are_per_sample_and_count_depthwise_correctly() -> None:
    torch.manual_seed(0)
    dw = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8)).eval()
    (one,) = layer_stats(dw, torch.randn(1, 8, 5, 5))
    (five,) = layer_stats(dw, torch.randn(5, 8, 5, 5))
    assert one == five
    assert one.macs == 8 * 25 * 1 * 9
    assert one.groups == 8


def test_layers_that_do_not_run_are_not_priced_and_reused_layers_count_once() -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Linear(8, 8)
            self.unused = nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(self.used(x))

    stats = layer_stats(Odd(), torch.randn(2, 8))
    assert [s.name for s in stats] == ["used"]


def test_estimate_cost_leaves_mode_and_hooks_alone() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).train()
    estimate_cost(model, torch.randn(2, 4), builtin_profiles()["x86-avx512-vnni"])
    assert model.training
    assert not any(m._forward_hooks for m in model.modules())


def test_roofline_by_hand() -> None:
    p = custom(memory_bandwidth_bytes_per_s=1e6, layer_overhead_s=1e-3)
    c = cost(linear(100, 50, bias=False), torch.randn(2, 100), p)
    # compute 2 * 5000 / 1e9 = 1e-5 s; memory (5000 weights + 150 activations) * 4 B / 1e6 B/s = 0.0206 s
    assert c.latency_ms == pytest.approx((0.0206 + 1e-3) * 1e3)
    assert c.macs == 5000
    assert c.model_bytes == 5000 * 4
    assert c.peak_activation_bytes == 150 * 4
    assert c.objective("latency_ms") == pytest.approx(c.latency_ms)
    assert set(c.to_dict()) >= {"latency_ms", "model_bytes", "peak_activation_bytes", "macs"}


def test_batch_size_scales_macs_and_activations() -> None:
    layer = linear(64, 32)
    c1 = cost(layer, torch.randn(2, 64), custom())
    c64 = cost(layer, torch.randn(2, 64), custom(batch_size=64))
    assert c64.macs == 64 * c1.macs == 64 * 64 * 32
    assert c64.peak_activation_bytes == 64 * c1.peak_activation_bytes
    assert c64.model_bytes == c1.model_bytes
    assert c64.latency_ms == pytest.approx(64 * c1.latency_ms)


@pytest.mark.parametrize(
    ("w_bits", "a_bits", "dtype"),
    [(32, None, "fp32"), (8, None, "fp32"), (8, 8, "int8"), (4, 8, "int8"), (2, 8, "int8"), (4, 4, "int4"),
     (16, 16, "fp16"), (8, 16, "fp16")],
)  # fmt: skip
def test_compute_dtype(w_bits: int, a_bits: int | None, dtype: str) -> None:
    (stats,) = layer_stats(linear(4, 4, w_bits=w_bits, a_bits=a_bits), torch.randn(2, 4))
    assert compute_dtype(stats) == dtype


def test_int8_weights_and_activations_are_faster_than_fp32_on_vnni() -> None:
    x86 = builtin_profiles()["x86-avx512-vnni"]
    fp32 = cost(linear(256, 256), X256, x86)
    w8 = cost(linear(256, 256, w_bits=8), X256, x86)
    w8a8 = cost(linear(256, 256, w_bits=8, a_bits=8), X256, x86)
    assert w8a8.latency_ms < w8.latency_ms < fp32.latency_ms
    # compute-bound, the int8 rate is 4x the fp32 rate
    p = custom(peak_ops_per_s={"fp32": 1e9, "int8": 4e9})
    ratio = cost(linear(256, 256), X256, p).latency_ms / cost(linear(256, 256, w_bits=8, a_bits=8), X256, p).latency_ms
    assert ratio == pytest.approx(4.0)


def test_quantized_model_is_faster_and_smaller_on_vnni() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)).eval()
    x86 = builtin_profiles()["x86-avx512-vnni"]
    before = cost(model, X256, x86)
    q = get_technique("quantize")
    model = q.apply(model, q.make_config({"weight_bits": 8, "act_bits": 8}), ApplyContext(example_inputs=X256))
    after = cost(model, X256, x86)
    assert after.latency_ms < before.latency_ms
    assert after.model_bytes < 0.3 * before.model_bytes
    assert after.peak_activation_bytes == before.peak_activation_bytes // 4


def test_dtype_missing_from_profile_falls_back_to_fp32_speed() -> None:
    p = custom()  # fp32 only, compute-bound
    assert cost(linear(256, 256, w_bits=8, a_bits=8), X256, p).latency_ms == pytest.approx(
        cost(linear(256, 256), X256, p).latency_ms
    )


def _half_zero(layer: nn.Linear) -> nn.Linear:
    """Zero a random half of the weights: unstructured, no N:M pattern a sparse kernel could use."""
    gen = torch.Generator().manual_seed(0)
    keep = torch.randperm(layer.weight.numel(), generator=gen) < layer.weight.numel() // 2
    with torch.no_grad():
        layer.weight.mul_(keep.view_as(layer.weight))
    return layer


@pytest.mark.parametrize("name", ["x86-avx512-vnni", "arm-cortex-a76", "gpu-a100", "mcu-cortex-m7"])
def test_unstructured_zeros_cut_bytes_not_latency_on_builtin_profiles(name: str) -> None:
    p = builtin_profiles()[name]
    dense = cost(linear(256, 256), X256, p)
    sparse = cost(_half_zero(linear(256, 256)), X256, p)
    assert sparse.model_bytes < dense.model_bytes
    assert sparse.latency_ms == pytest.approx(dense.latency_ms)


def test_bitmask_storage_only_where_allowed_and_smaller() -> None:
    dense_store = custom(sparse_storage=False)
    sparse_store = custom(sparse_storage=True)
    layer = _half_zero(linear(64, 32, bias=False))
    assert cost(layer, torch.randn(2, 64), dense_store).model_bytes == 64 * 32 * 4
    # bitmask: 1 bit per weight + 32 bits per nonzero weight
    assert cost(layer, torch.randn(2, 64), sparse_store).model_bytes == (2048 + 1024 * 32) // 8
    # a dense layer is never stored as a bitmask: that would be larger
    assert cost(linear(64, 32, bias=False), torch.randn(2, 64), sparse_store).model_bytes == 64 * 32 * 4


def test_zero_skipping_hardware_gets_faster_with_zeros() -> None:
    p = custom(unstructured_sparsity_speedup=4.0)
    dense = cost(linear(256, 256), X256, p).latency_ms
    assert cost(_half_zero(linear(256, 256)), X256, p).latency_ms == pytest.approx(dense / 2)


@pytest.mark.parametrize("name", ["x86-avx512-vnni", "arm-cortex-a76", "gpu-a100", "mcu-cortex-m7"])
def test_removing_channels_reduces_latency(name: str) -> None:
    p = builtin_profiles()[name]
    x = torch.randn(2, 64, 128)
    torch.manual_seed(0)
    wide = cost(nn.Conv1d(64, 64, 3, padding=1), x, p)
    narrow = cost(nn.Conv1d(64, 32, 3, padding=1), x, p)
    assert narrow.latency_ms < wide.latency_ms
    assert narrow.macs == wide.macs // 2


def test_channel_alignment_rounds_up() -> None:
    x = torch.randn(2, 20)
    aligned = custom(channel_multiple=16)
    t17, t32, t33 = (cost(linear(20, n), x, aligned).latency_ms for n in (17, 32, 33))
    assert t17 == pytest.approx(t32)  # 17 output channels run as 32
    assert t33 > t32 * 1.4  # 33 run as 48
    free = custom(channel_multiple=1)
    assert cost(linear(20, 17), x, free).latency_ms < cost(linear(20, 32), x, free).latency_ms
    # MACs are reported as the model has them, not as padded
    assert cost(linear(20, 17), x, aligned).macs == 20 * 17


def test_channel_alignment_applies_to_input_channels_of_convs() -> None:
    aligned = custom(channel_multiple=16)
    torch.manual_seed(0)
    t = [cost(nn.Conv1d(c, 32, 3, padding=1), torch.randn(2, c, 50), aligned).latency_ms for c in (17, 32)]
    assert t[0] == pytest.approx(t[1])


def test_model_bytes_exact_for_fp32_and_int8() -> None:
    p = custom()
    x = torch.randn(2, 64)
    assert cost(linear(64, 32), x, p).model_bytes == 64 * 32 * 4 + 32 * 4
    # 8-bit weights + one fp32 scale per output channel + fp32 bias
    assert cost(linear(64, 32, w_bits=8), x, p).model_bytes == 64 * 32 + 32 * 4 + 32 * 4
    assert cost(linear(64, 32, w_bits=4), x, p).model_bytes == 64 * 32 // 2 + 32 * 4 + 32 * 4


def test_norm_parameters_are_counted_at_fp32() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(4, 8, 3, bias=False), nn.BatchNorm1d(8)).eval()
    assert cost(model, torch.randn(2, 4, 10), custom()).model_bytes == 8 * 4 * 3 * 4 + 2 * 8 * 4


def test_fp16_weights_need_no_scales() -> None:
    assert cost(linear(64, 32, bias=False, w_bits=16), torch.randn(2, 64), custom()).model_bytes == 64 * 32 * 2
