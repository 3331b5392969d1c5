"""A zoo of tiny models, one per architecture family a user may bring, for contract tests and benchmarks.

Every entry builds a randomly initialised model (seeded, eval mode) with a matching synthetic data generator,
so ``make_task(name)`` gives an ``autoslim.tasks.Task`` in milliseconds with nothing downloaded. The Hugging
Face model is built from a tiny config (random weights) and is only listed when ``transformers`` is installed.

    from tests.zoo import ZOO, make_task
    task = make_task("transformer")            # Task(name="zoo-transformer", ...)
    logits = task.teacher()(task.example_inputs)
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autoslim import trial as trial_module
from autoslim.cost import HardwareProfile
from autoslim.nn_utils import call_model
from autoslim.plan import CompressionPlan
from autoslim.tasks import Task
from autoslim.tasks.mnist1d_cnn import build_cnn
from autoslim.techniques import get_technique
from autoslim.trial import TrialResult, TrialSpec, run_trial
from tests.conftest import ResBlock2d

CLASSES = 4
SEQ_LEN = 8  # tokens / time steps of the sequence models
VOCAB = 100


# --- models ----------------------------------------------------------------------------------------------


def make_mlp() -> nn.Module:
    """Linear/ReLU stack; the two width->width hidden Linear layers are the only same-shape blocks."""
    return nn.Sequential(
        nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, CLASSES)
    )


def make_cnn1d() -> nn.Module:
    """The package's default residual 1-D CNN at small widths; input (N, 1, 40)."""
    return build_cnn(c1=8, c2=16, hidden=16, length=40, classes=CLASSES)


def make_cnn2d() -> nn.Module:
    """ResNet-like: stem, two residual blocks, a strided conv, global pooling; input (N, 3, 12, 12)."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        ResBlock2d(16), ResBlock2d(16),
        nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, CLASSES),
    )  # fmt: skip


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 project, plus identity."""

    def __init__(self, channels: int, expand: int = 2) -> None:
        super().__init__()
        hidden = channels * expand
        self.body = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, channels, 1, bias=False), nn.BatchNorm2d(channels),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def make_dwconv() -> nn.Module:
    """MobileNet-like: depthwise-separable stem, two inverted residual blocks; input (N, 3, 12, 12)."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
        nn.Conv2d(16, 24, 1, bias=False), nn.BatchNorm2d(24),
        InvertedResidual(24), InvertedResidual(24),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, CLASSES),
    )  # fmt: skip


class LSTMClassifier(nn.Module):
    """One-layer LSTM over (N, T, 6) features; the last hidden state feeds a linear head."""

    def __init__(self, n_in: int = 6, hidden: int = 24) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_in, hidden, batch_first=True)
        self.head = nn.Linear(hidden, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


class TransformerClassifier(nn.Module):
    """Token embedding, a 2-layer batch-first ``nn.TransformerEncoder`` (4 heads), mean pooling, linear head."""

    def __init__(self, d_model: int = 32, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, d_model)
        layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=64, dropout=0.0, batch_first=True)
        # enable_nested_tensor=False: nested tensors need a padding mask and only warn otherwise.
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, CLASSES)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens)).mean(dim=1))


def make_bert() -> nn.Module:
    """A 2-layer, 4-head BERT classifier from a tiny config: random weights, nothing downloaded."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=32, num_labels=CLASSES, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    return BertForSequenceClassification(config)


# --- inputs ----------------------------------------------------------------------------------------------


def _tokens(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(1, VOCAB, (n, SEQ_LEN), generator=gen)


def _bert_inputs(n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    ids = _tokens(n, gen)
    mask = torch.ones_like(ids)
    lengths = torch.randint(SEQ_LEN // 2, SEQ_LEN + 1, (n,), generator=gen)
    mask[torch.arange(SEQ_LEN)[None, :] >= lengths[:, None]] = 0  # right padding, as a tokenizer makes it
    return {"input_ids": ids * mask, "attention_mask": mask}


@dataclass(frozen=True)
class ZooModel:
    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[int, torch.Generator], Any]  # (n, generator) -> a batch of n inputs
    has_batch_norm: bool = False


ZOO: dict[str, ZooModel] = {
    m.name: m
    for m in (
        ZooModel("mlp", make_mlp, lambda n, g: torch.randn(n, 12, generator=g)),
        ZooModel("cnn1d", make_cnn1d, lambda n, g: torch.randn(n, 1, 40, generator=g), has_batch_norm=True),
        ZooModel("cnn2d", make_cnn2d, lambda n, g: torch.randn(n, 3, 12, 12, generator=g), has_batch_norm=True),
        ZooModel("dwconv", make_dwconv, lambda n, g: torch.randn(n, 3, 12, 12, generator=g), has_batch_norm=True),
        ZooModel("lstm", LSTMClassifier, lambda n, g: torch.randn(n, SEQ_LEN, 6, generator=g)),
        ZooModel("transformer", TransformerClassifier, _tokens),
        ZooModel("bert", make_bert, _bert_inputs),
    )
    if m.name != "bert" or importlib.util.find_spec("transformers") is not None
}


def build_model(name: str, seed: int = 0) -> nn.Module:
    """The zoo model ``name`` with seeded random weights, batch norms given trained-like statistics, eval mode."""
    entry = ZOO[name]
    torch.manual_seed(seed)
    model = entry.build()
    if entry.has_batch_norm:
        _calibrate_batch_norm(model, entry.inputs(128, torch.Generator().manual_seed(seed + 99)))
    return model.eval()


def _calibrate_batch_norm(model: nn.Module, data: torch.Tensor) -> None:
    """Spread-out BN scales (bn_scale importance needs them) and running statistics measured on ``data``, as a
    trained model has; default statistics (mean 0, var 1) would blow activations up through the residuals."""
    gen = torch.Generator().manual_seed(123)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in bns:
            m.weight.copy_(0.2 + torch.rand(m.num_features, generator=gen))
            m.bias.copy_(0.1 * torch.randn(m.num_features, generator=gen))
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration chunks
        model.train()
        for chunk in data.split(64):
            model(chunk)
        for m in bns:
            m.momentum = 0.1


def make_data(name: str, n: int, seed: int = 0) -> tuple[Any, torch.Tensor]:
    """``n`` synthetic ``(inputs, targets)``; targets are the seed-0 model's own predictions, so a compressed
    model's accuracy says how far it drifted from its teacher."""
    inputs = ZOO[name].inputs(n, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        targets = call_model(build_model(name), inputs).argmax(-1)
    return inputs, targets


def make_task(name: str, *, n_train: int = 64, n_val: int = 32, seed: int = 0) -> Task:
    """A tiny Task around zoo model ``name``: train / val / calibration splits drawn from disjoint seeds."""
    train = make_data(name, n_train, seed=seed + 1)
    val = make_data(name, n_val, seed=seed + 2)
    return Task(
        name=f"zoo-{name}",
        model=build_model(name, seed),
        train=train,
        val=val,
        example_inputs=ZOO[name].inputs(2, torch.Generator().manual_seed(seed + 3)),
        calibration=ZOO[name].inputs(32, torch.Generator().manual_seed(seed + 4)),
    )


# --- running a technique the way a trial does --------------------------------------------------------------

# Per-technique parameters the contract suite and the support matrix use instead of the defaults: a 1-epoch
# distillation keeps the suite fast and still exercises the whole fine-tune loop.
CONTRACT_PARAMS: dict[str, dict[str, Any]] = {"distill.kd": {"epochs": 1}}


def contract_config(technique: str) -> Any:
    return get_technique(technique).make_config(dict(CONTRACT_PARAMS.get(technique, {})))


def apply_like_trial(technique: str, task: Task, *, seed: int = 0) -> nn.Module:
    """Apply one technique as ``run_trial`` does (seed, copy of the teacher, full context); may raise
    ``InfeasibleError``. Returns the compressed model, which ``run_trial`` does not."""
    plan = CompressionPlan.from_params({technique: dict(CONTRACT_PARAMS.get(technique, {}))})
    return trial_module.build_model(plan, task, seed=seed)[0]


def trial_of(technique: str, task: Task, profiles: tuple[HardwareProfile, ...], *, seed: int = 0) -> TrialResult:
    """``run_trial`` of a one-step plan ``technique`` (with :data:`CONTRACT_PARAMS`) on ``task``."""
    plan = CompressionPlan.from_params({technique: dict(CONTRACT_PARAMS.get(technique, {}))})
    return run_trial(TrialSpec(plan=plan.to_dict(), profiles=profiles, seed=seed), task)
