"""The technique contract, shipped for plug-in authors (as Optuna ships its sampler tests).

A technique registered with :func:`autoslim.techniques.register` gets everything a built-in gets (plans, search,
cost, export) when it keeps the contract; check it in the plug-in's own test suite::

    from autoslim.testing import check_technique

    def test_my_technique_keeps_the_contract():
        check_technique("demo.scale", ScaleConfig(factor=0.5))   # on a tiny built-in task, every built-in profile

Each part is also a function of its own (``check_config``, ``check_round_trip``, ``check_describe``,
``check_applies``, ``check_deterministic``, ``check_role``, ``check_resumes``, ``check_priced``, ``check_refuses``)
taking a task of
the author's choosing; :func:`tiny_task` and :func:`no_weight_layers_task` are the built-in ones.
"""

from autoslim.testing.contract import (
    ContractReport,
    check_applies,
    check_config,
    check_describe,
    check_deterministic,
    check_priced,
    check_refuses,
    check_registration,
    check_resumes,
    check_role,
    check_round_trip,
    check_technique,
)
from autoslim.testing.tiny import no_weight_layers_task, tiny_task

__all__ = [
    "ContractReport",
    "check_applies",
    "check_config",
    "check_describe",
    "check_deterministic",
    "check_priced",
    "check_refuses",
    "check_registration",
    "check_resumes",
    "check_role",
    "check_round_trip",
    "check_technique",
    "no_weight_layers_task",
    "tiny_task",
]
