"""Small helpers shared by techniques, cost and evaluation: calling a model, batching data."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
WeightLayer = nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s first parameter (or buffer) lives; the CPU for a model with neither."""
    first: torch.Tensor | None = next(model.parameters(), None)
    if first is None:
        first = next(model.buffers(), None)
    return first.device if first is not None else torch.device("cpu")


def call_model(model: nn.Module, inputs: Any, *, output: str | None = None) -> torch.Tensor:
    """Run ``model`` on a tensor, a tuple of tensors or a mapping (Hugging Face style); return its output tensor.

    Inputs are moved to the model's device when they live elsewhere (data stays on the CPU; a GPU worker's model
    does not), so every technique and evaluation works on whichever device the model was put on. The output is
    :func:`select_output` of what the model returns (``output`` names a field of a ModelOutput or dict).
    """
    device = model_device(model)
    if _device_of(inputs) not in (None, device):
        inputs = to_device(inputs, device)
    if isinstance(inputs, Mapping):
        out = model(**inputs)
    elif isinstance(inputs, (tuple, list)):
        out = model(*inputs)
    else:
        out = model(inputs)
    return select_output(out, output)


def select_output(out: Any, output: str | None = None) -> torch.Tensor:
    """The tensor a metric and a distillation loss see: the field ``output`` of a ModelOutput / dict when given,
    else HF-style ``logits``, else the first item of a tuple, list or mapping (``last_hidden_state`` of a bare
    encoder), else the output itself."""
    if output is not None:
        if isinstance(out, Mapping) and output in out:
            return out[output]
        if hasattr(out, output):
            return getattr(out, output)
        raise KeyError(f"the model output has no field {output!r} (task.output)")
    if hasattr(out, "logits") and isinstance(out.logits, torch.Tensor):
        return out.logits
    if isinstance(out, (tuple, list)):
        return out[0]
    if isinstance(out, Mapping):
        return next(iter(out.values()))
    return out


def batch_size_of(inputs: Any) -> int:
    if isinstance(inputs, Mapping):
        return int(next(iter(inputs.values())).shape[0])
    if isinstance(inputs, (tuple, list)):
        return int(inputs[0].shape[0])
    return int(inputs.shape[0])


def take(inputs: Any, index: torch.Tensor | slice) -> Any:
    """Index the batch dimension of a tensor / tuple / dict of tensors."""
    if isinstance(inputs, Mapping):
        return {k: v[index] for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(t[index] for t in inputs)
    return inputs[index]


def to_device(inputs: Any, device: torch.device) -> Any:
    """A tensor / tuple / dict of tensors on ``device`` (non-tensor entries, e.g. flags, are left as they are)."""
    if isinstance(inputs, Mapping):
        return {k: to_device(v, device) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(to_device(t, device) for t in inputs)
    return inputs.to(device) if isinstance(inputs, torch.Tensor) else inputs


def _device_of(inputs: Any) -> torch.device | None:
    """The device of the first tensor in ``inputs`` (None: no tensor in it)."""
    if isinstance(inputs, torch.Tensor):
        return inputs.device
    values = inputs.values() if isinstance(inputs, Mapping) else inputs if isinstance(inputs, (tuple, list)) else ()
    for v in values:
        found = _device_of(v)
        if found is not None:
            return found
    return None


def iter_batches(
    data: tuple[Any, torch.Tensor],
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[Any, torch.Tensor, torch.Tensor]]:
    """Yield ``(inputs, targets, index)`` slices of an in-memory ``(inputs, targets)`` pair.

    Slicing tensors directly is ~10x faster than a DataLoader over a TensorDataset for small models.
    """
    inputs, targets = data
    n = batch_size_of(inputs)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield take(inputs, idx), targets[idx], idx


def weight_layers(model: nn.Module) -> list[tuple[str, WeightLayer]]:
    """Conv and Linear layers: the layers whose weights techniques prune, quantize and price."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def eval_forward(model: nn.Module, inputs: Any, *, hooks: Any = ()) -> Any:
    """One no-grad forward in eval mode; restores the training flag and removes ``hooks`` afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return call_model(model, inputs)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)


def output_shape(model: nn.Module, inputs: Any) -> torch.Size:
    """The output shape of one eval-mode forward (the contract every structural technique keeps)."""
    return eval_forward(model, inputs).shape


def execution_order(model: nn.Module, example_inputs: Any) -> list[nn.Module]:
    """Weight layers in the order a forward pass runs them (the last one is usually the classifier)."""
    order: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda mod, _i, _o: order.append(mod)) for _, m in weight_layers(model)]
    eval_forward(model, example_inputs, hooks=hooks)  # eval mode: tracing must not move batch-norm statistics
    return order


# Parents that read their children's ``.weight`` instead of (or besides) calling them: attention's out_proj, the
# fused fast path of PyTorch's transformer layers. A child swapped for another module there breaks the forward.
READS_CHILD_WEIGHTS = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


def weights_read_by_parent(model: nn.Module) -> set[str]:
    """Names of the children of :data:`READS_CHILD_WEIGHTS` modules: layers that cannot be replaced."""
    return {
        f"{pname}.{cname}" if pname else cname
        for pname, parent in model.named_modules()
        if isinstance(parent, READS_CHILD_WEIGHTS)
        for cname, _ in parent.named_children()
    }


def shape_key(model: nn.Module) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Every parameter's name and shape: what a per-architecture cache (prices, channel groups) is keyed on."""
    return tuple((n, tuple(p.shape)) for n, p in model.named_parameters())
