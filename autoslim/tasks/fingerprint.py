"""A teacher's fingerprint: what ties a study (and an export) to the exact model it was searched on.

The search records it with the study; ``autoslim export --task REF`` recomputes it on the task the user names and
refuses a mismatch, so a study folder never decides which code runs (it names a task, the user chooses one).
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def teacher_sha256(model: nn.Module) -> str:
    """sha256 over the teacher's state_dict (names, dtypes, shapes and bytes, in key order)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
