"""``cut.blocks``: remove whole blocks whose hidden state goes in and comes out with the same shape.

Candidates are children of ``nn.Sequential`` / ``nn.ModuleList`` that hold parameters and map their hidden state
(first positional argument) to an output of the same shape: residual blocks, repeated layers, transformer layers
(``nn.TransformerEncoder.layers``, Hugging Face ``BertEncoder.layer``). Each is scored on calibration data by how
much it changes its input, ``1 - cosine(input, output)``; the least important are replaced by a pass-through that
takes the same arguments (attention masks and other keyword arguments are accepted and ignored) and returns the
hidden state in the same structure the block returned (a tensor, or a tuple whose first item is the hidden state).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autoslim.nn_utils import eval_forward, output_shape
from autoslim.techniques.registry import ApplyContext, InfeasibleError, register

_NOT_BLOCKS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm, nn.Dropout)


@dataclass(frozen=True)
class CutBlocksConfig:
    n_blocks: int = 1  # how many blocks to remove (used when fraction is None)
    fraction: float | None = None  # or: this fraction of the removable blocks, rounded down

    def __post_init__(self) -> None:
        if self.n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {self.n_blocks}")
        if self.fraction is not None and not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"fraction must be in [0, 1], got {self.fraction}")


class BlockSkip(nn.Identity):
    """Stands in for a removed block: returns the hidden state it is given, in the block's output structure.

    ``tuple_len`` 0 means the block returned a tensor; n > 0 means an n-tuple ``(hidden, ...)`` whose other items
    (attention weights, caches) become ``None``. ``hidden_kwarg`` names the keyword the hidden state came in by
    when the caller passed it by keyword. An ``nn.Identity`` subclass, so "was this block cut?" stays one check.
    """

    def __init__(self, tuple_len: int = 0, hidden_kwarg: str | None = None) -> None:
        super().__init__()
        self.tuple_len = tuple_len
        self.hidden_kwarg = hidden_kwarg

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        hidden = args[0] if args else kwargs[self.hidden_kwarg or next(iter(kwargs))]
        if self.tuple_len:
            return (hidden, *([None] * (self.tuple_len - 1)))
        return hidden

    def extra_repr(self) -> str:
        return f"tuple_len={self.tuple_len}, hidden_kwarg={self.hidden_kwarg!r}" if self.tuple_len else ""


@dataclass
class _Seen:
    """How a candidate block was called on calibration data: what a stand-in must accept and return."""

    score_sum: float = 0.0
    calls: int = 0
    tuple_len: int = 0
    hidden_kwarg: str | None = None
    plain: bool = True  # one positional tensor in, one tensor out: a plain nn.Identity replaces it


def _hidden_in(args: tuple, kwargs: dict[str, Any]) -> tuple[torch.Tensor | None, str | None]:
    if args:
        return (args[0], None) if isinstance(args[0], torch.Tensor) else (None, None)
    for key, value in kwargs.items():  # called by keyword only: the first tensor keyword is the hidden state
        if isinstance(value, torch.Tensor):
            return value, key
    return None, None


def _candidates(model: nn.Module) -> dict[str, nn.Module]:
    containers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Sequential, nn.ModuleList))]
    candidates: dict[str, nn.Module] = {}
    for cname, container in containers:
        for child_name, child in container.named_children():
            if isinstance(child, (nn.Identity, *_NOT_BLOCKS)) or not any(True for _ in child.parameters()):
                continue
            candidates[f"{cname}.{child_name}" if cname else child_name] = child
    return candidates


def _observe(model: nn.Module, candidates: dict[str, nn.Module], inputs: Any) -> dict[str, _Seen]:
    seen: dict[str, _Seen] = {}

    def make_hook(name: str):
        def hook(_mod: nn.Module, args: tuple, kwargs: dict[str, Any], out: Any) -> None:
            x, kwarg = _hidden_in(args, kwargs)
            y = out[0] if isinstance(out, tuple) and out else out
            if x is None or not isinstance(y, torch.Tensor) or x.shape != y.shape or x.dim() < 2:
                return
            cos = nn.functional.cosine_similarity(x.flatten(1).float(), y.flatten(1).float(), dim=1)
            s = seen.setdefault(name, _Seen())
            s.score_sum += float((1.0 - cos).mean())
            s.calls += 1
            s.tuple_len = len(out) if isinstance(out, tuple) else 0
            s.hidden_kwarg = kwarg
            s.plain = s.plain and len(args) == 1 and not kwargs and not s.tuple_len

        return hook

    hooks = [m.register_forward_hook(make_hook(n), with_kwargs=True) for n, m in candidates.items()]
    eval_forward(model, inputs, hooks=hooks)
    # A block nested in another candidate is dropped with its parent; keep only outermost candidates.
    return {n: s for n, s in seen.items() if not any(n.startswith(p + ".") for p in seen if p != n)}


def removable_blocks(model: nn.Module, example_inputs: Any) -> dict[str, float]:
    """Names of removable blocks mapped to importance (1 - cosine(in, out)) on ``example_inputs``."""
    return {n: s.score_sum / s.calls for n, s in _observe(model, _candidates(model), example_inputs).items()}


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = parent._modules[child]
    parent._modules[child] = new  # works for Sequential and ModuleList alike
    assert old is not None
    return old


@register("cut.blocks", CutBlocksConfig, order=10)
def apply(model: nn.Module, config: CutBlocksConfig, ctx: ApplyContext) -> nn.Module:
    data = ctx.calibration_inputs if ctx.calibration_inputs is not None else ctx.example_inputs
    seen = _observe(model, _candidates(model), data)
    if not seen:
        raise InfeasibleError(
            "cut.blocks: no block is removable: no child of an nn.Sequential / nn.ModuleList with parameters maps "
            "its input to an output of the same shape"
        )
    scores = {n: s.score_sum / s.calls for n, s in seen.items()}
    k = int(config.fraction * len(scores)) if config.fraction is not None else config.n_blocks
    if k > len(scores):
        raise InfeasibleError(f"cut.blocks: asked to remove {k} blocks but only {len(scores)} are removable")
    removed = sorted(scores, key=scores.__getitem__)[:k]
    if not removed:
        ctx.notes["cut.blocks"] = {"removed": [], "importance": scores}
        return model
    expected = output_shape(model, ctx.example_inputs)
    originals = {}
    for name in removed:
        s = seen[name]
        originals[name] = _set_submodule(
            model, name, nn.Identity() if s.plain else BlockSkip(s.tuple_len, s.hidden_kwarg)
        )
    try:
        got: torch.Size | None = output_shape(model, ctx.example_inputs)
        error = ""
    except Exception as exc:  # a caller that needs more from the block than its hidden state
        got, error = None, f"{type(exc).__name__}: {exc}"
    if got != expected:
        for name, old in originals.items():  # leave the caller's model as it was
            _set_submodule(model, name, old)
        why = error or f"output shape changed from {tuple(expected)} to {tuple(got or ())}"
        raise InfeasibleError(f"cut.blocks: the model does not run without blocks {removed}: {why}")
    ctx.notes["cut.blocks"] = {"removed": removed, "importance": scores}
    return model
