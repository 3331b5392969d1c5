"""Export a study's trial as a deployable artifact, rebuilt from its saved plan and checked against its record.

::

    from autoslim.export import export_trial

    out = export_trial("results/default", task="mnist1d-cnn", trial=37, fmt="onnx-int8", out="deploy/")
    print(out.manifest["artifact_accuracy"], out.manifest["recorded_accuracy"])

A study folder is data, never code: the task to rebuild on is the one the caller names (``task``), never the one
the study's journal names; it is checked against the study's record (the teacher's sha256 where the study holds
it, else the task reference) and refused with :class:`TaskMismatchError` when it differs.

The plan (JSON in the study journal, nothing unpickled) is rebuilt on the task with the trial's seed and torch
thread count (both recorded per trial: CPU kernels split reductions by thread count, so a KD fine-tune on 2 threads
ends with other weights than on 1), then re-evaluated: the accuracy must equal the recorded one exactly, or the
export stops. The artifact is then written and evaluated on the validation
split in the runtime it is for; it must agree with the recorded accuracy within ``tolerance`` (0.5 pp).

Formats (the numeric steps' weight rounding is kept in the weights of every format; activation fake-quant and
``autoslim_*`` attributes, the cost annotations among them, are stripped):

* ``onnx``: a float ONNX graph. A plan whose numeric step (``quantize``) has 8-bit activations (``act_bits``) is
  exported as ``onnx-int8`` instead: its measured accuracy is that of int8 activations, which only the int8 graph
  reproduces.
* ``onnx-int8``: onnxruntime static int8 (QDQ) of that graph, calibrated on the task's calibration inputs
  (:mod:`autoslim.runtime.onnx_int8`, the numerics the ``quantize`` simulation mirrors). A plan that simulated
  some layer below 8 bits (``weight_bits`` 2-6, ``keep_first_last``, ``layer_bits``) is written by
  :mod:`autoslim.runtime.onnx_mixed` instead: each weight at its simulated bits and scales, INT4 for 2-4 bits and
  INT8 for 6 and 8 (opset 21), so the file holds what the cost model prices and computes what the search measured.
  Where the runtime cannot honour a precision: 2- and 3-bit weights take a 4-bit container (their levels only;
  the bytes of 4 bits), 6-bit ones an 8-bit container, fp16 (16-bit) layers stay float32, and a weight that is
  not on a symmetric grid (``symmetric=False``) gets onnxruntime's own int8 grid. A weight-only mixed plan
  (``act_bits=None``) keeps float activations (DequantizeLinear on the weights only), as it was simulated; a
  weight-only plan that is int8 everywhere still goes through the int8 path, activations and all. The file keeps
  the format's one name, ``model.int8.onnx`` ("8-bit integer QDQ graph", whatever the weights' widths): the name is
  checked inside ``--out`` before the rebuild, when the layers' bits are not known yet, and a deployment finds its
  artifact by format. ``manifest.json``'s ``weight_precision`` says what each layer holds (``summary``:
  "int4 on 10 layers, int8 on 2 layers"; ``layers``: name, simulated bits, storage, exact).
  A plan whose ``quantize`` step scales activations per token at run time (``calibration="dynamic"``) is written
  by :mod:`autoslim.runtime.onnx_dynamic`: int8 weight levels and ``MatMulInteger`` with per-token scales, the
  numerics it simulated (onnxruntime's ``quantize_dynamic`` scales whole tensors, which is not).
* ``torchscript``: ``torch.jit.trace`` of the model (float activations).
* ``state-dict``: ``{"state_dict", "plan", "seed", "task"}`` saved with ``torch.save``; loads with
  ``weights_only=True``. :func:`load_state_dict_artifact` rebuilds the architecture (the plan without its
  fine-tunes, where no structural step follows them) and loads the weights into it.

Beside the artifact, ``manifest.json`` records the plan, seed, per-profile metrics, recorded / re-evaluated /
artifact accuracies, the teacher's hash, the task and library versions, the space's constraints the trial
violates (``constraint_violations``; such a trial is off every front, so exporting it also warns; so does a trial
no front holds), the file's size on disk (``artifact_bytes``) and what was measured on this machine
(``measured``: the artifact's median latency in its own runtime, and the teacher exported the same way, with the
ratios; :mod:`autoslim.export_measure`). The runtime a format needs is checked before anything is rebuilt, and a
failed export leaves no empty ``out`` folder behind.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoslim.evaluate import score
from autoslim.export_checks import placement_warnings, require_runtime, violations
from autoslim.export_measure import measure as measure_artifact
from autoslim.nn_utils import weight_layers
from autoslim.plan import CompressionPlan
from autoslim.report.pick import Query, pick
from autoslim.report.results import StudyResults, open_results
from autoslim.runtime.onnx_dynamic import export_dynamic, is_dynamic
from autoslim.runtime.onnx_int8 import export_onnx, quantize_onnx, session, session_score, strip_autoslim
from autoslim.runtime.onnx_mixed import export_mixed, is_mixed, simulated_bits
from autoslim.safe_io import check_folder, check_inside, replacing, safe_write_text
from autoslim.tasks import Task, load_task
from autoslim.tasks.fingerprint import teacher_sha256
from autoslim.techniques import get_technique, list_techniques
from autoslim.trial import build_model, status_name
from autoslim.versions import installed_versions

FORMATS = ("onnx", "onnx-int8", "torchscript", "state-dict")
ARTIFACTS = {
    "onnx": "model.onnx",
    "onnx-int8": "model.int8.onnx",
    "torchscript": "model.torchscript.pt",
    "state-dict": "model.state_dict.pt",
}
TOLERANCE = 0.005  # the artifact's accuracy may differ from the recorded one by 0.5 pp at most
LIBRARIES = ("autoslim", "torch", "onnx", "onnxruntime", "optuna")


class ExportError(RuntimeError):
    """The export cannot be made or does not reproduce the trial; the message says why."""


class TaskMismatchError(ExportError):
    """The task given to rebuild with is not the one the study was searched on (bad input: exit code 2)."""

    exit_code = 2


@dataclass
class Exported:
    artifact: Path
    manifest_path: Path
    manifest: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def choose_trial(results: StudyResults, *, trial: int | None = None, profile: str | None = None,
                 query: Query | None = None) -> int:  # fmt: skip
    """``trial`` itself, or the front point of ``profile`` that ``query`` picks (as ``autoslim pick`` does). With
    both a trial and a profile, the profile only says whose front and batch size the export is measured against."""
    query = query or Query()
    if trial is None and profile is None:
        raise ExportError("give either a trial number or a profile (with pick options) to choose a front point")
    if trial is not None:
        if not query.is_empty():
            raise ExportError(f"give a trial number or pick options ({' '.join(query.flags())}), not both")
        if profile is not None:
            results.profile(profile)  # an unknown profile is refused (exit code 2), not ignored
        return trial
    assert profile is not None
    chosen = pick(results, profile, query)  # a profile not in the study or no limit: ValueError, bad input (exit 2)
    if chosen.row is None:
        raise ExportError(chosen.message)
    return int(chosen.row["trial"])


def export_trial(
    study: str | Path,
    *,
    task: str | Task,
    fmt: str,
    out: str | Path,
    trial: int | None = None,
    profile: str | None = None,
    query: Query | None = None,
    tolerance: float = TOLERANCE,
    measure: bool = True,
) -> Exported:
    """Rebuild a trial's model on ``task`` (a built-in name, ``module:attr`` or a Task: the caller's choice, checked
    against the study's record), check it reproduces the record, write the artifact and ``manifest.json``.

    With ``measure``, the artifact and the teacher exported the same way are timed on this machine at the batch
    size of ``profile`` (1 without one), as the cost model prices it.

    Raises :class:`MissingRuntimeError` (an ImportError) when the format's runtime is not installed,
    :class:`TaskMismatchError` when ``task`` is not the study's, :class:`ExportError` when the trial does
    not exist or did not finish, when the rebuild does not reproduce the recorded accuracy, and (after writing both
    files, for inspection) when the artifact's accuracy misses the recorded one by more than ``tolerance``.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {list(FORMATS)}")
    require_runtime(fmt)  # the install hint now, not torch's traceback after the rebuild
    results = open_results(study)
    number = choose_trial(results, trial=trial, profile=profile, query=query)
    frozen = {t.number: t for t in results.study.get_trials(deepcopy=False)}.get(number)
    if frozen is None:
        raise ExportError(f"{study}: no trial {number}; the study has trials 0..{len(results.study.trials) - 1}")
    attrs = frozen.user_attrs
    if attrs.get("status") != "ok":
        reason = str(attrs.get("reason", "")).strip().splitlines()
        detail = f": {reason[0]}" if reason else ""
        status = status_name(attrs.get("status", "not finished"))
        raise ExportError(f"trial {number} has status {status!r}{detail}; there is no model to export")
    plan = CompressionPlan.from_dict(attrs["plan"])
    requested = fmt
    if fmt == "onnx" and _act_bits(plan) == 8:
        fmt = "onnx-int8"
    # Studies from before seeds were recorded: the driver ran trial n with seed (search seed + n), seed 0 by default.
    recorded_seed = attrs.get("seed")
    seed = int(recorded_seed) if recorded_seed is not None else number
    seed_source = "recorded" if recorded_seed is not None else "assumed: search seed 0 + trial number"
    threads = int(attrs.get("threads") or 1)  # older studies: worker processes ran single-threaded
    recorded = float(attrs["accuracy"])
    warnings = placement_warnings(results, number, attrs, profile)
    batch = results.profile(profile).batch_size if profile is not None else 1
    out = check_folder(out)
    for name in (ARTIFACTS[fmt], "manifest.json"):  # refused before the rebuild, not after minutes of it
        check_inside(out / name, out)

    made = [d for d in (out, *out.parents) if not d.exists()]  # removed again if the export fails while empty
    try:
        with _torch_threads(threads):
            task, task_ref, task_check, teacher_hash = _checked_task(results, study, task)
            # A multi-fidelity trial whose rungs went on from each other: its fine-tune runs the same legs again
            legs = attrs.get("fine_tune_legs")
            model, _ctx = build_model(plan, task, seed=seed, legs=legs)
            reevaluated = score(model, task)
            if reevaluated != recorded:
                raise ExportError(
                    f"trial {number}: the rebuilt model scores {reevaluated!r}, the study recorded {recorded!r} "
                    f"(seed {seed} {seed_source}, {threads} thread(s)); the rebuild does not reproduce the trial"
                )
            stripped = strip_autoslim(model)
            out.mkdir(parents=True, exist_ok=True)
            artifact = out / ARTIFACTS[fmt]
            payload = {"state_dict": stripped.state_dict(), "plan": plan.to_dict(), "seed": seed, "task": task_ref}
            # Written beside the target and renamed over it: never through a symlink planted in --out.
            with replacing(artifact, out) as tmp:
                artifact_acc, ort_acc, precision = _write_artifact(fmt, model, stripped, task, tmp, payload, plan)
            on_host = None
            if measure:
                with _baseline_artifact(fmt, task) as baseline:
                    on_host = measure_artifact(fmt, task, batch=batch, artifact=(artifact, stripped), baseline=baseline)
    except BaseException:
        for folder in made:  # innermost first; a folder holding anything (the user's, or kept files) stays
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise

    ok = abs(artifact_acc - recorded) <= tolerance
    manifest = {
        "study": str(study),
        "task": task_ref,
        "trial": number,
        "seed": seed,
        "seed_source": seed_source,
        "torch_threads": threads,
        "fine_tune_legs": legs,  # None: one fine-tune, as the plan says; else the continued rungs' fidelities
        "plan": plan.to_dict(),
        "plan_words": plan.describe(),
        "format": fmt,
        "requested_format": requested,
        "artifact": artifact.name,
        "artifact_sha256": hashlib.sha256(artifact.read_bytes()).hexdigest(),
        "artifact_bytes": artifact.stat().st_size,  # on disk; metrics.costs.*.model_bytes is the cost model's
        "measured": on_host,  # latency on this machine beside the teacher exported the same way (None: not asked)
        "metrics": {"accuracy": recorded, "params": attrs.get("params"), "costs": attrs.get("costs", {})},
        "recorded_accuracy": recorded,
        "reevaluated_accuracy": reevaluated,
        "artifact_accuracy": artifact_acc,  # in the artifact's own runtime (onnxruntime for the ONNX formats)
        "onnxruntime_accuracy": ort_acc,  # None for the formats that are not ONNX
        "weight_precision": precision,  # what each weight layer is stored as (onnx-int8); None for the others
        "tolerance": tolerance,
        "agreement_ok": ok,
        "teacher_sha256": teacher_hash,
        "task_check": task_check,
        "constraint_violations": violations(results, attrs),
        "warnings": warnings,
        "versions": library_versions(),
    }
    manifest_path = safe_write_text(out / "manifest.json", json.dumps(manifest, indent=2, sort_keys=False) + "\n", out)
    if not ok:
        raise ExportError(
            f"trial {number}: the {fmt} artifact scores {artifact_acc:.4%}, {abs(artifact_acc - recorded) * 100:.2f} "
            f"pp from the recorded {recorded:.4%} (tolerance {tolerance * 100:.2f} pp); {artifact} kept for inspection"
        )
    return Exported(artifact, manifest_path, manifest, warnings)


def _checked_task(results: StudyResults, study: str | Path, task: str | Task) -> tuple[Task, str, str, str]:
    """The caller's task, checked against the study's record; (task, its reference, how it was checked, hash).

    The study's own task reference is only compared, never imported: importing it would run whatever module a
    journal (perhaps someone else's) names."""
    settings = results.study.user_attrs.get("autoslim", {})
    recorded_ref = settings.get("task")
    recorded_hash = results.study.user_attrs.get("teacher_sha256") or settings.get("teacher_sha256")
    given_ref = task if isinstance(task, str) else task.name
    if recorded_hash is None and isinstance(task, str) and task != recorded_ref:
        raise TaskMismatchError(
            f"{study}: the study was searched on task {recorded_ref!r}, --task is {task!r}. Pass the study's "
            "task (export imports and runs the task you name, never the one a study names)"
        )
    loaded = load_task(task) if isinstance(task, str) else task
    digest = teacher_sha256(loaded.teacher())
    if recorded_hash is not None and digest != recorded_hash:
        raise TaskMismatchError(
            f"{study}: the teacher of --task {given_ref!r} (sha256 {digest[:12]}…) is not the model the study "
            f"was searched on (sha256 {recorded_hash[:12]}…, task {recorded_ref!r}); pass the study's task"
        )
    if recorded_hash is not None:
        check = "teacher sha256 matches the study's"
    elif isinstance(task, str):
        check = "task reference matches the study's (the study records no teacher sha256)"
    else:
        check = "not checked before the rebuild (the study records no teacher sha256); the rebuild must reproduce"
    return loaded, given_ref, check, digest


def _write_artifact(fmt: str, model: nn.Module, stripped: nn.Module, task: Task, path: Path, payload: dict[str, Any],
                    plan: CompressionPlan) -> tuple[float, float | None, dict[str, Any] | None]:  # fmt: skip
    """Write ``path`` from ``stripped`` (``model``, the simulated one, gives the per-layer bits); return its accuracy
    on the validation split in its own runtime, the ORT one (or None) and the weights' precision (onnx-int8)."""
    precision = _write_file(fmt, model, stripped, task, path, payload)
    if fmt in ("onnx", "onnx-int8"):
        acc = session_score(session(path), task)
        return acc, acc, precision
    if fmt == "torchscript":
        return score(torch.jit.load(str(path)), task), None, None
    return score(load_state_dict_artifact(path, task, plan=plan), task), None, None


def _write_file(fmt: str, model: nn.Module, stripped: nn.Module, task: Task, path: Path,
                payload: dict[str, Any]) -> dict[str, Any] | None:  # fmt: skip
    """Write the artifact file only; the weights' precision for onnx-int8, else None."""
    if fmt == "onnx":
        export_onnx(stripped, task.example_inputs, path)
    elif fmt == "onnx-int8" and is_dynamic(model):
        return export_dynamic(model, task.example_inputs, path).to_dict()
    elif fmt == "onnx-int8" and is_mixed(model):
        return export_mixed(model, task.example_inputs, task.calibration_inputs(), path).to_dict()
    elif fmt == "onnx-int8":
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = export_onnx(stripped, task.example_inputs, Path(tmp) / "model.fp32.onnx")
            quantize_onnx(fp32, path, task.calibration_inputs())
        return _int8_precision(model)
    elif fmt == "torchscript":
        with torch.no_grad():
            traced = torch.jit.trace(stripped, _positional(task.example_inputs), check_trace=False)
        torch.jit.save(traced, str(path))
    else:
        torch.save(payload, path)
    return None


@contextmanager
def _baseline_artifact(fmt: str, task: Task) -> Iterator[tuple[Path, nn.Module]]:
    """The teacher written the way the trial was (same format, same runtime) in a temporary folder, and the eager
    module it was written from: what "x smaller / x faster" compares against."""
    teacher = task.teacher()
    stripped = strip_autoslim(teacher)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ARTIFACTS[fmt]
        _write_file(fmt, teacher, stripped, task, path, {"state_dict": stripped.state_dict()})
        yield path, stripped


def _int8_precision(model: nn.Module) -> dict[str, Any]:
    """The int8 path's record: onnxruntime re-quantizes every Conv / Linear weight to its own int8 grid."""
    bits = simulated_bits(model)
    layers = [{"layer": name, "bits": bits.get(name), "storage": "int8"} for name, _m in weight_layers(model)]
    n = len(layers)
    return {"summary": f"int8 on {n} layer{'s' * (n != 1)} (onnxruntime's int8 grid)", "counts": {"int8": n},
            "activations": "uint8", "layers": layers}  # fmt: skip


def load_state_dict_artifact(path: str | Path, task: Task, *, plan: CompressionPlan | None = None) -> nn.Module:
    """The model saved by a ``state-dict`` export: the plan's architecture (built without its fine-tune, which
    only changes weights) with the saved weights loaded. The file is read with ``weights_only=True``."""
    saved = torch.load(path, weights_only=True)
    plan = plan or CompressionPlan.from_dict(saved["plan"])
    model, _ctx = build_model(plan, task, seed=int(saved["seed"]), skip=_architecture_only(plan))
    model = strip_autoslim(model)
    model.load_state_dict(saved["state_dict"])
    return model.eval()


def _architecture_only(plan: CompressionPlan) -> list[str]:
    """The steps a rebuild of the architecture can leave out: the fine-tunes, unless a structural step follows one
    (it chooses what to remove from the fine-tuned weights, so the architecture depends on the fine-tune)."""
    roles = [get_technique(s.technique).role for s in plan.steps]
    first = next((i for i, r in enumerate(roles) if r == "fine-tune"), len(roles))
    return [] if "structural" in roles[first:] else list_techniques(role="fine-tune")


def library_versions() -> dict[str, str | None]:
    """Every library the artifact depends on, ``None`` where it is not installed (the manifest says so)."""
    found = installed_versions(LIBRARIES)
    return {name: found.get(name) for name in LIBRARIES}


def _act_bits(plan: CompressionPlan) -> int | None:
    """The activation bits the plan deploys: those of its last numeric step that sets any (an earlier step's
    activation quantization stays on the model through a later weight-only one)."""
    numeric = [s.config for s in plan.steps if get_technique(s.technique).role == "numeric"]
    return next((bits for c in reversed(numeric) if (bits := getattr(c, "act_bits", None)) is not None), None)


def _positional(inputs: Any) -> Any:
    if isinstance(inputs, dict):
        raise ExportError("torchscript export of a model taking a dict of inputs is not supported; use onnx")
    return tuple(inputs) if isinstance(inputs, (list, tuple)) else inputs


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """CPU kernels split reductions by thread count: rebuild with the trial's own count to reproduce it bit for bit."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
