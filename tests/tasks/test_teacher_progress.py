"""The built-in teacher reports its own epochs to a listener (the CLI's progress), and listening changes nothing
it learns: scoring after each epoch runs in eval mode without drawing from any random stream."""

from __future__ import annotations

import torch

from autoslim.tasks import mnist1d_cnn
from autoslim.tasks.progress import TaskProgress, is_listened, listening, report_progress


def _train(listen: bool) -> tuple[dict[str, torch.Tensor], list[TaskProgress]]:
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(512, 1, 40, generator=gen), torch.randint(0, 10, (512,), generator=gen)
    torch.manual_seed(0)
    model = mnist1d_cnn.build_cnn(c1=8, c2=16, hidden=16)
    events: list[TaskProgress] = []
    cfg = {**mnist1d_cnn.RECIPE["train"], "epochs": 2}
    if listen:
        with listening(events.append):
            mnist1d_cnn._train(model, (x, y), cfg, (x[:128], y[:128]))
    else:
        mnist1d_cnn._train(model, (x, y), cfg, (x[:128], y[:128]))
    return model.state_dict(), events


def test_each_epoch_is_reported_with_its_accuracy_and_the_weights_are_the_same() -> None:
    quiet, none = _train(listen=False)
    heard, events = _train(listen=True)
    assert none == [] and [(e.done, e.total) for e in events] == [(1, 2), (2, 2)]
    assert all(e.what == "mnist1d-cnn teacher" and e.detail.startswith("val accuracy ") for e in events)
    assert all(torch.equal(quiet[k], heard[k]) for k in quiet)  # batch-norm statistics included


def test_nobody_listening_is_silent() -> None:
    assert not is_listened()
    report_progress("x", 1, 1)  # no listener: nothing happens
    with listening(lambda p: None):
        assert is_listened()
    assert not is_listened()
