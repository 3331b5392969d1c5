"""Continued vs restarted rungs, plan by plan: what each costs and how well its rungs rank the plans.

    python benchmarks/rung_continue.py [--study results/benchmarks/policy_runs/per-layer-s0] [--plans 16]

Takes the plans with a fine-tune that a finished study of the default task ran to the end (their resolved plans:
per-layer allocations written out) and runs each, with the trial's own seed, three ways on 2 single-thread
worker processes:

- ``full``: the whole fine-tune in one go (what a full-fidelity search runs, and the restart ladder's top rung);
- ``restart``: rungs at 1/9 and 1/3, each from the start with the schedule compressed into it;
- ``continue``: 1/9, then on to 1/3 from its state, then on to 1 (``rungs: {fine_tune: continue}``).

Per plan: accuracy and seconds of every rung. Summary: the seconds a plan climbing all rungs costs each way (the
restart ladder runs 1/9 + 1/3 + full, the continue ladder 1/9 + the two continued legs), the final accuracy of the
continued chain against the one-go fine-tune (the model a continued search puts on its fronts), and Spearman's
rho of each rung's accuracy against the final one (how well a rung ranks the plans for promotion).

Writes results/benchmarks/rung_continue.csv. Run it alone on the machine: it is timed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
from scipy.stats import spearmanr

OUT = Path("results/benchmarks")
TASK = "mnist1d-cnn"


def _init() -> None:
    import torch

    torch.set_num_threads(1)


def _one(job: tuple[int, dict, int, list[str]]) -> dict:
    from autoslim.cost import get_profile
    from autoslim.tasks import load_task
    from autoslim.trial import TrialSpec, run_trial

    number, plan, seed, profile_names = job
    task = load_task(TASK)
    profiles = tuple(get_profile(n) for n in profile_names)
    row: dict = {"trial": number}

    def go(label: str, **kw) -> bytes | None:
        t0 = time.perf_counter()
        r = run_trial(TrialSpec(plan, profiles, seed=seed, **kw), task, cache=cache)
        row[f"{label}_acc"] = r.accuracy if r.status == "ok" else None
        row[f"{label}_s"] = round(time.perf_counter() - t0, 3)
        row[f"{label}_status"] = r.status
        return r.checkpoint

    cache: dict = {}
    go("warm", fidelity=1 / 9)  # teacher outputs cached for the process: not in any timed run
    go("full")
    go("restart_r0", fidelity=1 / 9)
    go("restart_r1", fidelity=1 / 3)
    state = go("continue_r0", fidelity=1 / 9, keep_state=True)
    state = go("continue_r1", fidelity=1 / 3, resume=state, keep_state=True)
    go("continue_r2", fidelity=1.0, resume=state)
    for k in [k for k in row if k.startswith("warm")]:
        del row[k]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default="results/benchmarks/policy_runs/per-layer-s0")
    ap.add_argument("--plans", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    trials = pd.read_csv(Path(args.study) / "trials.csv")
    ok = trials[(trials["status"] == "ok") & trials["plan_json"].str.contains('"distill.kd"', na=False)]
    ok = ok[~ok["is_recipe"].astype(bool)].head(args.plans)
    from autoslim.search import default_space_path, load_space

    names = list(load_space(default_space_path()).profiles)
    # the seed a search gives trial n (search seed 0 + n): the study's own runs, so 'full' is the study's trial
    jobs = [(int(r.trial), json.loads(r.plan_json), int(r.trial), names) for r in ok.itertuples()]
    with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn"), initializer=_init) as pool:
        rows = list(pool.map(_one, jobs))
    df = pd.DataFrame(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    df.to_csv(OUT / "rung_continue.csv", index=False)
    print(df.round(4).to_string(index=False))
    climb_restart = df["restart_r0_s"] + df["restart_r1_s"] + df["full_s"]
    climb_continue = df["continue_r0_s"] + df["continue_r1_s"] + df["continue_r2_s"]
    print(f"\nseconds to climb every rung, median per plan: restart {climb_restart.median():.2f}, "
          f"continue {climb_continue.median():.2f} ({climb_continue.sum() / climb_restart.sum():.0%} of restart's)")
    for label in ("restart_r1", "continue_r1", "continue_r2"):
        print(f"median {label} seconds: {df[label + '_s'].median():.2f} (full {df['full_s'].median():.2f})")
    gap = (df["continue_r2_acc"] - df["full_acc"]) * 100
    print(f"continued chain - one-go fine-tune, final accuracy: mean {gap.mean():+.2f} pp, median {gap.median():+.2f}"
          f" pp, min {gap.min():+.2f}, max {gap.max():+.2f} ({len(df)} plans)")
    for label, final in (("restart_r0", "full"), ("restart_r1", "full"), ("continue_r1", "full"),
                         ("continue_r1", "continue_r2"), ("continue_r2", "full")):  # fmt: skip
        rho = spearmanr(df[label + "_acc"], df[final + "_acc"], nan_policy="omit").statistic
        print(f"Spearman rho of {label} accuracy vs {final}: {rho:.3f}")


if __name__ == "__main__":
    main()
