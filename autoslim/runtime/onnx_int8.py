"""Real int8 execution: a plan's float model → ONNX → onnxruntime static int8 (QDQ) → logits and accuracy.

The ``quantize`` technique only *simulates* int8 (rounded float weights, fake-quantized activations). This module
runs the same plan for real, to check that the simulation predicts it::

    from autoslim.runtime.onnx_int8 import build_float_model, int8_session, session_accuracy

    model = build_float_model(plan, task)              # the plan minus its numeric steps (QAT-trained if asked)
    session = int8_session(model, task, "/tmp/model")  # writes model.fp32.onnx and model.int8.onnx
    print(session_accuracy(session, task.val))

Numerics (which the simulation mirrors): QDQ format, int8 weights symmetric per output channel (-127..127),
8-bit activations asymmetric per tensor on min/max ranges calibrated on the task's calibration inputs. The
exporter folds batch norm into the convolutions and onnxruntime folds a ReLU into the quantized op before it.
Activations default to uint8 (U8S8) rather than onnxruntime's int8 default (S8S8): the two grids are the same up to
a shift of the zero point by 128, so accuracy is identical, but onnxruntime 1.2x's CPU provider turns every QDQ
Conv into a QLinearConv only for U8S8 (with S8S8 most convs stay DequantizeLinear → float Conv → QuantizeLinear),
measured ~3x faster at batch 256 on an AVX-512 VNNI host. On AVX2 hosts without VNNI, U8S8 kernels can saturate
16-bit intermediates; pass ``activation_type="int8"`` there.

The model is exported with the TorchScript exporter (``dynamo=False``): the default dynamo exporter needs the
``onnxscript`` package, and the TorchScript one handles every model of the built-in tasks in well under a second.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoslim.evaluate import Metric, accuracy
from autoslim.nn_utils import batch_size_of, call_model, take
from autoslim.plan import CompressionPlan
from autoslim.tasks import Task
from autoslim.techniques import list_techniques
from autoslim.techniques.qat import strip_fake_quant

OPSET = 17
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
ACTIVATION_TYPES = ("uint8", "int8", "uint16")  # uint16: 16-bit activations (opset 21; float kernels in between)


def _ort() -> Any:
    try:
        import onnxruntime
        import onnxruntime.quantization
    except ImportError as exc:
        raise ImportError("real int8 execution needs onnx and onnxruntime: pip install onnx onnxruntime") from exc
    return onnxruntime


def build_float_model(
    plan: CompressionPlan | dict[str, Any],
    task: Task,
    *,
    seed: int = 0,
    cache: dict[str, Any] | None = None,
    legs: list[float] | None = None,
) -> nn.Module:
    """The plan's model without its numeric steps (the runtime quantizes), stripped of autoslim additions.

    Same code path as :func:`autoslim.trial.run_trial`; a skipped step's ``fine_tune_wrapper`` still applies (a
    ``quantize`` step with ``mode="qat"`` still makes the fine-tune quantization-aware). ``legs``: a continued
    multi-fidelity trial's ``fine_tune_legs`` (see :func:`autoslim.trial.build_model`).
    """
    from autoslim.trial import build_model  # trial imports the cost model; keep this module light to import

    if isinstance(plan, dict):
        plan = CompressionPlan.from_dict(plan)
    model, _ctx = build_model(plan, task, seed=seed, cache=cache, skip=list_techniques(role="numeric"), legs=legs)
    return strip_autoslim(model)


def strip_autoslim(model: nn.Module) -> nn.Module:
    """A copy of ``model`` without fake-quant hooks, QAT forwards and ``autoslim_*`` attributes (the cost
    annotation among them) or buffers."""
    model = strip_fake_quant(copy.deepcopy(model))
    for m in model.modules():
        for name in [n for n in m._buffers if n.startswith("autoslim_")]:
            del m._buffers[name]
        for name in [n for n in vars(m) if n.startswith("autoslim_")]:
            delattr(m, name)
    return model.eval()


class _Logits(nn.Module):
    """Positional tensors in, one logits tensor out: what an ONNX graph needs (dict inputs become named inputs)."""

    def __init__(self, model: nn.Module, keys: list[str] | None) -> None:
        super().__init__()
        self.model, self.keys = model, keys

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return call_model(self.model, dict(zip(self.keys, args, strict=True)) if self.keys else args)


def _as_arrays(inputs: Any) -> list[torch.Tensor]:
    if isinstance(inputs, dict):
        return list(inputs.values())
    if isinstance(inputs, (tuple, list)):
        return list(inputs)
    return [inputs]


def _input_names(inputs: Any) -> list[str]:
    if isinstance(inputs, dict):
        return list(inputs)
    return [f"input_{i}" for i in range(len(_as_arrays(inputs)))]


def _dynamic_axes(inputs: Any) -> dict[str, dict[int, str]]:
    """The batch dimension of every input, and the sequence dimension of 2-D integer inputs (token ids, attention
    masks): a DataLoader of text pads each batch to its own longest sentence. Images and other inputs keep their
    shapes, so a wrongly shaped input still fails with a clear error."""
    axes: dict[str, dict[int, str]] = {}
    for name, x in zip(_input_names(inputs), _as_arrays(inputs), strict=True):
        axes[name] = {0: "batch"}
        if isinstance(x, torch.Tensor) and x.dim() == 2 and not x.is_floating_point():
            axes[name][1] = "sequence"
    return axes


def export_onnx(model: nn.Module, example_inputs: Any, path: str | Path, *, opset: int = OPSET) -> Path:
    """Export ``model`` (float, eval mode) with a dynamic batch dimension; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = _input_names(example_inputs)
    wrapper = _Logits(model.eval(), names if isinstance(example_inputs, dict) else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation on every call
        torch.onnx.export(
            wrapper,
            tuple(_as_arrays(example_inputs)),
            str(path),
            dynamo=False,
            input_names=names,
            output_names=["logits"],
            dynamic_axes={**_dynamic_axes(example_inputs), "logits": {0: "batch"}},
            opset_version=opset,
        )
    return path


def _feeds(inputs: Any, batch_size: int) -> Iterator[dict[str, Any]]:
    names = _input_names(inputs)
    n = batch_size_of(inputs)
    for start in range(0, n, batch_size):
        chunk = _as_arrays(take(inputs, slice(start, start + batch_size)))
        yield {k: v.detach().cpu().numpy() for k, v in zip(names, chunk, strict=True)}


def quantize_onnx(
    fp32_path: str | Path,
    int8_path: str | Path,
    calibration_inputs: Any,
    *,
    per_channel: bool = True,
    calibrate_method: str = "minmax",
    activation_type: str = "uint8",
    batch_size: int = 128,
    extra_options: dict[str, Any] | None = None,
    nodes_to_exclude: Sequence[str] = (),
) -> Path:
    """Static quantization (QDQ, int8 weights, 8-bit activations) calibrated on ``calibration_inputs``.

    ``extra_options`` and ``nodes_to_exclude`` go to onnxruntime's ``quantize_static`` as they are: the hook
    :mod:`autoslim.runtime.onnx_mixed` uses to give each weight its own type, scales and zero points
    (``TensorQuantOverrides``) on the same calibration and graph rewriting as the int8 path.
    """
    if calibrate_method not in CALIBRATION_METHODS:
        raise ValueError(f"calibrate_method must be one of {CALIBRATION_METHODS}, got {calibrate_method!r}")
    if activation_type not in ACTIVATION_TYPES:
        raise ValueError(f"activation_type must be one of {ACTIVATION_TYPES}, got {activation_type!r}")
    _ort()
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = _feeds(calibration_inputs, batch_size)

        def get_next(self) -> dict[str, Any] | None:
            return next(self.batches, None)

    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}.get(
        calibrate_method, CalibrationMethod.Entropy
    )
    int8_path = Path(int8_path)
    # onnxruntime's quantizer logs advice (pre-processing, bias initializers) on the root logger for every model.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_static(
            str(fp32_path),
            str(int8_path),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            # asymmetric either way: ActivationSymmetric defaults to False
            activation_type={"uint8": QuantType.QUInt8, "int8": QuantType.QInt8, "uint16": QuantType.QUInt16}[
                activation_type
            ],
            weight_type=QuantType.QInt8,  # symmetric: WeightSymmetric defaults to True for int8
            calibrate_method=method,
            nodes_to_exclude=list(nodes_to_exclude),
            extra_options=extra_options,
        )
    finally:
        root.setLevel(level)
    return int8_path


def session(path: str | Path, *, threads: int = 1) -> Any:
    """An onnxruntime CPU session with a fixed thread count (1 by default: stable latency, fair comparisons)."""
    ort = _ort()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # QDQ → integer kernels
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def int8_session(
    model: nn.Module,
    task: Task,
    out_dir: str | Path,
    *,
    calibrate_method: str = "minmax",
    activation_type: str = "uint8",
    threads: int = 1,
) -> Any:
    """Export ``model`` and quantize it on ``task``'s calibration inputs; returns a session on the int8 model."""
    out_dir = Path(out_dir)
    fp32 = export_onnx(strip_autoslim(model), task.example_inputs, out_dir / "model.fp32.onnx")
    int8 = out_dir / "model.int8.onnx"
    calibration = task.calibration_inputs()
    quantize_onnx(fp32, int8, calibration, calibrate_method=calibrate_method, activation_type=activation_type)
    return session(int8, threads=threads)


def predict_session(sess: Any, inputs: Any, *, batch_size: int = 1024) -> torch.Tensor:
    """Logits of ``sess`` for all of ``inputs``, in batches."""
    return torch.cat([torch.from_numpy(sess.run(["logits"], feed)[0]) for feed in _feeds(inputs, batch_size)])


def session_accuracy(sess: Any, data: Any, metric: Metric = accuracy) -> float:
    """``metric`` of the onnxruntime session on an in-memory ``(inputs, targets)`` pair."""
    inputs, targets = data
    return metric(predict_session(sess, inputs), targets)


class SessionModel(nn.Module):
    """An onnxruntime session that looks like a model to :func:`autoslim.evaluate.score` (any data, any metric)."""

    def __init__(self, sess: Any) -> None:
        super().__init__()
        self.sess = sess
        self.names = [i.name for i in sess.get_inputs()]

    def forward(self, *args: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
        tensors = [kwargs[n] for n in self.names] if kwargs else list(args)
        feed = {n: t.detach().cpu().numpy() for n, t in zip(self.names, tensors, strict=True)}
        return torch.from_numpy(self.sess.run(["logits"], feed)[0])


def session_score(sess: Any, task: Task) -> float:
    """The task's metric of the onnxruntime session on its validation split (DataLoaders and all)."""
    from autoslim.evaluate import score

    return score(SessionModel(sess), task)
