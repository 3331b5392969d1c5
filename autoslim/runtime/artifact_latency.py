"""The latency of deployed artifacts on this machine, in the runtime each ships for: an ONNX file in ONNX Runtime
(CPU provider, 1 thread by default), a TorchScript file or a module in PyTorch.

::

    from autoslim.runtime.artifact_latency import onnx_runner, time_interleaved

    mine, teacher = time_interleaved([onnx_runner("deploy/model.int8.onnx", task.example_inputs, batch=1),
                                      onnx_runner("teacher.int8.onnx", task.example_inputs, batch=1)])
    print(mine.median_ms, teacher.median_ms)

A few warm-up runs first (the first calls allocate and pick kernels), then rounds that take turns between the
artifacts, each at least ``MIN_RUNS`` runs and ``MIN_SECONDS`` in all (a model that runs in 20 µs gets thousands),
and the median of every run: taking turns means a burst of load on a shared machine slows both, not just the one
timed at that moment, and the median ignores descheduled runs. The batch is the example inputs repeated to
``batch`` samples (a cost model profile's batch size).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoslim.nn_utils import batch_size_of, call_model, take

WARMUP = 10
ROUNDS = 5
MIN_RUNS = 20  # per artifact, over all rounds
MAX_RUNS = 20_000
MIN_SECONDS = 1.0  # per artifact, over all rounds


@dataclass(frozen=True)
class Timing:
    median_ms: float
    runs: int
    warmup: int
    batch: int
    threads: int
    runtime: str  # e.g. "onnxruntime 1.32.0 (CPUExecutionProvider)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Runner:
    """One call of an artifact on a fixed batch, and how to describe where it ran."""

    run: Callable[[], Any]
    batch: int
    threads: int
    runtime: str


def repeat_to(example_inputs: Any, batch: int) -> Any:
    """``batch`` samples made by repeating the example inputs (as the cost model's host measurement does)."""
    index = torch.arange(batch) % batch_size_of(example_inputs)
    return take(example_inputs, index)


def onnx_runner(path: str | Path, example_inputs: Any, *, batch: int = 1, threads: int = 1) -> Runner:
    from autoslim.runtime.onnx_int8 import _feeds, session

    sess = session(path, threads=threads)
    feed = next(_feeds(repeat_to(example_inputs, batch), batch))
    runtime = f"onnxruntime {metadata.version('onnxruntime')} ({sess.get_providers()[0]})"
    return Runner(lambda: sess.run(None, feed), batch, threads, runtime)


def module_runner(model: nn.Module, example_inputs: Any, *, batch: int = 1, threads: int = 1) -> Runner:
    """A module (eager or TorchScript) in PyTorch on the CPU; time it inside :func:`time_interleaved`, which holds
    the thread count and inference mode."""
    model.eval()
    inputs = repeat_to(example_inputs, batch)
    return Runner(lambda: call_model(model, inputs), batch, threads, f"torch {torch.__version__} (CPU)")


@contextmanager
def _torch_settings(threads: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            yield
    finally:
        torch.set_num_threads(previous)


def time_interleaved(runners: Sequence[Runner]) -> list[Timing]:
    """The median latency of each runner, measured in turns (see the module docstring)."""
    samples: list[list[float]] = [[] for _ in runners]
    threads = max((r.threads for r in runners), default=1)
    with _torch_settings(threads):
        for r in runners:
            for _ in range(WARMUP):
                r.run()
        for _ in range(ROUNDS):
            for r, mine in zip(runners, samples, strict=True):
                start, n = time.perf_counter(), len(mine)
                while len(mine) - n < MAX_RUNS // ROUNDS and (
                    len(mine) - n < MIN_RUNS / ROUNDS or time.perf_counter() - start < MIN_SECONDS / ROUNDS
                ):
                    t0 = time.perf_counter()
                    r.run()
                    mine.append(time.perf_counter() - t0)
    return [Timing(statistics.median(s) * 1e3, len(s), WARMUP, r.batch, r.threads, r.runtime)
            for r, s in zip(runners, samples, strict=True)]  # fmt: skip


def this_machine() -> dict[str, Any]:
    """Where a latency was measured: the CPU's model name (Linux), its architecture, core count and OS."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "machine": platform.machine(), "cores": os.cpu_count(), "os": platform.platform()}
