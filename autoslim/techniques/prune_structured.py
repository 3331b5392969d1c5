"""``prune.structured``: remove whole channels / neurons / attention heads with torch-pruning's dependency graph.

The result is a physically smaller model (fewer channels, hidden units, heads), so every hardware profile sees
the saving. The layer that produces the model output is never pruned, so the output shape is kept; a forward
pass after pruning checks it. Inputs may be a tensor, a tuple or a dict (Hugging Face style): the graph is traced
through :func:`autoslim.nn_utils.call_model`. Attention: ``nn.MultiheadAttention`` loses the same dimensions in
every head; Hugging Face BERT-style self-attention loses whole heads (``head_ratio`` of them). A 1-layer
unidirectional LSTM loses hidden units; GRU / RNN / stacked LSTMs are infeasible.

Hugging Face models (a ``config`` with ``hidden_size``) never lose hidden size: the residual stream (embeddings,
``attention.output.dense``, ``output.dense``, LayerNorms, pooler) keeps its width, because the config holds one
hidden size for every layer. They lose whole attention heads and FFN neurons (``intermediate.dense`` outputs),
ranked within each layer (``global_pruning`` is ignored, so every layer keeps the same counts, unless per-group
ratios give each layer its own FFN width and head count), and the config's ``num_attention_heads`` /
``intermediate_size`` are updated so the model still runs and exports (the first layer's, when layers differ).
transformers 5 has no ``pruned_heads`` any more and derives a head's size as ``hidden_size / num_attention_heads``, so
``from_pretrained`` cannot rebuild a model that lost heads (size mismatch in q/k/v); one that lost only FFN
neurons (``head_ratio=0``) saves and loads like any other.

Pinned widths: a forward may reshape by a width written in code (``x.view(-1, 64 * 4 * 4)``,
``reshape(-1, self.in_features)``), which torch-pruning cannot see. When the straight prune leaves a model that
fails or changes its output shape, each prunable group of the dependency graph is probed by removing the fewest
channels it allows; the groups that break the forward keep their full width (``notes["pinned"]``: layer name ->
why) and the model is pruned again without them. The probe only runs after such a failure.

Time limit: tracing, pruning and any probing run in a worker thread on a copy of the model; if it takes longer than
``timeout_s`` the trial becomes infeasible. CPython cannot kill a thread, so the worker runs on to completion in
the background (a daemon thread: it never holds up interpreter exit) and its result is discarded; the caller's
model is never touched by it.
"""

from __future__ import annotations

import copy
import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from autoslim.nn_utils import batch_size_of, call_model, eval_forward, execution_order, output_shape, shape_key, take
from autoslim.techniques._tp_support import (
    LSTMHiddenPruner,
    head_groups,
    hf_attention_modules,
    hf_hidden_size,
    hf_residual_layers,
    lstm_problem,
    update_hf_config,
    update_hf_head_counts,
)
from autoslim.techniques.per_layer import check_policy, describe_counts, perturb_one
from autoslim.techniques.registry import ApplyContext, InfeasibleError, LayerPolicy, register

Importance = Literal["l1", "l2", "bn_scale", "taylor", "activation"]
IMPORTANCES = ("l1", "l2", "bn_scale", "taylor", "activation")
TAYLOR_SAMPLES = 256  # calibration samples for the taylor gradient: enough for a stable ranking, cheap on CPU
# calibration samples whose mean input bias compensation folds in: a channel's mean settles within a few dozen
# samples, and a forward over MiniLM's 512 calibration sentences took 14-30 s of the 60-s timeout on 2 cores
BIAS_SAMPLES = 64
# calibration samples whose input second moments least-squares reconstruction solves with: a Linear that loses
# inputs refits up to ~1,500 remaining weights per output, which wants more token rows than that
RECONSTRUCT_SAMPLES = 256
RECONSTRUCT_DAMP = 0.01  # ridge term, as a share of the Gram matrix's mean diagonal (GPTQ's percdamp)


@dataclass(frozen=True)
class StructuredPruneConfig:
    ratio: float = 0.5  # fraction of channels removed from each prunable group
    # how channels are ranked: L1 / L2 weight magnitude, batch-norm scale, or first-order Taylor
    # (|weight * gradient| of the loss against the teacher's predictions on calibration data), or activation-aware
    # (each channel's expected squared contribution to the next layer's output on calibration data: label-free, so
    # it suits embedding, sigmoid and dense outputs, which the taylor loss on argmax classes does not)
    importance: Importance = "l2"
    global_pruning: bool = False  # rank channels across layers instead of per layer
    round_to: int | None = None  # keep channel counts a multiple of this (hardware alignment)
    head_ratio: float | None = None  # fraction of heads removed from HF-style attention; None: same as ratio
    timeout_s: float = 60.0  # tracing + pruning longer than this makes the trial infeasible
    # Bias compensation (FLAP, An et al. 2024): a layer that loses input channels adds their mean contribution
    # (weight columns x the channel's mean input on calibration data) to its bias, so the removed channels' average
    # is kept and only their fluctuation is lost. It matters most where no labelled fine-tune can repair the shift.
    bias_compensation: bool = False
    # Least-squares reconstruction (ThiNet, Luo et al. 2017): a Linear layer that loses input channels refits its
    # remaining weights and bias so that its outputs on calibration data match the unpruned layer's (a ridge
    # regression on the inputs' second moments, solved in closed form: no labels, no gradient steps). Subsumes bias
    # compensation on Linear layers; Conv layers get bias compensation instead.
    reconstruct: bool = False
    # Per-group ratios (see autoslim.techniques.per_layer): ``layer_ratios`` names a dependency group by its root
    # layer (the first layer whose output width the group sets, as ``autoslim sensitivity`` lists them) and gives
    # it its own ratio; groups it does not name keep their width (``ratio`` is then unused). A Hugging Face
    # attention's head group is named by its root, one of its q/k/v projections (``...attention.self.value`` in
    # BERT), and its entry is the share of *heads* that layer loses (each layer keeps its own head count),
    # unless ``head_ratio`` is set: then every attention loses that share and heads are no unit.
    # ``policy="sensitivity"`` fills it at trial time from the sensitivity table, for ``target`` (a share of the
    # teacher's cost on ``target_profile``), choosing among ``candidates``.
    layer_ratios: tuple[tuple[str, float], ...] = ()
    policy: Literal["uniform", "sensitivity"] = "uniform"
    target: float | None = None
    target_profile: str | None = None
    target_of: Literal["teacher", "input"] = "teacher"  # what ``target`` is a share of (per_layer.py)
    candidates: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        check_policy(self, "layer_ratios", _ratio)
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"ratio must be in [0, 1), got {self.ratio}")
        if self.importance not in IMPORTANCES:
            raise ValueError(f"importance must be one of {', '.join(IMPORTANCES)}, got {self.importance!r}")
        if self.round_to is not None and self.round_to < 1:
            raise ValueError(f"round_to must be >= 1, got {self.round_to}")
        if self.importance == "activation" and self.global_pruning:
            raise ValueError("importance 'activation' ranks channels within each layer: set global_pruning false")
        if self.head_ratio is not None and not 0.0 <= self.head_ratio < 1.0:
            raise ValueError(f"head_ratio must be in [0, 1), got {self.head_ratio}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")


def _ratio(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"a pruning ratio must be in [0, 1), got {value!r}")
    return float(value)


class ActivationImportance(tp.importance.GroupMagnitudeImportance):
    """Activation-aware channel importance (Wanda's |W|·‖X‖ made structured, as FLAP and SlimGPT rank channels):
    input channel ``j`` of a consuming layer scores ``‖W[:, j]‖² · E[x_j²]``, the expected squared change of that
    layer's output when the channel goes, summed over every consumer in the group. Magnitude alone ranks a channel
    with large weights but near-silent inputs as important; on a pretrained encoder's FFN that choice decides
    whether a 10% prune costs a point of cosine or a fraction of one. A group with a consumer that has no input
    statistics (a grouped conv, a layer read inside ``nn.MultiheadAttention``) is ranked by L2 magnitude instead,
    so no channel is judged on part of what reads it. Scores are per layer (``global_pruning`` is refused with it:
    output scales differ from layer to layer).

    ``second_moments`` maps a layer to its inputs' per-channel mean square (filled before ``pruner.step``).
    """

    def __init__(self) -> None:
        super().__init__(p=2)
        self.second_moments: dict[nn.Module, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, group: Any) -> torch.Tensor | None:
        scores: list[torch.Tensor] = []
        roots: list[list[int]] = []
        in_fns = (tp.function.prune_linear_in_channels, tp.function.prune_conv_in_channels)
        for i, (dep, idxs) in enumerate(group):
            layer, fn = dep.layer, dep.pruning_fn
            if isinstance(layer, nn.MultiheadAttention):
                return super().__call__(group)  # its projections read the channels without a forward of their own
            if fn not in in_fns:
                continue
            moment = self.second_moments.get(layer)
            weight = layer.weight
            if moment is None or getattr(layer, "groups", 1) != 1 or weight.shape[1] != moment.numel():
                return super().__call__(group)  # a consumer without statistics: rank the whole group by magnitude
            cols = weight.detach().transpose(0, 1).flatten(1).pow(2).sum(1)  # ‖W[:, j]‖² over outputs and taps
            scores.append((cols * moment.to(cols))[idxs])
            roots.append(group[i].root_idxs)
        if not scores:
            return super().__call__(group)
        return self._normalize(self._reduce(scores, roots), self.normalizer)


def _second_moments(
    model: nn.Module, ctx: ApplyContext, layers: set[nn.Module], grams: dict[nn.Module, torch.Tensor]
) -> dict[nn.Module, torch.Tensor]:
    """The per-input-channel mean square of each of ``layers`` (those the pruner narrows on their input side) on
    the first ``RECONSTRUCT_SAMPLES`` calibration samples (real tokens only under an attention mask; a conv's over
    batch and space). Layers in
    ``grams`` (reconstruction's input Gram matrices, the same samples) read theirs off its diagonal; a forward
    pass runs only for the others: on a 2-core machine one over MiniLM's calibration sentences takes 10-30 s of
    the prune's ``timeout_s``."""
    moments = {m: (g.diagonal()[:-1] / g[-1, -1].clamp(min=1)).float() for m, g in grams.items()}
    data = ctx.calibration_inputs if ctx.calibration_inputs is not None else ctx.example_inputs
    data = take(data, slice(0, min(RECONSTRUCT_SAMPLES, batch_size_of(data))))
    real = _real_tokens(data)
    sums: dict[nn.Module, torch.Tensor] = {}
    counts: dict[nn.Module, int] = {}

    def hook(layer: nn.Module, args: tuple) -> None:
        flat = _positions(layer, args[0].detach(), real)
        sums[layer] = sums.get(layer, 0) + flat.double().pow(2).sum(0)
        counts[layer] = counts.get(layer, 0) + flat.shape[0]

    todo = [m for m in layers if _compensable(m) and m not in moments]
    if todo:
        eval_forward(model, data, hooks=[m.register_forward_pre_hook(hook) for m in todo])
    return moments | {m: (sums[m] / counts[m]).float() for m in sums}


def _real_tokens(data: Any) -> torch.Tensor | None:
    """A 2-D ``attention_mask`` of dict inputs as booleans (padding excluded from statistics), else None."""
    mask = data.get("attention_mask") if hasattr(data, "get") else None
    return mask.bool() if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None


def _positions(layer: nn.Module, x: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
    """A layer's input as (positions, channels): a Linear's tokens (real ones only under a mask), a conv's
    batch × space."""
    if real is not None and isinstance(layer, nn.Linear) and x.dim() == 3 and x.shape[:2] == real.shape:
        return x[real]
    if isinstance(layer, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    return x.transpose(0, 1).flatten(1).T


def _importance(name: Importance) -> tp.importance.Importance:
    if name == "activation":
        return ActivationImportance()
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


@dataclass
class _Outcome:
    """What the worker thread hands back: the pruned model and what the caller records in ``ctx.notes``."""

    model: nn.Module
    pinned: dict[str, str] = field(default_factory=dict)  # layer (or parameter) name -> why it kept its width
    config_disagrees: dict[str, list[int]] = field(default_factory=dict)  # HF config field -> per-layer values


def _named(model: nn.Module, names: list[str]) -> list[nn.Module]:
    """The modules called ``names`` (names of unwrapped parameters, recorded as pinned, are skipped)."""
    modules = dict(model.named_modules())
    return [modules[n] for n in names if n in modules]


def _make_pruner(
    model: nn.Module, config: StructuredPruneConfig, ctx: ApplyContext, keep: list[str]
) -> tp.pruner.BasePruner:
    """torch-pruning's pruner for ``model`` (this traces the dependency graph); layers named in ``keep`` and the
    residual stream of a HF model keep their width."""
    num_heads, mha_groups = head_groups(model)
    heads = _head_ratio_dict(model, config)  # each attention's share of heads, read by both ratio dicts
    return tp.pruner.BasePruner(
        model,
        ctx.example_inputs,
        importance=_importance(config.importance),
        pruning_ratio=0.0 if config.layer_ratios else config.ratio,  # per-group: the groups not named keep width
        pruning_ratio_dict=_ratio_dict(model, config, heads),
        # HF: the config has one head count and FFN width for all layers, so rank within each layer.
        global_pruning=config.global_pruning and hf_hidden_size(model) is None,
        ignored_layers=[*_named(model, keep), *hf_residual_layers(model, num_heads)],
        round_to=config.round_to,
        forward_fn=_forward,
        # Fresh dicts every call: torch-pruning updates its (mutable default) group dicts in place.
        in_channel_groups={},
        out_channel_groups=mha_groups,
        num_heads=num_heads,
        prune_num_heads=bool(num_heads),
        prune_head_dims=not num_heads,  # HF attention: drop whole heads, keep each head's width
        head_pruning_ratio=_head_ratio(config),
        head_pruning_ratio_dict=heads or None,
        customized_pruners={nn.LSTM: LSTMHiddenPruner()},
    )


def _named_ratios(model: nn.Module, config: StructuredPruneConfig) -> dict[nn.Module, float]:
    """``layer_ratios`` as modules -> ratios; a name the model lacks is infeasible."""
    modules = dict(model.named_modules())
    unknown = [n for n, _ in config.layer_ratios if n not in modules]
    if unknown:
        raise InfeasibleError(f"prune.structured: layer_ratios names layers this model lacks: {unknown[:5]}")
    return {modules[n]: r for n, r in config.layer_ratios}


def _ratio_dict(
    model: nn.Module, config: StructuredPruneConfig, heads: dict[nn.Module, float]
) -> dict[nn.Module, float] | None:
    """torch-pruning's per-layer ratios: a group whose root is named in ``layer_ratios`` takes that ratio. An
    attention that loses heads (``heads``, from :func:`_head_ratio_dict`) is put in too: torch-pruning removes heads
    only in a scope that prunes something, and with ``prune_head_dims`` off the ratio removes no head dimension."""
    if not config.layer_ratios:
        return None
    out = _named_ratios(model, config)
    for projection, ratio in heads.items():
        if ratio > 0.0:
            out.setdefault(projection, ratio)
    return out


def _head_ratio_dict(model: nn.Module, config: StructuredPruneConfig) -> dict[nn.Module, float]:
    """Each HF attention's share of heads to remove, on its q, k and v projections (torch-pruning reads whichever
    it meets first), at most all heads but one: ``ceil(0.8 * 4)`` would remove all four and break the model.

    With per-group ratios and no ``head_ratio``, an attention whose q, k or v projection (its head group's root)
    ``layer_ratios`` names loses that share of its heads and the others keep theirs, so each layer keeps its own
    head count: heads matter more in some layers than in others (Michel et al. 2019), which one ratio for all
    cannot tell apart. Otherwise every attention loses ``_head_ratio(config)``."""
    per_layer = bool(config.layer_ratios) and _heads_are_units(config)
    named = _named_ratios(model, config) if per_layer else {}
    out: dict[nn.Module, float] = {}
    for attention in hf_attention_modules(model):
        projections = (attention.query, attention.key, attention.value)
        # per layer: the share its own entry names (none: it keeps its heads); otherwise the one ratio for all
        ratio = next((named[p] for p in projections if p in named), 0.0) if per_layer else _head_ratio(config)
        heads = int(attention.num_attention_heads)
        ratio = min(ratio, (heads - 1) / heads - 1e-9) if heads > 1 else 0.0
        out.update(dict.fromkeys(projections, ratio))
    return out


def _head_ratio(config: StructuredPruneConfig) -> float:
    """The head ratio of every attention that :func:`_head_ratio_dict` does not name."""
    if config.head_ratio is not None:
        return config.head_ratio
    return 0.0 if _per_group(config) else config.ratio  # per-group: heads go by their own group's entry


def _per_group(config: StructuredPruneConfig) -> bool:
    return bool(config.layer_ratios) or config.policy == "sensitivity"


def _heads_are_units(config: StructuredPruneConfig) -> bool:
    """An attention's head group is a unit of per-group ratios (:func:`_units`, the sensitivity table) unless an
    explicit ``head_ratio`` decides every attention's heads."""
    return config.head_ratio is None


def _head_group(pruner: tp.pruner.BasePruner, group: Any) -> bool:
    return any(dep.target.module in pruner.num_heads for dep, _ in group)


def _prune(model: nn.Module, config: StructuredPruneConfig, ctx: ApplyContext, keep: list[str]) -> _Outcome:
    """Trace, rank and prune ``model`` in place, the layers named in ``keep`` at full width."""
    pruner = _make_pruner(model, config, ctx, keep)
    # Gram matrices before anything is pruned: the activation ranking reads its moments off them too
    wants_moments = config.reconstruct or isinstance(pruner.importance, ActivationImportance)
    narrowed = _narrowed(pruner) if wants_moments else set()  # a pass over every group: only when it is read
    grams = _input_grams(model, ctx, {m for m in narrowed if isinstance(m, nn.Linear)}) if config.reconstruct else {}
    if isinstance(pruner.importance, ActivationImportance):
        pruner.importance.second_moments = _second_moments(model, ctx, narrowed, grams)
    if config.importance == "taylor":
        inputs, labels = _taylor_batch(model, ctx)
        was_training = model.training
        model.eval()  # gradients without updating batch-norm statistics or sampling dropout
        model.zero_grad(set_to_none=True)
        F.cross_entropy(call_model(model, inputs), labels).backward()
        model.train(was_training)
    if config.bias_compensation or config.reconstruct:
        means = _input_means(model, ctx)
        for group in pruner.step(interactive=True):
            for dep, idxs in group:
                layer = dep.target.module
                if not pruner.DG.is_in_channel_pruning_fn(dep.handler):
                    continue
                removed = [int(i) for i in idxs]
                if layer in grams:
                    grams[layer] = _reconstruct(layer, removed, grams[layer])
                elif layer in means:
                    means[layer] = _compensate(layer, removed, means[layer])
            group.prune()
    else:
        pruner.step()
    model.zero_grad(set_to_none=True)  # taylor gradients must not leak into a later fine-tune
    update_hf_head_counts(model, pruner.num_heads)
    return _Outcome(model, config_disagrees=update_hf_config(model))


def _compensable(layer: nn.Module) -> bool:
    """Layers whose bias can absorb a removed input channel's mean: dense Linear and ungrouped Conv layers."""
    return isinstance(layer, nn.Linear) or (isinstance(layer, nn.Conv1d | nn.Conv2d) and layer.groups == 1)


def _input_means(model: nn.Module, ctx: ApplyContext) -> dict[nn.Module, torch.Tensor]:
    """Each compensable layer's mean input per channel on the calibration data (one forward pass).

    Linear: over every position (batch, tokens), or only the real tokens where the inputs carry a 2-D
    ``attention_mask`` (padding is not what a pooled output averages); Conv: over batch and space. The first
    ``BIAS_SAMPLES`` calibration samples are used."""
    data = ctx.calibration_inputs if ctx.calibration_inputs is not None else ctx.example_inputs
    data = take(data, slice(0, min(BIAS_SAMPLES, batch_size_of(data))))
    sums: dict[nn.Module, torch.Tensor] = {}
    counts: dict[nn.Module, int] = {}
    mask = data.get("attention_mask") if hasattr(data, "get") else None
    real = mask.bool() if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None

    def hook(layer: nn.Module, args: tuple) -> None:
        x = args[0].detach()
        if real is not None and isinstance(layer, nn.Linear) and x.dim() == 3 and x.shape[:2] == real.shape:
            flat = x[real]  # token positions only: padding is not what the pooled output averages
        elif isinstance(layer, nn.Linear):
            flat = x.reshape(-1, x.shape[-1])
        else:
            flat = x.transpose(0, 1).flatten(1).T
        sums[layer] = sums.get(layer, 0) + flat.double().sum(0)
        counts[layer] = counts.get(layer, 0) + flat.shape[0]

    layers = [m for m in model.modules() if _compensable(m)]
    eval_forward(model, data, hooks=[m.register_forward_pre_hook(hook) for m in layers])
    return {m: (sums[m] / counts[m]).float() for m in sums}


def _narrowed(pruner: tp.pruner.BasePruner) -> set[nn.Module]:
    """The layers some group of the pruner's graph takes input channels from (before anything is pruned): only
    these need their inputs' second moments."""
    found: set[nn.Module] = set()
    groups = pruner.DG.get_all_groups(ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types)
    for group in groups:
        for dep, _ in group:
            layer = dep.target.module
            if pruner.DG.is_in_channel_pruning_fn(dep.handler):
                found.add(layer)
    return found


def _input_grams(model: nn.Module, ctx: ApplyContext, layers: set[nn.Module]) -> dict[nn.Module, torch.Tensor]:
    """Each of ``layers``' input second moments with a constant column appended (``[x, 1]^T [x, 1]`` summed over the
    first ``RECONSTRUCT_SAMPLES`` calibration samples' positions; real tokens only under an attention mask), in
    float64: what a least-squares refit of the layer's weights and bias needs."""
    if not layers:
        return {}
    data = ctx.calibration_inputs if ctx.calibration_inputs is not None else ctx.example_inputs
    data = take(data, slice(0, min(RECONSTRUCT_SAMPLES, batch_size_of(data))))
    real = _real_tokens(data)
    grams: dict[nn.Module, torch.Tensor] = {}

    def hook(layer: nn.Module, args: tuple) -> None:
        flat = _positions(layer, args[0].detach(), real)
        flat = torch.cat([flat, torch.ones(flat.shape[0], 1, dtype=flat.dtype, device=flat.device)], 1)
        g = (flat.T @ flat).double()  # float32 products, float64 sum: fast and exact enough for a ridge solve
        grams[layer] = grams[layer] + g if layer in grams else g

    eval_forward(model, data, hooks=[m.register_forward_pre_hook(hook) for m in layers])
    return grams


def _reconstruct(layer: nn.Module, removed: list[int], gram: torch.Tensor) -> torch.Tensor:
    """Refit ``layer``'s kept input columns and bias (before ``removed`` go) to reproduce its current outputs in
    the least-squares sense on the inputs whose augmented Gram matrix is ``gram``; the Gram matrix of what it keeps,
    for a later group that narrows it again."""
    weight = layer.weight
    assert isinstance(weight, torch.Tensor)
    d = weight.shape[1]
    if not removed or gram.shape[0] != d + 1:
        return gram
    gone = set(removed)
    keep = [i for i in range(d) if i not in gone] + [d]  # the last row / column is the bias's constant input
    with torch.no_grad():
        bias = layer.bias if isinstance(layer.bias, torch.Tensor) else torch.zeros(weight.shape[0], dtype=weight.dtype)
        full = torch.cat([weight, bias.unsqueeze(1)], 1).double()  # (out, d + 1)
        a = gram[keep][:, keep]
        damp = RECONSTRUCT_DAMP * a.diagonal().mean().clamp(min=1e-12)
        a = a + damp * torch.eye(len(keep), dtype=a.dtype)
        theta = torch.linalg.solve(a, gram[keep] @ full.T)  # (kept + 1, out)
        if not torch.isfinite(theta).all():
            return gram[keep][:, keep]  # a degenerate solve: leave the weights as they are
        weight[:, keep[:-1]] = theta[:-1].T.to(weight.dtype)
        if isinstance(layer.bias, torch.Tensor):
            layer.bias.copy_(theta[-1].to(weight.dtype))
        else:
            layer.bias = nn.Parameter(theta[-1].to(weight.dtype))
    return gram[keep][:, keep]


def _compensate(layer: nn.Module, removed: list[int], mean: torch.Tensor) -> torch.Tensor:
    """Fold the mean contribution of ``layer``'s input channels ``removed`` into its bias (before they go); the
    means of the channels it keeps, for a later group that narrows it again."""
    weight, bias = layer.weight, layer.bias
    assert isinstance(weight, torch.Tensor)
    if not removed or mean.numel() != weight.shape[1]:
        return mean  # nothing removed, or the means no longer line up with the weight: leave the layer as it is
    with torch.no_grad():
        w = weight[:, removed]
        cols = w.flatten(2).sum(-1) if w.dim() > 2 else w  # a conv kernel's taps all see the channel's mean
        shift = cols @ mean[removed].to(w.dtype)
        if not isinstance(bias, torch.Tensor):
            bias = nn.Parameter(torch.zeros(weight.shape[0], dtype=w.dtype, device=w.device))
            layer.bias = bias
        bias.add_(shift)
    gone = set(removed)
    return mean[[i for i in range(mean.numel()) if i not in gone]]


def _problem(model: nn.Module, ctx: ApplyContext, expected: torch.Size) -> str | None:
    """Why ``model`` breaks the contract on the example inputs (it fails, or its output shape changed), or None."""
    try:
        got = output_shape(model, ctx.example_inputs)
    except Exception as exc:
        return f"the pruned model no longer runs: {exc!r}"
    if got != expected:
        return f"pruning changed the output shape {tuple(expected)} -> {tuple(got)}"
    return None


def _probe_indices(pruner: tp.pruner.BasePruner, group: Any, config: StructuredPruneConfig) -> list[int] | None:
    """The fewest channels of ``group`` that torch-pruning could remove (None: it never prunes this group).

    Attention heads go whole; grouped channels (group convs, per-head dims of nn.MultiheadAttention) go one per
    group, as torch-pruning removes them; ``round_to`` must leave a multiple of it."""
    dg = pruner.DG
    outs = [dep.target.module for dep, _ in group if dg.is_out_channel_pruning_fn(dep.handler)]
    channels = dg.get_out_channels(group[0].dep.target.module)  # get_all_groups roots on output channels
    heads = [pruner.num_heads[m] for m in outs if m in pruner.num_heads]
    if heads:
        if _head_ratio(config) == 0.0 and not _heads_are_units(config):
            return None
        size = channels // max(heads)
        return list(range(channels - size, channels))
    ch_groups = max([pruner.out_channel_groups.get(m, 1) for m in outs] + [1])
    size = channels // ch_groups
    for k in range(1, size):
        if config.round_to is None or (channels - k * ch_groups) % config.round_to == 0:
            return sorted(j * size + size - 1 - i for j in range(ch_groups) for i in range(k))
    return None


def _group_members(pruner: tp.pruner.BasePruner, group: Any, model: nn.Module) -> list[str]:
    """Names of the layers (and unwrapped parameters) whose output width ``group`` prunes, root first."""
    names = {m: n for n, m in model.named_modules()} | {p: n for n, p in model.named_parameters()}
    outs = (dep.target.module for dep, _ in group if pruner.DG.is_out_channel_pruning_fn(dep.handler))
    return list(dict.fromkeys(names[m] for m in outs if m in names))


def _probe(
    pruner: tp.pruner.BasePruner, group: Any, idxs: list[int], ctx: ApplyContext, expected: torch.Size
) -> str | None:
    """Remove channels ``idxs`` of ``group`` from the pruner's model; why the model then breaks, or None."""
    root = group[0].dep
    try:
        # Prune on the group's own root with a smaller index set: torch-pruning maps it to every member.
        pruner.DG.get_pruning_group(root.target.module, root.handler, idxs).prune()
    except Exception as exc:  # a group torch-pruning cannot cut is as pinned as one the forward cannot take
        return f"torch-pruning could not prune it: {exc!r}"
    return _problem(pruner.model, ctx, expected)


def _probe_groups(
    pruner: tp.pruner.BasePruner,
    config: StructuredPruneConfig,
    ctx: ApplyContext,
    expected: torch.Size,
    probed: set[str],
) -> tuple[dict[str, str] | None, bool]:
    """Prune each group not yet ``probed`` (names of its members) a little, on the pruner's model in place.

    Returns the members of the first group that breaks the forward, with why (the model is then broken), and
    whether any group is left to probe after it; ``(None, False)`` when every group passed. Each successful
    probe leaves a valid, smaller model to go on probing."""
    model = pruner.model
    # Listed before anything is pruned: a group's members come from the intact graph.
    groups = pruner.DG.get_all_groups(ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types)
    todo = [(g, members) for g in groups if (members := _group_members(pruner, g, model)) and members[0] not in probed]
    # torch-pruning lists groups from the output backwards. Pinned widths mostly sit just before the output (a
    # flatten into the classifier), so probing from the input end finds them last, with nothing left to retrace for.
    todo.reverse()
    for i, (group, members) in enumerate(todo):
        probed.update(members)
        idxs = _probe_indices(pruner, group, config)
        if idxs is None:
            continue
        problem = _probe(pruner, group, idxs, ctx, expected)
        if problem is not None:
            return dict.fromkeys(members, f"removing {len(idxs)} of its channels: {problem}"), i + 1 < len(todo)
    return None, False


def _find_pinned(
    model: nn.Module, config: StructuredPruneConfig, ctx: ApplyContext, keep: list[str], expected: torch.Size
) -> dict[str, str]:
    """Layers of ``model`` whose output width the forward pins (member name -> why), found by probing each group.

    A failed probe leaves its copy broken, so the graph is traced again on a fresh copy, with the pinned groups
    ignored and the groups already probed skipped, only while groups are left to probe: at most one trace per
    pinned group (one in all when the last group probed is the only pinned one, as a flatten before the
    classifier makes it)."""
    pinned: dict[str, str] = {}
    probed: set[str] = set()
    more = True
    while more:
        pruner = _make_pruner(copy.deepcopy(model), config, ctx, [*keep, *pinned])
        broken, more = _probe_groups(pruner, config, ctx, expected, probed)
        pinned.update(broken or {})
    return pinned


def _prune_checked(
    model: nn.Module,
    work: nn.Module,
    config: StructuredPruneConfig,
    ctx: ApplyContext,
    keep: list[str],
    expected: torch.Size,
) -> _Outcome:
    """Prune ``work`` (a copy of ``model``); if the result breaks the forward, find the pinned layers on fresh
    copies of ``model`` and prune once more with them kept. The body of the worker thread."""
    outcome = _prune(work, config, ctx, keep)
    problem = _problem(outcome.model, ctx, expected)
    if problem is None:
        return outcome
    pinned = _find_pinned(model, config, ctx, keep, expected)
    if not pinned:  # every group prunes fine alone: their combination breaks, which probing cannot untangle
        raise InfeasibleError(f"prune.structured: {problem}")
    outcome = _prune(copy.deepcopy(model), config, ctx, [*keep, *pinned])
    problem = _problem(outcome.model, ctx, expected)
    if problem is not None:
        raise InfeasibleError(f"prune.structured: {problem} (even with {', '.join(pinned)} at full width)")
    outcome.pinned = pinned
    return outcome


def _prune_within(
    model: nn.Module, config: StructuredPruneConfig, ctx: ApplyContext, keep: list[str], expected: torch.Size
) -> _Outcome:
    """:func:`_prune_checked` in a daemon thread, given up after ``config.timeout_s``.

    The first copy is made here, before the thread starts; the probe's copies are made by the worker, which
    only reads ``model`` (after a timeout the caller owns it again and the worker's result is discarded)."""
    work = copy.deepcopy(model)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["outcome"] = _prune_checked(model, work, config, ctx, keep, expected)
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
    return box["outcome"]


def _units(model: nn.Module, config: StructuredPruneConfig, ctx: ApplyContext) -> list[str]:
    """The root layer of every dependency group torch-pruning could narrow (in module order): the names
    ``layer_ratios`` keys on. Groups the output layer belongs to, the HF residual stream, and head groups when an
    explicit ``head_ratio`` decides every attention's heads are left out; a group whose width the forward pins is
    listed (it cannot take any ratio, which its sensitivity row says). One trace per architecture and process."""
    blob = repr((shape_key(model), config.round_to, _head_ratio(config), _heads_are_units(config),
                 config.global_pruning))  # fmt: skip
    key = "prune.structured.units:" + hashlib.sha256(blob.encode()).hexdigest()
    if key not in ctx.cache:
        order = execution_order(model, ctx.example_inputs)
        if not order:
            return []
        output_layer = next(name for name, m in model.named_modules() if m is order[-1])
        work = copy.deepcopy(model)
        pruner = _make_pruner(work, config, ctx, [output_layer])
        groups = pruner.DG.get_all_groups(ignored_layers=pruner.ignored_layers,
                                          root_module_types=pruner.root_module_types)  # fmt: skip
        # An attention's head group is a unit when heads are allocated per group (named by its root, one of its
        # q/k/v projections); with an explicit head_ratio its heads follow that ratio and it is no unit.
        names = [members[0] for g in groups
                 if (members := _group_members(pruner, g, work))
                 and (_heads_are_units(config) or not _head_group(pruner, g))
                 and _probe_indices(pruner, g, config) is not None]  # fmt: skip
        position = {n: i for i, (n, _) in enumerate(model.named_modules())}  # listed in the model's module order
        ctx.cache[key] = sorted((n for n in names if n in position), key=position.__getitem__)
    return list(ctx.cache[key])


# up to 85%: a wide classifier input or FFN is often barely sensitive, and the heaviest ratio is where its bytes go
POLICY = LayerPolicy(knob="ratio", layer_field="layer_ratios", candidates=(0.0, 0.2, 0.35, 0.5, 0.7, 0.85),
                     perturb=perturb_one("prune.structured", "layer_ratios", ratio=0.0), units=_units,
                     neutral=0.0, allocated=("head_ratio",))  # fmt: skip


def describe(c: StructuredPruneConfig) -> str:
    repair = ", reconstructed" if c.reconstruct else ", bias comp." if c.bias_compensation else ""
    if c.layer_ratios:
        per_group = describe_counts(c.layer_ratios, lambda r: f"{r:.0%}", noun="group")
        return f"prune channels per group: {per_group} ({c.importance}{repair})"
    return f"prune {c.ratio:.0%} channels ({c.importance}{repair})"


@register("prune.structured", StructuredPruneConfig, order=20, role="structural", describe=describe,
          layer_policy=POLICY)  # fmt: skip
def apply(model: nn.Module, config: StructuredPruneConfig, ctx: ApplyContext) -> nn.Module:
    if not any(r for _, r in config.layer_ratios) if config.layer_ratios else config.ratio == 0.0:
        return model  # nothing to remove (a per-group allocation that kept every width)
    order = execution_order(model, ctx.example_inputs)
    if not order:
        raise InfeasibleError("prune.structured: the model has no Conv or Linear layer to prune")
    problem = lstm_problem(model)
    if problem:
        raise InfeasibleError(f"prune.structured: {problem}")
    expected = output_shape(model, ctx.example_inputs)
    before = sum(p.numel() for p in model.parameters())
    heads_before = sum(int(m.num_attention_heads) for m in hf_attention_modules(model))
    # The output layer keeps its width: the output shape is part of the contract.
    output_layer = next(name for name, m in model.named_modules() if m is order[-1])
    try:
        outcome = _prune_within(model, config, ctx, [output_layer], expected)
    except InfeasibleError:
        raise
    except Exception as exc:  # torch-pruning raises many types on graphs it cannot trace
        raise InfeasibleError(f"prune.structured: torch-pruning could not prune this graph: {exc!r}") from exc
    pruned = outcome.model
    after = sum(p.numel() for p in pruned.parameters())
    if after >= before:
        raise InfeasibleError("prune.structured: no channel could be removed (all layers coupled to the output)")
    notes: dict[str, Any] = {"params_before": before, "params_after": after}
    if outcome.pinned:
        notes["pinned"] = outcome.pinned
    heads_after = sum(int(m.num_attention_heads) for m in hf_attention_modules(pruned))
    if heads_after != heads_before:
        notes["heads"] = {"before": heads_before, "after": heads_after}
    if outcome.config_disagrees:
        notes["config_disagrees"] = outcome.config_disagrees  # the config holds the first layer's values
    ctx.notes["prune.structured"] = notes
    return pruned
