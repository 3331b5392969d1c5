"""The shipped contract kit (autoslim.testing) passes every built-in technique, and catches broken ones."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
import torch

from autoslim.cost import builtin_profiles
from autoslim.techniques import InfeasibleError, get_technique, register, registry
from autoslim.testing import (
    check_config,
    check_describe,
    check_deterministic,
    check_refuses,
    check_resumes,
    check_role,
    check_technique,
    no_weight_layers_task,
    tiny_task,
)

BUILTINS = ["cut.blocks", "prune.structured", "factorize.lowrank", "prune.unstructured", "share.weights",
            "distill.kd", "quantize"]  # fmt: skip
FAST = {"distill.kd": {"epochs": 1}}  # one epoch runs the whole fine-tune loop


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_keeps_the_shipped_contract(name: str) -> None:
    report = check_technique(name, get_technique(name).make_config(FAST.get(name, {})))
    assert report.status == "ok", report.reason
    assert set(report.costs) == set(builtin_profiles())
    assert report.checks[-1] == "refuses" and report.description
    if name != "distill.kd":  # a fine-tune trains a model without Conv or Linear layers as well as any
        assert report.refused_without_weight_layers, name
    assert ("resumes" in report.checks) == (name == "distill.kd")  # the one resumable built-in


def test_qat_keeps_the_contract_and_its_wrapper_leaves_no_trace() -> None:
    config = get_technique("quantize").make_config({"weight_bits": 4, "act_bits": 8, "mode": "qat"})
    check_role("quantize", config, tiny_task())


@dataclass(frozen=True)
class _Config:
    scale: float = 0.5


@dataclass
class _Mutable:
    scale: float = 0.5


@pytest.fixture
def scratch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def _scale(model, config, ctx):
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(config.scale)
    return model


def test_the_kit_catches_a_mutable_config_and_empty_words(scratch: None) -> None:
    register("tests.mutable", _Mutable)(_scale)
    with pytest.raises(AssertionError, match="frozen"):
        check_technique("tests.mutable")
    register("tests.mute", _Config, describe=lambda c: " ")(_scale)
    check_config("tests.mute", _Config())
    with pytest.raises(AssertionError, match="non-empty"):
        check_describe("tests.mute", _Config())


def test_the_kit_catches_randomness_a_crash_and_a_reshaping_fine_tune(scratch: None) -> None:
    calls = itertools.count(1)

    def noisy(model, config, ctx):  # state kept across builds (the seed cannot reach it): differs per build
        with torch.no_grad():
            next(model.parameters()).add_(next(calls) * 1e-3)
        return model

    register("tests.noisy", _Config)(noisy)
    task = tiny_task()
    with pytest.raises(AssertionError, match="not deterministic"):
        check_deterministic("tests.noisy", _Config(), task)

    def crash(model, config, ctx):
        raise RuntimeError("boom")

    register("tests.crash", _Config)(crash)
    with pytest.raises(AssertionError, match="crashed with RuntimeError"):
        check_refuses("tests.crash", _Config(), no_weight_layers_task())

    def refuse(model, config, ctx):
        raise InfeasibleError("tests.refuse: nothing to do")

    register("tests.refuse", _Config)(refuse)
    assert check_refuses("tests.refuse", _Config(), no_weight_layers_task(), must_refuse=True) == (
        "tests.refuse: nothing to do"
    )
    report = check_technique("tests.refuse")
    assert report.status == "infeasible" and "nothing to do" in report.reason

    def reshape(model, config, ctx):
        return torch.nn.Sequential(*list(model.children())[:-1], torch.nn.Linear(16, 3, bias=False))

    register("tests.reshape", _Config, role="fine-tune")(reshape)
    with pytest.raises(AssertionError, match="keep the parameters"):
        check_role("tests.reshape", _Config(), task)

    # says it can resume, but neither leaves a state nor reads one
    register("tests.forgetful", _Config, role="fine-tune", resumable=True)(_scale)
    with pytest.raises(AssertionError, match="left no state"):
        check_resumes("tests.forgetful", _Config(), task)
