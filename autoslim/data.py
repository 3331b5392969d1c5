"""A task's data, whatever the user has: in-memory tensors, a DataLoader, any re-iterable of batches, a Dataset.

Everything that reads data (fine-tunes, evaluation, calibration) goes through :class:`Data`, so techniques and
metrics never care which kind it is::

    data = as_data(loader)                         # a DataLoader of (x, y) tuples, dicts, BatchEncodings, ...
    for batch in data.batches():                   # Batch(raw, inputs, targets, size, index)
        out = call_model(model, batch.inputs)

* ``(inputs, targets)`` tuples of tensors stay the fast path: batches are slices (about 10x faster than a
  DataLoader over a TensorDataset for small models), shuffled by a seeded generator, and carry their positions
  (``Batch.index``) so a fine-tune can reuse the teacher's outputs computed once.
* A DataLoader or other re-iterable is iterated as it is: its own sampler, collate function and batch size
  decide; variable-length batches are fine. A one-shot iterator (a generator) cannot be read twice and is refused.
* A map-style ``Dataset`` is batched by autoslim with a DataLoader (default collate, ``batch_size``).

How a batch splits into model inputs and targets is the task's ``batch_to_inputs`` / ``batch_to_targets``
(defaults: a tuple/list is ``(inputs, targets, ...)``; a mapping, e.g. a Hugging Face ``BatchEncoding``, is the
inputs minus its ``labels`` / ``label`` key, which holds the targets; a bare tensor is inputs without targets).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from autoslim.nn_utils import batch_size_of, iter_batches, take

LABEL_KEYS = ("labels", "label")
BatchFn = Callable[[Any], Any]


def default_inputs(batch: Any) -> Any:
    """The model inputs of a batch: ``batch[0]`` of a tuple/list, a mapping minus its label key, else the batch."""
    if isinstance(batch, (tuple, list)):
        return batch[0]
    if isinstance(batch, Mapping):
        return {k: v for k, v in batch.items() if k not in LABEL_KEYS}
    return batch


def default_targets(batch: Any) -> Any:
    """The targets of a batch: ``batch[1]`` of a tuple/list (None for a 1-tuple), a mapping's label key, or None."""
    if isinstance(batch, (tuple, list)):
        return batch[1] if len(batch) > 1 else None
    if isinstance(batch, Mapping):
        return next((batch[k] for k in LABEL_KEYS if k in batch), None)
    return None


@dataclass
class Batch:
    raw: Any  # the batch as the loader gave it (what streaming metrics and custom losses receive)
    inputs: Any
    targets: Any
    size: int
    index: torch.Tensor | None = None  # positions in an in-memory split (None for loader batches)


class Data:
    """One split of a task; see the module docstring. Build with :func:`as_data`."""

    in_memory: bool = False

    def batches(
        self, *, shuffle: bool = False, generator: torch.Generator | None = None, batch_size: int | None = None
    ) -> Iterator[Batch]:
        """One pass. ``shuffle``, ``generator`` and ``batch_size`` apply to in-memory data; a loader's own
        sampler and batch size decide for it."""
        raise NotImplementedError

    def __len__(self) -> int:  # samples, where known without reading the data
        raise TypeError(f"{type(self).__name__} does not know its length")

    def num_batches(self, batch_size: int) -> int | None:
        """Batches in one pass (None: unknown without reading it)."""
        return None

    def head(self, n: int) -> Data:
        """The first ``n`` samples (whole batches for a loader: at least ``n`` where there are that many)."""
        return _Head(self, n)

    def inputs_head(self, n: int) -> Any:
        """Inputs of the first ``n`` samples as one batch (for calibration and example inputs); see :func:`concat`."""
        parts, seen = [], 0
        for b in self.batches():
            parts.append(b.inputs)
            seen += b.size
            if seen >= n:
                break
        if not parts:
            raise ValueError("the data yielded no batch")
        try:
            joined = concat(parts)
        except ValueError:  # batches that cannot be joined (e.g. variable-size images): the first batch stands in
            joined = parts[0]
        return take(joined, slice(0, n))


class TensorData(Data):
    """An in-memory ``(inputs, targets)`` pair (targets may be None); batches are slices."""

    in_memory = True

    def __init__(self, inputs: Any, targets: torch.Tensor | None, *, batch_size: int = 128) -> None:
        self.inputs, self.targets, self.batch_size = inputs, targets, batch_size

    def __len__(self) -> int:
        return batch_size_of(self.inputs)

    def num_batches(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)

    def batches(
        self, *, shuffle: bool = False, generator: torch.Generator | None = None, batch_size: int | None = None
    ) -> Iterator[Batch]:
        targets = self.targets if self.targets is not None else torch.zeros(len(self))
        for x, y, idx in iter_batches(
            (self.inputs, targets), batch_size or self.batch_size, shuffle=shuffle, generator=generator
        ):
            t = y if self.targets is not None else None
            yield Batch((x, t), x, t, len(idx), idx)

    def head(self, n: int) -> TensorData:
        t = None if self.targets is None else self.targets[:n]
        return TensorData(take(self.inputs, slice(0, n)), t, batch_size=self.batch_size)

    def inputs_head(self, n: int) -> Any:
        return take(self.inputs, slice(0, n))


class LoaderData(Data):
    """A DataLoader or any re-iterable of batches, read as it is."""

    def __init__(self, loader: Iterable[Any], *, to_inputs: BatchFn, to_targets: BatchFn) -> None:
        self.loader, self.to_inputs, self.to_targets = loader, to_inputs, to_targets

    def __len__(self) -> int:
        dataset = getattr(self.loader, "dataset", None)
        if dataset is not None and hasattr(dataset, "__len__"):
            return len(dataset)
        raise TypeError("this loader does not know how many samples it holds")

    def num_batches(self, batch_size: int) -> int | None:
        try:
            return len(self.loader)  # type: ignore[arg-type]
        except TypeError:
            return None

    def batches(
        self, *, shuffle: bool = False, generator: torch.Generator | None = None, batch_size: int | None = None
    ) -> Iterator[Batch]:
        # The loader's own sampler decides the order (a DataLoader built with shuffle=True reshuffles every pass,
        # seeded by torch's global generator, which each trial seeds).
        for raw in self.loader:
            inputs = self.to_inputs(raw)
            yield Batch(raw, inputs, self.to_targets(raw), batch_size_of(inputs))


class _Head(Data):
    def __init__(self, data: Data, n: int) -> None:
        self.data, self.n = data, n

    def batches(
        self, *, shuffle: bool = False, generator: torch.Generator | None = None, batch_size: int | None = None
    ) -> Iterator[Batch]:
        seen = 0
        for b in self.data.batches():
            if seen >= self.n:
                return
            seen += b.size
            yield b


def as_data(
    obj: Any,
    *,
    batch_size: int = 128,
    to_inputs: BatchFn | None = None,
    to_targets: BatchFn | None = None,
    shuffle: bool = False,
) -> Data:
    """Wrap what a task gives as a split (see the module docstring); ``shuffle`` applies to a map-style Dataset."""
    to_inputs, to_targets = to_inputs or default_inputs, to_targets or default_targets
    if isinstance(obj, Data):
        return obj
    if isinstance(obj, tuple) and len(obj) == 2 and _tensors(obj[0]) and (obj[1] is None or _tensors(obj[1])):
        return TensorData(obj[0], obj[1], batch_size=batch_size)
    if isinstance(obj, torch.Tensor):
        return TensorData(obj, None, batch_size=batch_size)
    map_style = isinstance(obj, torch.utils.data.Dataset) and not isinstance(obj, torch.utils.data.IterableDataset)
    if map_style and hasattr(obj, "__getitem__") and hasattr(obj, "__len__"):
        loader = torch.utils.data.DataLoader(obj, batch_size=batch_size, shuffle=shuffle)
        return LoaderData(loader, to_inputs=to_inputs, to_targets=to_targets)
    if isinstance(obj, Iterator):
        raise TypeError(
            "task data is a one-shot iterator (e.g. a generator); autoslim reads data many times: pass a "
            "DataLoader, a list of batches, a Dataset or an (inputs, targets) pair"
        )
    if isinstance(obj, Iterable):
        return LoaderData(obj, to_inputs=to_inputs, to_targets=to_targets)
    raise TypeError(f"cannot use {type(obj).__name__} as task data: see autoslim.data")


def cycle(
    data: Data, *, shuffle: bool, generator: torch.Generator | None, batch_size: int | None = None
) -> Iterator[Batch]:
    """Batches of ``data`` pass after pass, forever (a fine-tune measured in steps, not epochs)."""
    for _ in itertools.count():
        empty = True
        for b in data.batches(shuffle=shuffle, generator=generator, batch_size=batch_size):
            empty = False
            yield b
        if empty:
            raise ValueError("the training data yielded no batch")


def concat(parts: list[Any]) -> Any:
    """Batches of inputs as one batch. Variable-length token batches (2-D integer tensors that differ only in
    length) are right-padded with 0, as tokenizers pad (``attention_mask`` 0 marks the padding)."""
    first = parts[0]
    if len(parts) == 1:
        return first
    if isinstance(first, Mapping):
        return {k: concat([p[k] for p in parts]) for k in first}
    if isinstance(first, (tuple, list)):
        return type(first)(concat([p[i] for p in parts]) for i in range(len(first)))
    if not isinstance(first, torch.Tensor):
        return first  # a flag or other non-tensor entry: the same in every batch
    if any(p.shape[1:] != first.shape[1:] for p in parts):
        if first.dim() == 2 and all(p.dim() == 2 for p in parts) and not first.is_floating_point():
            width = max(p.shape[1] for p in parts)
            parts = [torch.nn.functional.pad(p, (0, width - p.shape[1])) for p in parts]
        else:
            raise ValueError(f"batches of shapes {[tuple(p.shape) for p in parts[:3]]}... cannot be joined")
    return torch.cat(parts)


def _tensors(obj: Any) -> bool:
    if isinstance(obj, torch.Tensor):
        return True
    if isinstance(obj, Mapping):
        return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())
    if isinstance(obj, (tuple, list)):
        return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj)
    return False
