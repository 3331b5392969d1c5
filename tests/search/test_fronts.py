"""ParetoFronts: the incremental fronts give what the batch front_frame gives, trial by trial."""

from __future__ import annotations

import math
import pickle
import random
from types import SimpleNamespace

import pandas as pd
import pytest

from autoslim.report.frame import front_frame
from autoslim.report.pareto import hypervolume_2d
from autoslim.search.fronts import ParetoFronts, ProfileFront, satisfies

PROFILES = {"x86": "latency_ms", "mcu": "model_bytes"}
NAN, INF = float("nan"), float("inf")

# Few distinct values, so ties, equal points and duplicates are common; non-finite ones too.
ACCURACIES = [0.5, 0.6, 0.7, 0.8, 0.9, NAN, INF, None]
COSTS = [1.0, 2.0, 3.0, 4.0, 5.0, NAN, INF, None]


def _random_record(rng: random.Random, *, messy: bool = True) -> dict:
    """messy: many exclusions (non-finite, not fitting, infeasible); else mostly clean points on a finer grid,
    so fronts grow long and insertions evict runs of points."""
    if not messy:  # accuracy grows with cost, as it does with model size: long fronts
        size = rng.randint(1, 25)
        return {"status": "ok", "accuracy": (50 + size + rng.randint(-2, 2)) / 100, "feasible": True,
                **{f"{p}.cost": float(size + rng.randint(0, 2)) for p in PROFILES},
                **{f"{p}.fits": rng.choice([True, None]) for p in PROFILES}}  # fmt: skip
    return {
        "status": rng.choice(["ok", "ok", "ok", "failed", "infeasible"]),
        "accuracy": rng.choice(ACCURACIES),
        "feasible": rng.random() > 0.2,
        **{f"{p}.cost": rng.choice(COSTS) for p in PROFILES},
        **{f"{p}.fits": rng.choice([True, True, False, None]) for p in PROFILES},
    }


def _costs(rec: dict) -> dict:
    return {p: {obj: rec[f"{p}.cost"], "fits": rec[f"{p}.fits"]} for p, obj in PROFILES.items()}


def _batch_front(records: dict[int, dict], profile: str) -> list[tuple[float, float, int]]:
    """What report.frame.front_frame says, from a trials table in its column layout."""
    obj = PROFILES[profile]
    rows = [{"trial": t, "status": r["status"], "accuracy": r["accuracy"], "feasible": r["feasible"],
             **{f"{p}.{o}": r[f"{p}.cost"] for p, o in PROFILES.items()},
             **{f"{p}.fits": r[f"{p}.fits"] for p in PROFILES}} for t, r in sorted(records.items())]  # fmt: skip
    df = pd.DataFrame(rows)
    front = front_frame(df, SimpleNamespace(name=profile, objective=obj))  # type: ignore[arg-type]
    if front.empty:
        return []
    col = f"{profile}.{obj}"
    return [(float(c), float(a), int(n)) for c, a, n in zip(front[col], front["accuracy"], front["trial"], strict=True)]


@pytest.mark.parametrize("seed", range(40))
def test_incremental_fronts_match_front_frame(seed: int) -> None:
    """Trials arrive in any order (async workers), some are offered again (a later rung replaces the earlier
    one); after every arrival each profile's front is exactly front_frame's over the latest records."""
    rng = random.Random(seed)
    messy = seed % 2 == 0
    n = rng.randint(0, 30) if messy else 60
    arrivals = [(t, _random_record(rng, messy=messy)) for t in rng.sample(range(n), n)]
    arrivals += [(rng.randrange(n), _random_record(rng, messy=messy)) for _ in range(rng.randint(0, 6) if n else 0)]
    fronts = ParetoFronts(PROFILES)
    latest: dict[int, dict] = {}
    for trial, rec in arrivals:
        fronts.add(trial, accuracy=rec["accuracy"], costs=_costs(rec), status=rec["status"],
                   feasible=rec["feasible"])  # fmt: skip
        latest[trial] = rec
        for p in PROFILES:
            assert list(fronts.points(p)) == _batch_front(latest, p), (p, arrivals)


def test_equal_points_keep_the_smallest_trial_whatever_the_arrival_order() -> None:
    front = ProfileFront()
    front.add(5, 2.0, 0.9)
    front.add(3, 2.0, 0.9)  # same point, earlier trial, arrives later: it is the one front_frame keeps
    front.add(7, 2.0, 0.9)
    assert front.points() == ((2.0, 0.9, 3),)


def test_discarding_a_front_point_brings_back_what_it_alone_dominated() -> None:
    front = ProfileFront()
    front.add(0, 1.0, 0.8)
    front.add(1, 2.0, 0.85)
    front.add(2, 1.5, 0.9)  # evicts trial 1
    assert [n for _, _, n in front.points()] == [0, 2]
    front.discard(2)
    assert [n for _, _, n in front.points()] == [0, 1]


def test_later_rung_replaces_the_trials_earlier_point() -> None:
    fronts = ParetoFronts({"x86": "latency_ms"})
    fronts.add(0, accuracy=0.7, costs={"x86": {"latency_ms": 1.0}})
    fronts.add(1, accuracy=0.6, costs={"x86": {"latency_ms": 2.0}})  # dominated by trial 0's rung-0 point
    fronts.add(0, accuracy=0.5, costs={"x86": {"latency_ms": 1.0}})  # trial 0's longer fine-tune did worse
    assert fronts.points("x86") == ((1.0, 0.5, 0), (2.0, 0.6, 1))
    assert fronts.add(0, accuracy=None, costs={"x86": {"latency_ms": 1.0}}, status="failed") == []
    assert fronts.points("x86") == ((2.0, 0.6, 1),)


def test_non_finite_unfitting_and_infeasible_points_stay_off() -> None:
    fronts = ParetoFronts(PROFILES)
    fronts.add(0, accuracy=NAN, costs={"x86": {"latency_ms": 1.0}, "mcu": {"model_bytes": 1.0}})
    fronts.add(1, accuracy=0.9, costs={"x86": {"latency_ms": INF}, "mcu": {"model_bytes": 1.0, "fits": False}})
    fronts.add(2, accuracy=0.9, costs={"x86": {"latency_ms": 1.0}, "mcu": {"model_bytes": 1.0}}, feasible=False)
    fronts.add(3, accuracy=0.9, costs={"x86": {"latency_ms": "fast"}})  # text where a number belongs; mcu missing
    assert fronts.as_spec_fronts() == {"x86": (), "mcu": ()}


def test_hypervolume_uses_the_benchmarks_reference_and_follows_the_front() -> None:
    fronts = ParetoFronts({"x86": "latency_ms"})
    assert fronts.hypervolume("x86") == 0.0
    fronts.add(0, accuracy=0.95, costs={"x86": {"latency_ms": 10.0}}, baseline=True)
    fronts.add(1, accuracy=0.9, costs={"x86": {"latency_ms": 4.0}})
    fronts.add(2, accuracy=0.8, costs={"x86": {"latency_ms": 5.0}})  # dominated
    ref = 1.1 * 10.0  # benchmarks/samplers.py and autoslim compare: cost / (1.1 x baseline), accuracy from 0
    expected = hypervolume_2d([0.9, 0.95], [4.0 / ref, 10.0 / ref], ref_cost=1.0)
    assert math.isclose(fronts.hypervolume("x86"), expected, rel_tol=0, abs_tol=1e-15)
    assert math.isclose(expected, (1 - 4 / 11) * 0.9 + (1 - 10 / 11) * 0.05)
    fronts.add(3, accuracy=0.97, costs={"x86": {"latency_ms": 2.0}})
    assert fronts.hypervolume("x86") == hypervolume_2d([0.97], [2.0 / ref], ref_cost=1.0)


def test_hypervolume_reference_given_or_from_the_dearest_cost() -> None:
    given_ref = ParetoFronts({"x86": "latency_ms"}, ref_costs={"x86": 8.0})
    given_ref.add(0, accuracy=0.5, costs={"x86": {"latency_ms": 4.0}})
    assert given_ref.hypervolume("x86") == 0.25
    no_base = ParetoFronts({"x86": "latency_ms"})
    no_base.add(0, accuracy=0.5, costs={"x86": {"latency_ms": 4.0}})
    assert no_base.reference_cost("x86") == 1.1 * 4.0  # as compare.py without a baseline


def test_fronts_pickle_and_constraint_rule() -> None:
    fronts = ParetoFronts(PROFILES)
    fronts.add(0, accuracy=0.9, costs={"x86": {"latency_ms": 1.0}, "mcu": {"model_bytes": 2.0}})
    assert pickle.loads(pickle.dumps(fronts)).as_spec_fronts() == fronts.as_spec_fronts()
    assert satisfies([]) and satisfies([-1.0, 0.0]) and satisfies(None)
    assert not satisfies([0.1]) and not satisfies([NAN]) and not satisfies(["x"])


@pytest.mark.parametrize("seed", range(6))
def test_seeded_from_a_trials_table_as_front_frame_sees_it(seed: int) -> None:
    """A resumed driver starts from trials_frame's table: NaN for missing numbers, fits as read back."""
    rng = random.Random(seed)
    records = {t: _random_record(rng, messy=seed % 2 == 0) for t in range(40)}
    rows = [{"trial": t, "status": r["status"], "accuracy": r["accuracy"], "feasible": r["feasible"],
             "is_baseline": t == 0, **{f"{p}.{o}": r[f"{p}.cost"] for p, o in PROFILES.items()},
             **{f"{p}.fits": r[f"{p}.fits"] for p in PROFILES}} for t, r in records.items()]  # fmt: skip
    profiles = [SimpleNamespace(name=p, objective=o) for p, o in PROFILES.items()]
    fronts = ParetoFronts.from_frame(pd.DataFrame(rows), profiles)
    for p in PROFILES:
        assert list(fronts.points(p)) == _batch_front(records, p)
    assert ParetoFronts.from_frame(pd.DataFrame(), profiles).as_spec_fronts() == {"x86": (), "mcu": ()}
