"""The driver's side of multi-fidelity search: which rung a trial runs next, and what each finished rung left.

``rungs.Rungs`` decides promotions (ASHA over every profile's front); this module ties it to Optuna trials:

- one Optuna trial per plan: it stays running while it climbs, and is told once, at its last rung. A trial that
  is not promoted ends ``stopped`` with the reason ``not promoted at rung r ...`` and is on no front; Optuna is
  told the values its rung measured (COMPLETE), so the sampler learns from every rung run (told PRUNED, TPE
  would count every not-promoted fine-tune as a bad trial and drift to plans without one). Only trials that ran
  their whole fine-tune (the top rung) enter the fronts.
- ``fine_tune: restart`` (the default): each rung is **restarted**: rung r runs ``fractions[r]`` of the plan's
  fine-tune with the whole learning-rate schedule compressed into it (``ApplyContext.fidelity``). A short
  fine-tune that ends at a low learning rate ranks plans by what they can recover; one cut short mid-schedule
  would not (KD wants a decaying LR: measured on MNIST-1D). Every final model is exactly what its plan and seed
  rebuild. The cost: the top 1/eta^r of trials re-run the rungs below (0.33 of a full search's fine-tunes per
  trial at 1/9, 1/3, 1, eta 3, instead of 0.26).
- ``fine_tune: continue``: a promoted trial's next rung **goes on** from the state its rung left (model and
  optimizer, returned with the rung's result as bytes, so any process or Ray worker can take the next rung) and
  runs only the steps that rung did not, its learning-rate schedule restarted at ``lr`` and decayed again over
  them (a warm restart, as SGDR): every rung still ends at a low learning rate. The trial records the
  fidelities its fine-tune ran to (``fine_tune_legs``), and ``autoslim export`` rebuilds the model bit for bit
  by running those legs in turn. A plan with more than one fine-tune step (or one that cannot resume: a plug-in
  registered without ``resumable=True``) restarts each rung; so does a rung interrupted by a kill (the state
  lives in memory, not in the study folder): each rung entry says ``continued_from`` (None: restarted).
- trials that have nothing to shorten run once, at the top rung: the baseline, plans without a fine-tune step,
  the space's recipes and warm-start plans (they are there to be measured, not ranked).
- **late promotion** (ASHA's): a trial turned down at rung r is promoted later when the trials recorded after it
  push it into the top share (a rung of n trials promotes n // eta: a good plan that finished when fewer than eta
  had would otherwise never get a second look). Before the driver starts a new plan in a free slot, it promotes
  the best such trial, highest rung first. The Optuna trial that was told is final, so the promotion runs as a new
  trial of the same parameters and seed (``late_of``, ``requeue_of``: it carries the rungs, the old one leaves the
  ladder and the budget's count). A continued rung goes on from the state the rung left when the driver still
  holds it (kept for turned-down trials up to ``LATE_STATE_BYTES``, the lowest ranked dropped first); otherwise
  it restarts and its rung entry says so.
- every finished rung is a trial user attribute (``rungs``: rung, fidelity, status, accuracy, per-profile
  objective cost, seconds), written when it finishes: a killed search rebuilds the ladder from the journal, and
  a trial killed in the middle of rung r is queued again (same parameters, its finished rungs kept) to run rung r.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from autoslim.cost import HardwareProfile
from autoslim.plan import CompressionPlan
from autoslim.search.rungs import Rungs
from autoslim.search.study import INTERRUPTED
from autoslim.techniques import get_technique
from autoslim.trial import LATE_OF, NOT_PROMOTED, TrialResult, can_continue

RUNGS_ATTR = "rungs"  # per trial: its finished rungs, oldest first
PROMOTED_ATTR = "promoted_to"  # per trial: the rung it was promoted to (set before that rung runs)
RESUME_ATTR = "resume_rung"  # a queued trial: the rung its interrupted predecessor was running
CONFIG_ATTR = "rungs_config"  # per study: the ladder it began with (a resume must use the same)
LATE_ATTR = LATE_OF  # a late promotion: the turned-down trial it goes on from
SEED_ATTR = "seed_of"  # a late promotion: the trial whose seed it runs with (the first of a chain)
# Fine-tune states of turned-down trials the driver keeps for late promotion (continued rungs), in all: above it
# the lowest ranked at its rung is dropped (its late promotion, if any, restarts the rung). A pretrained MiniLM's
# model and Adam state are ~270 MB; the default task's a few hundred kB.
LATE_STATE_BYTES = 1 << 30


@dataclass(frozen=True)
class _Parked:
    """A trial turned down at ``rung``: what a late promotion needs to run it again."""

    rung: int
    params: dict[str, Any]
    seed_of: int

    @classmethod
    def of(cls, trial: optuna.trial.FrozenTrial | optuna.Trial, rung: int) -> _Parked:
        # A late promotion of a late promotion keeps the first trial's seed.
        return cls(rung, dict(trial.params), int(trial.user_attrs.get(SEED_ATTR, trial.number)))


class RungsChangedError(ValueError):
    """A study resumed with other rungs than it began with."""


def has_fine_tune(plan: CompressionPlan) -> bool:
    return any(get_technique(s.technique).role == "fine-tune" for s in plan.steps)


class Ladder:
    def __init__(self, template: Rungs, profiles: Sequence[HardwareProfile]) -> None:
        # A fresh state from the space's settings: the space's own Rungs object is never written to.
        self.rungs = Rungs(template.fractions, reduction_factor=template.reduction_factor, rule=template.rule,
                           fine_tune=template.fine_tune)  # fmt: skip
        self.profiles = list(profiles)
        self._entries: dict[int, list[dict[str, Any]]] = {}  # trial -> its finished rungs
        # Trials that run once at the top rung with nothing to shorten (baseline, recipes, plans without a
        # fine-tune): their seconds are not a top-rung fine-tune's, so the time budget's rung medians leave them out.
        self._single: set[int] = set()
        self._parked: dict[int, _Parked] = {}  # turned down, may still be promoted late
        self._states: dict[int, bytes] = {}  # parked trial (or its late successor) -> its fine-tune state

    @property
    def top(self) -> int:
        return self.rungs.top

    def config(self) -> dict[str, Any]:
        r = self.rungs
        out: dict[str, Any] = {"fractions": list(r.fractions), "reduction_factor": r.reduction_factor, "rule": r.rule}
        if r.fine_tune != "restart":  # a study begun before continued rungs existed compares equal
            out["fine_tune"] = r.fine_tune
        return out

    def fidelity(self, rung: int) -> float:
        return self.rungs.fractions[rung]

    # --- the study: check, requeue, rebuild ---------------------------------------------------------------------

    def attach(self, study: optuna.Study, *, fresh: bool) -> list[str]:
        """Check the study's ladder, queue again the interrupted trials that had finished rungs, and rebuild the
        promotion state from every trial's recorded rungs. Returns notes for the user."""
        before = study.user_attrs.get(CONFIG_ATTR)
        if before is None:
            if not fresh:
                raise RungsChangedError(
                    f"study {study.study_name!r} began without multi-fidelity rungs; resume it without them "
                    "(no `rungs:` in the space, no --multifidelity), or start a new --study"
                )
            study.set_user_attr(CONFIG_ATTR, self.config())
        elif before != self.config():
            raise RungsChangedError(
                f"study {study.study_name!r} began with rungs {before}, now {self.config()}: resume it with the "
                "rungs it began with, or start a new --study"
            )
        notes = []
        trials = study.get_trials(deepcopy=False)
        requeued = {t.user_attrs.get("requeue_of") for t in trials}
        again = 0
        for t in trials:
            a = t.user_attrs
            if a.get("status") != INTERRUPTED or t.number in requeued or not a.get(RUNGS_ATTR):
                continue
            if a.get("baseline") or a.get("recipe") or a.get("warm_start"):
                continue  # these run again in full anyway (the driver queues them)
            entries = list(a[RUNGS_ATTR])
            resume = int(a.get(PROMOTED_ATTR, entries[-1]["rung"] + 1))
            # A late promotion keeps its seed, and the turned-down trial it stands for
            seed = {k: a[k] for k in (SEED_ATTR, LATE_ATTR) if k in a}
            study.enqueue_trial(t.params, user_attrs={"requeue_of": t.number, RUNGS_ATTR: entries,
                                                      RESUME_ATTR: resume, PROMOTED_ATTR: resume, **seed})  # fmt: skip
            again += 1
        if again:
            notes.append(f"multi-fidelity: {again} trial(s) interrupted above rung 0 queued again at the rung they "
                         "were running; their finished rungs are kept")  # fmt: skip
        requeued = {t.user_attrs.get("requeue_of") for t in study.get_trials(deepcopy=False)}
        for t in study.get_trials(deepcopy=False):
            a = t.user_attrs
            if t.number in requeued:  # its rungs live on in the trial that took its place
                continue
            for e in a.get(RUNGS_ATTR) or ():
                self._put(t.number, e)
            promoted = a.get(PROMOTED_ATTR)
            if isinstance(promoted, int) and 0 < promoted <= self.top:
                self.rungs.promoted[promoted - 1].add(t.number)
            if a.get("status") == "stopped" and str(a.get("reason", "")).startswith(NOT_PROMOTED) \
                    and a.get(RUNGS_ATTR):  # fmt: skip
                rung = int(a[RUNGS_ATTR][-1]["rung"])
                if rung < self.top and t.number not in self.rungs.promoted[rung]:
                    self._parked[t.number] = _Parked.of(t, rung)
        return notes

    def durations(self) -> list[tuple[int, float]]:
        """(rung, seconds) of every recorded rung run, for the time budget's plan on a resume."""
        return [(int(e["rung"]), float(e["duration_s"])) for entries in self._entries.values() for e in entries
                if isinstance(e.get("duration_s"), (int, float)) and e.get("status") != "failed"
                and not e.get("once")]  # fmt: skip

    def first_rung(self, trial: optuna.Trial, plan: CompressionPlan) -> int:
        """The rung ``trial`` starts at: the one it was interrupted in, the top for trials with nothing to
        shorten, else 0. A requeued trial's recorded rungs move to its new number."""
        a = trial.user_attrs
        if RESUME_ATTR in a:
            if LATE_ATTR in a:  # the turned-down trial leaves the ladder: this one carries its rungs
                old = int(a[LATE_ATTR])
                self.rungs.forget(old)
                self._entries.pop(old, None)
                self._parked.pop(old, None)
                state = self._states.pop(old, None)
                if state is not None:
                    self._states[trial.number] = state
            entries = list(a.get(RUNGS_ATTR) or [])
            for e in entries:
                self._put(trial.number, e)
            if trial.number not in self._entries:
                self._entries[trial.number] = []
            rung = int(a[RESUME_ATTR])
            if 0 < rung <= self.top:
                self.rungs.promoted[rung - 1].add(trial.number)
            return min(max(rung, 0), self.top)
        if a.get("baseline") or a.get("recipe") or a.get("warm_start") or not has_fine_tune(plan):
            self._single.add(trial.number)
            return self.top
        return 0

    def continues(self, plan: CompressionPlan) -> bool:
        """Whether ``plan``'s rungs go on from each other (``fine_tune: continue``): it needs one fine-tune step,
        of a technique that can resume (``register(..., resumable=True)``); any other plan restarts each rung."""
        return self.rungs.fine_tune == "continue" and can_continue(plan)

    def runs_once(self, number: int) -> bool:
        """Whether trial ``number`` runs once at the top rung because it has nothing to shorten."""
        return number in self._single

    # --- late promotion -----------------------------------------------------------------------------------------

    def park(self, trial: optuna.Trial, rung: int, result: TrialResult) -> None:
        """``trial`` did not go on from ``rung`` (not in the top share, or promoted but out of time or workers):
        keep what a late promotion needs (its state, if it came back). It is promotable again, as after a resume."""
        self.rungs.promoted[rung].discard(trial.number)
        self._parked[trial.number] = _Parked.of(trial, rung)
        if result.checkpoint is not None:
            self._states[trial.number] = result.checkpoint
            self._trim_states()

    def next_late(self, can_promote: Callable[[int, bool], bool]) -> tuple[int, int] | None:
        """The turned-down trial to promote now, as (trial, rung): the best one the trials recorded since pushed
        into its rung's top share, from the highest rung where ``can_promote(rung, from_start)`` says its next
        rung ends in time (``from_start``: continued rungs, but no state kept, so it reruns the fine-tune)."""
        if not self._parked:
            return None
        for rung in range(self.top - 1, -1, -1):
            if not any(p.rung == rung for p in self._parked.values()):
                continue
            best = next((t for t in self.rungs.promotable(rung)
                         if t in self._parked and self._parked[t].rung == rung), None)  # fmt: skip
            from_start = self.rungs.fine_tune == "continue" and best not in self._states
            if best is not None and can_promote(rung, from_start):
                return best, rung
        return None

    def promote_late(self, study: optuna.Study, number: int, rung: int) -> None:
        """Queue ``number``'s late promotion to ``rung + 1``: a new trial of its parameters and seed that carries
        its rungs (``first_rung`` moves them, and its state, to the new number when the trial is asked)."""
        parked = self._parked.pop(number)
        self.rungs.promoted[rung].add(number)
        study.enqueue_trial(parked.params, user_attrs={
            "requeue_of": number, LATE_ATTR: number, SEED_ATTR: parked.seed_of,
            RUNGS_ATTR: self._entries.get(number, []), RESUME_ATTR: rung + 1, PROMOTED_ATTR: rung + 1})  # fmt: skip

    def seed_of(self, trial: optuna.Trial) -> int:
        """The trial number whose seed ``trial`` runs with: its own, or for a late promotion the first trial's."""
        return int(trial.user_attrs.get(SEED_ATTR, trial.number))

    def take_state(self, number: int) -> bytes | None:
        """The fine-tune state a late promotion goes on from (None: none kept, the rung restarts)."""
        return self._states.pop(number, None)

    def _trim_states(self) -> None:
        while len(self._states) > 1 and sum(len(b) for b in self._states.values()) > LATE_STATE_BYTES:
            parked = [t for t in self._states if t in self._parked]
            if not parked:
                return
            worst = max(parked, key=lambda t: (self.rungs.position(t, self._parked[t].rung), t))
            del self._states[worst]

    # --- a finished rung ----------------------------------------------------------------------------------------

    def finish(self, trial: optuna.Trial, rung: int, result: TrialResult, seconds: float) -> bool:
        """Record what ``rung`` of ``trial`` gave (in the ladder and on the trial); return whether it goes on."""
        costs = {p.name: _objective(result.costs, p) for p in self.profiles}
        entry = {"rung": rung, "fidelity": round(self.fidelity(rung), 6), "status": result.status,
                 "accuracy": result.accuracy if result.status == "ok" else None, "costs": costs,
                 "duration_s": round(float(seconds), 3)}  # fmt: skip
        if trial.number in self._single:
            entry["once"] = True  # ran once, nothing to shorten (see durations)
        elif rung > 0 and self.rungs.fine_tune == "continue":  # went on from the rung below, or restarted (why:
            legs = result.fine_tune_legs or []  # a killed search keeps no state; a plan that cannot resume)
            entry["continued_from"] = round(float(legs[-2]), 6) if len(legs) > 1 else None
        self._put(trial.number, entry)
        trial.set_user_attr(RUNGS_ATTR, self._entries[trial.number])
        if result.status != "ok" or rung >= self.top:
            return False
        return self.rungs.should_promote(trial.number, rung)

    def promote(self, trial: optuna.Trial, rung: int) -> None:
        trial.set_user_attr(PROMOTED_ATTR, rung + 1)

    def not_promoted(self, result: TrialResult, rung: int, why: str) -> TrialResult:
        """The trial's result as told: ``stopped`` below the top rung (its low-fidelity numbers kept beside)."""
        if result.status != "ok":
            return result
        n = len(self.rungs.records[rung])
        reason = (f"{NOT_PROMOTED} at rung {rung} of {self.top} ({self.fidelity(rung):.3g} of its fine-tune; "
                  f"{n} trial(s) at that rung so far): {why}")  # fmt: skip
        return TrialResult("stopped", accuracy=result.accuracy, costs=result.costs, params=result.params,
                           reason=reason, duration_s=result.duration_s, steps=result.steps, notes=result.notes,
                           seed=result.seed, threads=result.threads, plan=result.plan,
                           fine_tune_legs=result.fine_tune_legs)  # fmt: skip

    @staticmethod
    def is_not_promoted(result: TrialResult) -> bool:
        return result.status == "stopped" and result.reason.startswith(NOT_PROMOTED)

    def _put(self, trial: int, entry: Mapping[str, Any]) -> None:
        rung = int(entry["rung"])
        if not 0 <= rung <= self.top:
            return
        kept = [e for e in self._entries.get(trial, []) if int(e["rung"]) != rung]
        self._entries[trial] = sorted([*kept, dict(entry)], key=lambda e: int(e["rung"]))
        self.rungs.record(trial, rung, accuracy=entry.get("accuracy"), costs=entry.get("costs") or {})


def _objective(costs: Mapping[str, Mapping[str, Any]], profile: HardwareProfile) -> float | None:
    value = (costs.get(profile.name) or {}).get(profile.objective)
    return float(value) if isinstance(value, (int, float)) else None
