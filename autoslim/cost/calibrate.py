"""``autoslim profiles calibrate``: measure this machine and write a profile YAML for it.

Microbenchmarks run on the same backend as host measurement (onnxruntime when installed, else torch), one thread:
  * per dtype (fp32, int8): 16 residual probe CNNs (1-D and 2-D, 8-96 channels, 1-4 blocks, small and large
    inputs) are timed and a non-negative least-squares fit (on relative error) of
    ``time = overhead x layers + ops per kernel family / its rate + activation bytes / activation rate`` gives
    the per-layer overhead, a rate per kernel family (linear, conv1d, conv2d) and the activation rate (4 MLP probes
    pin down the linear rate);
  * memory bandwidth: four 2048x2048 Linear layers at batch 1 (64 MB of weights: streamed from DRAM);
  * cache bandwidth: four 256x256 Linear layers (1 MB: stays in L2), cache size from /sys.
"""

from __future__ import annotations

import itertools
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from autoslim.cost.layers import layer_stats
from autoslim.cost.measure import have_onnxruntime, measure_latency_ms
from autoslim.cost.profiles import HardwareProfile, profile_from_dict, profile_to_dict, user_profile_dir


def _chain(n: int, make: Any) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(*[make() for _ in range(n)]).eval()


def _time_ms(model: nn.Module, x: torch.Tensor, backend: str, *, int8: bool = False) -> float:
    return measure_latency_ms(
        model, x, backend=backend, int8=int8, calibration_inputs=x.repeat(8, *[1] * (x.dim() - 1))
    )[0]


def _cache_bytes() -> float | None:
    """The largest per-core cache (L2 on most CPUs), from Linux sysfs."""
    best = None
    for idx in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            level, size = int((idx / "level").read_text()), (idx / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        if level == 2 and size.endswith("K"):
            best = float(size[:-1]) * 1024
    return best


def _memory_bytes() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class _Block(nn.Module):
    """A residual block like those of real small models: its add and activations cost dispatches too."""

    def __init__(self, conv: type[nn.Conv1d] | type[nn.Conv2d], bn: type[nn.Module], c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv(c, c, 3, padding=1, bias=False), bn(c), nn.ReLU(),
                                  conv(c, c, 3, padding=1, bias=False), bn(c))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


def _probes() -> list[tuple[nn.Module, torch.Tensor]]:
    """Residual CNNs, 1-D and 2-D, of several widths and depths: the shapes the searched models take."""
    torch.manual_seed(0)
    out: list[tuple[nn.Module, torch.Tensor]] = []
    for shape in ((1, 4, 32), (1, 4, 256), (1, 3, 8, 8), (1, 3, 24, 24)):
        conv, bn, pool = (nn.Conv1d, nn.BatchNorm1d, nn.AdaptiveAvgPool1d) if len(shape) == 3 else (
            nn.Conv2d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d)  # fmt: skip
        for width, blocks in ((8, 1), (16, 4), (48, 2), (96, 1)):
            layers: list[nn.Module] = [conv(shape[1], width, 3, padding=1), nn.ReLU()]
            layers += [_Block(conv, bn, width) for _ in range(blocks)]
            layers += [pool(1), nn.Flatten(), nn.Linear(width, 10)]
            out.append((nn.Sequential(*layers).eval(), torch.randn(*shape)))
    for widths in ((128, 128, 128, 128), (512, 512, 512), (1280, 128, 10), (256, 1024, 256)):
        mlp = [m for a, b in itertools.pairwise(widths) for m in (nn.Linear(a, b), nn.ReLU())][:-1]
        out.append((nn.Sequential(*mlp).eval(), torch.randn(1, widths[0])))
    return out


_FAMILIES = ("linear", "conv1d", "conv2d")


@dataclass(frozen=True)
class _Fit:
    families: dict[str, dict[str, float]]  # family -> {ops_per_s, overhead_s, activation_bytes_per_s}
    weight_bytes_per_s: float


def _features(stats: list, width: float) -> list[float]:
    per = []
    for f in _FAMILIES:
        layers = [s for s in stats if s.kind == f]
        per += [
            float(len(layers)),
            2.0 * sum(s.macs for s in layers),
            width * sum(s.in_elems + s.out_elems for s in layers),
        ]
    return [*per, width * sum(s.weight_numel for s in stats)]


def _fit(rows: list[tuple[list[float], float]]) -> _Fit:
    """Non-negative least squares on relative error, per kernel family f:
    t = sum_f (overhead_f x layers_f + ops_f / rate_f + activation bytes_f / activation rate_f)
        + weight bytes / weight rate (batch-1 Linear layers are bound by reading their weights, not by math)."""
    from scipy.optimize import nnls

    a = np.array([[x / t for x in feats] for feats, t in rows])
    coef, _ = nnls(a, np.ones(len(rows)))
    families = {}
    for k, f in enumerate(_FAMILIES):
        o, inv_rate, inv_act = coef[3 * k : 3 * k + 3]
        # A zero coefficient means the probes could not see that cost: keep it free but finite.
        families[f] = {"overhead_s": float(o), "ops_per_s": 1.0 / max(float(inv_rate), 1e-15),
                       "activation_bytes_per_s": 1.0 / max(float(inv_act), 1e-15)}  # fmt: skip
    return _Fit(families, 1.0 / max(float(coef[-1]), 1e-15))


def calibrate(name: str = "host", *, backend: str = "auto") -> HardwareProfile:
    """Measure this machine; returns the profile (see :func:`save_profile`).

    Per dtype, a fit over residual probe CNNs gives the per-layer overhead (which absorbs the adds, activations
    and, for int8, the (de)quantize steps between layers) and the compute rate; streaming Linear layers give the
    memory and cache bandwidths.
    """
    if backend == "auto":
        backend = "onnxruntime" if have_onnxruntime() else "torch"
    rates: dict[str, float] = {}
    overheads: dict[str, float] = {}
    act_rates: dict[str, float] = {}
    families: dict[str, dict[str, dict[str, float]]] = {f: {} for f in _FAMILIES}
    weight_rates: dict[str, float] = {}
    for dtype, int8 in (("fp32", False), ("int8", True)):
        if int8 and backend != "onnxruntime":
            continue  # eager torch has no int8 convolution kernels to measure
        rows = []
        width = 1.0 if int8 else 4.0
        for model, x in _probes():
            stats = layer_stats(model, x)
            seconds = _time_ms(model, x, backend, int8=int8) * 1e-3
            rows.append((_features(stats, width), seconds))
        fit = _fit(rows)
        weight_rates[dtype] = fit.weight_bytes_per_s
        for f, numbers in fit.families.items():
            for key, value in numbers.items():
                families[f].setdefault(key, {})[dtype] = value
        # Profile-wide numbers (for layer kinds the probes did not cover): the convolution families' average.
        convs = [fit.families[f] for f in ("conv1d", "conv2d")]
        rates[dtype] = float(np.mean([c["ops_per_s"] for c in convs]))
        overheads[dtype] = float(np.mean([c["overhead_s"] for c in convs]))
        act_rates[dtype] = float(np.mean([c["activation_bytes_per_s"] for c in convs]))

    def streamed(width: int) -> float:
        lin = _chain(4, lambda: nn.Linear(width, width, bias=False))
        seconds = _time_ms(lin, torch.randn(1, width), backend) * 1e-3 - 4 * overheads["fp32"]
        return 4 * width * width * 4 / max(seconds, 1e-9)

    bandwidth = streamed(2048)
    cache = _cache_bytes()
    stamp = (f"measured by `autoslim profiles calibrate` on {_cpu_name()} ({platform.machine()}), "
             f"{time.strftime('%Y-%m-%d')}, backend {backend}, 1 thread")  # fmt: skip
    data: dict[str, Any] = {
        "name": name,
        "kind": "cpu",
        "description": f"this machine: {_cpu_name()}, 1 thread, {backend}",
        "objective": "latency_ms",
        "batch_size": 1,
        "peak_ops_per_s": rates,
        "efficiency": 1.0,  # rates are fitted on small layers already
        "memory_bandwidth_bytes_per_s": bandwidth,
        "layer_overhead_s": overheads["fp32"],
        "overhead_by_dtype": overheads,
        "activation_bytes_per_s": act_rates,
        "kernel_families": families,
        "channel_multiple": 1,  # the fit absorbs vector-width effects
        "measure_latency": True,
        "sources": {k: stamp for k in ("peak_ops_per_s", "memory_bandwidth_bytes_per_s", "layer_overhead_s")},
    }
    if cache:
        # Weights of the probes sit in cache: the fitted weight rate is the cache bandwidth the runtime reaches.
        data.update(cache_bytes=cache, cache_bandwidth_bytes_per_s=max(weight_rates["fp32"], bandwidth))
        data["sources"]["cache_bytes"] = "Linux sysfs, per-core L2"
        data["sources"]["cache_bandwidth_bytes_per_s"] = "fitted weight-read rate of the probes (cache resident)"
    if (mem := _memory_bytes()) is not None:
        data["memory_capacity_bytes"] = mem
    return profile_from_dict(data, where=f"calibrated:{name}")


def save_profile(profile: HardwareProfile, path: Path | None = None) -> Path:
    path = path or user_profile_dir() / f"{profile.name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(profile_to_dict(profile), sort_keys=False))
    return path


def host_profile(*, refresh: bool = False) -> HardwareProfile:
    """The ``host`` profile: calibrated once per machine and cached in the user profile folder."""
    path = user_profile_dir() / f"host-{platform.node() or 'local'}-{os.cpu_count()}.yaml"
    if path.exists() and not refresh:
        from autoslim.cost.profiles import load_profile_file

        return load_profile_file(path)
    profile = calibrate("host")
    save_profile(profile, path)
    return profile
