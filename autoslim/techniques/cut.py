"""``cut.blocks``: remove whole blocks whose hidden state goes in and comes out with the same shape.

**Finding candidates.** One eval forward over the calibration inputs with a forward hook on every submodule
records, per module, how often it was called, the shape of its hidden input (first positional argument, or the
first tensor keyword when it was called by keyword only) and of its output (a tensor, or a tuple's first item).
Nothing depends on how the model is written: blocks in an ``nn.Sequential`` / ``nn.ModuleList``, attributes
called in order from a hand-written ``forward`` (``self.layer(x, self.conv3, self.conv3_BN)`` as torchcrepe
does), torchvision's ``layer1..layer4`` stages and Hugging Face encoders are traced alike. A candidate is a
submodule (never the root) that

- holds parameters and is called exactly once per forward (a shared or looped module is no block),
- maps its hidden input to an output of the same shape (``dim >= 2``), or is a stride-1 conv with as many
  output as input channels whose input was padded outside it (torchcrepe's ``F.pad(x); conv(x)``): its output is
  the input's shape less the border the kernel consumes, and its stand-in crops that border off (:class:`CropSkip`),
- is not a norm or dropout, and, when it has no submodules, is a Conv or Linear layer (a ``PReLU`` or an
  ``RMSNorm`` is no block: cutting it saves nothing),
- holds at most half of the model's parameters (a whole BERT encoder is the model, not a block of it).

**Granularity.** Candidates nest (a stage holds blocks, a block holds same-shape convs); one level is offered:

1. A single layer (Conv / Linear, no submodules) counts only when it is not inside another candidate: a
   residual block's convs are cut with their block, never one by one.
2. Among the rest, from the outermost down: a candidate holding two or more disjoint candidates is a stage
   and is replaced by them (recursively), otherwise it is kept whole and what it holds is not offered.

So a ResNet stage (``layer1`` = two ``BasicBlock``) offers its blocks, a ``BasicBlock`` is one block, torchcrepe's
8 -> 8 channel ``conv3`` / ``conv4`` are layer cuts and BERT offers its ``BertLayer`` modules (a ``BertLayer`` holds
one candidate, its attention, so it stays whole). The offered candidates are disjoint.

**Verification.** A block whose removal breaks the forward is not offered: each candidate is swapped for its
stand-in on its own, the model runs once on the example inputs and the candidate is restored; it is dropped when
that forward raises, changes the output shape, or never reaches the stand-in through the attribute (a module the
forward calls through some other reference cannot be cut by replacing the attribute).

**A stack keeps one layer.** When every layer of an ``nn.ModuleList`` (a Hugging Face or ``nn.TransformerEncoder``
layer stack, a timm block list) is removable, the most important one is not offered: an encoder cut down to
nothing is its embeddings feeding the head (measured on the zoo's BERT classifier: chance accuracy), and
nothing is left for the structured pruning that may follow the cut. ``Sequential`` stages of CNNs are not
concerned: their downsampling blocks are not removable, so a cut never empties the network.

**Removal.** Each candidate is scored by how much it changes its input, ``1 - cosine(input, output)``; the least
important are replaced by a pass-through that takes the same arguments (attention masks and other keyword
arguments are accepted and ignored) and returns the hidden state in the same structure the block returned (a
tensor, or a tuple whose first item is the hidden state). The cut model is checked once more as a whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autoslim.nn_utils import WEIGHT_LAYERS, count_params, eval_forward, output_shape
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


class CropSkip(nn.Identity):
    """Stands in for a removed stride-1 conv whose caller padded its input: returns the input centre-cropped by
    ``trim`` (per spatial dim, how much shorter the conv's output was), which is where a kernel's centre tap
    reads. The trim, not a size, is kept: it is the same for any input length. An ``nn.Identity`` subclass, like
    :class:`BlockSkip`."""

    def __init__(self, trim: tuple[int, ...]) -> None:
        super().__init__()
        self.trim = tuple(trim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.dim() - len(self.trim)
        crop = [slice(t // 2, x.shape[lead + i] - (t - t // 2)) for i, t in enumerate(self.trim)]
        return x[(slice(None),) * lead + tuple(crop)]

    def extra_repr(self) -> str:
        return f"trim={self.trim}"


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
    """How a module was called on calibration data (its first call): whether it can be a block, and what a
    stand-in must accept and return."""

    calls: int = 0
    same_shape: bool = False  # hidden input and output (first item) have the same shape, dim >= 2 (after trim)
    trim: tuple[int, ...] = ()  # a padded-outside conv: per spatial dim, how much shorter its output is
    score: float = 0.0  # 1 - cosine(input, output), batch mean; only measured when same_shape
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


def _conv_trim(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[int, ...] | None:
    """How much shorter (per spatial dim) a stride-1, channel-keeping conv's output is than its input; None when
    ``module`` is no such conv. Only the border its kernel consumes can differ: stride 1 and the conv's own
    padding are fixed, so the difference is the same for every input length."""
    if not isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) or module.in_channels != module.out_channels:
        return None
    if any(s != 1 for s in module.stride) or x.dim() != len(module.kernel_size) + 2 or x.shape[:2] != y.shape[:2]:
        return None  # strided (a shape change that is no border), or an unbatched call
    trim = tuple(a - b for a, b in zip(x.shape[2:], y.shape[2:], strict=True))
    return trim if all(t >= 0 for t in trim) else None


def _record(seen: _Seen, module: nn.Module, args: tuple, kwargs: dict[str, Any], out: Any) -> None:
    """Fill ``seen`` from one call; the cosine is only paid for where the shapes already make a candidate."""
    x, kwarg = _hidden_in(args, kwargs)
    y = out[0] if isinstance(out, tuple) and out else out
    if x is None or not isinstance(y, torch.Tensor) or x.dim() < 2:
        return
    if x.shape != y.shape:
        trim = _conv_trim(module, x, y) if len(args) == 1 and not kwargs else None
        if trim is None:
            return
        seen.trim, x = trim, CropSkip(trim)(x)  # score the conv against the input it would pass on
    cos = nn.functional.cosine_similarity(x.flatten(1).float(), y.flatten(1).float(), dim=1)
    seen.same_shape = True
    seen.score = float((1.0 - cos).mean())
    seen.tuple_len = len(out) if isinstance(out, tuple) else 0
    seen.hidden_kwarg = kwarg
    seen.plain = len(args) == 1 and not kwargs and not seen.tuple_len


def _trace(model: nn.Module, inputs: Any) -> dict[str, _Seen]:
    """How every submodule (not the root) was called in one eval forward over ``inputs``."""
    seen: dict[str, _Seen] = {}

    def make_hook(s: _Seen):
        def hook(mod: nn.Module, args: tuple, kwargs: dict[str, Any], out: Any) -> None:
            s.calls += 1
            if s.calls == 1:  # a module called again is no candidate: its later calls need no measuring
                _record(s, mod, args, kwargs, out)

        return hook

    hooks = []
    for name, module in model.named_modules():
        if name:
            seen[name] = _Seen()
            hooks.append(module.register_forward_hook(make_hook(seen[name]), with_kwargs=True))
    eval_forward(model, inputs, hooks=hooks)  # eval mode: tracing must not move batch-norm statistics
    return seen


def _is_layer(module: nn.Module) -> bool:
    """A single layer: a module without submodules."""
    return next(module.children(), None) is None


def _is_candidate(module: nn.Module, seen: _Seen, max_params: int) -> bool:
    if seen.calls != 1 or not seen.same_shape or isinstance(module, (nn.Identity, *_NOT_BLOCKS)):
        return False
    if _is_layer(module) and not isinstance(module, WEIGHT_LAYERS):
        return False  # a lone PReLU, a custom RMSNorm, a scale: nothing worth cutting
    n = count_params(module)
    return 0 < n <= max_params


def _inside(name: str, outer: str) -> bool:
    return name.startswith(outer + ".")


def _granular(model: nn.Module, names: list[str]) -> list[str]:
    """The candidates to offer, in module order, disjoint, at the granularity the module docstring describes."""
    kept = [n for n in names if not (_is_layer(model.get_submodule(n)) and any(_inside(n, p) for p in names))]

    def maximal(within: list[str]) -> list[str]:
        return [n for n in within if not any(_inside(n, p) for p in within if p != n)]

    def resolve(name: str) -> Iterator[str]:
        inner = maximal([n for n in kept if _inside(n, name)])
        if len(inner) >= 2:  # a stage: offer its blocks
            for n in inner:
                yield from resolve(n)
        else:
            yield name

    return [r for root in maximal(kept) for r in resolve(root)]


def _stand_in(seen: _Seen) -> nn.Module:
    if seen.trim:
        return CropSkip(seen.trim)
    return nn.Identity() if seen.plain else BlockSkip(seen.tuple_len, seen.hidden_kwarg)


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = parent._modules[child]
    parent._modules[child] = new  # works for Sequential, ModuleList and plain attributes alike
    assert old is not None
    return old


def _why_not_removable(model: nn.Module, name: str, stand_in: nn.Module, inputs: Any, expected: torch.Size) -> str:
    """Why the model does not run the same with ``name`` swapped for ``stand_in`` ("" when it does); the model is
    left as it was."""
    calls = {"stand_in": 0, "original": 0}

    def counter(key: str):
        def hook(*_: Any) -> None:
            calls[key] += 1

        return hook

    original = _set_submodule(model, name, stand_in)
    hooks = [stand_in.register_forward_hook(counter("stand_in")), original.register_forward_hook(counter("original"))]
    try:
        got = eval_forward(model, inputs, hooks=hooks).shape
    except Exception as exc:  # the caller needs more from the block than its hidden state (a second output ...)
        return f"{type(exc).__name__}: {exc}"
    finally:
        _set_submodule(model, name, original)
    if got != expected:
        return f"output shape changed from {tuple(expected)} to {tuple(got)}"
    if calls != {"stand_in": 1, "original": 0}:  # forward reaches the module by another reference than its name
        return "the forward does not call it through its attribute"
    return ""


@dataclass
class _Found:
    blocks: dict[str, _Seen]  # removable, in module order
    rejected: dict[str, str]  # candidates whose removal breaks the forward -> why


def _find(model: nn.Module, calibration: Any, example_inputs: Any) -> _Found:
    seen = _trace(model, calibration)
    max_params = count_params(model) // 2
    names = [n for n, s in seen.items() if _is_candidate(model.get_submodule(n), s, max_params)]
    expected = output_shape(model, example_inputs)
    found = _Found({}, {})
    for name in _granular(model, names):
        why = _why_not_removable(model, name, _stand_in(seen[name]), example_inputs, expected)
        if why:
            found.rejected[name] = why
        else:
            found.blocks[name] = seen[name]
    for name in _last_of_stacks(model, found.blocks):
        del found.blocks[name]
        found.rejected[name] = "the last layer of its ModuleList (a layer stack keeps at least one layer)"
    return found


def _last_of_stacks(model: nn.Module, blocks: dict[str, _Seen]) -> list[str]:
    """For each ``nn.ModuleList`` whose every item is an offered block, its most important item."""
    stacks: dict[str, list[str]] = {}
    for name in blocks:
        parent, _, _child = name.rpartition(".")
        if parent and isinstance(model.get_submodule(parent), nn.ModuleList):
            stacks.setdefault(parent, []).append(name)
    return [
        max(names, key=lambda n: blocks[n].score)
        for parent, names in stacks.items()
        if len(names) == len(list(model.get_submodule(parent).children()))
    ]


def removable_blocks(model: nn.Module, example_inputs: Any) -> dict[str, float]:
    """Names of removable blocks mapped to importance (1 - cosine(in, out)) on ``example_inputs``."""
    return {n: s.score for n, s in _find(model, example_inputs, example_inputs).blocks.items()}


def _least_important(scores: dict[str, float], k: int) -> list[str]:
    """The ``k`` lowest scores, skipping any name nested in (or holding) one already picked; offered blocks are
    disjoint by construction, this keeps "never cut a block twice" true whatever the granularity becomes."""
    picked: list[str] = []
    for name in sorted(scores, key=scores.__getitem__):
        if len(picked) == k:
            break
        if not any(name == p or _inside(name, p) or _inside(p, name) for p in picked):
            picked.append(name)
    return picked


def _no_block_reason(found: _Found) -> str:
    if found.rejected:
        whys = "; ".join(f"{n}: {why}" for n, why in found.rejected.items())
        return f"cut.blocks: no block is removable: no same-shape block can go ({whys})"
    return (
        "cut.blocks: no block is removable: no submodule with parameters, called once, maps its input to an output "
        "of the same shape"
    )


def describe(c: CutBlocksConfig) -> str:
    return f"cut {c.fraction:.0%} of blocks" if c.fraction is not None else f"cut {c.n_blocks} block(s)"


@register("cut.blocks", CutBlocksConfig, order=10, role="structural", describe=describe)
def apply(model: nn.Module, config: CutBlocksConfig, ctx: ApplyContext) -> nn.Module:
    data = ctx.calibration_inputs if ctx.calibration_inputs is not None else ctx.example_inputs
    found = _find(model, data, ctx.example_inputs)
    if not found.blocks:
        raise InfeasibleError(_no_block_reason(found))
    scores = {n: s.score for n, s in found.blocks.items()}
    k = int(config.fraction * len(scores)) if config.fraction is not None else config.n_blocks
    if k > len(scores):
        raise InfeasibleError(f"cut.blocks: asked to remove {k} blocks but only {len(scores)} are removable")
    removed = _least_important(scores, k)
    if not removed:
        ctx.notes["cut.blocks"] = {"removed": [], "importance": scores}
        return model
    expected = output_shape(model, ctx.example_inputs)
    originals = {name: _set_submodule(model, name, _stand_in(found.blocks[name])) for name in removed}
    try:
        got: torch.Size | None = output_shape(model, ctx.example_inputs)
        error = ""
    except Exception as exc:  # each block is removable alone; together they may still break the forward
        got, error = None, f"{type(exc).__name__}: {exc}"
    if got != expected:
        for name, old in originals.items():  # leave the caller's model as it was
            _set_submodule(model, name, old)
        why = error or f"output shape changed from {tuple(expected)} to {tuple(got or ())}"
        raise InfeasibleError(f"cut.blocks: the model does not run without blocks {removed}: {why}")
    ctx.notes["cut.blocks"] = {"removed": removed, "importance": scores}
    return model
