"""Hardware profiles: YAML data validated into HardwareProfile; errors name the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from autoslim.cost import HardwareProfile, ProfileError, builtin_profiles, get_profile, load_profile_file
from autoslim.cost.profiles import DTYPES, KINDS, OBJECTIVES

GOOD = {
    "name": "my-board",
    "kind": "cpu",
    "objective": "latency_ms",
    "peak_ops_per_s": {"fp32": 1.0e9, "int8": 4.0e9},
    "memory_bandwidth_bytes_per_s": 2.0e9,
    "layer_overhead_s": 1.0e-6,
}


def _write(tmp_path: Path, data: dict | str, name: str = "board.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def _error(tmp_path: Path, data: dict | str) -> str:
    path = _write(tmp_path, data)
    with pytest.raises(ProfileError) as info:
        load_profile_file(path)
    message = str(info.value)
    assert str(path) in message  # every error names the file
    return message


def test_builtin_profiles_load_with_sources() -> None:
    profiles = builtin_profiles()
    assert set(profiles) >= {"gpu-a100", "x86-avx512-vnni", "arm-cortex-a76", "mcu-cortex-m7"}
    for name, p in profiles.items():
        assert isinstance(p, HardwareProfile)
        assert p.name == name
        assert p.kind in KINDS and p.objective in OBJECTIVES
        assert p.sources and all(v.strip() for v in p.sources.values()), name
        assert "peak_ops_per_s" in p.sources and "memory_bandwidth_bytes_per_s" in p.sources, name
        assert set(p.peak_ops_per_s) <= set(DTYPES) and p.peak_ops_per_s["fp32"] > 0
        assert 0 < p.efficiency <= 1
        assert p.description


def test_builtin_numbers_are_floats_not_strings() -> None:
    # 153.6e9-style numbers are strings to PyYAML; the loader must turn them into floats.
    for p in builtin_profiles().values():
        assert all(isinstance(v, float) for v in p.peak_ops_per_s.values())
        assert isinstance(p.memory_bandwidth_bytes_per_s, float)
        assert isinstance(p.layer_overhead_s, float)
    a76 = builtin_profiles()["arm-cortex-a76"]
    assert a76.memory_bandwidth_bytes_per_s == 10e9
    assert a76.peak_ops_per_s["int8"] == pytest.approx(614.4e9)


def test_cpu_and_gpu_builtins_do_not_speed_up_random_zeros() -> None:
    for p in builtin_profiles().values():
        assert p.unstructured_sparsity_speedup == 1.0


def test_load_good_file_with_unsigned_exponents_and_defaults(tmp_path: Path) -> None:
    # PyYAML reads 1.5e9 (no dot-sign exponent form) as a string; the loader must still take it as a number.
    text = """
name: my-board
kind: npu
objective: model_bytes
peak_ops_per_s: {fp32: 1e9, int8: 4.0e+9}
memory_bandwidth_bytes_per_s: 1.5e9
layer_overhead_s: 2e-6
"""
    assert isinstance(yaml.safe_load(text)["memory_bandwidth_bytes_per_s"], str)
    p = load_profile_file(_write(tmp_path, text))
    assert p.memory_bandwidth_bytes_per_s == 1.5e9
    assert p.layer_overhead_s == 2e-6
    assert p.peak_ops_per_s == {"fp32": 1e9, "int8": 4e9}
    assert (p.kind, p.objective) == ("npu", "model_bytes")
    assert (p.efficiency, p.batch_size, p.channel_multiple) == (1.0, 1, 1)
    assert p.sparse_storage is True
    assert p.unstructured_sparsity_speedup == 1.0
    assert p.sources == {} and p.description == ""


def test_string_number_fields_are_accepted(tmp_path: Path) -> None:
    data = {**GOOD, "memory_bandwidth_bytes_per_s": "1.5e9", "peak_ops_per_s": {"fp32": "2e9"}, "efficiency": "0.5"}
    p = load_profile_file(_write(tmp_path, data))
    assert p.memory_bandwidth_bytes_per_s == 1.5e9
    assert p.peak_ops_per_s["fp32"] == 2e9
    assert p.efficiency == 0.5


def test_unknown_field(tmp_path: Path) -> None:
    msg = _error(tmp_path, {**GOOD, "bandwidth": 1e9})
    assert "unknown field" in msg and "bandwidth" in msg


@pytest.mark.parametrize(
    "field", ["name", "kind", "peak_ops_per_s", "memory_bandwidth_bytes_per_s", "layer_overhead_s"]
)
def test_missing_field(tmp_path: Path, field: str) -> None:
    data = {k: v for k, v in GOOD.items() if k != field}
    msg = _error(tmp_path, data)
    assert "missing" in msg and field in msg


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "tpu"}, "kind"),
        ({"objective": "energy"}, "objective"),
        ({"memory_bandwidth_bytes_per_s": -1.0}, "memory_bandwidth_bytes_per_s"),
        ({"memory_bandwidth_bytes_per_s": "fast"}, "memory_bandwidth_bytes_per_s"),
        ({"layer_overhead_s": -1e-6}, "layer_overhead_s"),
        ({"layer_overhead_s": True}, "layer_overhead_s"),
        ({"peak_ops_per_s": {"fp32": -5.0}}, "peak_ops_per_s.fp32"),
        ({"peak_ops_per_s": {"fp32": 1e9, "fp8": 1e9}}, "peak_ops_per_s.fp8"),
        ({"peak_ops_per_s": {"int8": 1e9}}, "peak_ops_per_s"),
        ({"peak_ops_per_s": 1e9}, "peak_ops_per_s"),
        ({"efficiency": 1.5}, "efficiency"),
        ({"efficiency": 0}, "efficiency"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"channel_multiple": -8}, "channel_multiple"),
        ({"unstructured_sparsity_speedup": -2}, "unstructured_sparsity_speedup"),
        ({"sources": ["a datasheet"]}, "sources"),
    ],
)
def test_bad_value_names_the_field(tmp_path: Path, change: dict, field: str) -> None:
    msg = _error(tmp_path, {**GOOD, **change})
    assert f"'{field}'" in msg or f"field '{field}" in msg, msg


def test_not_a_mapping(tmp_path: Path) -> None:
    assert "mapping" in _error(tmp_path, "- just\n- a list\n")


def test_invalid_yaml(tmp_path: Path) -> None:
    assert "not valid YAML" in _error(tmp_path, "name: [unclosed\n")


def test_non_boolean_sparse_storage_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, {**GOOD, "sparse_storage": "false"})
    with pytest.raises(ProfileError, match="sparse_storage"):
        load_profile_file(path)


def test_get_profile_by_name_or_path(tmp_path: Path) -> None:
    assert get_profile("mcu-cortex-m7") == builtin_profiles()["mcu-cortex-m7"]
    path = _write(tmp_path, GOOD, "mine.yml")
    assert get_profile(str(path)).name == "my-board"
    with pytest.raises(ProfileError, match=r"unknown profile 'nope'.*gpu-a100"):
        get_profile("nope")
    with pytest.raises(ProfileError, match="unknown profile"):
        get_profile(str(tmp_path / "missing.yaml"))


def test_rate_falls_back_to_a_wider_dtype() -> None:
    x86 = builtin_profiles()["x86-avx512-vnni"]  # fp32 and int8 only
    assert x86.rate("int8") == ("int8", pytest.approx(3072e9 * 0.35))
    assert x86.rate("int4")[0] == "int8"
    assert x86.rate("fp16") == ("fp32", pytest.approx(768e9 * 0.35))
    gpu = builtin_profiles()["gpu-a100"]
    assert gpu.rate("int4") == ("int4", pytest.approx(1248e12 * 0.3))
    assert gpu.rate("fp16")[0] == "fp16"
