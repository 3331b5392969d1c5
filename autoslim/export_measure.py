"""An exported artifact on this machine: its size on disk and its latency in its own runtime, beside the baseline
(the teacher) exported the same way, so "x smaller / x faster" compares like with like.

The cost model's ``model_bytes`` prices weights at their bit widths; the file also holds the graph, names, scales
and zero points, and a 6-bit weight in an 8-bit container: both numbers are worth seeing, and they differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoslim.runtime.artifact_latency import Runner, module_runner, onnx_runner, this_machine, time_interleaved
from autoslim.tasks import Task


def runner(fmt: str, path: Path, task: Task, *, batch: int, module: nn.Module) -> Runner:
    """ONNX formats in ONNX Runtime; TorchScript as ``torch.jit.load`` gives it back; a state dict in the eager
    ``module`` it was saved from (what loading it rebuilds)."""
    if fmt in ("onnx", "onnx-int8"):
        return onnx_runner(path, task.example_inputs, batch=batch)
    if fmt == "torchscript":
        return module_runner(torch.jit.load(str(path)), task.example_inputs, batch=batch)
    return module_runner(module, task.example_inputs, batch=batch)


def measure(fmt: str, task: Task, *, batch: int, artifact: tuple[Path, nn.Module],
            baseline: tuple[Path, nn.Module]) -> dict[str, Any]:  # fmt: skip
    """The manifest's ``measured`` record: the artifact's size and latency, the baseline's, the ratios, the machine.
    ``artifact`` and ``baseline`` are (file, the eager module it was written from)."""
    (path, module), (base_path, base_module) = artifact, baseline
    mine, base = time_interleaved([runner(fmt, path, task, batch=batch, module=module),
                                   runner(fmt, base_path, task, batch=batch, module=base_module)])  # fmt: skip
    size, base_size = path.stat().st_size, base_path.stat().st_size
    return {
        "artifact_bytes": size,
        "latency_ms": mine.median_ms,
        "timing": mine.to_dict(),
        "machine": this_machine(),
        "baseline": {
            "format": fmt,
            "artifact_bytes": base_size,
            "latency_ms": base.median_ms,
            "timing": base.to_dict(),
        },
        "vs_baseline": {"smaller": base_size / size, "faster": base.median_ms / mine.median_ms},
    }
