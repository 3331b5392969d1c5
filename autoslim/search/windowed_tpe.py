"""Multi-objective TPE whose cost per ask stops growing with the study: it models the recent trials and the fronts.

Optuna's TPE rebuilds everything from every finished trial at each ask: the grouped search space, the split into
good and bad trials (a non-domination sort over all objectives), the Parzen estimators. Measured on a
millisecond task (``benchmarks/driver_overhead.py``) that is ~0.03 ms per finished trial per ask, 62 ms of a 69 ms
driver overhead at trial 2,000. ``WindowedTPESampler`` hands TPE a view of the study holding:

- the last ``window`` finished (complete or pruned) trials, where the sampler is exploring now;
- every trial on any profile's front (accuracy vs. that profile's objective cost, the fronts autoslim reports), so
  the best regions found early stay in TPE's "good" set however long ago they were found;
- every running trial (the constant liar).

Below ``window`` finished trials the view is the whole study: a study of up to ``window`` trials samples exactly
what ``TPESampler`` with the same arguments and seed would (tested). The fronts are kept incrementally (each ask
only looks at the trials finished since the last), so the view costs O(window + front) per ask. Which trials are
in the view is visible: ``view_numbers`` gives them, for a test or a look at what the sampler sees.

With ``group=True`` TPE samples each group of parameters that occur together on its own, and splits the same
trials into good and bad once per group (a non-domination sort over all objectives, and a hypervolume tie-break):
ten times per ask on the default space, ~half of the sampler's time. The view remembers each split for the ask it
serves (same trials, same ``n_below``: the same answer, tested against an unremembered run).

Past the window one more thing differs from TPE: when the good set ends inside a non-domination rank, TPE picks
the rank's members by hypervolume subset selection over all objectives (accuracy and every profile's cost), which
in six dimensions grows with the fronts (42 ms of a 47 ms ask at 1,000 trials of ``benchmarks/driver_overhead.py``).
The view picks them by NSGA-II's crowding distance instead (spread along every objective; microseconds). Within
the window TPE's own rule stands."""

from __future__ import annotations

import bisect
import contextvars
import copy
import math
from collections.abc import Container, Sequence
from typing import Any

import numpy as np
import optuna
import optuna.samplers._tpe.sampler as _tpe_module
from optuna.distributions import BaseDistribution
from optuna.samplers import TPESampler
from optuna.trial import FrozenTrial, TrialState

DEFAULT_WINDOW = 200  # 2,000-trial driver overhead 18.4 ms per trial at the end (benchmarks/driver_overhead.py)
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class _View:
    """The study as the sampler should see it: ``_get_trials`` / ``get_trials`` return the view; the rest of the
    study (storage, directions, attributes) is the study's own.

    The view is every trial numbered from ``cutoff`` on (the window, and the running trials, which are the newest)
    plus the older front trials ``older``, taken from ``trials`` (the study's trials when the ask began, by number):
    one storage read per ask instead of one per parameter group, and each state filter runs once over the view
    only (over the whole study it was O(trials) per call, several calls per ask)."""

    def __init__(self, study: optuna.Study, cutoff: int, older: Sequence[int], *, trials: Sequence[FrozenTrial],
                 remember: bool = True, crowding: bool = False) -> None:  # fmt: skip
        self._study, self._cutoff, self._older = study, cutoff, sorted(older)
        self._crowding = crowding  # tie-break the good set's last rank by crowding distance (past the window)
        head = []
        for n in self._older:
            i = bisect.bisect_left(trials, n, key=_number)
            if i < len(trials) and trials[i].number == n:
                head.append(trials[i])
        self._trials = head + list(trials[bisect.bisect_left(trials, cutoff, key=_number) :])
        self._by_states: dict[frozenset[TrialState] | None, list[FrozenTrial]] = {}
        # (trial numbers, n_below) -> (below, above): one ask's splits; None: split every time (for the test)
        self._splits: dict[tuple[tuple[int, ...], int], tuple[list[FrozenTrial], list[FrozenTrial]]] | None = (
            {} if remember else None
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:  # fmt: skip
        # Optuna passes states as a list or tuple (a Container type only names the part it uses)
        key = None if states is None else frozenset(s for s in TrialState if s in states)
        listed = self._by_states.get(key)
        if listed is None:
            listed = self._by_states[key] = [t for t in self._trials if key is None or t.state in key]
        return copy.deepcopy(listed) if deepcopy else list(listed)

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=deepcopy, states=states)


class _Listed:
    """The study with only ``trials`` listed (for the grouped search space's incremental update)."""

    def __init__(self, study: optuna.Study, trials: list[FrozenTrial]) -> None:
        self._study, self._trials = study, trials

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:  # fmt: skip
        return [t for t in self._trials if states is None or t.state in states]


class WindowedTPESampler(TPESampler):
    """``TPESampler`` over the last ``window`` finished trials plus every trial on a per-profile front.

    Objective 0 is accuracy (maximized), objectives 1.. the profiles' costs (minimized), as autoslim's studies are
    built; other direction layouts keep every trial on the front of objective 0 against each other objective."""

    def __init__(self, *, window: int = DEFAULT_WINDOW, **kwargs: Any) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        super().__init__(**kwargs)
        self.window = window
        self._remember_splits = True
        self._crowding_past_window = True  # False: TPE's hypervolume tie-break past the window too (for tests)
        self._fronts: dict[int, list[tuple[float, float, int]]] = {}  # objective j -> its 2-D front's points
        self._keep: set[int] = set()
        # What the sampler has looked at, so each ask only looks at what changed since the last (O(new + running)
        # instead of O(trials)): trials numbered below _looked were looked at; _unfinished were still running then.
        self._study_key: tuple[int, int] | None = None
        self._looked = 0
        self._unfinished: set[int] = set()
        self._n_finished = 0
        self._new_finished: list[FrozenTrial] = []  # not yet folded into TPE's grouped search space
        self._ask: tuple[int, optuna.Study] | None = None  # (trial id, view) of the ask under way

    # --- the view ---
    def view_numbers(self, study: optuna.Study) -> set[int] | None:
        """Finished trials the sampler models now (None: the whole study, still within the window)."""
        view = self._view(study)
        if view._cutoff == 0 and not view._older:  # type: ignore[attr-defined]
            return None
        return {t.number for t in view._get_trials(deepcopy=False, states=_FINISHED)}

    def _view(self, study: optuna.Study, trial: FrozenTrial | None = None) -> optuna.Study:
        """The view for one ask (``trial``: the trial being sampled; every call of its ask shares one view): the
        whole study within the window, else the window + fronts."""
        if trial is not None and self._ask is not None and self._ask[0] == trial._trial_id:
            return self._ask[1]
        trials = study._get_trials(deepcopy=False, use_cache=False)
        self._look(study, trials)
        view: optuna.Study
        if self._n_finished <= self.window:
            view = _View(study, 0, (), trials=trials, remember=self._remember_splits)  # type: ignore[assignment]
        else:
            cutoff = self._window_start(trials)
            older = [n for n in self._keep if n < cutoff]
            view = _View(study, cutoff, older, trials=trials, remember=self._remember_splits,
                         crowding=self._crowding_past_window)  # type: ignore[assignment]  # fmt: skip
        if trial is not None:
            self._ask = (trial._trial_id, view)
        return view

    def _look(self, study: optuna.Study, trials: Sequence[FrozenTrial]) -> None:
        """Fold the trials finished since the last look into the counts and the fronts."""
        key = (id(study._storage), study._study_id)
        if key != self._study_key or self._looked > len(trials):  # another study, or trials gone: start over
            self._study_key, self._looked, self._unfinished, self._n_finished = key, 0, set(), 0
            self._fronts, self._keep, self._new_finished = {}, set(), []
        if any(trials[i].number != i for i in (0, len(trials) - 1) if trials):  # numbers are not positions
            raise ValueError("WindowedTPESampler needs a study whose trials are numbered 0, 1, ... in order")
        fresh = [*sorted(self._unfinished), *range(self._looked, len(trials))]
        self._looked, self._unfinished = len(trials), set()
        for n in fresh:
            t = trials[n]
            if t.state not in _FINISHED:
                self._unfinished.add(n)
                continue
            self._n_finished += 1
            self._new_finished.append(t)
            self._fold(study, t)

    def _fold(self, study: optuna.Study, t: FrozenTrial) -> None:
        if t.state != TrialState.COMPLETE or t.values is None:
            return
        directions = study.directions
        acc = t.values[0] if directions[0] == optuna.study.StudyDirection.MAXIMIZE else -t.values[0]
        for j in range(1, len(t.values)):
            cost = t.values[j] if directions[j] == optuna.study.StudyDirection.MINIMIZE else -t.values[j]
            if math.isfinite(acc) and math.isfinite(cost):
                front = self._fronts[j] = _add(self._fronts.get(j, []), (cost, acc, t.number))
                if any(p[2] == t.number for p in front):
                    self._keep = {n for f in self._fronts.values() for _, _, n in f}

    def _window_start(self, trials: Sequence[FrozenTrial]) -> int:
        """The number of the ``window``-th finished trial counted from the newest (O(window + running))."""
        seen = 0
        for t in reversed(trials):
            if t.state in _FINISHED:
                seen += 1
                if seen == self.window:
                    return t.number
        return 0

    # --- TPE, on the view ---
    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        view = self._view(study, trial)
        if not self._group:
            return super().infer_relative_search_space(view, trial)
        # TPE's grouped search space only ever grows (it folds each trial's parameters in, again at every ask):
        # folding in only the trials finished since the last ask gives the same groups for O(new) work.
        new, self._new_finished = self._new_finished, []
        return super().infer_relative_search_space(_Listed(study, new), trial)  # type: ignore[arg-type]

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:  # fmt: skip
        return super().sample_relative(self._view(study, trial), trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:  # fmt: skip
        return super().sample_independent(self._view(study, trial), trial, param_name, param_distribution)


# The original, also when this module is imported twice (a reload must not wrap the wrapper).
_split_trials = getattr(_tpe_module._split_trials, "__wrapped__", _tpe_module._split_trials)


def _remembered_split(study: optuna.Study, trials: list[FrozenTrial],
                      n_below: int) -> tuple[list[FrozenTrial], list[FrozenTrial]]:  # fmt: skip
    """TPE's split of ``trials``, remembered on a :class:`_View` for its ask; any other study splits as always."""
    if not isinstance(study, _View):
        return _split_trials(study, trials, n_below)
    memo = study._splits
    key = (tuple(t.number for t in trials), n_below)
    if memo is None or key not in memo:
        token = _CROWDING.set(study._crowding)
        try:
            split = _split_trials(study, trials, n_below)
        finally:
            _CROWDING.reset(token)
        if memo is None:
            return split
        memo[key] = split
    below, above = memo[key]
    return list(below), list(above)


_CROWDING: contextvars.ContextVar[bool] = contextvars.ContextVar("autoslim_tpe_crowding", default=False)
_solve_hssp = getattr(_tpe_module._solve_hssp_with_cache, "__wrapped_hssp__", _tpe_module._solve_hssp_with_cache)


def crowding_select(lvals: np.ndarray, indices: np.ndarray, subset_size: int) -> np.ndarray:
    """The ``subset_size`` of ``indices`` (rows of ``lvals``, losses to minimize) with the largest NSGA-II crowding
    distance: each objective's extremes first, then the points with the widest gaps around them. Ties keep the
    earlier row; the chosen indices come back in their given order."""
    n, d = lvals.shape
    dist = np.zeros(n)
    for j in range(d):
        order = np.argsort(lvals[:, j], kind="stable")
        dist[order[0]] = dist[order[-1]] = np.inf
        span = lvals[order[-1], j] - lvals[order[0], j]
        if n > 2 and span > 0:
            dist[order[1:-1]] += (lvals[order[2:], j] - lvals[order[:-2], j]) / span
    chosen = np.sort(np.argsort(-dist, kind="stable")[:subset_size])
    return indices[chosen]


def _tiebreak(lvals_flat: tuple[float, ...], indices: tuple[int, ...], subset_size: int,
              reference: tuple[float, ...]) -> np.ndarray:  # fmt: skip
    """TPE's last-rank tie-break: crowding distance inside a past-the-window view, else TPE's own (HSSP)."""
    if not _CROWDING.get():
        return _solve_hssp(lvals_flat, indices, subset_size, reference)
    lvals = np.reshape(np.asarray(lvals_flat, dtype=float), (len(indices), len(reference)))
    return crowding_select(lvals, np.asarray(indices), subset_size)


_tiebreak.__wrapped_hssp__ = _solve_hssp  # type: ignore[attr-defined]
_tpe_module._solve_hssp_with_cache = _tiebreak  # type: ignore[assignment]


# TPE calls its module's split function by name; every study but a view gets the original.
_remembered_split.__wrapped__ = _split_trials  # type: ignore[attr-defined]
_tpe_module._split_trials = _remembered_split


def _number(trial: FrozenTrial) -> int:
    return trial.number


def _add(front: list[tuple[float, float, int]], point: tuple[float, float, int]) -> list[tuple[float, float, int]]:
    """A 2-D front (minimize cost, maximize accuracy) with ``point`` offered; ties keep the earlier trial."""
    cost, acc, _ = point
    if any(c <= cost and a >= acc for c, a, _ in front):
        return front
    kept = [p for p in front if not (cost <= p[0] and acc >= p[1])]
    kept.append(point)
    kept.sort()
    return kept
