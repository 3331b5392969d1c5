"""Asynchronous successive halving (ASHA) over multi-objective, multi-profile trials.

Every trial starts at the lowest rung (a short recovery fine-tune: a fraction of its plan's KD budget). When it
finishes a rung it is promoted to the next one if, among the trials recorded at that rung *so far*, it is in the
top ``1 / reduction_factor`` by a multi-objective rule (``mo_rank``): nobody waits for a rung to fill, so Ray and
process workers stay busy. With fewer than ``reduction_factor`` trials at a rung, none is promoted (ASHA's rule:
the top ``n // eta`` of ``n`` is empty).

The state is plain data (no study, no clock): picklable, and ``to_json`` / ``from_json`` round-trip it for the
journal, so a resumed search makes the same decisions. A promotion, once granted, stands (a later, better trial
at the rung does not revoke a fine-tune already under way); a refusal is not final: ``promotable`` lists trials
that later arrivals pushed into the top share, and the driver promotes them late, as ASHA does (see
``autoslim.search.ladder``)::

    rungs = Rungs()                                   # rungs at 1/9, 1/3 and 1 of the KD budget, eta = 3
    rungs.rung_epochs(9)                              # (1, 3, 9)
    rungs.record(7, 0, accuracy=0.93, costs={"x86": 1.2, "mcu": 3.1e5})
    if rungs.should_promote(7, 0): ...                # run rung 1 (epochs 1 -> 3), then record(7, 1, ...)
    saved = rungs.to_json(); again = Rungs.from_json(saved)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autoslim.search.fronts import finite_number
from autoslim.search.mo_rank import RULES, Entry, order_best_first

DEFAULT_FRACTIONS = (1 / 9, 1 / 3, 1.0)
# The promotion rule of a space's `rungs:` and of --multifidelity: benchmarks/multifidelity.py, default task, 3 seeds:
# hypervolume reached the full-fidelity search's hypervolume in 33-42 % of its wall time on the A100 and x86
# profiles and in 2 of 3 seeds on the microcontroller's bytes, rank in 47-91 % and never on the microcontroller.
DEFAULT_RULE = "hypervolume"
DEFAULT_FINE_TUNE = "restart"
_Refs = tuple[tuple[str, float], ...]
FORMAT = 1  # the JSON layout's version
FINE_TUNE = ("restart", "continue")  # what a promoted trial's next rung does with the fine-tune


@dataclass
class Rungs:
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS  # of the plan's fine-tune budget; increasing, the last 1
    reduction_factor: int = 3  # eta: the top 1/eta of a rung goes on
    rule: str = "rank"  # see autoslim.search.mo_rank
    ref_costs: dict[str, float] = field(default_factory=dict)  # hypervolume rule's reference cost per profile
    # restart: each rung runs its share of the fine-tune from the start (the schedule compressed into it);
    # continue: a promoted trial goes on from the state its last rung left (see autoslim.search.ladder)
    fine_tune: str = "restart"
    records: list[dict[int, Entry]] = field(default_factory=list)  # per rung: trial -> (accuracy, costs)
    promoted: list[set[int]] = field(default_factory=list)  # per rung: trials promoted from it
    # Best-first order per rung (dropped by record(), keyed on the references): kept out of equality and the JSON.
    _order: dict[int, tuple[_Refs, list[int]]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.fractions = tuple(float(f) for f in self.fractions)
        if not self.fractions or any(not 0.0 < f <= 1.0 for f in self.fractions) or self.fractions[-1] != 1.0:
            raise ValueError(f"rung fractions must lie in (0, 1] and end at 1, got {list(self.fractions)}")
        if any(b <= a for a, b in zip(self.fractions, self.fractions[1:], strict=False)):
            raise ValueError(f"rung fractions must increase, got {list(self.fractions)}")
        if isinstance(self.reduction_factor, bool) or not isinstance(self.reduction_factor, int) \
                or self.reduction_factor < 2:  # fmt: skip
            raise ValueError(f"reduction_factor must be an integer >= 2, got {self.reduction_factor!r}")
        if self.fine_tune not in FINE_TUNE:
            raise ValueError(f"fine_tune must be one of {list(FINE_TUNE)}, got {self.fine_tune!r}")
        if self.rule not in RULES:
            raise ValueError(f"unknown promotion rule {self.rule!r}; choose one of {list(RULES)}")
        n = len(self.fractions)
        self.records = [dict(r) for r in self.records] + [{} for _ in range(n - len(self.records))]
        self.promoted = [set(p) for p in self.promoted] + [set() for _ in range(n - len(self.promoted))]

    @property
    def top(self) -> int:
        """The last rung: a trial recorded there has had its full fine-tune."""
        return len(self.fractions) - 1

    def rung_epochs(self, kd_epochs: int) -> tuple[int, ...]:
        """Epochs (or steps: any whole count) of fine-tune done by the end of each rung, for a plan of
        ``kd_epochs``: rounded up, so no rung trains nothing, and the last is the plan's own count. Equal
        neighbours (``(1, 1, 3)`` for 3 epochs) mean that promotion adds no training: record the same result at
        the next rung at once. A plan without a fine-tune (0) gets zeros: only its last rung means anything."""
        if kd_epochs < 0:
            raise ValueError(f"kd_epochs must be >= 0, got {kd_epochs}")
        return tuple(max(min(1, kd_epochs), math.ceil(f * kd_epochs - 1e-9)) for f in self.fractions)

    def record(self, trial: int, rung: int, *, accuracy: float | None,
               costs: Mapping[str, float | None]) -> None:  # fmt: skip
        """What ``trial`` scored at the end of ``rung``: its accuracy and each profile's objective cost (None
        where the model does not fit that profile). Record failed rungs too (accuracy None): they are trials the
        rung ran, and rank last. A record at rung r > 0 means the trial was promoted from r - 1."""
        self._check_rung(rung)
        clean = {str(k): finite_number(v) for k, v in costs.items()}
        self.records[rung][int(trial)] = (finite_number(accuracy), clean)
        self._order.pop(rung, None)  # the rung's order changed (a rerun replaces its record in place)
        if rung > 0:
            self.promoted[rung - 1].add(int(trial))

    def should_promote(self, trial: int, rung: int) -> bool:
        """Whether ``trial``, recorded at ``rung``, goes on to the next rung: it is in the top ``n // eta`` of the
        ``n`` trials recorded there so far (a granted promotion is kept and answered again)."""
        self._check_rung(rung)
        if trial not in self.records[rung]:
            raise KeyError(f"trial {trial} has no record at rung {rung}")
        if rung == self.top:
            return False
        if trial in self.promoted[rung]:
            return True
        if trial in self._top_share(rung):
            self.promoted[rung].add(trial)
            return True
        return False

    def promotable(self, rung: int) -> list[int]:
        """Trials at ``rung`` now in its top share but not promoted yet (turned down earlier, then pushed up by
        the trials recorded after them), best first. Asking does not promote them: ``should_promote`` does."""
        self._check_rung(rung)
        if rung == self.top:
            return []
        return [t for t in self._top_share(rung) if t not in self.promoted[rung]]

    def position(self, trial: int, rung: int) -> float:
        """Where ``trial`` stands at ``rung`` by the promotion rule: 0 is the best, 1 the worst of those recorded
        there (1 too for a trial with no record there)."""
        self._check_rung(rung)
        order = self._ordered(rung)
        if trial not in self.records[rung] or len(order) < 2:
            return 1.0 if trial not in self.records[rung] else 0.0
        return order.index(trial) / (len(order) - 1)

    def forget(self, trial: int) -> None:
        """Drop every record and promotion of ``trial``: its rungs now belong to the trial that took its place
        (a late promotion runs as a new Optuna trial, which carries them)."""
        for rung, (recs, prom) in enumerate(zip(self.records, self.promoted, strict=True)):
            if recs.pop(int(trial), None) is not None:
                self._order.pop(rung, None)
            prom.discard(int(trial))

    def rung_of(self, trial: int) -> int | None:
        """The highest rung ``trial`` has a record at (None: none yet)."""
        return max((r for r, recs in enumerate(self.records) if trial in recs), default=None)

    def _top_share(self, rung: int) -> list[int]:
        recs = self.records[rung]
        k = len(recs) // self.reduction_factor
        if k == 0:
            return []
        return self._ordered(rung)[:k]

    def _ordered(self, rung: int) -> list[int]:
        refs = tuple(sorted(self.ref_costs.items()))
        cached = self._order.get(rung)
        if cached is None or cached[0] != refs:
            cached = (refs, order_best_first(self.records[rung], rule=self.rule, ref_costs=self.ref_costs))
            self._order[rung] = cached
        return cached[1]

    def _check_rung(self, rung: int) -> None:
        if not 0 <= rung <= self.top:
            raise ValueError(f"rung {rung} does not exist: rungs are 0..{self.top}")

    # --- JSON (the journal keeps the state; a resumed search decides alike) -------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "fractions": list(self.fractions), "reduction_factor": self.reduction_factor,
            "rule": self.rule, "ref_costs": dict(self.ref_costs), "fine_tune": self.fine_tune,
            "rungs": [{"records": {str(t): [acc, dict(costs)] for t, (acc, costs) in sorted(recs.items())},
                       "promoted": sorted(prom)} for recs, prom in zip(self.records, self.promoted, strict=True)],
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rungs:
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown rung state format {data.get('format')!r} (this version reads {FORMAT})")
        rungs = data["rungs"]
        records: list[dict[int, Entry]] = [
            {int(t): (acc, dict(costs)) for t, (acc, costs) in r["records"].items()} for r in rungs
        ]
        return cls(tuple(data["fractions"]), reduction_factor=int(data["reduction_factor"]), rule=data["rule"],
                   ref_costs=dict(data.get("ref_costs", {})), records=records,
                   fine_tune=data.get("fine_tune", "restart"),
                   promoted=[set(r["promoted"]) for r in rungs])  # fmt: skip

    def to_json(self) -> str:
        # Non-finite numbers were stored as None, so the text is strict JSON (no NaN / Infinity tokens).
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> Rungs:
        return cls.from_dict(json.loads(text))


def rungs_from_config(config: Mapping[str, Any] | None) -> Rungs:
    """From a space's ``rungs:`` mapping (``{fractions: [0.111, 0.333, 1], reduction_factor: 3, rule: hypervolume}``);
    None or {} gives the defaults."""
    config = dict(config or {})
    unknown = set(config) - {"fractions", "reduction_factor", "rule", "fine_tune"}
    if unknown:
        raise ValueError(f"rungs: unknown key(s) {sorted(unknown)}; use fractions, reduction_factor, rule, fine_tune")
    fractions: Sequence[float] = config.get("fractions", DEFAULT_FRACTIONS)
    rule = config.get("rule", DEFAULT_RULE)
    return Rungs(tuple(fractions), reduction_factor=config.get("reduction_factor", 3), rule=rule,
                 fine_tune=config.get("fine_tune", DEFAULT_FINE_TUNE))  # fmt: skip
