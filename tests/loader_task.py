"""A task given only as DataLoaders, the way a user with a text model has it: variable-length dict batches padded
per batch by a collate function, labels inside the dict, a streaming metric and the task's own distillation loss.

Its dataset refuses to be pickled, so a test passes only if no executor ships the data: workers rebuild the task
from ``tests.loader_task:loader_task``. Labels are the seed-0 model's own predictions (a compressed model's score
says how far it drifted from its teacher).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from autoslim.tasks import Task

VOCAB, CLASSES = 50, 3


class BagOfTokens(nn.Module):
    """Embedding, masked mean pooling, a hidden layer and a classifier; takes ``input_ids`` / ``attention_mask``."""

    def __init__(self, dim: int = 16, hidden: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, dim)
        self.hidden = nn.Linear(dim, hidden)
        self.mid = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, CLASSES)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (self.embed(input_ids) * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        h = F.relu(self.hidden(pooled))
        return self.head(F.relu(self.mid(h)) + h)


class Sentences(Dataset):
    """Token sequences of 3-12 tokens; not picklable on purpose (see the module docstring)."""

    def __init__(self, n: int, seed: int, teacher: nn.Module) -> None:
        gen = torch.Generator().manual_seed(seed)
        lengths = torch.randint(3, 13, (n,), generator=gen)
        self.items = [torch.randint(1, VOCAB, (int(k),), generator=gen) for k in lengths]
        with torch.no_grad():
            self.labels = [int(teacher(t[None], torch.ones(1, len(t))).argmax()) for t in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.items[i], "labels": self.labels[i]}

    def __reduce__(self) -> Any:
        raise TypeError("Sentences must not be pickled: workers rebuild the task from its reference")


def pad(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Right-pad to the longest sequence of the batch, as a tokenizer's collator does."""
    width = max(len(b["input_ids"]) for b in batch)
    ids = torch.zeros(len(batch), width, dtype=torch.long)
    mask = torch.zeros(len(batch), width, dtype=torch.long)
    for i, b in enumerate(batch):
        ids[i, : len(b["input_ids"])] = b["input_ids"]
        mask[i, : len(b["input_ids"])] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([b["labels"] for b in batch])}


class StreamingAccuracy:
    """update(outputs, batch) / compute(): the metric sees each batch as the loader gave it."""

    def __init__(self) -> None:
        self.right = self.seen = 0

    def update(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        self.right += int((outputs.argmax(-1) == batch["labels"]).sum())
        self.seen += len(batch["labels"])

    def compute(self) -> float:
        return self.right / self.seen


CUSTOM_LOSS_CALLS: list[int] = []


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    CUSTOM_LOSS_CALLS.append(1)
    return F.mse_loss(student, teacher) + 0.1 * F.cross_entropy(student, batch["labels"].to(student.device))


def loader_task(n_train: int = 96, n_val: int = 64) -> Task:
    torch.manual_seed(0)
    model = BagOfTokens().eval()
    g = torch.Generator().manual_seed(1)
    train = DataLoader(Sentences(n_train, 1, model), batch_size=16, shuffle=True, collate_fn=pad, generator=g)
    val = DataLoader(Sentences(n_val, 2, model), batch_size=16, collate_fn=pad)
    return Task(name="loader-task", model=model, train=train, val=val, metric=StreamingAccuracy(),
                distill_loss=distill_loss)  # fmt: skip
