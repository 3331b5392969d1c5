"""The technique contract, as checks a plug-in author runs on their own technique.

Each ``check_*`` function raises ``AssertionError`` with a message saying what broke; :func:`check_technique`
runs them all. What they hold a technique to is what the core relies on:

* registration: a role the core knows, callables where it expects them;
* parameters are data: the config is a frozen dataclass that rebuilds from its fields and round-trips through a
  plan's JSON (a repeated step included), so a plan saved beside a front point rebuilds the same model;
* words: ``describe`` gives a non-empty string, and the plan's description carries it;
* apply: the model it returns runs on the task's example inputs with the teacher's output shape and finite values,
  and the teacher is left untouched; or it raises :class:`~autoslim.techniques.InfeasibleError` with a reason;
* determinism: two builds with one seed are equal bit for bit (weights, buffers and outputs);
* role: a fine-tune or numeric step keeps every parameter's name and shape (export rebuilds the architecture
  without the fine-tunes; int8 runtimes build the float model without the numeric steps); a
  ``fine_tune_wrapper`` leaves the model as it found it on exit;
* resuming (a fine-tune registered ``resumable=True``): rungs that go on from each other's saved state, through
  bytes as between worker processes, give the model a rebuild with their ``fine_tune_legs`` gives, bit for bit;
* pricing: ``run_trial`` gives "ok" or "infeasible" (never "failed"), with a cost on every profile;
* refusal: on a model without Conv or Linear layers (or a task the author names), the technique applies or
  raises InfeasibleError: it never crashes.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from autoslim.cost import HardwareProfile, builtin_profiles
from autoslim.nn_utils import call_model
from autoslim.plan import CompressionPlan, Step
from autoslim.tasks import Task
from autoslim.techniques import ROLES, ApplyContext, InfeasibleError, get_technique
from autoslim.testing.tiny import no_weight_layers_task, tiny_task
from autoslim.trial import TrialSpec, build_model, run_trial


@dataclass
class ContractReport:
    """What :func:`check_technique` found, for a test to assert more on or print."""

    technique: str
    config: Any
    role: str
    description: str
    status: str  # run_trial's status on the task: "ok" or "infeasible"
    reason: str = ""  # why it is infeasible
    costs: dict[str, dict[str, Any]] = field(default_factory=dict)  # profile name -> Cost.to_dict()
    refused_without_weight_layers: str | None = None  # the InfeasibleError message on that model, if it refused
    checks: list[str] = field(default_factory=list)  # the checks that passed, in order


def _plan(name: str, config: Any, repeat: int = 1) -> CompressionPlan:
    return CompressionPlan(tuple(Step(name, config) for _ in range(repeat)))


def check_registration(name: str) -> None:
    """The technique is registered with a known role and callables where the core calls them."""
    tech = get_technique(name)
    assert tech.role in ROLES, f"{name}: role {tech.role!r} is not one of {ROLES}"
    assert callable(tech.apply), f"{name}: apply is not callable"
    for hook in ("describe_config", "fine_tune_wrapper"):
        value = getattr(tech, hook)
        assert value is None or callable(value), f"{name}: {hook} must be a callable or None"
    assert dataclasses.is_dataclass(tech.config_cls), f"{name}: the config class must be a dataclass"
    assert tech.config_cls.__dataclass_params__.frozen, f"{name}: the config dataclass must be frozen"  # type: ignore[attr-defined]


def check_config(name: str, config: Any) -> None:
    """``config`` is an instance of the technique's frozen config class and rebuilds from its own fields."""
    tech = get_technique(name)
    assert isinstance(config, tech.config_cls), f"{name}: config is a {type(config).__name__}, not a {tech.config_cls}"
    names = [f.name for f in dataclasses.fields(tech.config_cls)]
    if names:
        try:
            setattr(config, names[0], getattr(config, names[0]))
        except dataclasses.FrozenInstanceError:
            pass
        else:
            raise AssertionError(f"{name}: config fields can be assigned; the dataclass must be frozen")
    rebuilt = tech.make_config({n: getattr(config, n) for n in names})
    assert rebuilt == config, f"{name}: make_config(its own fields) gives {rebuilt!r}, not {config!r}"


def check_round_trip(name: str, config: Any) -> None:
    """A plan with the step (once, and twice in a row) survives its JSON unchanged."""
    for repeat in (1, 2):
        plan = _plan(name, config, repeat)
        try:
            text = plan.to_json()
        except TypeError as exc:
            raise AssertionError(f"{name}: config fields must be JSON values (numbers, strings, lists)") from exc
        back = CompressionPlan.from_json(text)
        assert back == plan, f"{name}: the plan read back from JSON differs: {back!r} != {plan!r}"
        assert json.loads(back.to_json()) == json.loads(text), f"{name}: to_json is not stable across a round trip"


def check_describe(name: str, config: Any) -> str:
    """``describe`` gives a non-empty string, which the plan's description carries; returns it."""
    words = get_technique(name).describe(config)
    assert isinstance(words, str) and words.strip(), f"{name}: describe gave {words!r}; it must be non-empty words"
    assert words in _plan(name, config).describe(), f"{name}: the plan's description does not carry {words!r}"
    return words


def _output(model: nn.Module, inputs: Any) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return call_model(model, inputs)


def _same_state(a: nn.Module, b: nn.Module) -> str | None:
    """None when the two models hold equal weights and buffers bit for bit, else the first difference."""
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys():
        return f"state_dict keys differ: {sorted(set(sa) ^ set(sb))[:5]}"
    for k in sa:
        if sa[k].shape != sb[k].shape or not torch.equal(sa[k], sb[k]):
            return f"{k} differs"
    return None


def check_applies(name: str, config: Any, task: Task, *, seed: int = 0) -> str | None:
    """Build the one-step plan on ``task``: the model runs on the example inputs with the teacher's output shape
    and finite values, and the teacher is untouched. Returns the InfeasibleError message when it refuses."""
    teacher = task.teacher()
    before = copy.deepcopy(teacher.state_dict())
    reference = _output(copy.deepcopy(teacher), task.example_inputs)
    try:
        model, _ctx = build_model(_plan(name, config), task, seed=seed)
    except InfeasibleError as exc:
        assert str(exc).strip(), f"{name}: an InfeasibleError must say why"
        return str(exc)
    out = _output(model, task.example_inputs)
    assert out.shape == reference.shape, f"{name}: output shape {tuple(out.shape)} != {tuple(reference.shape)}"
    assert torch.isfinite(out).all(), f"{name}: the model's outputs are not finite"
    after = teacher.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, f"{name}: applying it changed the teacher ({changed[:3]}); work on the model it is given"
    return None


def check_deterministic(name: str, config: Any, task: Task, *, seed: int = 0) -> None:
    """Two builds with one seed give the same weights, buffers and outputs, bit for bit."""
    first, _ = build_model(_plan(name, config), task, seed=seed)
    second, _ = build_model(_plan(name, config), task, seed=seed)
    differs = _same_state(first, second)
    assert differs is None, f"{name}: not deterministic for seed {seed}: {differs}"
    inputs = task.val_data().inputs_head(64)
    assert torch.equal(_output(first, inputs), _output(second, inputs)), f"{name}: outputs differ for one seed"


def check_role(name: str, config: Any, task: Task, *, seed: int = 0) -> None:
    """A fine-tune or numeric step keeps every parameter's name and shape; a ``fine_tune_wrapper`` runs the model
    inside it and leaves it as it found it."""
    tech = get_technique(name)
    teacher = task.teacher()
    if tech.role in ("fine-tune", "numeric"):
        model, _ = build_model(_plan(name, config), task, seed=seed)
        shapes = {k: tuple(p.shape) for k, p in model.named_parameters()}
        expected = {k: tuple(p.shape) for k, p in teacher.named_parameters()}
        assert shapes == expected, f"{name}: a {tech.role} step must keep the parameters' names and shapes"
    if tech.fine_tune_wrapper is not None:
        model = copy.deepcopy(teacher)
        ctx = ApplyContext(example_inputs=task.example_inputs, teacher=teacher,
                           calibration_inputs=task.calibration_inputs(), seed=seed)  # fmt: skip
        reference = _output(copy.deepcopy(model), task.example_inputs)
        with tech.fine_tune_wrapper(model, config, ctx):
            inside = _output(model, task.example_inputs)  # eval mode: batch norm statistics stay as they are
            assert torch.isfinite(inside).all(), f"{name}: the model does not run inside fine_tune_wrapper"
        differs = _same_state(model, teacher)
        assert differs is None, f"{name}: fine_tune_wrapper left the model changed: {differs}"
        assert torch.equal(_output(model, task.example_inputs), reference), f"{name}: fine_tune_wrapper left a trace"


def check_resumes(name: str, config: Any, task: Task, *, seed: int = 0) -> None:
    """A ``resumable`` fine-tune: built to 1/3 keeping its state, then on to 1 from that state (handed over as
    bytes, as the driver does between workers): it reports the legs (1/3, 1), and the model equals, bit for bit,
    the one ``build_model(..., legs=...)`` rebuilds with them in one process."""
    plan = _plan(name, config)
    _, ctx = build_model(plan, task, seed=seed, fidelity=1 / 3, keep_state=True)
    state = ctx.fine_tune_state
    assert state is not None and "model" in state, (
        f"{name}: resumable, but left no state with keep_state (set ctx.fine_tune_state: model, legs, ...)"
    )
    buffer = io.BytesIO()
    torch.save(state, buffer)
    resume = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    model, ctx = build_model(plan, task, seed=seed, resume=resume)
    moved = [k for k, v in model.named_parameters() if not torch.equal(v.detach().cpu(), resume["model"][k])]
    assert moved, f"{name}: going on from the 1/3 state to 1 left every weight as it was (did the schedule restart?)"
    legs = (ctx.fine_tune_state or {}).get("legs")
    assert legs is not None and [round(float(f), 6) for f in legs] == [round(1 / 3, 6), 1.0], (
        f"{name}: a continued fine-tune must report its legs ([1/3, 1] in ctx.fine_tune_state), got {legs}"
    )
    rebuilt, _ = build_model(plan, task, seed=seed, legs=legs)
    differs = _same_state(model, rebuilt)
    assert differs is None, f"{name}: going on from the saved state and rebuilding with legs {legs} differ: {differs}"


def check_priced(
    name: str, config: Any, task: Task, profiles: Sequence[HardwareProfile], *, seed: int = 0
) -> tuple[str, str, dict[str, dict[str, Any]]]:
    """``run_trial`` of the one-step plan is "ok" with a finite cost on every profile, or "infeasible" with a
    reason; never "failed". Returns (status, reason, costs)."""
    result = run_trial(TrialSpec(plan=_plan(name, config).to_dict(), profiles=tuple(profiles), seed=seed), task)
    assert result.status in ("ok", "infeasible"), f"{name}: run_trial gave {result.status!r}: {result.reason}"
    if result.status == "infeasible":
        assert result.reason.strip(), f"{name}: an infeasible trial must say why"
        return result.status, result.reason, {}
    assert set(result.costs) == {p.name for p in profiles}, f"{name}: priced on {sorted(result.costs)} only"
    for p in profiles:
        cost = result.costs[p.name]
        for key in ("model_bytes", "latency_ms", p.objective):
            value = cost.get(key)
            assert isinstance(value, (int, float)) and math.isfinite(value) and value >= 0, (
                f"{name}: {p.name}.{key} is {value!r}"
            )
    return result.status, result.reason, result.costs


def check_refuses(name: str, config: Any, task: Task, *, must_refuse: bool = False, seed: int = 0) -> str | None:
    """On a task the technique may not be able to take, it applies or raises InfeasibleError, never anything else
    (``must_refuse``: it has to raise). Returns the refusal's message, or None when it applied."""
    try:
        reason = check_applies(name, config, task, seed=seed)
    except AssertionError:
        raise
    except Exception as exc:
        raise AssertionError(
            f"{name}: crashed with {type(exc).__name__}: {exc}; a model it cannot take must raise InfeasibleError"
        ) from exc
    assert reason is not None or not must_refuse, f"{name}: applied to {task.name}, which it was expected to refuse"
    return reason


def check_technique(
    name: str,
    config: Any = None,
    *,
    task: Task | None = None,
    profiles: Sequence[HardwareProfile] | None = None,
    infeasible_task: Task | None = None,
    seed: int = 0,
) -> ContractReport:
    """Run every check of the contract on technique ``name`` with ``config`` (default: its default config);
    raise AssertionError at the first that fails. ``task`` defaults to :func:`~autoslim.testing.tiny_task`,
    ``profiles`` to the built-in ones. ``infeasible_task``: a task the technique must refuse; without one, it must
    apply to or refuse :func:`~autoslim.testing.no_weight_layers_task` without crashing. ::

        from autoslim.testing import check_technique

        def test_my_technique_keeps_the_contract():
            report = check_technique("demo.scale", ScaleConfig(factor=0.5))
            assert report.status == "ok"
    """
    check_registration(name)
    tech = get_technique(name)
    config = tech.make_config({}) if config is None else config
    task = task if task is not None else tiny_task()
    profiles = tuple(profiles) if profiles is not None else tuple(builtin_profiles().values())
    done: list[str] = ["registration"]
    check_config(name, config)
    check_round_trip(name, config)
    description = check_describe(name, config)
    done += ["config", "round_trip", "describe"]
    refused = check_applies(name, config, task, seed=seed)
    done.append("applies")
    if refused is None:
        check_deterministic(name, config, task, seed=seed)
        check_role(name, config, task, seed=seed)
        done += ["deterministic", "role"]
        if tech.resumable:
            check_resumes(name, config, task, seed=seed)
            done.append("resumes")
    status, reason, costs = check_priced(name, config, task, profiles, seed=seed)
    expected = "infeasible" if refused is not None else "ok"
    assert status == expected, f"{name}: run_trial gave {status!r} where building the plan gave {expected!r}"
    done.append("priced")
    edge = infeasible_task if infeasible_task is not None else no_weight_layers_task()
    without = check_refuses(name, config, edge, must_refuse=infeasible_task is not None, seed=seed)
    done.append("refuses")
    return ContractReport(name, config, tech.role, description, status, reason, costs, without, done)
