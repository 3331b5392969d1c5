"""``share.weights``: per-layer k-means weight sharing (Han et al. 2016, Deep Compression).

Each layer's nonzero weights are clustered into ``2**bits`` centroids and replaced by their centroid, so a
deployment stores a ``bits``-bit index per weight plus a small codebook. Zeros (from unstructured pruning) are not
clustered and stay zero: the sparse bitmask, or one extra code, carries them. The layer is marked with
its codebook bits (and the Huffman bits per weight when the indices are Huffman coded) in its cost annotation
(:mod:`autoslim.cost.annotation`) so the cost model prices the indices instead of full-width weights.

A later fine-tune would move every weight independently and undo the sharing; the cluster of each weight is kept
as a non-persistent buffer ``autoslim_cluster_index`` and :func:`enforce_sharing` projects weights back onto their
per-cluster means after every optimizer step (as :func:`prune_unstructured.enforce_masks` does for zeros).
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass

import torch
from torch import nn

from autoslim.cost.annotation import annotate, annotation_of
from autoslim.nn_utils import WeightLayer, weight_layers
from autoslim.techniques.registry import ApplyContext, InfeasibleError, register

CLUSTER_INDEX = "autoslim_cluster_index"  # int64 like the weight; -1 marks a zero that is not clustered
LLOYD_ITERATIONS = 15


@dataclass(frozen=True)
class ShareConfig:
    bits: int = 4  # 2**bits centroids per layer
    min_numel: int = 64  # smaller layers keep full-precision weights: their codebook would outweigh them
    huffman: bool = False  # entropy-code the cluster indices (Deep Compression's third stage)

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 1 <= self.bits <= 8:
            raise ValueError(f"bits must be an integer in 1..8, got {self.bits!r}")
        if self.min_numel < 1:
            raise ValueError(f"min_numel must be >= 1, got {self.min_numel}")


def kmeans_1d(values: torch.Tensor, k: int, iterations: int = LLOYD_ITERATIONS) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on a 1-D tensor from centroids spread linearly over [min, max]; deterministic.

    Returns ``(centroids, assignment)``; each used centroid is exactly the mean of its members. Linear
    initialisation keeps centroids for the rare large weights, which density-based starts lose (Han et al.).
    """
    v = values.double()
    centroids = torch.linspace(float(v.min()), float(v.max()), k, dtype=torch.float64, device=v.device)
    for _ in range(iterations + 1):
        # In 1-D the nearest centroid is found by bisecting the midpoints (centroids stay sorted).
        assign = torch.bucketize(v, (centroids[1:] + centroids[:-1]) / 2)
        sums = torch.zeros(k, dtype=torch.float64, device=v.device).index_add_(0, assign, v)
        counts = torch.bincount(assign, minlength=k)
        used = counts > 0
        centroids = torch.where(used, sums / counts.clamp_min(1), centroids)  # an empty cluster keeps its place
    return centroids.to(values.dtype), assign


def huffman_bits_per_symbol(counts: list[int]) -> float:
    """Average code length of a Huffman code for symbols with these frequencies (zeros ignored)."""
    freqs = [c for c in counts if c > 0]
    if not freqs:
        return 0.0
    if len(freqs) == 1:
        return 1.0  # one symbol still needs a bit per occurrence to be decodable without a length field
    tie = itertools.count()  # equal frequencies must never compare the symbol lists
    heap = [(f, next(tie), [i]) for i, f in enumerate(freqs)]
    heapq.heapify(heap)
    depth = [0] * len(freqs)
    while len(heap) > 1:
        fa, _, a = heapq.heappop(heap)
        fb, _, b = heapq.heappop(heap)
        for i in a + b:
            depth[i] += 1
        heapq.heappush(heap, (fa + fb, next(tie), a + b))
    return sum(f * d for f, d in zip(freqs, depth, strict=True)) / sum(freqs)


def enforce_sharing(model: nn.Module) -> None:
    """Set every shared weight to the mean of its cluster (call after an optimizer step); zeros stay zero."""
    with torch.no_grad():
        for m in model.modules():
            index = getattr(m, CLUSTER_INDEX, None)
            weight = getattr(m, "weight", None)
            if not isinstance(index, torch.Tensor) or not isinstance(weight, torch.Tensor):
                continue
            flat_index = index.flatten()
            live = flat_index >= 0
            k = 2 ** (annotation_of(m).codebook_bits or 8)
            members = flat_index[live]
            values = weight.detach().flatten()[live]
            sums = torch.zeros(k, dtype=values.dtype, device=values.device).index_add_(0, members, values)
            counts = torch.bincount(members, minlength=k).clamp_min(1).to(values.dtype)
            projected = torch.zeros_like(weight).flatten()
            projected[live] = (sums / counts)[members]
            weight.copy_(projected.view_as(weight))


def _share_layer(layer: WeightLayer, config: ShareConfig) -> float | None:
    """Cluster one layer in place; return its Huffman bits per nonzero weight when asked for."""
    w = layer.weight
    flat = w.detach().flatten()
    live = flat != 0
    index = torch.full_like(flat, -1, dtype=torch.long)
    if bool(live.any()):
        centroids, assign = kmeans_1d(flat[live], 2**config.bits)
        index[live] = assign
        with torch.no_grad():
            shared = torch.zeros_like(flat)
            shared[live] = centroids[assign]
            w.copy_(shared.view_as(w))
    index = index.view_as(w)
    if CLUSTER_INDEX in layer._buffers:
        layer._buffers[CLUSTER_INDEX] = index
    else:
        layer.register_buffer(CLUSTER_INDEX, index, persistent=False)
    if not config.huffman:  # huffman_bits=None: no stale code from an earlier sharing survives
        annotate(layer, codebook_bits=config.bits, huffman_bits=None)
        return None
    counts = torch.bincount(index[index >= 0], minlength=2**config.bits).tolist()
    bits = huffman_bits_per_symbol(counts)
    annotate(layer, codebook_bits=config.bits, huffman_bits=bits)
    return bits


def describe(c: ShareConfig) -> str:
    return f"share {2**c.bits} clusters" + (" + huffman" if c.huffman else "")


@register("share.weights", ShareConfig, order=50, role="structural", describe=describe)
def apply(model: nn.Module, config: ShareConfig, ctx: ApplyContext) -> nn.Module:
    layers = [(n, m) for n, m in weight_layers(model) if m.weight.numel() >= config.min_numel]
    if not layers:
        raise InfeasibleError(f"share.weights: no Conv or Linear layer has >= {config.min_numel} weights")
    huffman: dict[str, float] = {}
    for name, layer in layers:
        bits = _share_layer(layer, config)
        if bits is not None:
            huffman[name] = round(bits, 4)
    note: dict[str, object] = {"layers": len(layers), "clusters": 2**config.bits}
    if huffman:
        note["huffman_bits_per_weight"] = huffman
    ctx.notes["share.weights"] = note
    return model
