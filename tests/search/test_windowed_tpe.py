"""WindowedTPESampler: TPE itself while the study is within the window; past it, the recent trials plus every
per-profile front's trials, so an ask's cost stops growing."""

from __future__ import annotations

import warnings

import optuna
import pytest

from autoslim.search.windowed_tpe import WindowedTPESampler

KW = {"n_startup_trials": 5, "multivariate": True, "group": True, "constant_liar": True}


def _objective(trial: optuna.Trial) -> tuple[float, float, float]:
    x = trial.suggest_float("x", 0.0, 1.0)
    kind = trial.suggest_categorical("kind", ["a", "b"])
    y = trial.suggest_int("y", 1, 8) if kind == "a" else 4
    return 1 - (x - 0.3) ** 2, x * y, (1 - x) * y  # accuracy up, two costs down


def _study(sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.create_study(directions=["maximize", "minimize", "minimize"], sampler=sampler)


def test_within_the_window_it_samples_exactly_what_tpe_samples() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        plain, windowed = (
            _study(optuna.samplers.TPESampler(seed=3, **KW)),
            _study(WindowedTPESampler(window=40, seed=3, **KW)),
        )
        plain.optimize(_objective, n_trials=30)
        windowed.optimize(_objective, n_trials=30)
    assert [t.params for t in plain.trials] == [t.params for t in windowed.trials]


def test_past_the_window_the_view_is_the_recent_trials_and_every_front() -> None:
    sampler = WindowedTPESampler(window=20, seed=0, **KW)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = _study(sampler)
        study.optimize(_objective, n_trials=80)
    view = sampler.view_numbers(study)
    assert view is not None
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert {t.number for t in finished[-20:]} <= view
    for j in (1, 2):  # every point of accuracy-vs-cost-j's front is kept, however old (one trial per tie)
        front = {(t.values[0], t.values[j]) for t in finished if not any(_dominates(o, t, j) for o in finished)}
        kept = {(t.values[0], t.values[j]) for t in finished if t.number in view}
        assert front <= kept, j
    assert len(view) < len(finished)  # and it is a real cut: older dominated trials are left out
    # the sampler keeps working on the view (a define-by-run space, conditional parameter included)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.optimize(_objective, n_trials=5)
    assert len(study.trials) == 85


def _dominates(o: optuna.trial.FrozenTrial, t: optuna.trial.FrozenTrial, j: int) -> bool:
    (oa, oc), (ta, tc) = (o.values[0], o.values[j]), (t.values[0], t.values[j])
    return oa >= ta and oc <= tc and (oa > ta or oc < tc)


def test_remembering_one_asks_splits_samples_what_splitting_every_time_samples() -> None:
    """Within and past the window: a split remembered across one ask's parameter groups changes no sample."""
    studies = []
    for remember in (True, False):
        sampler = WindowedTPESampler(window=15, seed=5, **KW)
        sampler._remember_splits = remember
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study = _study(sampler)
            study.optimize(_objective, n_trials=40)
        studies.append(study)
    assert [t.params for t in studies[0].trials] == [t.params for t in studies[1].trials]


def test_remembered_splits_serve_every_group_of_one_ask(monkeypatch: pytest.MonkeyPatch) -> None:
    import autoslim.search.windowed_tpe as wt

    calls: list[int] = []
    real = wt._split_trials

    def counting(study, trials, n_below):  # type: ignore[no-untyped-def]
        calls.append(n_below)
        return real(study, trials, n_below)

    monkeypatch.setattr(wt, "_split_trials", counting)
    sampler = WindowedTPESampler(window=15, seed=5, **KW)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = _study(sampler)
        study.optimize(_objective, n_trials=30)
        before = len(calls)
        study.optimize(_objective, n_trials=1)  # two parameter groups ({x, kind}, {y}) or one: one split
    assert len(calls) - before == 1


def _six_objectives(trial: optuna.Trial) -> tuple[float, ...]:
    x, y = trial.suggest_float("x", 0.0, 1.0), trial.suggest_float("y", 0.0, 1.0)
    return (x, *(abs(x - c) + y * k for c, k in ((0.1, 1), (0.3, 2), (0.5, 3), (0.7, 4), (0.9, 5))))


def test_past_the_window_the_last_rank_is_tie_broken_by_crowding(monkeypatch: pytest.MonkeyPatch) -> None:
    import autoslim.search.windowed_tpe as wt

    used: list[bool] = []
    real = wt._solve_hssp
    monkeypatch.setattr(wt, "_solve_hssp", lambda *a: used.append(True) or real(*a))
    picked: list[int] = []
    real_crowding = wt.crowding_select
    monkeypatch.setattr(wt, "crowding_select", lambda *a: picked.append(1) or real_crowding(*a))
    sampler = WindowedTPESampler(window=20, seed=0, **KW)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(directions=["maximize"] + ["minimize"] * 5, sampler=sampler)
        study.optimize(_six_objectives, n_trials=21)  # asks up to 20 finished trials: within the window
        within, within_picked = len(used), len(picked)
        study.optimize(_six_objectives, n_trials=19)
    assert within > 0 and within_picked == 0  # within the window: TPE's own hypervolume tie-break
    assert len(picked) > 0 and len(used) == within  # past it: crowding distance only
    assert len(study.trials) == 40


def test_crowding_select_takes_the_extremes_then_the_widest_gaps() -> None:
    import numpy as np

    from autoslim.search.windowed_tpe import crowding_select

    # a 2-objective front: 0 and 4 are extremes; 1 sits in a wide gap, 2 and 3 are crowded together
    lvals = np.array([[0.0, 1.0], [0.5, 0.55], [0.62, 0.4], [0.64, 0.38], [1.0, 0.0]])
    idx = np.array([10, 11, 12, 13, 14])
    assert list(crowding_select(lvals, idx, 2)) == [10, 14]
    assert list(crowding_select(lvals, idx, 3)) == [10, 11, 14]
    assert list(crowding_select(lvals, idx, 5)) == [10, 11, 12, 13, 14]


def test_a_window_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="window"):
        WindowedTPESampler(window=0)


def test_a_trial_that_finishes_after_later_ones_still_enters_the_fronts() -> None:
    """Parallel slots finish out of order: a long trial told after 30 later ones is still looked at (the view
    tracks unfinished trials, not a count of finished ones)."""
    sampler = WindowedTPESampler(window=10, seed=0, **KW)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = _study(sampler)
        slow = study.ask()
        slow.suggest_float("x", 0.0, 1.0)
        study.optimize(_objective, n_trials=30)
        study.tell(slow, (2.0, 0.0, 0.0))  # dominates everything on both fronts
    view = sampler.view_numbers(study)
    assert view is not None and slow.number in view


def test_one_ask_reads_the_storage_once_past_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    sampler = WindowedTPESampler(window=10, seed=0, **KW)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = _study(sampler)
        study.optimize(_objective, n_trials=30)
        reads: list[int] = []
        real = study._storage.get_all_trials
        monkeypatch.setattr(study._storage, "get_all_trials", lambda *a, **k: reads.append(1) or real(*a, **k))
        study.optimize(_objective, n_trials=1)
    # Optuna's ask reads it once (the waiting queue), the sampler once per ask (it read it once per parameter
    # group and state filter: 4 reads here, 5-6 on the default space)
    assert len(reads) == 2, len(reads)
