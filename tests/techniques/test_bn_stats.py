"""A batch norm with momentum 0 (torchcrepe's) keeps stale statistics through a fine-tune: KD re-estimates them."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from autoslim.techniques import ApplyContext
from autoslim.techniques.bn_stats import frozen_batch_norms, reestimate
from tests.conftest import apply


def _net(momentum: float) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8, momentum=momentum), nn.ReLU(), nn.Linear(8, 3)).eval()


def test_only_batch_norms_that_never_update_are_frozen() -> None:
    assert len(frozen_batch_norms(_net(0.0))) == 1
    assert frozen_batch_norms(_net(0.1)) == []


def test_reestimate_gives_the_mean_of_the_batches_and_restores_the_momentum() -> None:
    model = _net(0.0)
    x = torch.randn(64, 6) * 3 + 1
    bn = frozen_batch_norms(model)[0]
    assert reestimate(model, [bn], x.split(16)) == 4
    hidden = model[0](x)
    assert torch.allclose(bn.running_mean, hidden.mean(0), atol=1e-5)
    assert bn.momentum == 0.0 and not model.training


@pytest.mark.parametrize("momentum", [0.0, 0.1])
def test_kd_reestimates_only_frozen_statistics(momentum: float) -> None:
    teacher = _net(momentum)
    x = torch.randn(256, 6) * 2
    y = teacher(x).argmax(1)
    ctx = ApplyContext(example_inputs=x[:4], teacher=teacher, train_data=(x, y), calibration_inputs=x[:64])
    student = copy.deepcopy(teacher)
    before = student[1].running_mean.clone()
    out = apply("distill.kd", student, ctx, epochs=2, lr=1e-2, batch_size=32)
    note = ctx.notes["distill.kd"].get("bn_reestimated")
    if momentum == 0.0:
        assert note == {"layers": 1, "batches": 8}
        assert torch.allclose(out[1].running_mean, out[0](x).mean(0), atol=1e-4)  # one pass of the data, averaged
    else:
        assert note is None and not torch.equal(out[1].running_mean, before)  # it followed the fine-tune itself


def test_an_early_stop_check_sees_reestimated_statistics() -> None:
    # The check scores the model between epochs: with the pretrained statistics it would stop a trial that recovers.
    teacher = _net(0.0)
    x = torch.randn(256, 6) * 2
    seen: list[torch.Tensor] = []
    ctx = ApplyContext(example_inputs=x[:4], teacher=teacher, train_data=(x, teacher(x).argmax(1)),
                       calibration_inputs=x[:64], epoch_callback=lambda e, n, m: seen.append(m[1].running_mean.clone()),
                       epoch_callback_min_steps=0)  # fmt: skip
    student = copy.deepcopy(teacher)
    apply("distill.kd", student, ctx, epochs=2, lr=1e-2, batch_size=32)
    assert len(seen) == 1 and not torch.equal(seen[0], teacher[1].running_mean)
