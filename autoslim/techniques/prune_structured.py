"""``prune.structured``: remove whole channels / neurons / attention heads with torch-pruning's dependency graph.

The result is a physically smaller model (fewer channels, hidden units, heads), so every hardware profile sees
the saving. The layer that produces the model output is never pruned, so the output shape is kept; a forward
pass after pruning checks it. Inputs may be a tensor, a tuple or a dict (Hugging Face style): the graph is traced
through :func:`autoslim.nn_utils.call_model`. Attention: ``nn.MultiheadAttention`` loses the same dimensions in
every head; Hugging Face BERT-style self-attention loses whole heads (``head_ratio`` of them). A 1-layer
unidirectional LSTM loses hidden units; GRU / RNN / stacked LSTMs are infeasible.

Time limit: tracing and pruning run in a worker thread on a copy of the model; if it takes longer than
``timeout_s`` the trial becomes infeasible. CPython cannot kill a thread, so the worker runs on to completion in
the background (a daemon thread: it never holds up interpreter exit) and its result is discarded; the caller's
model is never touched by it.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from autoslim.nn_utils import batch_size_of, call_model, execution_order, output_shape, take
from autoslim.techniques._tp_support import (
    LSTMHiddenPruner,
    head_groups,
    hf_attention_modules,
    lstm_problem,
    update_hf_head_counts,
)
from autoslim.techniques.registry import ApplyContext, InfeasibleError, register

Importance = Literal["l1", "l2", "bn_scale", "taylor"]
IMPORTANCES = ("l1", "l2", "bn_scale", "taylor")
TAYLOR_SAMPLES = 256  # calibration samples for the taylor gradient: enough for a stable ranking, cheap on CPU


@dataclass(frozen=True)
class StructuredPruneConfig:
    ratio: float = 0.5  # fraction of channels removed from each prunable group
    # how channels are ranked: L1 / L2 weight magnitude, batch-norm scale, or first-order Taylor
    # (|weight * gradient| of the loss against the teacher's predictions on calibration data)
    importance: Importance = "l2"
    global_pruning: bool = False  # rank channels across layers instead of per layer
    round_to: int | None = None  # keep channel counts a multiple of this (hardware alignment)
    head_ratio: float | None = None  # fraction of heads removed from HF-style attention; None: same as ratio
    timeout_s: float = 60.0  # tracing + pruning longer than this makes the trial infeasible

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"ratio must be in [0, 1), got {self.ratio}")
        if self.importance not in IMPORTANCES:
            raise ValueError(f"importance must be one of {', '.join(IMPORTANCES)}, got {self.importance!r}")
        if self.round_to is not None and self.round_to < 1:
            raise ValueError(f"round_to must be >= 1, got {self.round_to}")
        if self.head_ratio is not None and not 0.0 <= self.head_ratio < 1.0:
            raise ValueError(f"head_ratio must be in [0, 1), got {self.head_ratio}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")


def _importance(name: Importance) -> tp.importance.Importance:
    if name == "bn_scale":
        return tp.importance.BNScaleImportance()
    if name == "taylor":
        return tp.importance.GroupTaylorImportance()
    return tp.importance.GroupMagnitudeImportance(p=1 if name == "l1" else 2)


def _forward(model: nn.Module, inputs: Any) -> torch.Tensor:
    return call_model(model, inputs)


def _taylor_batch(model: nn.Module, ctx: ApplyContext) -> tuple[Any, torch.Tensor]:
    """Calibration inputs and the teacher's predicted classes on them (the model's own without a teacher)."""
    data = ctx.calibration_inputs if ctx.calibration_inputs is not None else ctx.example_inputs
    data = take(data, slice(0, min(TAYLOR_SAMPLES, batch_size_of(data))))
    reference = ctx.teacher if ctx.teacher is not None else model
    was_training = reference.training
    reference.eval()
    try:
        with torch.no_grad():
            labels = call_model(reference, data).argmax(-1)
    finally:
        reference.train(was_training)
    return data, labels


def _prune(model: nn.Module, config: StructuredPruneConfig, ctx: ApplyContext, output_layer: nn.Module) -> nn.Module:
    """Trace, rank and prune ``model`` in place; the body of the worker thread."""
    num_heads, mha_groups = head_groups(model)
    pruner = tp.pruner.BasePruner(
        model,
        ctx.example_inputs,
        importance=_importance(config.importance),
        pruning_ratio=config.ratio,
        global_pruning=config.global_pruning,
        ignored_layers=[output_layer],  # the output layer keeps its width: output shape is part of the contract
        round_to=config.round_to,
        forward_fn=_forward,
        # Fresh dicts every call: torch-pruning updates its (mutable default) group dicts in place.
        in_channel_groups={},
        out_channel_groups=mha_groups,
        num_heads=num_heads,
        prune_num_heads=bool(num_heads),
        prune_head_dims=not num_heads,  # HF attention: drop whole heads, keep each head's width
        head_pruning_ratio=config.ratio if config.head_ratio is None else config.head_ratio,
        customized_pruners={nn.LSTM: LSTMHiddenPruner()},
    )
    if config.importance == "taylor":
        inputs, labels = _taylor_batch(model, ctx)
        was_training = model.training
        model.eval()  # gradients without updating batch-norm statistics or sampling dropout
        model.zero_grad(set_to_none=True)
        F.cross_entropy(call_model(model, inputs), labels).backward()
        model.train(was_training)
    pruner.step()
    model.zero_grad(set_to_none=True)  # taylor gradients must not leak into a later fine-tune
    update_hf_head_counts(model, pruner.num_heads)
    return model


def _prune_within(
    model: nn.Module, config: StructuredPruneConfig, ctx: ApplyContext, output_layer: nn.Module
) -> nn.Module:
    """:func:`_prune` on a copy of ``model`` in a daemon thread, given up after ``config.timeout_s``."""
    work = copy.deepcopy(model)
    work_output = dict(zip(model.modules(), work.modules(), strict=True))[output_layer]
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["model"] = _prune(work, config, ctx, work_output)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, name="autoslim-prune-structured", daemon=True)
    worker.start()
    worker.join(config.timeout_s)
    if worker.is_alive():
        raise InfeasibleError(
            f"prune.structured: tracing and pruning took longer than timeout_s={config.timeout_s:g} s "
            "(the worker thread finishes in the background; its result is discarded)"
        )
    if "error" in box:
        raise box["error"]
    return box["model"]


@register("prune.structured", StructuredPruneConfig, order=20)
def apply(model: nn.Module, config: StructuredPruneConfig, ctx: ApplyContext) -> nn.Module:
    if config.ratio == 0.0:
        return model
    order = execution_order(model, ctx.example_inputs)
    if not order:
        raise InfeasibleError("prune.structured: the model has no Conv or Linear layer to prune")
    problem = lstm_problem(model)
    if problem:
        raise InfeasibleError(f"prune.structured: {problem}")
    expected = output_shape(model, ctx.example_inputs)
    before = sum(p.numel() for p in model.parameters())
    heads_before = sum(int(m.num_attention_heads) for m in hf_attention_modules(model))
    try:
        pruned = _prune_within(model, config, ctx, order[-1])
    except InfeasibleError:
        raise
    except Exception as exc:  # torch-pruning raises many types on graphs it cannot trace
        raise InfeasibleError(f"prune.structured: torch-pruning could not prune this graph: {exc!r}") from exc
    try:
        got = output_shape(pruned, ctx.example_inputs)
    except Exception as exc:
        raise InfeasibleError(f"prune.structured: the pruned model no longer runs: {exc!r}") from exc
    if got != expected:
        raise InfeasibleError(f"prune.structured: pruning changed the output shape {tuple(expected)} -> {tuple(got)}")
    after = sum(p.numel() for p in pruned.parameters())
    if after >= before:
        raise InfeasibleError("prune.structured: no channel could be removed (all layers coupled to the output)")
    ctx.notes["prune.structured"] = {"params_before": before, "params_after": after}
    heads_after = sum(int(m.num_attention_heads) for m in hf_attention_modules(pruned))
    if heads_after != heads_before:
        ctx.notes["prune.structured"]["heads"] = {"before": heads_before, "after": heads_after}
    return pruned
