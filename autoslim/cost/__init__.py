"""Cost of a model per hardware profile: profiles as data, a per-layer analytic roofline."""

from autoslim.cost.estimate import Cost, estimate_cost
from autoslim.cost.layers import LayerStats, layer_stats
from autoslim.cost.profiles import HardwareProfile, ProfileError, builtin_profiles, get_profile, load_profile_file

__all__ = [
    "Cost",
    "HardwareProfile",
    "LayerStats",
    "ProfileError",
    "builtin_profiles",
    "estimate_cost",
    "get_profile",
    "layer_stats",
    "load_profile_file",
]
