"""Built-in task ``zoo-bert-cls``: Hugging Face ``BertForSequenceClassification`` (a small ``BertConfig``, random
init, trained here) on a generated token task that needs attention: does token A come before token B?

Data: generated from a seed (nothing downloaded). Each sequence is ``[CLS]``, 8-40 random filler tokens holding
exactly one ``A`` and one ``B`` at random places, ``[SEP]``; the label is 1 when ``A`` comes first. 8,000 training
and 2,000 disjoint validation sequences (another seed), as DataLoaders of dict batches ``{"input_ids",
"attention_mask", "labels"}`` right-padded per batch by a collate function (so batch widths vary), the way a
tokenizer and ``DataCollatorWithPadding`` give them. Model: 2 layers, hidden 64, 4 heads, intermediate 128,
vocabulary 64 (about 0.1M parameters); it returns a ``SequenceClassifierOutput`` whose ``.logits`` are scored
(accuracy). The teacher trains on first use (about 30 s on 2 cores) and is cached under the hash of its recipe.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autoslim.tasks.base import Task
from autoslim.tasks.zoo._common import (
    TokenDataset,
    cache_folder,
    cached_teacher,
    cached_tensors,
    fit,
    loader,
    n_params,
    pad_collate,
)

NAME = "bert-cls"
PAD, CLS, SEP, TOKEN_A, TOKEN_B = 0, 1, 2, 3, 4
FIRST_FILLER = 5
RECIPE: dict[str, Any] = {
    "data": {"n_train": 8000, "n_val": 2000, "min_len": 8, "max_len": 40, "seed": 0},
    "model": {
        "vocab_size": 64,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 128,
        "max_position_embeddings": 64,
        "num_labels": 2,
    },
    "train": {"epochs": 8, "batch_size": 64, "lr": 2e-3, "seed": 0},
    "version": 1,
}
SMALL: dict[str, Any] = {
    **RECIPE,
    "data": {**RECIPE["data"], "n_train": 3000, "n_val": 500},
    "train": {**RECIPE["train"], "epochs": 5},
}


def make_sequences(n: int, min_len: int, max_len: int, vocab: int, seed: int) -> dict[str, Any]:
    """``n`` sequences (lists of ids, ``[CLS] ... [SEP]``) and their labels (1: ``A`` before ``B``)."""
    gen = torch.Generator().manual_seed(seed)
    ids: list[list[int]] = []
    labels = torch.empty(n, dtype=torch.long)
    for i in range(n):
        length = int(torch.randint(min_len, max_len + 1, (1,), generator=gen))
        body = torch.randint(FIRST_FILLER, vocab, (length,), generator=gen)
        pa, pb = torch.randperm(length, generator=gen)[:2].tolist()
        body[pa], body[pb] = TOKEN_A, TOKEN_B
        ids.append([CLS, *body.tolist(), SEP])
        labels[i] = int(pa < pb)
    return {"ids": ids, "labels": labels}


def build_model(**config: Any) -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(**config, pad_token_id=PAD, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(cfg)


def _call(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def _loss(logits: Tensor, batch: dict[str, Tensor]) -> Tensor:
    return F.cross_entropy(logits, batch["labels"])


@torch.inference_mode()
def accuracy_on(model: nn.Module, data: Any) -> float:
    model.eval()
    hits = total = 0
    for batch in data:
        hits += int((_call(model, batch).argmax(-1) == batch["labels"]).sum())
        total += len(batch["labels"])
    return hits / total


def load(recipe: dict[str, Any] = RECIPE, *, verbose: bool = True) -> Task:
    """The task, training and caching the teacher on first use."""
    d, t, vocab = recipe["data"], recipe["train"], recipe["model"]["vocab_size"]

    def make() -> dict[str, Any]:
        return {
            "train": make_sequences(d["n_train"], d["min_len"], d["max_len"], vocab, d["seed"]),
            "val": make_sequences(d["n_val"], d["min_len"], d["max_len"], vocab, d["seed"] + 1),
        }

    data = cached_tensors(cache_folder(NAME, recipe), "data", make)
    train_set = TokenDataset(data["train"]["ids"], labels=data["train"]["labels"])
    val_set = TokenDataset(data["val"]["ids"], labels=data["val"]["labels"])
    train = loader(train_set, t["batch_size"], shuffle=True, collate_fn=pad_collate)
    val = loader(val_set, 256, collate_fn=pad_collate)
    torch.manual_seed(t["seed"])
    model = build_model(**recipe["model"])

    def train_teacher(m: nn.Module) -> dict[str, Any]:
        fit(m, train, _loss, epochs=t["epochs"], lr=t["lr"], weight_decay=0.01, seed=t["seed"], call=_call)
        return {"metric": "accuracy", "val_metric": accuracy_on(m, val)}

    model, meta, folder = cached_teacher(NAME, recipe, model, train_teacher, verbose=verbose)
    example = pad_collate([val_set[i] for i in range(4)])
    del example["labels"]
    return Task(
        name=f"zoo-{NAME}",
        model=model,
        train=train,
        val=val,
        calibration=loader(train_set, 128, collate_fn=pad_collate),
        example_inputs=example,
        info={"cache": str(folder), "params": n_params(model), **meta},
    )
