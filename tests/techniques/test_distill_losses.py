"""distill.kd picks its loss from what the model outputs: logits, distributions, sigmoid activations,
embeddings, NCHW logits, HF ModelOutputs; the task's own loss wins."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autoslim.techniques import ApplyContext
from autoslim.techniques.distill_losses import output_loss, pick_loss
from tests.conftest import apply


def _kind(out: torch.Tensor, targets: object = None, **kw: object) -> str:
    return pick_loss(out, targets, **kw).kind  # type: ignore[arg-type]


def test_pick_loss_reads_the_output() -> None:
    logits, labels = torch.randn(8, 5) * 3, torch.randint(0, 5, (8,))
    assert _kind(logits, labels) == "kl"
    assert _kind(logits.softmax(-1), labels) == "probs"
    assert _kind(torch.sigmoid(logits), torch.rand(8, 5).round()) == "bce"
    assert _kind(torch.sigmoid(logits), None) == "bce"
    assert _kind(logits, None) == "cosine"  # label-free vectors: embeddings
    assert _kind(logits, torch.randn(8, 5)) == "mse"  # float targets: regression
    assert _kind(logits, None, label_free="mse") == "mse"
    assert _kind(logits, labels, requested="bce") == "bce"
    assert _kind(logits, labels, custom=True) == "custom"
    seg = pick_loss(torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4)))
    assert (seg.kind, seg.class_dim) == ("kl", 1)  # NCHW logits: the class dimension is 1


def test_dense_kl_uses_the_class_dimension_and_per_pixel_labels() -> None:
    choice = pick_loss(torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4)))
    t = torch.randn(2, 3, 4, 4)
    y = t.argmax(1)
    same = output_loss(choice, t, t, y, temperature=2.0, alpha=1.0)
    assert float(same) == pytest.approx(0.0, abs=1e-6)  # identical outputs: no soft loss
    worse = output_loss(choice, -t, t, y, temperature=2.0, alpha=0.5)
    assert float(worse) > 0.5


class SigmoidNet(nn.Module):
    """Per-bin sigmoid activations, as a pitch tracker or a multi-label tagger outputs them."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body(x))


def _agree(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float(((a(x) > 0.5) == (b(x) > 0.5)).float().mean())


def test_kd_on_sigmoid_outputs_recovers_instead_of_collapsing() -> None:
    torch.manual_seed(0)
    teacher = SigmoidNet().eval()
    with torch.no_grad():
        teacher.body[2].weight.mul_(4)  # confident, spread activations
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.5 * torch.randn_like(p))
    x, held_out = torch.randn(512, 12), torch.randn(512, 12)
    with torch.no_grad():
        y = (teacher(x) > 0.5).float()  # multi-label targets
    ctx = ApplyContext(example_inputs=x[:4], teacher=teacher, train_data=(x, y), calibration_inputs=x[:64])
    before = _agree(student, teacher, held_out)
    kd = {"epochs": 8, "lr": 1e-2, "batch_size": 32}
    out = apply("distill.kd", copy.deepcopy(student), ctx, **kd)
    assert ctx.notes["distill.kd"]["loss"].startswith("bce")
    assert _agree(out, teacher, held_out) > before + 0.15  # measured: 0.59 -> 0.80
    # What autoslim did before: softmax KL over sigmoid activations drives the student away from its teacher.
    softmax_kl = apply("distill.kd", copy.deepcopy(student), ctx, **kd, loss="kl")
    assert _agree(softmax_kl, teacher, held_out) < before


def test_hf_style_outputs_are_distilled_on_their_named_field() -> None:
    class WithOutput(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"hidden": x, "scores": self.lin(x)}

    torch.manual_seed(0)
    teacher = WithOutput().eval()
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        student.lin.weight.add_(torch.randn_like(student.lin.weight))
    x = torch.randn(256, 4)
    ctx = ApplyContext(example_inputs=x[:4], teacher=teacher, train_data=(x, None), calibration_inputs=x[:64],
                       output="scores")  # fmt: skip
    gap = lambda m: float(F.mse_loss(m(x)["scores"], teacher(x)["scores"]))  # noqa: E731
    before = gap(student)
    out = apply("distill.kd", student, ctx, epochs=10, lr=3e-2, batch_size=32, label_free_loss="mse")
    with torch.no_grad():
        assert gap(out) < 0.5 * before


class Encoder(nn.Module):
    """An embedding model with dropout and a batch norm, as encoders are built."""

    def __init__(self) -> None:
        super().__init__()
        self.lin, self.bn, self.drop, self.out = nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Dropout(0.3), nn.Linear(16, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(torch.relu(self.bn(self.lin(x)))))


@pytest.mark.parametrize("dropout", ["auto", "on"])
def test_label_free_kd_matches_a_deterministic_teacher_with_dropout_off(dropout: str) -> None:
    """Distilling an exact copy of the teacher into itself: with dropout off (auto, for label-free outputs) the
    loss is zero and nothing moves; with dropout on the student chases noise and drifts away from the teacher."""
    torch.manual_seed(0)
    teacher = Encoder()
    teacher.bn = nn.Identity()  # type: ignore[assignment]  # only dropout may make the student move
    teacher.eval()
    student = copy.deepcopy(teacher)
    x = torch.randn(512, 8)
    ctx = ApplyContext(example_inputs=x[:4], teacher=teacher, train_data=(x, None), calibration_inputs=x[:64])
    # SGD: a zero gradient is no step (Adam would blow rounding noise up to lr-sized steps)
    out = apply("distill.kd", student, ctx, epochs=2, lr=0.1, optimizer="sgd", batch_size=64, dropout=dropout)
    with torch.no_grad():
        cos = float(F.cosine_similarity(out.eval()(x), teacher(x), dim=1).mean())
    assert ctx.notes["distill.kd"]["dropout"] == ("off" if dropout == "auto" else "on")
    if dropout == "auto":
        assert cos > 0.99999
    else:
        assert cos < 0.9999


def test_a_task_distillation_loss_turns_dropout_off_too() -> None:
    """A task's own distill_loss (MiniLM's 1 - cosine, with batch indices as its targets) is output matching."""
    torch.manual_seed(0)
    teacher = Encoder().eval()
    x, idx = torch.randn(256, 8), torch.arange(256)
    ctx = ApplyContext(example_inputs=x[:4], teacher=teacher, train_data=(x, idx), calibration_inputs=x[:64],
                       distill_loss=lambda s, t, _raw: 1 - F.cosine_similarity(s, t, dim=1).mean())  # fmt: skip
    apply("distill.kd", copy.deepcopy(teacher), ctx, epochs=1, lr=1e-3, batch_size=64)
    assert ctx.notes["distill.kd"]["dropout"] == "off"


def test_class_label_kd_keeps_dropout_on_and_a_bad_value_is_refused() -> None:
    from autoslim.techniques.distill import KDConfig, training_mode

    model = Encoder()
    training_mode(model, dropout_off=True)
    assert model.bn.training and not model.drop.training and not model.training
    training_mode(model, dropout_off=False)
    assert model.drop.training
    with pytest.raises(ValueError, match="dropout"):
        KDConfig(dropout="sometimes")  # type: ignore[arg-type]
