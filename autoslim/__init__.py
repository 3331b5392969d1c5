"""autoslim: search combined compression of a trained PyTorch model; one Pareto front per hardware profile.

Public API::

    from autoslim import load_task, run_trial, TrialSpec, CompressionPlan, builtin_profiles
    plan = CompressionPlan.from_params({"prune.structured": {"ratio": 0.5}, "distill.kd": {"epochs": 3}})
    result = run_trial(TrialSpec(plan.to_dict(), tuple(builtin_profiles().values())), load_task("mnist1d-cnn"))
"""

from autoslim.cost import HardwareProfile, builtin_profiles, estimate_cost, get_profile
from autoslim.plan import CompressionPlan
from autoslim.tasks import Task, load_task
from autoslim.techniques import ApplyContext, InfeasibleError, list_techniques, register
from autoslim.trial import TrialResult, TrialSpec, run_trial

__version__ = "0.1.0"

__all__ = [
    "ApplyContext",
    "CompressionPlan",
    "HardwareProfile",
    "InfeasibleError",
    "Task",
    "TrialResult",
    "TrialSpec",
    "builtin_profiles",
    "estimate_cost",
    "get_profile",
    "list_techniques",
    "load_task",
    "register",
    "run_trial",
]
