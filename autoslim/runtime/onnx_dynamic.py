"""ONNX graphs for ``quantize`` with ``calibration="dynamic"``: int8 weights, int8 activations scaled per token at
run time, multiplied by ``MatMulInteger`` (int8 x int8 -> int32) in onnxruntime.

::

    from autoslim.runtime.onnx_dynamic import export_dynamic, is_dynamic

    if is_dynamic(model):  # a model built by a plan whose quantize step is dynamic
        out = export_dynamic(model, task.example_inputs, "deploy/model.int8.onnx")

onnxruntime's own ``quantize_dynamic`` scales a whole input tensor at once (one scale per batch), which keeps
less of a transformer's accuracy than per-token scales (MiniLM w8/a8: 0.9934 cosine per sentence vs 0.9974 per
token) and is not what the search simulated. So each dynamically quantized Linear layer is swapped for
:class:`DynamicInt8Linear` before the (TorchScript) export, whose forward writes the graph the simulation
computes: ``s = max|x| / 127`` per row, ``q = int8(clip(round(x / s)))``, ``MatMulInteger(q, W_int8)``, then
``y = float(acc) * w_scale * s + bias``. The activations are symmetric int8 levels stored as uint8 with zero
point 128, which onnxruntime runs on its u8s8 kernels (s8s8 takes a generic path 20x slower). On x86 hosts with
AVX2 but no VNNI those kernels can saturate (``vpmaddubsw`` sums pairs into int16), as onnxruntime documents for
its own u8s8 models: there the export's accuracy check (artifact vs. record) is what says whether it held.

Weights are stored as their simulated integer levels: a layer rounded to 2-8 bits on a symmetric per-channel grid
(or per tensor, ``per_channel=False``) is written exactly (the levels of a 4-bit layer in an int8 container); a
layer on another grid (``symmetric=False``) is rounded once more to int8 symmetric, and said so in the returned
precision (``exact: false``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoslim.cost.annotation import annotation_of
from autoslim.nn_utils import weight_layers
from autoslim.runtime.onnx_int8 import export_onnx, strip_autoslim

OPSET = 17  # MatMulInteger (opset 10) with ReduceMax taking axes as an attribute


A_ZERO_POINT = 128  # int8 levels -127..127 shifted into uint8 1..255: onnxruntime's fast u8s8 kernels


class _MatMulInteger(torch.autograd.Function):
    """(uint8 - 128) x int8 -> int32 matrix product, exported as ONNX ``MatMulInteger`` with ``a_zero_point=128``."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # float64 holds every 8-bit x 8-bit sum over < 2**37 terms exactly; CPU matmul has no int8 kernel
        shifted = a.to(torch.float64) - A_ZERO_POINT
        return torch.matmul(shifted, b.to(torch.float64)).to(torch.int32)

    @staticmethod
    def symbolic(g: Any, a: Any, b: Any) -> Any:
        zero_point = g.op("Constant", value_t=torch.tensor(A_ZERO_POINT, dtype=torch.uint8))
        return g.op("MatMulInteger", a, b, zero_point)


class DynamicInt8Linear(nn.Module):
    """A Linear layer with int8 weight levels and per-token dynamic int8 inputs (the graph ``export_dynamic`` writes).

    ``bits`` is the grid the weights were simulated on (2-8): their levels ``w / scale`` are integers in
    ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]``, stored as int8."""

    def __init__(self, linear: nn.Linear, bits: int, *, per_channel: bool = True) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        qmax = 2 ** (min(bits, 8) - 1) - 1
        amax = w.abs().amax(dim=1) if per_channel else w.abs().amax().expand(w.shape[0])
        scale = amax.clamp_min(1e-12) / qmax
        levels = (w / scale[:, None]).round().clamp(-qmax, qmax)
        self.exact = bool(torch.allclose(levels * scale[:, None], w, rtol=1e-5, atol=1e-8))
        self.register_buffer("weight_int8", levels.to(torch.int8).t().contiguous())  # (in, out)
        self.register_buffer("weight_scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-8) / 127.0
        # uint8 with zero point 128, not int8: onnxruntime 1.32 runs s8s8 MatMulInteger on a slow generic path
        # (2.1 ms vs 0.10 ms u8s8 for a 30 x 384 x 1536 product, 1 thread, on this project's x86 machine)
        q = (torch.clamp(torch.round(x / s), -127.0, 127.0) + A_ZERO_POINT).to(torch.uint8)
        # the weight scale first: onnxruntime fuses MatMulInteger -> Cast -> Mul into MatMulIntegerToFloat, which
        # gets a combined (token x channel) scale wrong (1.32, level EXTENDED); a per-column one it applies exactly
        y = _MatMulInteger.apply(q, self.weight_int8).to(x.dtype) * self.weight_scale * s
        return y + self.bias if self.bias is not None else y


class Int8Embedding(nn.Module):
    """An embedding table stored as its simulated per-row levels in int8 (``embedding_bits`` <= 8): ``Gather`` on
    the int8 table, then each row's scale, so the file holds the bytes the cost model priced."""

    def __init__(self, table: nn.Embedding, bits: int) -> None:
        super().__init__()
        w = table.weight.detach().float()
        qmax = 2 ** (bits - 1) - 1
        scale = w.abs().amax(dim=1).clamp_min(1e-12) / qmax
        self.register_buffer("weight_int8", (w / scale[:, None]).round().clamp(-qmax, qmax).to(torch.int8))
        self.register_buffer("row_scale", scale)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        table, scale = self.weight_int8, self.row_scale
        assert isinstance(table, torch.Tensor) and isinstance(scale, torch.Tensor)
        return torch.nn.functional.embedding(ids, table).to(scale.dtype) * torch.nn.functional.embedding(
            ids, scale[:, None]
        )


class _FakeQuantLinear(nn.Module):
    """A layer kept in float (weights wider than 8 bits) whose input still sees the per-token rounding."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-8) / 127.0
        return self.linear(torch.clamp(torch.round(x / s), -127.0, 127.0) * s)


@dataclass
class DynamicExport:
    path: Path
    layers: list[dict[str, Any]] = field(default_factory=list)  # name, simulated bits, storage, exact

    def to_dict(self) -> dict[str, Any]:
        linear = [layer for layer in self.layers if layer["kind"] == "linear"]
        int8 = sum(layer["storage"] == "int8" for layer in linear)
        summary = f"int8 weights x per-token dynamic int8 activations on {int8} layers"
        if int8 < len(linear):
            summary += f", float on {len(linear) - int8}"
        if tables := len(self.layers) - len(linear):
            summary += f", {tables} int8 embedding tables"
        return {"summary": summary, "layers": self.layers, "path": str(self.path)}


def is_dynamic(model: nn.Module) -> bool:
    """Whether some weight layer of ``model`` was quantized with per-token dynamic activations."""
    return any(annotation_of(m).act_dynamic for _, m in weight_layers(model))


def dynamic_model(model: nn.Module) -> tuple[nn.Module, list[dict[str, Any]]]:
    """A stripped copy of ``model`` whose dynamically quantized Linear layers compute in int8 (what the ONNX graph
    holds), and a record per swapped layer."""
    notes = {name: annotation_of(m) for name, m in weight_layers(model)}
    tables = {name: annotation_of(m) for name, m in model.named_modules() if isinstance(m, nn.Embedding)}
    out = strip_autoslim(model)  # a copy
    layers: list[dict[str, Any]] = []
    for name, m in list(weight_layers(out)):
        note = notes.get(name)
        if note is None or not note.act_dynamic or not isinstance(m, nn.Linear):
            continue
        bits = int(note.weight_bits)
        swap: nn.Module = DynamicInt8Linear(m, bits, per_channel=note.per_channel) if bits <= 8 else _FakeQuantLinear(m)
        exact = getattr(swap, "exact", True)
        storage = "int8" if bits <= 8 else "float32"
        layers.append({"name": name, "kind": "linear", "bits": bits, "storage": storage, "exact": exact})
        parent, _, attr = name.rpartition(".")
        setattr(out.get_submodule(parent) if parent else out, attr, swap)
    # embedding tables (quantize's embedding_bits) as their int8 levels too
    for name, m in list(out.named_modules()):
        note = tables.get(name)
        if note is not None and note.weight_bits <= 8 and type(m) is nn.Embedding and m.max_norm is None:
            layers.append({"name": name, "kind": "embedding", "bits": int(note.weight_bits), "storage": "int8",
                           "exact": True})  # fmt: skip
            parent, _, attr = name.rpartition(".")
            setattr(out.get_submodule(parent) if parent else out, attr, Int8Embedding(m, int(note.weight_bits)))
    return out.eval(), layers


def export_dynamic(model: nn.Module, example_inputs: Any, path: str | Path) -> DynamicExport:
    """Write ``model`` (as built by its plan, fake quantization and annotations in place) as an ONNX graph with
    ``MatMulInteger`` layers and per-token dynamic activation scales."""
    swapped, layers = dynamic_model(model)
    export_onnx(swapped, example_inputs, path, opset=OPSET)
    return DynamicExport(Path(path), layers)
