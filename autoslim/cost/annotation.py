"""What a technique tells the cost model about a layer: one typed annotation, stored on the module.

The cost model reads a forward pass of the model as it is, so a simulated technique (rounded weights stored as
floats, weights replaced by centroids) must say how a deployment would store and run the layer. A technique
marks the layers it changed::

    from autoslim.cost.annotation import annotate, annotation_of

    annotate(layer, weight_bits=4, per_channel=True)  # merged into what earlier steps wrote
    annotation_of(layer).weight_bits                    # 4; an unmarked layer reads LayerAnnotation()

Every reader (cost per layer, host measurement, the runtimes' exporters) goes through :func:`annotation_of`, so a
plug-in technique that annotates a layer is priced and exported like a built-in one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from torch import nn

# One attribute, under the ``autoslim_`` prefix that runtime.onnx_int8.strip_autoslim removes before export.
ATTRIBUTE = "autoslim_annotation"


@dataclass(frozen=True)
class LayerAnnotation:
    weight_bits: int = 32  # bits per stored weight (16: fp16); 32 unless quantized
    act_bits: int | None = None  # bits of the layer's input activations; None: float
    act_dynamic: bool = False  # activation scales found per token at run time (one more pass over the input)
    per_channel: bool = True  # one quantization scale per output channel (else one per tensor)
    codebook_bits: int | None = None  # weight sharing: weights stored as indices into 2**codebook_bits centroids
    huffman_bits: float | None = None  # ... with Huffman-coded indices: mean code bits per nonzero weight


def annotation_of(module: nn.Module) -> LayerAnnotation:
    """The layer's annotation; ``LayerAnnotation()`` (a float layer) when no technique marked it."""
    found = module.__dict__.get(ATTRIBUTE)
    return found if isinstance(found, LayerAnnotation) else LayerAnnotation()


def is_annotated(module: nn.Module) -> bool:
    """Whether some technique marked the layer (a layer quantized to 32 bits reads the same as an unmarked one)."""
    return isinstance(module.__dict__.get(ATTRIBUTE), LayerAnnotation)


def annotate(module: nn.Module, **changes: Any) -> LayerAnnotation:
    """Merge ``changes`` into the layer's annotation (fields not named keep what earlier steps wrote)."""
    merged = dataclasses.replace(annotation_of(module), **changes)
    # Plain instance attribute: nn.Module.__setattr__ would do the same for a non-tensor, non-module value.
    module.__dict__[ATTRIBUTE] = merged
    return merged
