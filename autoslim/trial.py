"""One trial: the only place a plan meets a model.

``run_trial(spec, task)`` copies the teacher, applies the plan's steps in order (recording each step's effect),
scores the metric on held-out validation data and prices the result on every profile. It never raises: a plan
the model cannot take becomes ``status="infeasible"``; anything else that goes wrong, ``"failed"``.

``build_model(plan, task)`` is the building half on its own (export rebuilds a front point's model with it). It
names no technique: a step whose technique has the role ``"fine-tune"`` runs inside the ``fine_tune_wrapper`` of
the steps after it that declare one (quantize's QAT: the fine-tune trains under the fake quantization the plan
will deliver). That is the one place two techniques meet, so it lives here.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import math
import time
import traceback
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from autoslim.cost import HardwareProfile, layer_stats
from autoslim.cost.estimate import cost_from_stats
from autoslim.cost.layers import other_param_bits
from autoslim.cost.measure import measure_latency_ms
from autoslim.evaluate import NotFiniteError, score
from autoslim.nn_utils import to_device
from autoslim.plan import CompressionPlan, Step
from autoslim.policy.resolve import resolve_built, wants_policy
from autoslim.tasks import Task
from autoslim.techniques import ApplyContext, InfeasibleError, StoppedEarly, get_technique
from autoslim.techniques.qat import strip_fake_quant
from autoslim.techniques.registry import FineTuneWrapper


@dataclass(frozen=True)
class TrialSpec:
    plan: dict[str, Any]  # CompressionPlan.to_dict(): plain data, so it crosses process boundaries
    profiles: tuple[HardwareProfile, ...]
    seed: int = 0
    number: int | None = None  # the study's trial number, for logs
    min_accuracy: float | None = None  # the accuracy the search needs; a fine-tune that cannot reach it stops early
    # The study's current front per profile as (objective cost, accuracy, trial) points: a fine-tune whose model is
    # dominated on every profile at its cost, even at the best accuracy it could still reach, stops early.
    fronts: Mapping[str, Sequence[tuple[float, float, int]]] | None = None
    fidelity: float = 1.0  # share of its fine-tune the plan runs (a multi-fidelity search's rung; 1: all of it)
    # A continued rung: the fine-tune state the rung below left (TrialResult.checkpoint), gone on from up to
    # ``fidelity``; ``keep_state``: return this rung's own (a rung that may be promoted). See build_model.
    resume: bytes | None = field(default=None, repr=False)
    keep_state: bool = False


# What a trial ended as. "stopped": its fine-tune was stopped early (it could not reach the accuracy the search needs,
# or enter any front). Studies written before the rename stored Optuna's word "pruned", which read like the
# prune.* techniques; :func:`status_name` maps it on reading.
STATUSES = ("ok", "infeasible", "failed", "stopped")
LEGACY_STATUSES = {"pruned": "stopped"}
# The reason's start for a multi-fidelity trial that stopped below the top rung (autoslim.search.ladder).
NOT_PROMOTED = "not promoted"
# A multi-fidelity trial promoted late (autoslim.search.ladder): the number of the turned-down trial it goes on
# from. Once it has a result it stands for that plan: the turned-down one leaves the budget's count and the table.
LATE_OF = "late_of"


def superseded(attrs: Iterable[Mapping[str, Any]]) -> set[int]:
    """The trials that late promotions, given by the user attributes of the trials that count, went on from."""
    return {int(n) for a in attrs if isinstance(n := a.get(LATE_OF), int)}


def status_name(recorded: object) -> str:
    """A recorded status as autoslim names it today (``"pruned"`` from an older study reads as ``"stopped"``)."""
    text = str(recorded) if recorded is not None else ""
    return LEGACY_STATUSES.get(text, text)


@dataclass
class TrialResult:
    status: str  # one of STATUSES ("stopped": stopped early, see early_stop)
    accuracy: float | None = None
    costs: dict[str, dict[str, Any]] = field(default_factory=dict)  # profile name -> Cost.to_dict()
    params: int | None = None
    reason: str = ""
    duration_s: float = 0.0
    steps: list[dict[str, Any]] = field(default_factory=list)  # per-step effect: params and MACs after it
    notes: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None  # what the model was built with: with the thread count, it rebuilds bit for bit
    threads: int | None = None  # torch CPU threads (kernels split reductions by thread count)
    plan: dict[str, Any] | None = None  # the plan as built, when a per-layer policy was resolved (else the spec's)
    # A continued multi-fidelity trial: the fidelities its fine-tune ran to, leg by leg ([0.111, 0.333, 1.0]); a
    # rebuild runs them in turn (build_model's ``legs``). None: one leg, as the plan and seed rebuild it.
    fine_tune_legs: list[float] | None = None
    # The fine-tune's state at the end (TrialSpec.keep_state), for the next rung: torch.save bytes, held by the
    # driver until that rung is submitted, never journaled (to_dict leaves it out).
    checkpoint: bytes | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("checkpoint")
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialResult:
        return cls(**data)


def _footprint(model: torch.nn.Module, example_inputs: Any) -> dict[str, int]:
    stats = layer_stats(model, example_inputs)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "macs": sum(s.macs for s in stats),
        "weight_bits": sum(s.weight_nonzero * s.weight_bits for s in stats),
    }


def build_model(
    plan: CompressionPlan,
    task: Task,
    *,
    seed: int = 0,
    cache: dict[str, Any] | None = None,
    skip: Collection[str] = (),
    on_step: Callable[[str, nn.Module], None] | None = None,
    device: str | torch.device = "cpu",
    epoch_callback: Callable[[int, int, nn.Module], None] | None = None,
    notes: dict[str, Any] | None = None,
    profiles: Sequence[HardwareProfile] = (),
    fidelity: float = 1.0,
    resume: Mapping[str, Any] | None = None,
    legs: Sequence[float] | None = None,
    keep_state: bool = False,
) -> tuple[nn.Module, ApplyContext]:
    """A copy of the task's teacher with ``plan`` applied (steps named in ``skip`` left out), in eval mode.

    ``on_step(name, model)`` is called after the teacher copy (``"teacher"``) and after every step. The model is
    built on ``device`` (a GPU worker's ``cuda:0``): the teacher is copied there once per process, the steps run
    there, and it comes back on that device. Raises what the steps raise (:class:`InfeasibleError` for a plan the
    model cannot take). Fine-tunes call ``epoch_callback(epoch,
    epochs, preview)`` between epochs (see :func:`early_stop`), where ``preview`` is what the plan would deliver if
    the fine-tune ended now: a copy of the model with the plan's later steps (quantization) applied, so a check
    sees the deployed numerics and costs: most hopeless plans of the default space fail at 2-3-bit weights *after*
    the fine-tune, which the float model in training cannot show. A preview that cannot be built skips that
    epoch's check rather than ending the trial. ``notes`` (when given) becomes ``ctx.notes``, so a caller keeps the
    steps' records even when a step raises. A step with a per-layer ``policy: sensitivity`` is resolved on the
    model it receives, against ``profiles`` (:mod:`autoslim.policy`); ``ctx.notes["resolved_plan"]`` then holds
    the plan as built (per-layer values written out), which rebuilds without the sensitivity table.

    A multi-fidelity search's continued rungs (the plan's one fine-tune must be ``resumable``): ``resume`` is the
    fine-tune state the rung below left, gone on from up to ``fidelity``; ``keep_state`` leaves this one's in
    ``ctx.fine_tune_state``; ``legs`` (a continued trial's ``fine_tune_legs``) rebuilds one by running to each
    fidelity in turn. Raises ValueError when the plan has no such single fine-tune.
    """
    if (resume is not None or legs or keep_state) and not can_continue(plan, skip):
        tunes = [s.technique for s in plan.steps if s.technique not in skip and _fine_tunes(s)]
        raise ValueError(f"a continued fine-tune needs a plan with one resumable fine-tune step, not {tunes}")
    torch.manual_seed(seed)
    dev = torch.device(device)
    cache = cache if cache is not None else {}
    teacher = task.teacher()
    if dev.type != "cpu":  # one copy of the teacher per worker and device, kept in the per-process cache
        if f"teacher@{dev}" not in cache:
            cache[f"teacher@{dev}"] = copy.deepcopy(teacher).to(dev)
        teacher = cache[f"teacher@{dev}"]
    model = copy.deepcopy(teacher)
    calibration = task.calibration_inputs()
    ctx = ApplyContext(
        # Small input batches go to the device with the model (torch-pruning traces with them as they are); the
        # training and validation sets stay on the CPU and move a batch at a time (call_model).
        example_inputs=to_device(task.example_inputs, dev),
        teacher=teacher,
        train_data=task.train_data(),
        calibration_inputs=None if calibration is None else to_device(calibration, dev),
        seed=seed,
        cache=cache,
        device=dev,
        notes=notes if notes is not None else {},
        output=task.output,
        distill_loss=task.distill_loss,
        teacher_cache_bytes=task.teacher_cache_mb * 1e6,
        profiles=tuple(profiles),
        fidelity=fidelity,
        fine_tune_resume=resume,
        fine_tune_legs=tuple(legs) if legs else None,
        keep_fine_tune_state=keep_state,
    )
    later: list[Step] = []  # the steps after the running one that a preview applies

    def look_ahead(epoch: int, epochs: int, training: nn.Module) -> None:
        assert epoch_callback is not None
        try:
            preview = _preview(training, later, ctx)
        except Exception:  # a check must never end a trial the plan itself would finish: skip this epoch's check
            return
        epoch_callback(epoch, epochs, preview)

    ctx.epoch_callback = look_ahead if epoch_callback is not None else None
    ctx.epoch_callback_min_steps = EARLY_STOP_MIN_STEPS
    if on_step is not None:
        on_step("teacher", model)
    built = list(plan.steps)
    for i, step in enumerate(plan.steps):
        if step.technique in skip:
            continue
        later[:] = [s for s in plan.steps[i + 1 :] if s.technique not in skip and not _fine_tunes(s)]
        step, ready = resolve_built(step, model, ctx)  # ready: resolving built the step's model already
        built[i] = step
        if ready is not None and not _fine_tunes(step):
            model = ready
        else:
            with ExitStack() as wrappers:
                if _fine_tunes(step):
                    for wrap, config in _wrappers_after(plan.steps, i):
                        wrappers.enter_context(wrap(model, config, ctx))
                model = get_technique(step.technique).apply(model, step.config, ctx)
        if on_step is not None:
            on_step(step.technique, model)
    if any(wants_policy(s) for s in plan.steps):
        ctx.notes["resolved_plan"] = CompressionPlan(tuple(built)).to_dict()
    model.eval()
    return model, ctx


def can_continue(plan: CompressionPlan, skip: Collection[str] = ()) -> bool:
    """Whether ``plan``'s fine-tune can go on from a saved state (continued multi-fidelity rungs): it has exactly
    one fine-tune step (``skip`` left out), of a technique registered ``resumable``."""
    tunes = [s for s in plan.steps if s.technique not in skip and _fine_tunes(s)]
    return len(tunes) == 1 and get_technique(tunes[0].technique).resumable


def _fine_tunes(step: Step) -> bool:
    return get_technique(step.technique).role == "fine-tune"


def _wrappers_after(steps: Sequence[Step], i: int) -> list[tuple[FineTuneWrapper, Any]]:
    """The fine-tune wrappers for step ``i``: of each technique that has one, its first step after ``i``, so a
    fine-tune trains for the numerics that step will deliver (prune -> KD -> quantize(qat) -> prune -> KD ->
    quantize(qat): each KD trains for its own quantize step). A skipped step still counts: export builds the
    float model that an int8 runtime then quantizes, and its fine-tuned weights are the QAT-trained ones."""
    found: dict[str, tuple[FineTuneWrapper, Any]] = {}
    for step in steps[i + 1 :]:
        wrap = get_technique(step.technique).fine_tune_wrapper
        if wrap is not None and step.technique not in found:
            found[step.technique] = (wrap, step.config)
    return list(found.values())


def price(model: nn.Module, example_inputs: Any, profiles: Sequence[HardwareProfile]) -> dict[str, dict[str, Any]]:
    """``model``'s cost on every profile (Cost.to_dict() by profile name). One traced forward serves them all: the
    per-layer facts do not depend on the hardware."""
    stats, others = layer_stats(model, example_inputs), other_param_bits(model)
    return {p.name: cost_from_stats(stats, others, p).to_dict() for p in profiles}


def _preview(model: nn.Module, steps: Sequence[Step], ctx: ApplyContext) -> nn.Module:
    """A copy of ``model`` with ``steps`` applied (QAT's fake quantization stripped first: the steps quantize for
    real); ``model``, ``ctx.notes`` and the random streams are left as they were."""
    scratch = dataclasses.replace(ctx, notes={}, epoch_callback=None)
    with torch.random.fork_rng(devices=[ctx.device] if ctx.device.type == "cuda" else []):
        preview = strip_fake_quant(copy.deepcopy(model))
        for step in steps:
            step, ready = resolve_built(step, preview, scratch)
            preview = ready if ready is not None else get_technique(step.technique).apply(preview, step.config, scratch)
    return preview.eval()


# The early-stop rule was calibrated on epochs of 141 optimizer steps (mnist1d-cnn): after fewer steps a fine-tune
# has barely started (a 1,300-sample task runs 20 steps an epoch) and its accuracy says little about where it ends.
EARLY_STOP_MIN_STEPS = 140
EARLY_STOP_SAMPLES = 1024  # validation samples the early-stop check scores (accuracy s.d. ~0.4 pp near 98%)
EARLY_STOP_SHRINK = 0.5  # the least share of its error a fine-tune is assumed to keep, per share of epochs done


def early_stop(
    task: Task,
    min_accuracy: float | None,
    fronts: Mapping[str, Sequence[tuple[float, float, int]]] | None = None,
    profiles: Sequence[HardwareProfile] = (),
) -> Callable[[int, int, nn.Module], None] | None:
    """An epoch callback that stops a fine-tune whose model cannot pay its way (raises StoppedEarly); None when
    neither rule can fire (no accuracy constraint, and some profile's front still empty), so no preview is built.

    After epoch ``e`` of ``E`` the model (a preview with the plan's later steps applied, see :func:`build_model`)
    is scored on a subset, and the best accuracy it could still reach is bounded generously: its accuracy plus two
    standard errors of the subset, with the error then shrinking to ``EARLY_STOP_SHRINK * e / E`` of itself by the
    end. Calibrated on 20 mnist1d-cnn fine-tunes of the default space (cosine LR, 3-7 epochs, 76 checkpoints,
    heavy pruning and 3-bit weights included): the subset error at epoch ``e`` never shrank below ``0.62 * e / E``
    of itself by the end; the rule allows ``0.5 * e / E``, and the two standard errors on top. Stop when

    * ``reachable < min_accuracy`` (the space's accuracy constraints), or
    * on every profile in ``profiles``, a point of ``fronts[profile]`` (objective cost, accuracy, trial) costs no
      more than the preview and has at least ``reachable`` accuracy, or the preview does not fit the profile:
      the trial could not enter any front (the issue's "dominated on every profile at its current cost").

    The check scores the first ``EARLY_STOP_SAMPLES`` validation samples (a fixed subset: scoring all 6,000 of
    mnist1d-cnn cost ~8% of a 4-epoch fine-tune, more than the stops saved), in eval mode and read-only: weights,
    buffers and the fine-tune's random stream are untouched, so a trial that is not stopped reports exactly the
    accuracy it would without the check (measured once, at the end, on the full validation split). The rule models
    an accuracy-like metric in [0, 1]; a metric outside that range (a negative loss, PSNR) is not checked.
    """
    against = {p.name: fronts[p.name] for p in profiles if fronts and fronts.get(p.name)}
    dominance = bool(profiles) and len(against) == len(profiles)  # an empty front cannot dominate anything
    if (min_accuracy is None and not dominance) or task.evaluate is not None:
        return None  # (a task's own evaluate() cannot score a subset)
    try:
        n = min(EARLY_STOP_SAMPLES, len(task.val_data()))
    except TypeError:  # a loader that does not know its size: at least this many are scored (whole batches)
        n = EARLY_STOP_SAMPLES

    def check(epoch: int, epochs: int, model: nn.Module) -> None:
        acc = score(model, task, max_samples=EARLY_STOP_SAMPLES)
        if not 0.0 <= acc <= 1.0:
            return
        optimistic = min(1.0, acc + 2.0 * math.sqrt(acc * (1.0 - acc) / n))  # two standard errors of the subset
        reachable = 1.0 - (1.0 - optimistic) * EARLY_STOP_SHRINK * epoch / epochs
        if min_accuracy is not None and reachable < min_accuracy:
            raise StoppedEarly(
                f"stopped early: accuracy {acc:.4f} after epoch {epoch}/{epochs} cannot reach {min_accuracy:.4f}"
            )
        if not dominance:
            return
        costs = price(model, task.example_inputs, profiles)
        beaten: list[str] = []
        for p in profiles:
            cost = costs[p.name]
            if not cost.get("fits", True):
                beaten.append(f"{p.name}: does not fit")
                continue
            by = [n for c, a, n in against[p.name] if c <= cost[p.objective] and a >= reachable]
            if not by:
                return  # it could still enter this profile's front
            beaten.append(f"{p.name}: trial {by[0]}")
        raise StoppedEarly(
            f"stopped early: accuracy {acc:.4f} after epoch {epoch}/{epochs} (at best {reachable:.4f} at the end) "
            f"is dominated at its cost on every profile ({'; '.join(beaten)})"
        )

    return check


def run_trial(
    spec: TrialSpec, task: Task, *, cache: dict[str, Any] | None = None, device: str | torch.device = "cpu"
) -> TrialResult:
    """Build, fine-tune, score and price one plan. ``cache`` carries per-process reuse (teacher logits); ``device``
    is the worker's device: the model is built, fine-tuned and scored there (see :func:`build_model`)."""
    start = time.perf_counter()
    result = TrialResult(status="failed", seed=spec.seed, threads=torch.get_num_threads())
    notes: dict[str, Any] = {}  # the steps' records, kept whatever the outcome (a stopped KD's epochs included)

    def record(name: str, model: nn.Module) -> None:
        result.steps.append({"technique": name, **_footprint(model, task.example_inputs)})

    try:
        plan = CompressionPlan.from_dict(spec.plan)
        stop = early_stop(task, spec.min_accuracy, spec.fronts, spec.profiles)
        resume = None
        if spec.resume is not None:
            resume = torch.load(io.BytesIO(spec.resume), weights_only=True, map_location="cpu")
            # known before the build: a continued rung stopped early or failed still says it was continued
            result.fine_tune_legs = [*(float(f) for f in resume["legs"]), float(spec.fidelity)]
        model, ctx = build_model(
            plan,
            task,
            seed=spec.seed,
            cache=cache,
            on_step=record,
            device=device,
            epoch_callback=stop,
            notes=notes,
            profiles=spec.profiles,
            fidelity=spec.fidelity,
            resume=resume,
            keep_state=spec.keep_state,
        )
        state = ctx.fine_tune_state
        if state is not None:
            legs = [float(f) for f in state["legs"]]
            result.fine_tune_legs = legs if len(legs) > 1 else None
            if spec.keep_state and "model" in state:
                buffer = io.BytesIO()
                torch.save(state, buffer)
                result.checkpoint = buffer.getvalue()
        result.accuracy = score(model, task)
        model = model.cpu()  # priced and timed on the CPU whatever it was built on (the cost model is a model)
        result.costs = price(model, task.example_inputs, spec.profiles)
        for p in spec.profiles:
            if p.measure_latency:  # the machine running the search: time the model for real beside the estimate
                result.costs[p.name].update(_measured(model, task, p.batch_size))
        result.params = sum(p.numel() for p in model.parameters())
        result.status = "ok"
    except InfeasibleError as exc:
        result.status, result.reason = "infeasible", str(exc)
    except StoppedEarly as exc:
        result.status, result.reason = "stopped", str(exc)
    except NotFiniteError as exc:  # NaN outputs or a NaN metric: never a score
        result.status, result.reason = "failed", f"not finite: {exc}"
    except Exception as exc:  # failure is a result: the search goes on
        result.status = "failed"
        result.reason = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"
    result.plan = notes.pop("resolved_plan", None)
    result.notes = _jsonable({**notes, "device": str(device)})
    result.duration_s = time.perf_counter() - start
    return result


def _measured(model: nn.Module, task: Task, batch_size: int) -> dict[str, Any]:
    try:
        ms, backend = measure_latency_ms(
            model, task.example_inputs, batch_size=batch_size, calibration_inputs=task.calibration_inputs()
        )
    except Exception as exc:  # a model the runtime cannot export is still a valid trial; say why it is unmeasured
        return {"measured_latency_ms": None, "measured_backend": f"failed: {type(exc).__name__}: {exc}"[:300]}
    return {"measured_latency_ms": ms, "measured_backend": backend}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (int, float, str, bool)) or obj is None:
        return obj
    return repr(obj)
