"""Per-layer policies: a sensitivity table per task, an allocator per hardware profile, and the resolver that
turns a plan step's ``policy: sensitivity`` into concrete per-layer settings (see :mod:`autoslim.policy.resolve`)."""

from autoslim.policy.allocate import allocate
from autoslim.policy.resolve import resolve_step
from autoslim.policy.sensitivity import SensitivityTable, sensitivity_table

__all__ = ["SensitivityTable", "allocate", "resolve_step", "sensitivity_table"]
