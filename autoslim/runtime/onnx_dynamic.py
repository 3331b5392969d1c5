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
``y = float(acc) * s * w_scale + bias``. Symmetric int8 on both sides keeps zero points out and runs the s8s8
kernels, which do not saturate on AVX2 hosts the way u8s8 ``vpmaddubsw`` can.

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


class _MatMulInteger(torch.autograd.Function):
    """int8 x int8 -> int32 matrix product, exported as ONNX ``MatMulInteger``."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # float64 holds every int8 x int8 sum over < 2**37 terms exactly; CPU matmul has no int8 kernel
        return torch.matmul(a.to(torch.float64), b.to(torch.float64)).to(torch.int32)

    @staticmethod
    def symbolic(g: Any, a: Any, b: Any) -> Any:
        return g.op("MatMulInteger", a, b)


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
        q = torch.clamp(torch.round(x / s), -127.0, 127.0).to(torch.int8)
        # the weight scale first: onnxruntime fuses MatMulInteger -> Cast -> Mul into MatMulIntegerToFloat, which
        # gets a combined (token x channel) scale wrong (1.32, level EXTENDED); a per-column one it applies exactly
        y = _MatMulInteger.apply(q, self.weight_int8).to(x.dtype) * self.weight_scale * s
        return y + self.bias if self.bias is not None else y


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
        int8 = sum(layer["storage"] == "int8" for layer in self.layers)
        summary = f"int8 weights x per-token dynamic int8 activations on {int8} layers"
        if int8 < len(self.layers):
            summary += f", float on {len(self.layers) - int8}"
        return {"summary": summary, "layers": self.layers, "path": str(self.path)}


def is_dynamic(model: nn.Module) -> bool:
    """Whether some weight layer of ``model`` was quantized with per-token dynamic activations."""
    return any(annotation_of(m).act_dynamic for _, m in weight_layers(model))


def dynamic_model(model: nn.Module) -> tuple[nn.Module, list[dict[str, Any]]]:
    """A stripped copy of ``model`` whose dynamically quantized Linear layers compute in int8 (what the ONNX graph
    holds), and a record per swapped layer."""
    notes = {name: annotation_of(m) for name, m in weight_layers(model)}
    out = strip_autoslim(model)  # a copy
    layers: list[dict[str, Any]] = []
    for name, m in list(weight_layers(out)):
        note = notes.get(name)
        if note is None or not note.act_dynamic or not isinstance(m, nn.Linear):
            continue
        bits = int(note.weight_bits)
        swap: nn.Module = DynamicInt8Linear(m, bits, per_channel=note.per_channel) if bits <= 8 else _FakeQuantLinear(m)
        exact = getattr(swap, "exact", True)
        layers.append({"name": name, "bits": bits, "storage": "int8" if bits <= 8 else "float32", "exact": exact})
        parent, _, attr = name.rpartition(".")
        setattr(out.get_submodule(parent) if parent else out, attr, swap)
    return out.eval(), layers


def export_dynamic(model: nn.Module, example_inputs: Any, path: str | Path) -> DynamicExport:
    """Write ``model`` (as built by its plan, fake quantization and annotations in place) as an ONNX graph with
    ``MatMulInteger`` layers and per-token dynamic activation scales."""
    swapped, layers = dynamic_model(model)
    export_onnx(swapped, example_inputs, path, opset=OPSET)
    return DynamicExport(Path(path), layers)
