"""The registry's contract: roles (declared or from the order), words, fine-tune wrappers, listing by role."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import pytest

from autoslim.techniques import ROLES, get_technique, list_techniques, register, registry
from autoslim.techniques.registry import role_for_order

BUILTIN_ROLES = {
    "cut.blocks": "structural", "prune.structured": "structural", "factorize.lowrank": "structural",
    "prune.unstructured": "structural", "share.weights": "structural", "distill.kd": "fine-tune",
    "quantize": "numeric",
}  # fmt: skip


@dataclass(frozen=True)
class _Config:
    level: int = 1


def _noop(model, config, ctx):  # pragma: no cover - never applied here
    return model


@pytest.fixture
def scratch(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Registrations made in a test are gone after it."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return registry._REGISTRY


def test_builtins_declare_their_roles_and_words() -> None:
    assert {name: get_technique(name).role for name in BUILTIN_ROLES} == BUILTIN_ROLES
    for name in BUILTIN_ROLES:
        assert get_technique(name).describe_config is not None, name  # every built-in words its own config
    assert [n for n in BUILTIN_ROLES if get_technique(n).fine_tune_wrapper is not None] == ["quantize"]
    assert list_techniques(role="fine-tune") == ["distill.kd"]
    assert "quantize" in list_techniques(role="numeric") and "quantize" not in list_techniques(role="structural")


@pytest.mark.parametrize(("order", "role"), [(10, "structural"), (59.9, "structural"), (60, "fine-tune"),
                                             (69, "fine-tune"), (70, "numeric"), (95, "numeric")])  # fmt: skip
def test_the_role_defaults_from_the_order(scratch: dict, order: float, role: str) -> None:
    assert role_for_order(order) == role
    register("tests.ordered", _Config, order=order)(_noop)
    assert get_technique("tests.ordered").role == role


def test_a_declared_role_wins_and_an_unknown_one_raises(scratch: dict) -> None:
    register("tests.late_structural", _Config, order=80, role="structural")(_noop)
    assert get_technique("tests.late_structural").role == "structural"
    with pytest.raises(ValueError, match="role must be one of"):
        register("tests.bad_role", _Config, role="prune")  # type: ignore[arg-type]
    assert "tests.bad_role" not in list_techniques()
    assert ROLES == ("structural", "fine-tune", "numeric")


def test_describe_uses_the_technique_s_words_or_falls_back_to_its_fields(scratch: dict) -> None:
    register("tests.plain", _Config)(_noop)
    register("tests.worded", _Config, describe=lambda c: f"level {c.level}")(_noop)
    assert get_technique("tests.plain").describe(_Config(3)) == "tests.plain(level=3)"
    assert get_technique("tests.worded").describe(_Config(3)) == "level 3"


def test_a_fine_tune_wrapper_is_kept_as_registered(scratch: dict) -> None:
    def wrap(model, config, ctx):
        return nullcontext(model)

    register("tests.wrapping", _Config, order=75, fine_tune_wrapper=wrap)(_noop)
    tech = get_technique("tests.wrapping")
    assert tech.fine_tune_wrapper is wrap and tech.role == "numeric"
