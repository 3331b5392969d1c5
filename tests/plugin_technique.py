"""A plug-in technique defined outside the package, as a user writes one: ``demo.bias_drop`` removes biases.

Nothing in autoslim names it. It registers on import; a search finds it through the task it runs on: the space
names ``demo.bias_drop`` and the task reference ``tests.plugin_technique:plugin_task`` imports this module, so a
spawned worker process that loads the task registers the technique before it reads the first plan.

The technique drops the bias of the Conv / Linear layers whose biases matter least (smallest mean magnitude
first): fewer parameters and bytes for a small shift of the outputs, which a later fine-tune recovers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from autoslim.nn_utils import WeightLayer, weight_layers
from autoslim.tasks import Task
from autoslim.techniques import ApplyContext, InfeasibleError, list_techniques, register
from tests.tiny_task import tiny_task

NAME = "demo.bias_drop"
# Fused kernels that read their submodules' biases themselves (the transformer fast path): a None bias breaks them.
FUSED = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


@dataclass(frozen=True)
class BiasDropConfig:
    fraction: float = 0.5  # share of the biased Conv / Linear layers whose bias is removed, smallest mean |b| first

    def __post_init__(self) -> None:
        if isinstance(self.fraction, bool) or not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction!r}")


def describe(config: BiasDropConfig) -> str:
    return f"drop {config.fraction:.0%} of biases"


def biased_layers(model: nn.Module) -> list[tuple[str, WeightLayer]]:
    """The Conv / Linear layers with a bias that no fused kernel reads directly."""
    fused = {id(m) for block in model.modules() if isinstance(block, FUSED) for m in block.modules()}
    return [(n, m) for n, m in weight_layers(model) if m.bias is not None and id(m) not in fused]


def apply(model: nn.Module, config: BiasDropConfig, ctx: ApplyContext) -> nn.Module:
    layers = biased_layers(model)
    if not layers:
        raise InfeasibleError(f"{NAME}: no Conv or Linear layer (outside a fused attention block) has a bias")
    # Ties broken by name: the same model always loses the same biases.
    ranked = sorted(layers, key=lambda nm: (float(nm[1].bias.detach().abs().mean()), nm[0]))  # type: ignore[union-attr]
    dropped = ranked[: max(1, math.ceil(config.fraction * len(ranked) - 1e-9))]
    for _, layer in dropped:
        layer.bias = None  # nn.Module unregisters the parameter; Conv and Linear forwards take a None bias
    ctx.notes[NAME] = {"dropped": [n for n, _ in dropped], "kept": len(layers) - len(dropped)}
    return model


if NAME not in list_techniques():  # a test session may import this module under two names
    register(NAME, BiasDropConfig, order=45, role="structural", describe=describe)(apply)


def plugin_task() -> Task:
    """The tiny test task, loaded by reference so that every process running it has the plug-in registered."""
    return tiny_task()
