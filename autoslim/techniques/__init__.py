"""Compression techniques, each a frozen config plus a registered ``apply``.

Importing this package registers the built-in techniques.
"""

from autoslim.techniques import (  # noqa: F401
    cut,
    distill,
    lowrank,
    prune_structured,
    prune_unstructured,
    quantize,
    share,
)
from autoslim.techniques.registry import (
    ROLES,
    ApplyContext,
    InfeasibleError,
    StoppedEarly,
    Technique,
    get_technique,
    list_techniques,
    register,
)

__all__ = [
    "ROLES",
    "ApplyContext",
    "InfeasibleError",
    "StoppedEarly",
    "Technique",
    "get_technique",
    "list_techniques",
    "register",
]
