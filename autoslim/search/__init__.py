"""The search: typed spaces, the Optuna study, and the driver that runs it."""

from autoslim.search.driver import Progress, SearchConfig, SearchOutcome, run_search
from autoslim.search.space import SearchSpace, SpaceError, default_space_path, load_space, space_from_dict

__all__ = [
    "Progress",
    "SearchConfig",
    "SearchOutcome",
    "SearchSpace",
    "SpaceError",
    "default_space_path",
    "load_space",
    "run_search",
    "space_from_dict",
]
