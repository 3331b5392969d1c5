"""Where trained teachers and generated data are cached, keyed by a hash of their recipe."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    """``$AUTOSLIM_CACHE`` or ``~/.cache/autoslim``."""
    return Path(os.environ.get("AUTOSLIM_CACHE", Path.home() / ".cache" / "autoslim"))


def recipe_key(recipe: dict[str, Any]) -> str:
    """A short stable hash: a changed recipe gets a new key, so it retrains."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def atomic_save(obj: Any, path: Path) -> None:
    """Write then rename, so a killed process never leaves a half-written cache entry."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    tmp.replace(path)
