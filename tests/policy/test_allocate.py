"""The allocator against brute force: it always fits, and it finds (or nearly finds) the least summed loss."""

from __future__ import annotations

import itertools
import random

import pytest

from autoslim.policy.allocate import allocate


def _brute(options, budget):
    best = None
    for choice in itertools.product(*[range(len(o)) for o in options]):
        cost = sum(options[i][c][0] for i, c in enumerate(choice))
        loss = sum(options[i][c][1] for i, c in enumerate(choice))
        if cost <= budget and (best is None or loss < best[1]):
            best = (choice, loss)
    return best


def _problem(rng: random.Random, layers: int, cands: int):
    options = []
    for _ in range(layers):
        size = rng.uniform(1, 100)
        row = []
        for k in range(cands):  # more bits: more cost, less loss (as a real table)
            bits = k + 1
            row.append((size * bits, rng.uniform(0.5, 2.0) * size / 2**bits))
        options.append(row)
    return options


@pytest.mark.parametrize("method", ["lagrangian", "dp"])
def test_allocations_fit_the_budget_and_are_near_the_optimum(method: str) -> None:
    rng = random.Random(0)
    gaps = []
    for _ in range(30):
        options = _problem(rng, layers=5, cands=4)
        total_min = sum(min(c for c, _ in o) for o in options)
        total_max = sum(max(c for c, _ in o) for o in options)
        budget = rng.uniform(total_min, total_max)
        got = allocate(options, budget, method=method)
        exact = _brute(options, budget)
        assert got.fits and got.cost <= budget + 1e-9
        assert got.loss >= exact[1] - 1e-9  # nothing beats the optimum
        gaps.append((got.loss - exact[1]) / max(exact[1], 1e-12))
    assert max(gaps) < (0.1 if method == "dp" else 0.15)
    assert sum(gaps) / len(gaps) < 0.01


def test_an_unreachable_budget_returns_the_cheapest_and_says_so() -> None:
    options = [[(10.0, 1.0), (20.0, 0.1)], [(5.0, 2.0), (8.0, 0.0)]]
    got = allocate(options, 3.0)
    assert not got.fits and got.choice == (0, 0) and got.cost == 15.0


def test_a_generous_budget_takes_the_least_loss_everywhere() -> None:
    options = [[(10.0, 1.0), (20.0, 0.1)], [(5.0, 2.0), (8.0, 0.0)]]
    assert allocate(options, 1e9).choice == (1, 1)
