"""Measured latency on this machine: warm-up, median of repeats, a fixed thread count.

Backend ``onnxruntime`` (the default when the ``onnx`` extra is installed) runs what would be deployed: BN folded,
activations fused, and int8 layers through onnxruntime's real int8 kernels (static QDQ quantization). Backend
``torch`` runs eager PyTorch in float (no int8 kernels: simulated quantization is timed as float).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoslim.cost.annotation import annotation_of
from autoslim.nn_utils import batch_size_of, call_model, take, weight_layers

BACKENDS = ("auto", "onnxruntime", "torch")


def time_median_s(fn: Callable[[], Any], *, warmup: int = 5, min_time_s: float = 0.25, max_repeats: int = 400) -> float:
    """Median wall time of ``fn()`` over at least 10 repeats and ``min_time_s`` seconds (after warm-up)."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < 10 or (time.perf_counter() - start < min_time_s and len(samples) < max_repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def runs_int8(model: nn.Module) -> bool:
    """True when the model's quantized layers would run integer kernels (8-bit weights and activations)."""
    for _, m in weight_layers(model):
        note = annotation_of(m)
        if note.act_bits is not None and note.act_bits <= 8 and note.weight_bits <= 8:
            return True
    return False


def batch_of(example_inputs: Any, batch_size: int) -> Any:
    """``batch_size`` samples built by repeating the example inputs."""
    n = batch_size_of(example_inputs)
    idx = torch.arange(batch_size) % n
    return take(example_inputs, idx)


def have_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def measure_latency_ms(
    model: nn.Module,
    example_inputs: Any,
    *,
    batch_size: int = 1,
    threads: int = 1,
    backend: str = "auto",
    int8: bool | None = None,
    calibration_inputs: Any = None,
) -> tuple[float, str]:
    """Median latency (ms) of one batch on this machine, and the backend that ran it.

    ``int8`` defaults to :func:`runs_int8` (onnxruntime only); ``calibration_inputs`` set the int8 ranges.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        backend = "onnxruntime" if have_onnxruntime() else "torch"
    inputs = batch_of(example_inputs, batch_size)
    if backend == "torch":
        return _measure_torch(model, inputs, threads) * 1e3, "torch"
    int8 = runs_int8(model) if int8 is None else int8
    calib = calibration_inputs if calibration_inputs is not None else example_inputs
    return _measure_ort(model, inputs, threads, int8, calib) * 1e3, "onnxruntime-int8" if int8 else "onnxruntime"


def _measure_torch(model: nn.Module, inputs: Any, threads: int) -> float:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    model.eval()
    try:
        with torch.inference_mode():
            return time_median_s(lambda: call_model(model, inputs))
    finally:
        torch.set_num_threads(previous)


def _measure_ort(model: nn.Module, inputs: Any, threads: int, int8: bool, calibration: Any) -> float:
    from autoslim.runtime.onnx_dynamic import export_dynamic, is_dynamic
    from autoslim.runtime.onnx_int8 import _feeds, export_onnx, quantize_onnx, session, strip_autoslim

    with tempfile.TemporaryDirectory() as tmp:
        if int8 and is_dynamic(model):  # per-token scales at run time: the graph export writes, not a static QDQ one
            path = export_dynamic(model, inputs, Path(tmp) / "model.int8.onnx").path
        else:
            path = export_onnx(strip_autoslim(model), inputs, Path(tmp) / "model.onnx")
        if int8 and not is_dynamic(model):
            path = quantize_onnx(path, Path(tmp) / "model.int8.onnx", calibration)
        sess = session(path, threads=threads)
        feed = next(_feeds(inputs, batch_size_of(inputs)))
        return time_median_s(lambda: sess.run(None, feed))
