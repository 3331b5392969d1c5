"""autoslim.data: every kind of split a task may give, batches of every shape, the default batch hooks."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from autoslim.data import LoaderData, TensorData, as_data, concat, cycle, default_inputs, default_targets


def test_tensor_pairs_are_the_sliced_fast_path_with_positions() -> None:
    x, y = torch.randn(10, 3), torch.arange(10)
    data = as_data((x, y), batch_size=4)
    assert isinstance(data, TensorData) and len(data) == 10 and data.num_batches(4) == 3
    batches = list(data.batches(shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert [b.size for b in batches] == [4, 4, 2]
    index = torch.cat([b.index for b in batches])
    assert sorted(index.tolist()) == list(range(10))
    for b in batches:
        assert torch.equal(b.inputs, x[b.index]) and torch.equal(b.targets, y[b.index])


def test_a_dataset_is_batched_and_a_loader_read_as_it_is() -> None:
    ds = TensorDataset(torch.randn(10, 3), torch.arange(10))
    data = as_data(ds, batch_size=3)
    assert isinstance(data, LoaderData) and len(data) == 10
    assert [b.size for b in data.batches()] == [3, 3, 3, 1]
    loader = DataLoader(ds, batch_size=5)
    got = list(as_data(loader).batches())
    assert [b.targets.tolist() for b in got] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert got[0].index is None  # loader batches have no fixed position


def test_default_hooks_read_tuples_dicts_and_bare_tensors() -> None:
    x, y = torch.ones(2, 3), torch.tensor([1, 0])
    assert default_inputs((x, y)) is x and default_targets((x, y)) is y
    assert default_targets((x,)) is None
    batch = {"input_ids": x, "attention_mask": x, "labels": y}
    assert set(default_inputs(batch)) == {"input_ids", "attention_mask"} and default_targets(batch) is y
    assert default_inputs(x) is x and default_targets(x) is None


def test_hugging_face_batch_encodings_are_mappings() -> None:
    transformers = pytest.importorskip("transformers")
    enc = transformers.BatchEncoding({"input_ids": torch.ones(2, 4, dtype=torch.long), "labels": torch.tensor([0, 1])})
    data = as_data([enc, enc])
    b = next(data.batches())
    assert set(b.inputs) == {"input_ids"} and b.targets.tolist() == [0, 1] and b.size == 2


def test_custom_hooks_split_batches_of_other_shapes() -> None:
    batches = [{"x": torch.randn(4, 2), "y": torch.arange(4)}]
    data = as_data(batches, to_inputs=lambda b: b["x"], to_targets=lambda b: b["y"])
    b = next(data.batches())
    assert b.inputs.shape == (4, 2) and b.targets.tolist() == [0, 1, 2, 3]


def test_variable_length_token_batches_join_right_padded() -> None:
    a = {"input_ids": torch.ones(2, 3, dtype=torch.long), "attention_mask": torch.ones(2, 3, dtype=torch.long)}
    b = {"input_ids": torch.ones(1, 5, dtype=torch.long), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    joined = concat([a, b])
    assert joined["input_ids"].shape == (3, 5)
    assert joined["attention_mask"][:2, 3:].sum() == 0  # the padding is masked out
    head = as_data([(a, torch.zeros(2)), (b, torch.zeros(1))]).inputs_head(3)
    assert head["input_ids"].shape == (3, 5)


def test_head_and_cycle() -> None:
    data = as_data(DataLoader(TensorDataset(torch.randn(10, 1)), batch_size=4))
    assert sum(b.size for b in data.head(5).batches()) == 8  # whole batches, at least 5 samples
    stream = cycle(data, shuffle=False, generator=None)
    assert [next(stream).size for _ in range(5)] == [4, 4, 2, 4, 4]


def test_a_one_shot_iterator_is_refused_with_a_reason() -> None:
    with pytest.raises(TypeError, match="one-shot iterator"):
        as_data(iter([torch.ones(2)]))
