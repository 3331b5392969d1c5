"""What torch-pruning needs to know about layers it does not handle on its own: attention heads and LSTMs.

* nn.MultiheadAttention: torch-pruning's built-in pruner keeps ``num_heads`` and shrinks ``head_dim``; grouping
  the embedding channels by head makes every head lose the same dimensions (else ``embed_dim`` stops dividing
  by ``num_heads`` and the heads' boundaries shift).
* Hugging Face BERT-style self-attention (``query`` / ``key`` / ``value`` Linear layers and a
  ``num_attention_heads`` attribute): whole heads are removed; afterwards the module's head counts must be
  rewritten, because its forward reshapes by ``attention_head_size`` and reports ``all_head_size``.
* Hugging Face models (a ``config`` with ``hidden_size``): the hidden size is the residual stream shared by the
  embeddings, every layer's output projections, the LayerNorms and the pooler, and the config holds one value for
  all of them, so it is never pruned (:func:`hf_residual_layers`); heads and FFN neurons are, and
  :func:`update_hf_config` writes their new counts back into the config.
* nn.LSTM: torch-pruning 1.6's built-in LSTM pruner indexes the 4-gate weights wrongly (IndexError on any
  pruning); :class:`LSTMHiddenPruner` removes hidden units from all four gates consistently instead.
"""

from __future__ import annotations

import math
from typing import Any

import torch_pruning as tp
from torch import nn


def hf_attention_modules(model: nn.Module) -> list[Any]:
    """Modules shaped like ``BertSelfAttention``: ``query``/``key``/``value`` Linear children and a head count.

    Typed ``Any``: their head-count attributes are plain ints that ``nn.Module`` typing cannot express."""
    return [
        m
        for m in model.modules()
        if isinstance(getattr(m, "num_attention_heads", None), int)
        and all(isinstance(getattr(m, p, None), nn.Linear) for p in ("query", "key", "value"))
    ]


def head_groups(model: nn.Module) -> tuple[dict[nn.Module, int], dict[nn.Module, int]]:
    """``(num_heads, out_channel_groups)`` for torch-pruning: q/k/v layers of HF attention -> head count, and
    nn.MultiheadAttention -> head count (channels grouped per head)."""
    num_heads: dict[nn.Module, int] = {}
    for m in hf_attention_modules(model):
        for proj in (m.query, m.key, m.value):
            num_heads[proj] = int(m.num_attention_heads)
    groups: dict[nn.Module, int] = {m: m.num_heads for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    return num_heads, groups


def update_hf_head_counts(model: nn.Module, remaining: dict[nn.Module, int]) -> None:
    """Rewrite HF attention attributes after torch-pruning removed heads (``remaining``: q layer -> heads)."""
    for m in hf_attention_modules(model):
        heads = remaining.get(m.query, m.num_attention_heads)
        old_size = m.attention_head_size
        m.num_attention_heads = heads
        m.attention_head_size = m.query.out_features // heads
        m.all_head_size = m.query.out_features
        # transformers 5 caches the softmax scale (head_size ** -0.5); rescale rather than recompute it so a
        # model-specific factor survives. Whole-head pruning keeps the head size, so this is normally a no-op.
        if isinstance(getattr(m, "scaling", None), float) and m.attention_head_size != old_size:
            m.scaling *= math.sqrt(old_size / m.attention_head_size)


def hf_hidden_size(model: nn.Module) -> int | None:
    """``config.hidden_size`` of a Hugging Face model, or None for any other model."""
    size = getattr(getattr(model, "config", None), "hidden_size", None)
    return size if isinstance(size, int) else None


def hf_residual_layers(model: nn.Module, attention_projections: dict[nn.Module, int]) -> list[nn.Module]:
    """The layers that write the residual stream of a HF model: embeddings and Linear layers that output
    ``hidden_size`` features, except the q/k/v projections in ``attention_projections`` (their width is
    ``heads * head_size``, which happens to equal ``hidden_size`` too). Empty for a non-HF model.

    Ignoring them keeps the hidden size: torch-pruning drops a group as soon as one layer in it is ignored, and
    the residual group holds all of them (embeddings, LayerNorms, ``attention.output.dense``, ``output.dense``,
    pooler). Pruning it would need the same channels removed everywhere and a config with a new hidden size."""
    hidden = hf_hidden_size(model)
    if hidden is None:
        return []
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.Embedding)
        or (isinstance(m, nn.Linear) and m.out_features == hidden and m not in attention_projections)
    ]


def hf_ffn_layers(model: nn.Module) -> list[nn.Linear]:
    """The FFN up-projections of a BERT-style HF model (``...intermediate.dense``), in layer order."""
    return [m for name, m in model.named_modules() if name.endswith("intermediate.dense") and isinstance(m, nn.Linear)]


def update_hf_config(model: nn.Module) -> dict[str, list[int]]:
    """Write the pruned head count and FFN width into ``model.config`` so that it still saves, loads and exports.

    The config holds one value for every layer; it gets the first layer's. Returns the per-layer counts of the
    fields whose layers disagree (empty when they all agree, as local pruning makes them)."""
    config = getattr(model, "config", None)
    if config is None:
        return {}
    counts = {
        "num_attention_heads": [int(m.num_attention_heads) for m in hf_attention_modules(model)],
        "intermediate_size": [m.out_features for m in hf_ffn_layers(model)],
    }
    disagree: dict[str, list[int]] = {}
    for field, values in counts.items():
        if values and isinstance(getattr(config, field, None), int):
            setattr(config, field, values[0])
            if len(set(values)) > 1:
                disagree[field] = values
    return disagree


def lstm_problem(model: nn.Module) -> str | None:
    """Why an LSTM / GRU / RNN in ``model`` cannot be pruned, or None."""
    for name, m in model.named_modules():
        if isinstance(m, (nn.GRU, nn.RNN)):
            return f"{type(m).__name__} {name!r}: torch-pruning has no pruner for it"
        if isinstance(m, nn.LSTM) and (m.num_layers != 1 or m.bidirectional or m.proj_size):
            return f"LSTM {name!r}: only single-layer, unidirectional LSTMs without projection are pruned"
    return None


class LSTMHiddenPruner(tp.pruner.function.BasePruningFunc):
    """Prunes hidden units (out channels) and input features (in channels) of a 1-layer unidirectional LSTM."""

    TARGET_MODULES = nn.LSTM

    def prune_out_channels(self, layer: nn.Module, idxs: list) -> nn.Module:
        assert isinstance(layer, nn.LSTM)
        hidden = layer.hidden_size
        keep = sorted(set(range(hidden)) - set(idxs))
        gates = [k + g * hidden for g in range(4) for k in keep]  # rows are [input, forget, cell, output] gates
        layer.weight_ih_l0 = self._prune_parameter_and_grad(layer.weight_ih_l0, gates, 0)
        w_hh = self._prune_parameter_and_grad(layer.weight_hh_l0, gates, 0)
        layer.weight_hh_l0 = self._prune_parameter_and_grad(w_hh, keep, 1)
        if layer.bias:
            layer.bias_ih_l0 = self._prune_parameter_and_grad(layer.bias_ih_l0, gates, 0)
            layer.bias_hh_l0 = self._prune_parameter_and_grad(layer.bias_hh_l0, gates, 0)
        layer.hidden_size = len(keep)
        layer._init_flat_weights()  # the fused RNN kernel reads a cached list of the weights
        return layer

    def prune_in_channels(self, layer: nn.Module, idxs: list) -> nn.Module:
        assert isinstance(layer, nn.LSTM)
        keep = sorted(set(range(layer.input_size)) - set(idxs))
        layer.weight_ih_l0 = self._prune_parameter_and_grad(layer.weight_ih_l0, keep, 1)
        layer.input_size = len(keep)
        layer._init_flat_weights()
        return layer

    def get_out_channels(self, layer: nn.Module) -> int:
        assert isinstance(layer, nn.LSTM)
        return layer.hidden_size

    def get_in_channels(self, layer: nn.Module) -> int:
        assert isinstance(layer, nn.LSTM)
        return layer.input_size
