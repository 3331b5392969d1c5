"""Mixed-precision ONNX: every Conv / Linear weight stored at the bits the ``quantize`` simulation gave it.

:mod:`autoslim.runtime.onnx_int8` lets onnxruntime quantize every weight to int8 again, so a plan whose simulated
weights are 4-bit on some layers ships int8 weights: a bigger file than the cost model prices, and other numerics
than the ones the search measured. Here each weight keeps the simulation's own grid::

    from autoslim.runtime.onnx_mixed import export_mixed

    model, _ctx = build_model(plan, task)                  # the simulated model, cost annotations and all
    out = export_mixed(model, task.example_inputs, task.calibration_inputs(), "deploy/model.int8.onnx")
    print(out.summary())                                   # "int4 on 10 layers, int8 on 2 layers"

Storage: QDQ at opset 21 (the first with INT4 QuantizeLinear / DequantizeLinear). A weight of 2-4 simulated bits
is an INT4 initializer (two per byte) holding only its levels (-qmax..qmax, qmax = 2**(bits-1)-1: a 2-bit layer
uses -1..1), 5-8 bits an INT8 one; both symmetric per output channel (zero point 0) with the simulation's scales,
so DequantizeLinear gives back the simulated weights to float32 rounding. 6 bits is stored as int8 (its 63 levels,
8 bits a weight on disk: the file is bigger than the cost model's 6-bit bytes). 16-bit (fp16) layers stay float32
and outside quantization (``nodes_to_exclude``). onnxruntime 1.32's CPU provider has no int4 convolution: it runs
an INT4 layer as DequantizeLinear -> float Conv / Gemm, an INT8 one as QLinearConv / QGemm (size, not speed, is
what int4 buys there).

Activations: a plan with 8-bit activations gets onnxruntime's static QDQ (uint8 asymmetric per tensor, as the
int8 path), except that each weight layer's input is given the simulation's own scale and zero point (its
``ActFakeQuant``), so whatever calibration the plan used (min/max, percentile, mse) is what the graph runs. The
tensors the simulation leaves in float (conv outputs, residual sums) are quantized too, on onnxruntime's min/max
calibration (the logits too, clipped to their calibration range): that rounding is the one difference left,
kept because it is what lets onnxruntime run integer kernels (QLinearConv) on the int8 layers. 16-bit activations
use uint16 QDQ. A weight-only plan (``act_bits=None``) gets DequantizeLinear on its weights and float activations:
what the simulation computes, to 1e-6 on the logits.

Batch norm: the exporter folds it into the conv before us, scaling each output channel c by f_c = gamma_c /
sqrt(var_c + eps). The simulation rounded the unfolded weight, and a per-channel symmetric grid commutes with that
fold: the folded channel is the same integers (sign flipped where f_c < 0) on the scale s_c |f_c|. So the scales
are computed from the simulated torch weight and the fold factor measured between it and the exported weight
(least squares per channel, checked to reproduce the exported weight): exact, also for per-tensor grids (which
become per-channel ones after the fold). A weight that is not on a symmetric grid (an asymmetric plan), or that
no torch layer matches, is left to onnxruntime's own int8 quantization and recorded as not exact.

Every written file is read back: a layer counts as ``exact`` only when its stored integers and scales are the
computed ones. Measured on mnist1d-cnn (``benchmarks/mixed_precision_onnx.py``): every layer exact, onnxruntime
within 0.1 pp of the simulated accuracy for 2- to 8-bit mixes; the file is the cost model's ``model_bytes`` plus
~26 KB (per-channel scales, int32 biases, the graph).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from autoslim.cost.annotation import annotation_of
from autoslim.nn_utils import execution_order, weight_layers
from autoslim.runtime.onnx_int8 import export_onnx, quantize_onnx, session, strip_autoslim
from autoslim.techniques.quantize import ActFakeQuant, DynamicActFakeQuant

OPSET = 21  # INT4 Q/DQ
WEIGHT_OPS = ("Conv", "Gemm", "MatMul")
GRID_TOLERANCE = 1e-3  # |w / scale - round(w / scale)|: float32 rounding of an on-grid weight is ~1e-5 at int8
FOLD_TOLERANCE = 1e-4  # relative misfit of exported = f_c * simulated, per channel


@dataclass(frozen=True)
class LayerPrecision:
    layer: str  # torch module name ("" when no torch layer matched the ONNX weight)
    weight: str  # ONNX initializer name of the (float) weight
    bits: int | None  # simulated weight bits; None: the layer carries none
    storage: str  # "int4", "int8" or "float"
    exact: bool  # the stored integers and scales are the simulation's (checked on the written file)
    note: str = ""


@dataclass
class MixedExport:
    path: Path
    layers: list[LayerPrecision]
    activations: str  # "uint8", "int8", "uint16" or "float"
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return dict(Counter(p.storage for p in self.layers))

    def summary(self) -> str:
        """E.g. ``"int4 on 10 layers, int8 on 2 layers"``, plus how many are not exactly the simulation's."""
        counts = self.counts()
        parts = [f"{k} on {counts[k]} layer{'s' * (counts[k] != 1)}" for k in ("int4", "int8", "float") if k in counts]
        inexact = sum(not p.exact for p in self.layers if p.storage != "float")
        return ", ".join(parts) + (f" ({inexact} not on the simulated grid)" if inexact else "")

    def bits_summary(self) -> str:
        """The simulated bits behind the storage, e.g. ``"8-bit on 3 layers, 4-bit on 8, 3-bit on 1"``."""
        counts = Counter(p.bits for p in self.layers)
        ranked = sorted(counts.items(), key=lambda kv: -(kv[0] or 0))
        parts = [f"{'float' if b is None else f'{b}-bit'} on {n}" for b, n in ranked]
        return (parts[0] + " layer" + "s" * (ranked[0][1] != 1) + "".join(f", {x}" for x in parts[1:])) if parts else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "simulated_bits": self.bits_summary(),
            "counts": self.counts(),
            "activations": self.activations,
            "layers": [asdict(p) for p in self.layers],
            "warnings": list(self.warnings),
        }


def simulated_bits(model: nn.Module) -> dict[str, int]:
    """Torch module name -> the weight bits the ``quantize`` step gave it (read before ``strip_autoslim``)."""
    # A layer no numeric step marked reads 32 bits: a float layer, as before any quantization.
    bits = {n: annotation_of(m).weight_bits for n, m in weight_layers(model)}
    return {n: int(b) for n, b in bits.items() if b < 32}


def is_mixed(model: nn.Module) -> bool:
    """Whether some weight layer was simulated below 8 bits: the int8 path would store it at the wrong precision."""
    return any(b < 8 for b in simulated_bits(model).values())


def storage_of(bits: int | None) -> str:
    if bits is None or bits > 8:
        return "float"
    return "int4" if bits <= 4 else "int8"


@dataclass
class _Weight:
    """A weight initializer of the exported graph, oriented as torch stores it (output channels first)."""

    node: str
    op: str
    name: str
    activation: str  # the node's data input
    array: np.ndarray  # torch layout, float64
    axis: int  # the output-channel axis in the ONNX layout


@dataclass
class _Layer:
    """One graph weight and what it is to be stored as: ``scale`` None means onnxruntime's own grid (or float)."""

    w: _Weight
    layer: str  # torch module name, "" when none matched
    bits: int | None
    scale: np.ndarray | None  # float32, one per output channel
    note: str = ""


def _graph_weights(model: Any) -> list[_Weight]:
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type not in WEIGHT_OPS or len(node.input) < 2 or node.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv" or (node.op_type == "Gemm" and attrs.get("transB", 0)):
            axis = 0
        elif w.ndim == 2:  # Gemm without transB, MatMul: (in, out)
            w, axis = w.T, 1
        else:
            continue
        out.append(_Weight(node.name, node.op_type, node.input[1], node.input[0], w, axis))
    return out


def _fold_factors(exported: np.ndarray, simulated: np.ndarray) -> np.ndarray | None:
    """Per output channel f_c with exported[c] = f_c * simulated[c] (batch-norm fold; 1 without), else None."""
    if exported.shape != simulated.shape:
        return None
    e, s = exported.reshape(len(exported), -1), simulated.reshape(len(simulated), -1)
    ss = (s * s).sum(1)
    f = np.where(ss > 0, (e * s).sum(1) / np.where(ss > 0, ss, 1.0), 0.0)
    misfit = np.abs(e - f[:, None] * s).max(1)
    scale = np.maximum(np.abs(e).max(1), 1e-30)
    return f if bool((misfit <= FOLD_TOLERANCE * scale).all()) else None


def _match(weights: list[_Weight], model: nn.Module, example_inputs: Any) -> list[tuple[str, np.ndarray] | None]:
    """For each graph weight, the torch layer it was exported from and the fold factors; execution order first."""
    names = {id(m): n for n, m in weight_layers(model)}
    arrays = {n: m.weight.detach().cpu().double().numpy() for n, m in weight_layers(model)}
    order = [names[id(m)] for m in execution_order(model, example_inputs) if id(m) in names]
    order += [n for n in arrays if n not in order]
    found: list[tuple[str, np.ndarray] | None] = []
    for i, w in enumerate(weights):
        first = [order[i]] if i < len(order) else []
        hit = None
        for name in [*first, *order]:
            f = _fold_factors(w.array, arrays[name])
            if f is not None:
                hit = (name, f)
                break
        found.append(hit)
    return found


def _grid_scales(simulated: np.ndarray, bits: int, per_channel: bool) -> np.ndarray | None:
    """The simulation's symmetric scale per output channel (``quantize_weight``'s formula), None if off that grid."""
    qmax = 2 ** (bits - 1) - 1
    flat = np.abs(simulated.reshape(len(simulated), -1))
    amax = flat.max(1) if per_channel else np.full(len(flat), flat.max())
    scale = np.maximum(amax, 1e-12) / qmax
    k = simulated.reshape(len(simulated), -1) / scale[:, None]
    return scale if float(np.abs(k - np.round(k)).max(initial=0.0)) <= GRID_TOLERANCE else None


def _onnx_scales(w: _Weight, sim_scale: np.ndarray, fold: np.ndarray, bits: int) -> np.ndarray | None:
    """Scales of the exported (folded) weight: s_c |f_c|; channels with no weight take the largest one."""
    scale = sim_scale * np.abs(fold)
    live = scale > 1e-30
    scale = np.where(live, scale, scale[live].max() if live.any() else 1.0)
    k = w.array.reshape(len(scale), -1) / scale[:, None]
    qmax = 2 ** (bits - 1) - 1
    on_grid = np.abs(k - np.round(k)).max(initial=0.0) <= GRID_TOLERANCE and np.abs(k).max(initial=0.0) <= qmax + 0.5
    return scale.astype(np.float32) if on_grid else None


def _act_qparams(module: nn.Module) -> ActFakeQuant | None:
    # per-token dynamic scales have no static range to write: onnx_dynamic exports those models
    hooks = module._forward_pre_hooks.values()
    return next((h for h in hooks if isinstance(h, ActFakeQuant) and not isinstance(h, DynamicActFakeQuant)), None)


def _activation_kind(model: nn.Module, activation_type: str) -> str:
    bits = [int(b) for _, m in weight_layers(model) if (b := annotation_of(m).act_bits) is not None]
    if not bits:
        return "float"
    return "uint16" if max(bits) > 8 else activation_type


def export_mixed(
    model: nn.Module,
    example_inputs: Any,
    calibration_inputs: Any,
    path: str | Path,
    *,
    activation_type: str = "uint8",
) -> MixedExport:
    """Write ``model`` (the simulated one, before ``strip_autoslim``) as mixed-precision QDQ ONNX at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    modules = dict(weight_layers(model))
    acts = _activation_kind(model, activation_type)
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(strip_autoslim(model), example_inputs, Path(tmp) / "model.fp32.onnx", opset=OPSET)

        graph = onnx.load(str(fp32))
        plans = _plan_layers(graph, model, example_inputs)
        if acts == "float":
            _weight_only(graph, plans)
            onnx.save(graph, str(path))
        else:
            overrides, excluded = _overrides(plans, modules, acts)
            quantize_onnx(
                fp32,
                path,
                calibration_inputs,
                activation_type=acts,
                nodes_to_exclude=excluded,
                # Our scales exactly: onnxruntime would enlarge a weight scale whose int32 bias scale underflows.
                extra_options={"TensorQuantOverrides": overrides, "QDQDisableWeightAdjustForInt32Bias": True},
            )
    layers = _read_back(path, plans)
    warnings = [f"{p.layer or p.weight}: {p.note}" for p in layers if p.note]
    found = {p.layer for p in layers}
    warnings += [
        f"{n}: no weight of the exported graph is this layer's; not recorded" for n in modules if n not in found
    ]
    return MixedExport(path, layers, acts, warnings)


def _plan_layers(graph: Any, model: nn.Module, example_inputs: Any) -> list[_Layer]:
    """Each graph weight with its torch layer, simulated bits and (when on the simulated grid) its scales."""
    bits = simulated_bits(model)
    modules = dict(weight_layers(model))
    weights = _graph_weights(graph)
    plans = []
    for w, hit in zip(weights, _match(weights, model, example_inputs), strict=True):
        if hit is None:
            plans.append(_Layer(w, "", None, None, "no torch layer matches this weight: onnxruntime's own int8 grid"))
            continue
        layer, fold = hit
        b = bits.get(layer)
        if b is None or b > 8:
            plans.append(_Layer(w, layer, b, None))
            continue
        per_channel = annotation_of(modules[layer]).per_channel
        sim = _grid_scales(modules[layer].weight.detach().cpu().double().numpy(), b, per_channel)
        scale = _onnx_scales(w, sim, fold, b) if sim is not None else None
        note = "" if scale is not None else "not on a symmetric grid (symmetric=False?): onnxruntime's own int8 grid"
        plans.append(_Layer(w, layer, b, scale, note))
    return plans


def _overrides(plans: list[_Layer], modules: Mapping[str, nn.Module], acts: str) -> tuple[dict[str, Any], list[str]]:
    """onnxruntime's ``TensorQuantOverrides`` (weights: type and per-channel scales; weight layers' inputs: the
    simulation's activation grid) and the nodes to leave in float (fp16-simulated weights)."""
    from onnxruntime.quantization import QuantType

    overrides: dict[str, list[dict[str, Any]]] = {}
    excluded = []
    for p in plans:
        if p.scale is not None:
            qtype = QuantType.QInt4 if storage_of(p.bits) == "int4" else QuantType.QInt8
            overrides[p.w.name] = [
                {"quant_type": qtype, "scale": float(s), "zero_point": 0, "axis": p.w.axis} for s in p.scale
            ]
        elif p.bits is not None and p.bits > 8:
            excluded.append(p.w.node)
            continue
        fq = _act_qparams(modules[p.layer]) if p.layer else None
        if fq is not None and p.w.activation not in overrides:
            overrides[p.w.activation] = [_act_override(fq, acts)]
    return overrides, excluded


def _act_override(fq: ActFakeQuant, acts: str) -> dict[str, Any]:
    """The simulation's activation grid for one tensor, in onnxruntime's type (int8 is uint8 shifted by 128)."""
    from onnxruntime.quantization import QuantType

    qtype, dtype, levels, shift = {
        "int8": (QuantType.QInt8, np.int8, 255, 128),
        "uint16": (QuantType.QUInt16, np.uint16, 65535, 0),
    }.get(acts, (QuantType.QUInt8, np.uint8, 255, 0))
    if fq.levels != levels:  # a grid of another width: let onnxruntime calibrate this tensor
        return {"quant_type": qtype}
    # numpy scalars of the stored types: onnxruntime writes the initializers from them as they are
    return {
        "quant_type": qtype,
        "scale": np.array(fq.scale, np.float32),
        "zero_point": np.array(fq.zero_point - shift, dtype),
    }


def _integers(onnx_weight: np.ndarray, p: _Layer) -> np.ndarray:
    """``round(w / scale)`` in the ONNX layout (the scale broadcast along the output-channel axis)."""
    assert p.scale is not None
    shape = [-1 if i == p.w.axis else 1 for i in range(onnx_weight.ndim)]
    return np.round(onnx_weight.astype(np.float64) / p.scale.astype(np.float64).reshape(shape))


def _weight_only(graph: Any, plans: list[_Layer]) -> None:
    """Replace each on-grid float weight by integers + DequantizeLinear (float activations: weight-only plans)."""
    import ml_dtypes
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in graph.graph.initializer}
    new_nodes = []
    for p in plans:
        if p.scale is None or p.w.name not in inits:
            continue
        dtype = ml_dtypes.int4 if storage_of(p.bits) == "int4" else np.int8
        q = _integers(numpy_helper.to_array(inits[p.w.name]), p).astype(dtype)
        name = p.w.name
        graph.graph.initializer.remove(inits[name])
        graph.graph.initializer.extend([
            numpy_helper.from_array(q, f"{name}_quantized"),
            numpy_helper.from_array(p.scale, f"{name}_scale"),
            numpy_helper.from_array(np.zeros(len(p.scale), dtype=dtype), f"{name}_zero_point"),
        ])  # fmt: skip
        new_nodes.append(helper.make_node(
            "DequantizeLinear", [f"{name}_quantized", f"{name}_scale", f"{name}_zero_point"], [name],
            name=f"{name}_DequantizeLinear", axis=p.w.axis,
        ))  # fmt: skip
    nodes = [*new_nodes, *graph.graph.node]  # they read initializers only: first keeps the graph topological
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)


def _read_back(path: Path, plans: list[_Layer]) -> list[LayerPrecision]:
    """What the written file stores for each weight, and whether it is exactly the computed grid."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    by_name = {n.name: n for n in model.graph.node}
    names = {onnx.TensorProto.INT4: "int4", onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "int8"}
    out = []
    for p in plans:
        node = by_name.get(p.w.node)
        dq = producer.get(node.input[1]) if node is not None else None
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
            out.append(LayerPrecision(p.layer, p.w.name, p.bits, "float", storage_of(p.bits) == "float", p.note))
            continue
        q = inits[dq.input[0]]
        storage = names.get(q.data_type, onnx.TensorProto.DataType.Name(q.data_type).lower())
        exact = False
        if p.scale is not None and storage == storage_of(p.bits) and dq.input[1] in inits:
            stored = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float32).reshape(-1)
            ints = numpy_helper.to_array(q).astype(np.float64)
            want = _integers(np.moveaxis(p.w.array, 0, p.w.axis), p)
            exact = stored.shape == want.shape[p.w.axis : p.w.axis + 1] and bool(
                np.allclose(stored, p.scale, rtol=1e-6)
            )
            exact = exact and ints.shape == want.shape and bool((ints == want).all())
        out.append(LayerPrecision(p.layer, p.w.name, p.bits, storage, exact, p.note))
    return out


def mixed_session(model: nn.Module, task: Any, out_dir: str | Path, *, threads: int = 1) -> tuple[Any, MixedExport]:
    """Export ``model`` (simulated) to ``out_dir/model.mixed.onnx``; an onnxruntime session on it and the record."""
    out = export_mixed(model, task.example_inputs, task.calibration_inputs(), Path(out_dir) / "model.mixed.onnx")
    return session(out.path, threads=threads), out
