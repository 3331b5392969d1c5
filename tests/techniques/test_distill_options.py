"""distill.kd options: step schedule, gradient clipping, feature matching and label-free output matching."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autoslim.nn_utils import weight_layers
from autoslim.techniques import get_technique
from autoslim.techniques.distill import _scheduler, is_label_free
from tests.conftest import apply, inputs_for, make_ctx, make_model

KD = {"epochs": 2, "lr": 3e-3, "batch_size": 32}


def _teacher() -> nn.Module:
    model = make_model("mlp")
    with torch.no_grad():
        weight_layers(model)[-1][1].weight.mul_(10.0)  # confident logits: something to distill
    return model


def _perturbed(teacher: nn.Module, scale: float = 0.5) -> nn.Module:
    student = copy.deepcopy(teacher)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for _, m in weight_layers(student):
            m.weight.add_(scale * m.weight.std() * torch.randn(m.weight.shape, generator=gen))
    return student.eval()


def _output_mse(student: nn.Module, teacher: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float(F.mse_loss(student.eval()(x), teacher.eval()(x)))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("schedule", "linear"),
        ("grad_clip", 0.0),
        ("grad_clip", -1.0),
        ("feature_weight", -0.1),
        ("label_free_loss", "l1"),
    ],
)
def test_invalid_option_raises_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        get_technique("distill.kd").make_config({field: value})


def test_step_schedule_decays_tenfold_at_two_thirds() -> None:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = _scheduler(opt, "step", total_steps=9)
    lrs = []
    for _ in range(9):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:6] == [1.0] * 6
    assert lrs[6:] == pytest.approx([0.1] * 3)


def test_step_schedule_recovers_a_student() -> None:
    teacher = _teacher()
    student = _perturbed(teacher)
    x = inputs_for("mlp", 256, seed=11)
    before = _output_mse(student, teacher, x)
    out = apply("distill.kd", student, make_ctx("mlp", teacher=teacher, n_train=256), **KD, schedule="step")
    assert _output_mse(out, teacher, x) < before


def test_grad_clip_bounds_the_update_and_none_disables_it() -> None:
    teacher = _teacher()

    def max_change(grad_clip: float | None) -> float:
        student = _perturbed(teacher)
        w0 = [m.weight.detach().clone() for _, m in weight_layers(student)]
        params = {**KD, "epochs": 1, "optimizer": "sgd", "lr": 1e-2, "grad_clip": grad_clip}
        out = apply("distill.kd", student, make_ctx("mlp", teacher=teacher, n_train=128), **params)
        return max(float((m.weight.detach() - w).abs().max()) for (_, m), w in zip(weight_layers(out), w0, strict=True))

    tiny, unclipped = max_change(1e-6), max_change(None)
    assert tiny < 1e-5  # 4 SGD steps of norm <= 1e-6 (momentum adds at most a small factor)
    assert unclipped > 100 * tiny


def test_feature_matching_uses_same_named_layers_of_equal_shape() -> None:
    teacher = _teacher()
    student = _perturbed(teacher)
    student[2], student[4] = nn.Linear(32, 16), nn.Linear(16, 32)  # "2" changes its output shape: not matched
    ctx = make_ctx("mlp", teacher=teacher, n_train=128)
    out = apply("distill.kd", student, ctx, **KD, feature_weight=1.0)
    assert ctx.notes["distill.kd"]["feature_layers"] == ["0", "4"]  # "6" is the logits layer: matched already
    for m in [*out.modules(), *teacher.modules()]:
        assert not m._forward_hooks  # the feature hooks are gone


def test_feature_matching_pulls_hidden_features_toward_the_teacher() -> None:
    teacher = _teacher()
    x = inputs_for("mlp", 256, seed=11)

    def hidden_mse(feature_weight: float) -> float:
        ctx = make_ctx("mlp", teacher=teacher, n_train=256)
        out = apply("distill.kd", _perturbed(teacher), ctx, **KD, alpha=1.0, feature_weight=feature_weight)
        with torch.no_grad():
            return float(F.mse_loss(out[:2](x), teacher[:2](x)))

    assert hidden_mse(10.0) < hidden_mse(0.0)


def test_feature_matching_without_a_match_is_skipped_with_a_note() -> None:
    teacher = _teacher()
    student = nn.Sequential(_perturbed(teacher))  # every layer name gains a "0." prefix
    ctx = make_ctx("mlp", teacher=teacher, n_train=64)
    apply("distill.kd", student, ctx, **KD, feature_weight=1.0)
    assert "skipped" in ctx.notes["distill.kd"]["feature_layers"]


def test_label_detection() -> None:
    assert is_label_free(None)
    assert is_label_free(torch.randn(4, 3))
    assert not is_label_free(torch.tensor([0, 2, 1]))


@pytest.mark.parametrize("loss", ["mse", "cosine"])
@pytest.mark.parametrize("targets", ["none", "float"])
def test_label_free_tasks_match_the_teacher_outputs(loss: str, targets: str) -> None:
    teacher = make_model("mlp")  # a "regression" model: its 4 outputs are not a class distribution
    student = _perturbed(teacher)
    x = inputs_for("mlp", 256, seed=3)
    ctx = make_ctx("mlp", teacher=teacher)
    ctx.train_data = (x, None if targets == "none" else torch.randn(256, 4))
    held_out = inputs_for("mlp", 256, seed=11)
    before = _output_mse(student, teacher, held_out)
    out = apply("distill.kd", student, ctx, **KD, label_free_loss=loss)
    assert ctx.notes["distill.kd"]["label_free"] is True
    assert _output_mse(out, teacher, held_out) < 0.7 * before
    assert ctx.cache["teacher_logits"].shape == (256, 4)  # the teacher-output cache works without labels too


def test_epochs_grow_with_the_share_of_the_teacher_removed() -> None:
    teacher = _teacher()
    ctx = make_ctx("mlp", teacher=teacher, n_train=64)
    epochs: list[int] = []
    ctx.epoch_callback = lambda e, n, m: epochs.append(n)

    def half() -> nn.Module:  # the smaller half of every tensor zeroed: ~50% of the teacher removed
        model = copy.deepcopy(teacher)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(p.abs() > p.abs().flatten().median())
        return model

    apply("distill.kd", half(), ctx, **KD, epochs_per_removed=4.0)
    removed = ctx.notes["distill.kd"]["removed"]
    assert 0.45 < removed < 0.55
    assert ctx.notes["distill.kd"]["epochs_run"] == 2 + int(4.0 * removed + 0.5) == epochs[0]
    apply("distill.kd", copy.deepcopy(teacher), ctx, **KD, epochs_per_removed=4.0)  # nothing removed: no extra epoch
    assert ctx.notes["distill.kd"]["epochs_run"] == 2 and ctx.notes["distill.kd"]["removed"] == 0.0
    ctx.epoch_callback = None
    apply("distill.kd", half(), ctx, **{**KD, "epochs": 0}, epochs_per_removed=4.0)  # the extra epochs alone run
    assert ctx.notes["distill.kd"]["epochs_run"] == 2
    with pytest.raises(ValueError, match="epochs_per_removed"):
        get_technique("distill.kd").make_config({"epochs_per_removed": -1.0})
