"""Hardware profiles: YAML data (never constants in code) validated into a frozen ``HardwareProfile``.

Built-in profiles live in ``autoslim/cost/profiles/*.yaml``; a user profile is any YAML file with the same
fields, passed by path. Every built-in cites the sources of its numbers under ``sources:``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

DTYPES = ("fp32", "fp16", "int8", "int4")
KINDS = ("gpu", "cpu", "npu", "mcu")
OBJECTIVES = ("latency_ms", "model_bytes")


class ProfileError(ValueError):
    """A profile file is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    kind: str
    description: str
    objective: str  # the cost this profile's Pareto front is drawn against
    peak_ops_per_s: dict[str, float]  # per dtype; 2 ops per multiply-accumulate
    memory_bandwidth_bytes_per_s: float
    layer_overhead_s: float  # per-layer dispatch / kernel-launch time
    efficiency: float = 1.0  # fraction of peak compute that layers of this size reach in practice
    batch_size: int = 1
    channel_multiple: int = 1  # channel counts round up to this (vector / tensor-core width)
    sparse_storage: bool = True  # weights may be stored with a bitmask sparse encoding where it is smaller
    unstructured_sparsity_speedup: float = 1.0  # >1 only where kernels skip zeros; CPUs and GPUs: 1.0
    sources: dict[str, str] = field(default_factory=dict)

    def rate(self, dtype: str) -> tuple[str, float]:
        """The dtype a layer really runs in here (falling back int4 -> int8 -> fp16 -> fp32) and its ops/s."""
        chain = DTYPES[DTYPES.index(dtype) :: -1] if dtype in DTYPES else ("fp32",)
        for d in chain:
            if d in self.peak_ops_per_s:
                return d, self.peak_ops_per_s[d] * self.efficiency
        return "fp32", self.peak_ops_per_s["fp32"] * self.efficiency


_BW = "memory_bandwidth_bytes_per_s"
_REQUIRED = ("name", "kind", "objective", "peak_ops_per_s", "memory_bandwidth_bytes_per_s", "layer_overhead_s")
_OPTIONAL = (
    "description", "efficiency", "batch_size", "channel_multiple", "sparse_storage",
    "unstructured_sparsity_speedup", "sources",
)  # fmt: skip


def _positive(where: str, key: str, value: Any) -> float:
    if isinstance(value, str):  # PyYAML reads 1.5e9 (no exponent sign) as a string
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ProfileError(f"{where}: field '{key}' must be a positive number, got {value!r}")
    return float(value)


def profile_from_dict(data: Any, *, where: str = "<profile>") -> HardwareProfile:
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: a profile must be a mapping of fields")
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise ProfileError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(_REQUIRED + _OPTIONAL)}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ProfileError(f"{where}: missing required field(s) {missing}")
    if data["kind"] not in KINDS:
        raise ProfileError(f"{where}: field 'kind' must be one of {KINDS}, got {data['kind']!r}")
    if data["objective"] not in OBJECTIVES:
        raise ProfileError(f"{where}: field 'objective' must be one of {OBJECTIVES}, got {data['objective']!r}")
    peaks = data["peak_ops_per_s"]
    if not isinstance(peaks, dict) or "fp32" not in peaks:
        raise ProfileError(f"{where}: field 'peak_ops_per_s' must map dtypes to ops/s and include fp32")
    for d, v in peaks.items():
        if d not in DTYPES:
            raise ProfileError(f"{where}: field 'peak_ops_per_s.{d}': unknown dtype; allowed: {DTYPES}")
        _positive(where, f"peak_ops_per_s.{d}", v)
    efficiency = _positive(where, "efficiency", data.get("efficiency", 1.0))
    if efficiency > 1:
        raise ProfileError(f"{where}: field 'efficiency' must be in (0, 1], got {efficiency}")
    for key in ("batch_size", "channel_multiple"):
        v = data.get(key, 1)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ProfileError(f"{where}: field '{key}' must be an integer >= 1, got {v!r}")
    sources = data.get("sources", {})
    if not isinstance(sources, dict):
        raise ProfileError(f"{where}: field 'sources' must map a field name to where its number comes from")
    return HardwareProfile(
        name=str(data["name"]),
        kind=data["kind"],
        description=str(data.get("description", "")),
        objective=data["objective"],
        peak_ops_per_s={d: _positive(where, f"peak_ops_per_s.{d}", v) for d, v in peaks.items()},
        memory_bandwidth_bytes_per_s=_positive(where, "memory_bandwidth_bytes_per_s", data[_BW]),
        layer_overhead_s=_positive(where, "layer_overhead_s", data["layer_overhead_s"]),
        efficiency=efficiency,
        batch_size=data.get("batch_size", 1),
        channel_multiple=data.get("channel_multiple", 1),
        sparse_storage=bool(data.get("sparse_storage", True)),
        unstructured_sparsity_speedup=_positive(
            where, "unstructured_sparsity_speedup", data.get("unstructured_sparsity_speedup", 1.0)),
        sources={str(k): str(v) for k, v in sources.items()},
    )  # fmt: skip


def load_profile_file(path: str | Path) -> HardwareProfile:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from exc
    return profile_from_dict(data, where=str(path))


def builtin_profiles() -> dict[str, HardwareProfile]:
    folder = resources.files("autoslim.cost") / "profiles"
    out = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            p = profile_from_dict(yaml.safe_load(entry.read_text()), where=f"builtin:{entry.name}")
            out[p.name] = p
    return out


def get_profile(ref: str) -> HardwareProfile:
    """A built-in profile by name, or a YAML file by path."""
    builtins = builtin_profiles()
    if ref in builtins:
        return builtins[ref]
    if ref.endswith((".yaml", ".yml")) and Path(ref).exists():
        return load_profile_file(ref)
    raise ProfileError(f"unknown profile {ref!r}: built-in ones are {sorted(builtins)}, or give a YAML path")
