"""Hardware profiles: YAML data (never constants in code) validated into a frozen ``HardwareProfile``.

Built-in profiles live in ``autoslim/cost/profiles/*.yaml``; a user profile is any YAML file with the same
fields, passed by path (``autoslim profiles calibrate`` writes one for the machine it runs on). Every built-in
cites the sources of its numbers under ``sources:``. Errors name the file and the field.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

DTYPES = ("fp32", "fp16", "int8", "int4")
DTYPE_ALIASES = {"bf16": "fp16"}  # same width and tensor-core rate on every profile we ship
KINDS = ("gpu", "cpu", "npu", "mcu")
OBJECTIVES = ("latency_ms", "model_bytes", "energy_mj", "peak_activation_bytes")


class ProfileError(ValueError):
    """A profile file is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    kind: str
    objective: str  # the cost this profile's Pareto front is drawn against
    peak_ops_per_s: dict[str, float]  # per dtype; 2 ops per multiply-accumulate
    memory_bandwidth_bytes_per_s: float
    layer_overhead_s: float  # per-layer dispatch / kernel-launch time
    description: str = ""
    efficiency: float = 1.0  # fraction of peak compute that layers of this size reach in practice
    batch_size: int = 1
    channel_multiple: int = 1  # channel counts round up to this (vector / tensor-core width)
    sparse_storage: bool = True  # weights may be stored with a bitmask sparse encoding where it is smaller
    unstructured_sparsity_speedup: float = 1.0  # >1 only where kernels skip random zeros
    semi_structured: str | None = None  # an N:M pattern with fast kernels, e.g. "2:4" on Ampere GPUs
    semi_structured_speedup: float = 1.0  # speed-up of the compute of layers in that pattern
    cache_bytes: float | None = None  # on-chip cache / SRAM: weights that fit are read at cache bandwidth
    cache_bandwidth_bytes_per_s: float | None = None
    memory_capacity_bytes: float | None = None  # RAM: activations (+ weights if resident) must fit
    storage_capacity_bytes: float | None = None  # flash / disk: the stored model must fit
    weights_in_memory: bool = True  # False where weights execute in place from flash (microcontrollers)
    overhead_by_dtype: dict[str, float] = field(default_factory=dict)  # per-dtype override of layer_overhead_s
    activation_bytes_per_s: dict[str, float] = field(default_factory=dict)  # fitted by calibrate, per dtype
    # Measured numbers per kernel family (linear, conv1d, conv2d, conv3d): a runtime's int8 2-D convolution can be
    # slower than its 1-D convolution or its GEMM. {family: {ops_per_s | overhead_s | activation_bytes_per_s:
    # {dtype: value}}}; used as is (effective, measured) where present, else the profile-wide numbers.
    kernel_families: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    measure_latency: bool = False  # True for the machine running the search: trials are also timed for real
    energy_per_op_j: dict[str, float] = field(default_factory=dict)  # per dtype; gives the energy metric
    energy_per_byte_j: float | None = None  # per byte moved from memory
    sources: dict[str, str] = field(default_factory=dict)

    def rate(self, dtype: str, layer_kind: str | None = None) -> tuple[str, float]:
        """The dtype a layer really runs in here (falling back int4 -> int8 -> fp16 -> fp32) and its ops/s."""
        chain = DTYPES[DTYPES.index(dtype) :: -1] if dtype in DTYPES else ("fp32",)
        for d in chain:
            if d in self.peak_ops_per_s:
                measured = self._family(layer_kind, "ops_per_s", d)
                return d, measured if measured is not None else self.peak_ops_per_s[d] * self.efficiency
        return "fp32", self.peak_ops_per_s["fp32"] * self.efficiency

    def _family(self, kind: str | None, key: str, dtype: str) -> float | None:
        return self.kernel_families.get(kind or "", {}).get(key, {}).get(dtype)

    def overhead(self, dtype: str, layer_kind: str | None = None) -> float:
        """Per-layer fixed time for a layer running in ``dtype`` (int8 layers also (de)quantize at their edges)."""
        measured = self._family(layer_kind, "overhead_s", dtype)
        return measured if measured is not None else self.overhead_by_dtype.get(dtype, self.layer_overhead_s)

    def activation_rate(self, dtype: str, layer_kind: str | None = None) -> float | None:
        """Fitted rate of the passes over a layer's activations, where the profile was measured."""
        measured = self._family(layer_kind, "activation_bytes_per_s", dtype)
        return measured if measured is not None else self.activation_bytes_per_s.get(dtype)

    @property
    def has_energy(self) -> bool:
        return bool(self.energy_per_op_j) and self.energy_per_byte_j is not None


def _number(where: str, key: str, value: Any, *, positive: bool = True) -> float:
    if isinstance(value, str):  # PyYAML reads 1.5e9 (no exponent sign) as a string
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (positive and value <= 0) or value < 0:
        need = "a positive number" if positive else "a number >= 0"
        raise ProfileError(f"{where}: field '{key}' must be {need}, got {value!r}")
    return float(value)


def _int_at_least_1(where: str, key: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ProfileError(f"{where}: field '{key}' must be an integer >= 1, got {value!r}")
    return value


def _one_of(options: tuple[str, ...]) -> Callable[[str, str, Any], str]:
    def check(where: str, key: str, value: Any) -> str:
        if value not in options:
            raise ProfileError(f"{where}: field '{key}' must be one of {list(options)}, got {value!r}")
        return str(value)

    return check


def _dtype_map(where: str, key: str, value: Any) -> dict[str, float]:
    if not isinstance(value, dict) or not value:
        raise ProfileError(f"{where}: field '{key}' must map dtypes {list(DTYPES)} to numbers")
    out = {}
    for d, v in value.items():
        d = DTYPE_ALIASES.get(d, d)
        if d not in DTYPES:
            raise ProfileError(f"{where}: field '{key}.{d}': unknown dtype; allowed: {list(DTYPES)} (bf16 = fp16)")
        out[d] = _number(where, f"{key}.{d}", v)
    return out


def _overhead_map(where: str, key: str, value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ProfileError(f"{where}: field '{key}' must map dtypes {list(DTYPES)} to numbers")
    out: dict[str, float] = {}
    for d, v in value.items():
        dtype = DTYPE_ALIASES.get(str(d), str(d))
        if dtype not in DTYPES:
            raise ProfileError(f"{where}: field '{key}.{d}': unknown dtype; allowed: {list(DTYPES)}")
        out[dtype] = _number(where, f"{key}.{d}", v, positive=False)
    return out


LAYER_KINDS = ("linear", "conv1d", "conv2d", "conv3d")


FAMILY_FIELDS = ("ops_per_s", "overhead_s", "activation_bytes_per_s")


def _kind_map(where: str, key: str, value: Any) -> dict[str, dict[str, dict[str, float]]]:
    if not isinstance(value, dict) or set(value) - set(LAYER_KINDS):
        raise ProfileError(f"{where}: field '{key}' must map layer kinds {list(LAYER_KINDS)} to their numbers")
    out = {}
    for kind, numbers in value.items():
        if not isinstance(numbers, dict) or set(numbers) - set(FAMILY_FIELDS):
            raise ProfileError(f"{where}: field '{key}.{kind}' must map {list(FAMILY_FIELDS)} to dtype maps")
        out[kind] = {f: _overhead_map(where, f"{key}.{kind}.{f}", v) for f, v in numbers.items()}
    return out


def _pattern(where: str, key: str, value: Any) -> str | None:
    if value is None or value == "none":
        return None
    m = re.fullmatch(r"(\d+):(\d+)", str(value))
    if not m or not 0 < int(m[1]) < int(m[2]):
        raise ProfileError(f"{where}: field '{key}' must be an N:M pattern like '2:4' or 'none', got {value!r}")
    return str(value)


def _bool(where: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ProfileError(f"{where}: field '{key}' must be true or false, got {value!r}")
    return value


def _text(_where: str, _key: str, value: Any) -> str:
    return str(value)


def _sources(where: str, key: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ProfileError(f"{where}: field '{key}' must map a field name to where its number comes from")
    return {str(k): str(v) for k, v in value.items()}


# field -> (validator, required). Optional fields absent from the file keep the dataclass default.
_SCHEMA: dict[str, tuple[Callable[[str, str, Any], Any], bool]] = {
    "name": (_text, True),
    "kind": (_one_of(KINDS), True),
    "objective": (_one_of(OBJECTIVES), True),
    "peak_ops_per_s": (_dtype_map, True),
    "memory_bandwidth_bytes_per_s": (_number, True),
    "layer_overhead_s": (lambda w, k, v: _number(w, k, v, positive=False), True),
    "description": (_text, False),
    "efficiency": (_number, False),
    "batch_size": (_int_at_least_1, False),
    "channel_multiple": (_int_at_least_1, False),
    "sparse_storage": (_bool, False),
    "unstructured_sparsity_speedup": (_number, False),
    "semi_structured": (_pattern, False),
    "semi_structured_speedup": (_number, False),
    "cache_bytes": (_number, False),
    "cache_bandwidth_bytes_per_s": (_number, False),
    "memory_capacity_bytes": (_number, False),
    "storage_capacity_bytes": (_number, False),
    "weights_in_memory": (_bool, False),
    "measure_latency": (_bool, False),
    "overhead_by_dtype": (_overhead_map, False),
    "activation_bytes_per_s": (_dtype_map, False),
    "kernel_families": (_kind_map, False),
    "energy_per_op_j": (_overhead_map, False),  # >= 0 per dtype
    "energy_per_byte_j": (lambda w, k, v: _number(w, k, v, positive=False), False),
    "sources": (_sources, False),
}


def profile_from_dict(data: Any, *, where: str = "<profile>") -> HardwareProfile:
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: a profile must be a mapping of fields")
    unknown = sorted(set(data) - set(_SCHEMA))
    if unknown:
        raise ProfileError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(_SCHEMA)}")
    missing = [k for k, (_, required) in _SCHEMA.items() if required and k not in data]
    if missing:
        raise ProfileError(f"{where}: missing required field(s) {missing}")
    values = {k: _SCHEMA[k][0](where, k, v) for k, v in data.items()}
    if "fp32" not in values["peak_ops_per_s"]:
        raise ProfileError(f"{where}: field 'peak_ops_per_s' must include fp32 (the fallback for every layer)")
    if values.get("efficiency", 1.0) > 1:
        raise ProfileError(f"{where}: field 'efficiency' must be in (0, 1], got {values['efficiency']}")
    if values.get("cache_bytes") and not values.get("cache_bandwidth_bytes_per_s"):
        raise ProfileError(f"{where}: field 'cache_bandwidth_bytes_per_s' is required when cache_bytes is set")
    if values.get("objective") == "energy_mj" and not ("energy_per_op_j" in values and "energy_per_byte_j" in values):
        raise ProfileError(
            f"{where}: field 'objective' is energy_mj but energy_per_op_j / energy_per_byte_j are missing"
        )
    return HardwareProfile(**values)


def profile_to_dict(profile: HardwareProfile) -> dict[str, Any]:
    """The YAML-ready form: ``profile_from_dict(profile_to_dict(p)) == p``."""
    from dataclasses import asdict

    defaults = HardwareProfile(profile.name, profile.kind, profile.objective, {"fp32": 1.0}, 1.0, 0.0)
    out = asdict(profile)
    return {k: v for k, v in out.items() if _SCHEMA[k][1] or v != getattr(defaults, k)}


def load_profile_file(path: str | Path) -> HardwareProfile:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from exc
    return profile_from_dict(data, where=str(path))


def user_profile_dir() -> Path:
    """Where ``autoslim profiles calibrate`` saves profiles: ``$AUTOSLIM_PROFILES`` or ~/.config/autoslim/profiles."""
    import os

    return Path(os.environ.get("AUTOSLIM_PROFILES", Path.home() / ".config" / "autoslim" / "profiles"))


def builtin_profiles() -> dict[str, HardwareProfile]:
    folder = resources.files("autoslim.cost") / "profiles"
    out = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            p = profile_from_dict(yaml.safe_load(entry.read_text()), where=f"builtin:{entry.name}")
            out[p.name] = p
    return out


def get_profile(ref: str) -> HardwareProfile:
    """A built-in profile by name, a calibrated one from the user profile folder, or a YAML file by path."""
    builtins = builtin_profiles()
    if ref in builtins:
        return builtins[ref]
    if ref == "host":  # this machine, calibrated on first use (a few seconds) and cached
        from autoslim.cost.calibrate import host_profile

        return host_profile()
    saved = user_profile_dir() / f"{ref}.yaml"
    if saved.exists():
        return load_profile_file(saved)
    if ref.endswith((".yaml", ".yml")) and Path(ref).exists():
        return load_profile_file(ref)
    raise ProfileError(f"unknown profile {ref!r}: built-in ones are {sorted(builtins)} and host, or give a YAML path")
