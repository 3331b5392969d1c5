"""Mixed-precision ONNX on the default task: does the INT4 / INT8 graph compute what the simulation measured?

For a few ``quantize`` plans of ``mnist1d-cnn`` (uniform 4 / 3 / 2-bit middle layers with 8-bit ends, hand-written
per-layer mixes when ``QuantizeConfig`` has ``layer_bits``, one weight-only plan and the all-int8 reference), builds
the simulated model, exports it with :mod:`autoslim.runtime.onnx_mixed` (the int8 reference with
:mod:`autoslim.runtime.onnx_int8`) and records: the simulated accuracy (``autoslim.evaluate.score``, full
validation split), the onnxruntime accuracy of the file, their difference in pp, the file's bytes, the bytes of
the all-int8 export of the same model, the cost model's ``model_bytes`` on ``mcu-cortex-m7`` and the per-layer
precision. Writes ``results/benchmarks/mixed_precision_onnx.csv``; prints the table.

    python benchmarks/mixed_precision_onnx.py
"""

from __future__ import annotations

import csv
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from autoslim.cost import estimate_cost, get_profile  # noqa: E402
from autoslim.evaluate import score  # noqa: E402
from autoslim.plan import CompressionPlan  # noqa: E402
from autoslim.runtime.onnx_int8 import export_onnx, quantize_onnx, session, session_score, strip_autoslim  # noqa: E402
from autoslim.runtime.onnx_mixed import export_mixed, is_mixed  # noqa: E402
from autoslim.tasks import load_task  # noqa: E402
from autoslim.techniques.quantize import QuantizeConfig  # noqa: E402
from autoslim.trial import build_model  # noqa: E402

CSV_PATH = ROOT / "results" / "benchmarks" / "mixed_precision_onnx.csv"
PROFILE = "mcu-cortex-m7"
RESIDUAL_CONVS = [f"{b}.conv{i}" for b in (3, 4, 8, 9) for i in (1, 2)]  # mnist1d-cnn's weight-layer names

PLANS: list[tuple[str, dict[str, Any]]] = [
    ("w8/a8 (int8 path)", {"weight_bits": 8, "act_bits": 8}),
    ("w4/a8 keep_first_last", {"weight_bits": 4, "act_bits": 8, "keep_first_last": True}),
    ("w3/a8 keep_first_last", {"weight_bits": 3, "act_bits": 8, "keep_first_last": True}),
    ("w2/a8 keep_first_last", {"weight_bits": 2, "act_bits": 8, "keep_first_last": True}),
    ("w4 weight-only keep_first_last", {"weight_bits": 4, "keep_first_last": True}),
]
LAYER_PLANS: list[tuple[str, dict[str, Any]]] = [
    ("convs int8, Linear 11 int4", {"weight_bits": 8, "act_bits": 8, "layer_bits": {"11": 4}}),
    ("convs int8, Linear 11 int2", {"weight_bits": 8, "act_bits": 8, "layer_bits": {"11": 2}}),
    (
        "residual convs 4, Linear 11 3, ends 8",
        {"weight_bits": 8, "act_bits": 8, "layer_bits": {**dict.fromkeys(RESIDUAL_CONVS, 4), "11": 3}},
    ),
    (
        "residual convs 6, Linear 11 4",
        {"weight_bits": 8, "act_bits": 8, "layer_bits": {**dict.fromkeys(RESIDUAL_CONVS, 6), "11": 4}},
    ),
]


def _int8_export(model: torch.nn.Module, task: Any, folder: Path) -> Path:
    """What the int8 path writes for the same simulated model (every weight re-quantized to int8)."""
    fp32 = export_onnx(strip_autoslim(model), task.example_inputs, folder / "model.fp32.onnx")
    return quantize_onnx(fp32, folder / "model.int8.onnx", task.calibration_inputs())


def measure() -> list[dict[str, Any]]:
    torch.set_num_threads(1)
    task = load_task("mnist1d-cnn")
    profile = get_profile(PROFILE)
    plans = list(PLANS)
    if "layer_bits" in {f.name for f in dataclasses.fields(QuantizeConfig)}:
        plans += LAYER_PLANS
    else:
        print("QuantizeConfig has no layer_bits: per-layer mixes skipped")
    rows = []
    for label, config in plans:
        t0 = time.perf_counter()
        model, _ctx = build_model(CompressionPlan.from_params({"quantize": config}), task)
        simulated = score(model, task)
        with tempfile.TemporaryDirectory() as tmp:
            int8 = _int8_export(model, task, Path(tmp))
            int8_real = session_score(session(int8), task)
            row: dict[str, Any] = {"plan": label, "simulated_accuracy": round(simulated, 5)}
            if is_mixed(model):
                out = export_mixed(model, task.example_inputs, task.calibration_inputs(), Path(tmp) / "m.onnx")
                path, exact, activations = out.path, sum(p.exact for p in out.layers), out.activations
                precision, bits = out.summary(), out.bits_summary()
            else:  # the int8 path is this plan's export
                path, exact, activations, precision, bits = int8, "", "uint8", "int8 (onnxruntime's grid)", ""
            real = session_score(session(path), task)
            row |= {
                "onnxruntime_accuracy": round(real, 5),
                "difference_pp": round((real - simulated) * 100, 2),
                "file_bytes": path.stat().st_size,
                f"model_bytes_{PROFILE}": estimate_cost(model, task.example_inputs, profile).model_bytes,
                "precision": precision,
                "simulated_bits": bits,
                "exact_layers": exact,
                "activations": activations,
                # the same simulated model through the all-int8 path, for comparison
                "int8_path_file_bytes": int8.stat().st_size,
                "int8_path_accuracy": round(int8_real, 5),
                "int8_path_difference_pp": round((int8_real - simulated) * 100, 2),
                "seconds": round(time.perf_counter() - t0, 1),
            }
        rows.append(row)
        print(row, flush=True)
    return rows


def main() -> None:
    rows = measure()
    CSV_PATH.parent.mkdir(parents=True, exist_ok=True)
    with CSV_PATH.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {CSV_PATH}")


if __name__ == "__main__":
    main()
