"""The cost model's rules beyond the roofline basics: N:M speed-up, cache, energy, fit, attention/RNN pricing,
measured host profiles (per-family rates, calibration), and fronts leaving out models that do not fit."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch
from torch import nn

from autoslim.cost import HardwareProfile, estimate_cost, layer_stats
from autoslim.cost.layers import other_param_count
from autoslim.cost.profiles import ProfileError, load_profile_file, profile_from_dict, profile_to_dict
from autoslim.report.frame import front_frame


def profile(**overrides) -> HardwareProfile:
    base = {
        "name": "t", "kind": "cpu", "objective": "latency_ms", "peak_ops_per_s": {"fp32": 1e9},
        "memory_bandwidth_bytes_per_s": 1e18, "layer_overhead_s": 0.0, "sparse_storage": False,
    }  # fmt: skip
    return profile_from_dict({**base, **overrides})


def linear(n_in: int = 64, n_out: int = 64) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(n_in, n_out, bias=False)).eval()


def two_four(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        w = model[0].weight.view(-1, 4)
        keep = w.abs().topk(2, dim=1).indices
        mask = torch.zeros_like(w).scatter_(1, keep, 1.0)
        w.mul_(mask)
    return model


def test_semi_structured_pattern_speeds_up_only_where_the_profile_supports_it() -> None:
    x = torch.randn(2, 64)
    dense, sparse = linear(), two_four(linear())
    nm = profile(semi_structured="2:4", semi_structured_speedup=2.0)
    assert estimate_cost(sparse, x, nm).latency_ms == pytest.approx(estimate_cost(dense, x, nm).latency_ms / 2)
    plain = profile()
    assert estimate_cost(sparse, x, plain).latency_ms == pytest.approx(estimate_cost(dense, x, plain).latency_ms)


def test_weights_read_at_cache_bandwidth_when_the_model_fits_the_cache() -> None:
    x = torch.randn(2, 256)
    model = linear(256, 256)  # 256 KB of fp32 weights: memory-bound at this bandwidth
    slow = profile(memory_bandwidth_bytes_per_s=1e6, peak_ops_per_s={"fp32": 1e18})
    cached = dataclasses.replace(slow, cache_bytes=1e6, cache_bandwidth_bytes_per_s=1e8)
    too_small = dataclasses.replace(cached, cache_bytes=1e3)
    t_slow, t_cached = estimate_cost(model, x, slow).latency_ms, estimate_cost(model, x, cached).latency_ms
    assert t_cached < t_slow / 10
    assert estimate_cost(model, x, too_small).latency_ms == pytest.approx(t_slow, rel=0.01)


def test_energy_counts_ops_and_bytes_where_the_profile_gives_constants() -> None:
    x = torch.randn(2, 64)
    assert estimate_cost(linear(), x, profile()).energy_mj is None
    p = profile(energy_per_op_j={"fp32": 1e-9}, energy_per_byte_j=0.0)
    assert estimate_cost(linear(), x, p).energy_mj == pytest.approx(2 * 64 * 64 * 1e-9 * 1e3)
    q = profile(energy_per_op_j={"fp32": 0.0}, energy_per_byte_j=1e-9)
    moved = 64 * 64 * 4 + (64 + 64) * 4  # fp32 weights + activations in and out
    assert estimate_cost(linear(), x, q).energy_mj == pytest.approx(moved * 1e-9 * 1e3)


def test_a_model_that_does_not_fit_is_marked_and_stays_off_the_front() -> None:
    x = torch.randn(2, 64)
    small_flash = profile(storage_capacity_bytes=1000)
    c = estimate_cost(linear(), x, small_flash)
    assert not c.fits and "storage" in c.fit_reason
    no_ram = profile(memory_capacity_bytes=100, weights_in_memory=False)
    assert "memory" in estimate_cost(linear(), x, no_ram).fit_reason
    flash_only = profile(memory_capacity_bytes=20000, weights_in_memory=False)  # weights stay in flash
    assert estimate_cost(linear(), x, flash_only).fits
    df = pd.DataFrame({
        "trial": [0, 1], "status": ["ok", "ok"], "accuracy": [0.99, 0.98], "feasible": [True, True],
        "t.latency_ms": [2.0, 1.0], "t.fits": [True, False],
    })  # fmt: skip
    assert front_frame(df, profile())["trial"].tolist() == [0]


def test_attention_and_recurrent_layers_are_priced_with_all_their_weights() -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    x = torch.randn(2, 10, 32)
    stats = layer_stats(model, x)
    priced = sum(s.weight_numel + s.bias_numel for s in stats) + other_param_count(model)
    assert priced == sum(p.numel() for p in model.parameters())
    scores = [s for s in stats if s.name.endswith("self_attn.scores")]
    assert len(scores) == 2 and scores[0].macs == 2 * 10 * 10 * 32
    lstm = nn.LSTM(8, 16, batch_first=True).eval()
    (rnn,) = layer_stats(lstm, torch.randn(2, 5, 8))
    assert rnn.macs == 5 * 4 * 16 * (8 + 16)
    assert rnn.weight_numel + rnn.bias_numel == sum(p.numel() for p in lstm.parameters())


def test_measured_kernel_family_numbers_override_the_profile_wide_ones() -> None:
    x = torch.randn(2, 64)
    p = profile(kernel_families={"linear": {"ops_per_s": {"fp32": 1e12}, "overhead_s": {"fp32": 1e-3}}})
    c = estimate_cost(linear(), x, p)
    assert c.latency_ms == pytest.approx((2 * 64 * 64 / 1e12 + 1e-3) * 1e3)
    with pytest.raises(ProfileError, match="kernel_families"):
        profile(kernel_families={"gru": {"ops_per_s": {"fp32": 1.0}}})


def test_profiles_round_trip_through_yaml(tmp_path) -> None:
    import yaml

    p = profile(energy_per_op_j={"int8": 1e-12, "fp32": 1e-11}, energy_per_byte_j=1e-11, semi_structured="2:4")
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(profile_to_dict(p)))
    assert load_profile_file(path) == p


@pytest.mark.slow
def test_calibrate_writes_a_loadable_profile_that_prices_models(tmp_path) -> None:
    from autoslim.cost.calibrate import calibrate, save_profile

    host = calibrate("bench-host")
    path = save_profile(host, tmp_path / "bench-host.yaml")
    loaded = load_profile_file(path)
    assert loaded == host and loaded.measure_latency
    assert set(loaded.peak_ops_per_s) >= {"fp32"} and loaded.layer_overhead_s > 0
    assert "measured" in loaded.sources["peak_ops_per_s"]
    small, big = linear(16, 16), linear(512, 512)
    assert (
        estimate_cost(small, torch.randn(2, 16), loaded).latency_ms
        < estimate_cost(big, torch.randn(2, 512), loaded).latency_ms
    )
