"""distill.kd: a recovery fine-tune toward the teacher that keeps pruning masks and is reproducible per seed."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autoslim.nn_utils import weight_layers
from autoslim.techniques import ApplyContext, InfeasibleError, get_technique
from tests.conftest import apply, inputs_for, make_ctx, make_model, same_state


def _teacher(kind: str) -> nn.Module:
    """A random model with confident logits (a random init's logits are nearly uniform: nothing to distill)."""
    model = make_model(kind)
    with torch.no_grad():
        weight_layers(model)[-1][1].weight.mul_(10.0)
    return model


def _perturbed(teacher: nn.Module, scale: float = 0.5, seed: int = 7) -> nn.Module:
    student = copy.deepcopy(teacher)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, m in weight_layers(student):
            m.weight.add_(scale * m.weight.std() * torch.randn(m.weight.shape, generator=gen))
    return student.eval()


def _kl_to_teacher(student: nn.Module, teacher: nn.Module, x: torch.Tensor) -> float:
    student.eval()
    teacher.eval()
    with torch.no_grad():
        return float(
            F.kl_div(
                F.log_softmax(student(x), -1), F.log_softmax(teacher(x), -1), log_target=True, reduction="batchmean"
            )
        )


def _agreement(student: nn.Module, teacher: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((student.eval()(x).argmax(-1) == teacher.eval()(x).argmax(-1)).float().mean())


KD = {"epochs": 3, "lr": 3e-3, "batch_size": 32, "alpha": 0.9, "temperature": 2.0}


@pytest.mark.parametrize("kind", ["mlp", "cnn1d", "cnn2d"])
def test_kd_moves_a_perturbed_student_toward_the_teacher(kind: str) -> None:
    teacher = _teacher(kind)
    student = _perturbed(teacher)
    held_out = inputs_for(kind, 256, seed=11)
    kl_before = _kl_to_teacher(student, teacher, held_out)
    agree_before = _agreement(student, teacher, held_out)
    ctx = make_ctx(kind, teacher=teacher, n_train=256)

    out = apply("distill.kd", student, ctx, **KD)

    assert not out.training
    assert _kl_to_teacher(out, teacher, held_out) < 0.5 * kl_before
    if kind != "cnn2d":  # the random 2-D teacher predicts one class for most inputs: agreement says little there
        assert _agreement(out, teacher, held_out) > agree_before + 0.2
    assert out(held_out).shape == teacher(held_out).shape
    assert torch.isfinite(torch.tensor(ctx.notes["distill.kd"]["final_loss"]))


def test_sgd_with_constant_schedule_also_recovers() -> None:
    teacher = _teacher("mlp")
    student = _perturbed(teacher)
    held_out = inputs_for("mlp", 256, seed=11)
    kl_before = _kl_to_teacher(student, teacher, held_out)
    ctx = make_ctx("mlp", teacher=teacher, n_train=256)
    out = apply("distill.kd", student, ctx, **{**KD, "optimizer": "sgd", "schedule": "constant", "lr": 1e-2})
    assert _kl_to_teacher(out, teacher, held_out) < kl_before


def test_masks_keep_pruned_zeros_at_zero_through_kd() -> None:
    teacher = _teacher("cnn1d")
    ctx = make_ctx("cnn1d", teacher=teacher, n_train=256)
    student = apply("prune.unstructured", copy.deepcopy(teacher), ctx, amount=0.6)
    zeros = [m.weight.detach() == 0 for _, m in weight_layers(student)]
    before = [m.weight.detach().clone() for _, m in weight_layers(student)]

    out = apply("distill.kd", student, ctx, **KD)

    for (name, m), z, w0 in zip(weight_layers(out), zeros, before, strict=True):
        assert bool((m.weight[z] == 0).all()), name
        assert not torch.equal(m.weight[~z], w0[~z]), name  # the surviving weights were trained


def test_same_seed_same_result_other_seed_other_result() -> None:
    teacher = _teacher("cnn2d")

    def run(seed: int) -> nn.Module:
        torch.manual_seed(123)
        return apply("distill.kd", _perturbed(teacher), make_ctx("cnn2d", teacher=teacher, n_train=128, seed=seed),
                     **{**KD, "epochs": 1})  # fmt: skip

    a, b, c = run(0), run(0), run(1)
    assert same_state(a, b)
    assert not same_state(a, c)  # the seed drives the data order


def test_teacher_logits_are_computed_once_and_cached() -> None:
    teacher = _teacher("mlp")
    students = [_perturbed(teacher), _perturbed(teacher)]
    ctx = make_ctx("mlp", teacher=teacher, n_train=128)
    calls = []
    teacher.register_forward_hook(lambda *_: calls.append(1))
    apply("distill.kd", students[0], ctx, **{**KD, "epochs": 1})
    n_first = len(calls)
    assert n_first >= 1
    cached = ctx.cache["teacher_logits"]
    with torch.no_grad():
        assert torch.allclose(cached, teacher(ctx.train_data[0]))
    calls.clear()
    ctx2 = ApplyContext(example_inputs=ctx.example_inputs, teacher=teacher, train_data=ctx.train_data, cache=ctx.cache)
    apply("distill.kd", students[1], ctx2, **{**KD, "epochs": 1})
    assert calls == []


def test_zero_epochs_changes_nothing() -> None:
    teacher = _teacher("mlp")
    student = _perturbed(teacher)
    reference = copy.deepcopy(student)
    out = apply("distill.kd", student, make_ctx("mlp", teacher=teacher, n_train=64), epochs=0)
    assert same_state(out, reference)


@pytest.mark.parametrize("missing", ["teacher", "train_data"])
def test_without_teacher_or_data_it_is_infeasible(missing: str) -> None:
    teacher = _teacher("mlp")
    ctx = make_ctx("mlp", teacher=teacher, n_train=64)
    setattr(ctx, missing, None)
    with pytest.raises(InfeasibleError):
        apply("distill.kd", _perturbed(teacher), ctx, epochs=1)


@pytest.mark.parametrize(
    "params",
    [
        {"epochs": -1}, {"lr": 0.0}, {"lr": -1e-3}, {"temperature": 0.0}, {"alpha": 1.5}, {"alpha": -0.1},
        {"batch_size": 0}, {"optimizer": "rmsprop"}, {"schedule": "linear"},
    ],
)  # fmt: skip
def test_invalid_config_raises(params: dict) -> None:
    with pytest.raises(ValueError):
        get_technique("distill.kd").make_config(params)
