"""Compression techniques, each a frozen config plus a registered ``apply``.

Importing this package registers the built-in techniques.
"""

from autoslim.techniques import cut, distill, prune_structured, prune_unstructured, quantize  # noqa: F401
from autoslim.techniques.registry import (
    ApplyContext,
    InfeasibleError,
    Technique,
    get_technique,
    list_techniques,
    register,
)

__all__ = [
    "ApplyContext",
    "InfeasibleError",
    "Technique",
    "get_technique",
    "list_techniques",
    "register",
]
