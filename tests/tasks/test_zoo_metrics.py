"""The zoo's metrics and batch helpers on hand-made inputs (fast: no model is trained or loaded)."""

from __future__ import annotations

import pytest
import torch

from autoslim.evaluate import StreamingMetric
from autoslim.tasks.zoo._common import TokenDataset, pad_collate
from autoslim.tasks.zoo.crepe_tiny import RawPitchAccuracy, cents_to_bins, frequency_to_cents, make_tones
from autoslim.tasks.zoo.minilm_embed import TeacherCosine
from autoslim.tasks.zoo.multilabel import macro_f1
from autoslim.tasks.zoo.unet import MeanIoU, make_shapes


def _logits(labels: torch.Tensor, classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, classes).movedim(-1, 1).float()


def test_mean_iou_streams_a_confusion_matrix() -> None:
    masks = torch.tensor([[[0, 1], [2, 3]]])  # one 2x2 image, each class once
    metric = MeanIoU(4)
    assert isinstance(metric, StreamingMetric)
    metric.update(_logits(masks, 4), (None, masks))
    assert metric.compute() == pytest.approx(1.0)
    wrong = torch.tensor([[[0, 1], [2, 2]]])  # class 3 predicted as 2: IoU 1, 1, 1/2, 0
    metric = MeanIoU(4)
    metric.update(_logits(wrong, 4), (None, masks))
    assert metric.compute() == pytest.approx((1 + 1 + 0.5 + 0) / 4)
    split = MeanIoU(4)  # batch by batch gives the same as all at once
    for i in range(2):
        split.update(_logits(wrong, 4)[:, :, i : i + 1], (None, masks[:, i : i + 1]))
    assert split.compute() == pytest.approx(metric.compute())


def test_generated_shapes_hold_every_class() -> None:
    images, masks = make_shapes(20, seed=3)
    assert images.shape == (20, 1, 32, 32) and masks.shape == (20, 32, 32)
    assert set(masks.unique().tolist()) == {0, 1, 2, 3}
    again, _ = make_shapes(20, seed=3)
    assert torch.equal(images, again)


def test_macro_f1_at_one_half() -> None:
    targets = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    assert macro_f1(targets * 0.9, targets) == pytest.approx(1.0)
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.1], [0.6, 0.1]])  # label 0: tp 1, fn 1, fp 1; label 1: fn 1
    assert macro_f1(probs, targets) == pytest.approx((0.5 + 0.0) / 2)


def test_raw_pitch_accuracy_allows_50_cents() -> None:
    cents = torch.tensor([3000.0, 3000.0, 3000.0])
    true_bin = float(cents_to_bins(cents[:1]))
    predicted = torch.tensor([round(true_bin), round(true_bin) + 2, round(true_bin) + 4])  # 0-10, ~40, ~80 cents
    outputs = torch.nn.functional.one_hot(predicted, 360).float()
    metric = RawPitchAccuracy()
    metric.update(outputs, (None, predicted, cents))
    assert metric.compute() == pytest.approx(2 / 3)
    assert float(frequency_to_cents(torch.tensor(10.0 * 2 ** (1997.3794084376191 / 1200)))) == pytest.approx(
        1997.3794084376191
    )


def test_generated_tones_are_normalised_and_labelled() -> None:
    tones = make_tones(16, 65.0, 1000.0, [10.0, 30.0], seed=1)
    assert tones["frames"].shape == (16, 1024)
    assert torch.allclose(tones["frames"].mean(1), torch.zeros(16), atol=1e-5)
    assert bool(((tones["bins"] >= 0) & (tones["bins"] < 360)).all())


def test_teacher_cosine_looks_up_rows_by_index() -> None:
    ref = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    metric = TeacherCosine(ref)
    order = torch.tensor([4, 0, 5])
    metric.update(ref[order], {"index": order})
    metric.update(-ref[torch.tensor([1])], {"index": torch.tensor([1])})
    assert metric.compute() == pytest.approx((3 - 1) / 4)


def test_pad_collate_pads_to_the_longest_sample() -> None:
    data = TokenDataset([[1, 5, 2], [1, 2]], labels=torch.tensor([1, 0]))
    batch = pad_collate([data[0], data[1]])
    assert batch["input_ids"].tolist() == [[1, 5, 2], [1, 2, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [1, 0]
