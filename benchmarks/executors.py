"""How fast do the executors run trials? Trials per minute on the default task, and per-trial overhead vs. inline.

The same fixed 12 plans (the default space sampled by a seeded random sampler; distillation capped at 1 epoch to
keep the run short, or as sampled with ``--full-kd``: the default search's own trial mix) go through every
executor: inline, process x1, process x2, ray x1, ray x2 (a local Ray instance on loopback). The clock runs from
the first submit to the last result; start-up (spawning workers, loading the task, starting Ray) is timed apart.
Overhead: 16 baseline plans (no step: evaluation and costing only) after one warm-up trial, seconds per trial
minus inline's.

    AUTOSLIM_CACHE=/tmp/ascache python benchmarks/executors.py [--plans 12] [--repeat-overhead 16] [--full-kd]

Writes results/benchmarks/executors.csv and executors.png (executors_full_kd.* with ``--full-kd``).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # the local Ray instance stays on loopback
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import optuna
import pandas as pd
import torch

from autoslim.cost import get_profile
from autoslim.execution import Executor, InlineExecutor, ProcessExecutor
from autoslim.plan import CompressionPlan
from autoslim.search import default_space_path, load_space
from autoslim.tasks import DEFAULT_TASK, Task, load_task
from autoslim.trial import TrialSpec

OUT = Path("results/benchmarks")


def fixed_plans(n: int, seed: int = 0, *, cap_kd: bool = True) -> list[CompressionPlan]:
    space = load_space(default_space_path())
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    plans: list[CompressionPlan] = []
    while len(plans) < n:
        params = space.sample(study.ask())
        if cap_kd and "distill.kd" in params:
            params["distill.kd"] = {**params["distill.kd"], "epochs": 1}
        try:
            plans.append(CompressionPlan.from_params(params))
        except (ValueError, TypeError):
            continue
    return plans


def make(kind: str, workers: int, task: Task) -> Executor:
    if kind == "inline":
        return InlineExecutor(task)
    if kind == "process":
        return ProcessExecutor(DEFAULT_TASK, workers=workers)
    from autoslim.execution.ray_executor import RayExecutor

    return RayExecutor(task, workers=workers)


def run_all(executor: Executor, specs: list[TrialSpec]) -> float:
    start = time.perf_counter()
    results = [f.result() for f in [executor.submit(s) for s in specs]]
    wall = time.perf_counter() - start
    bad = [r.reason for r in results if r.status == "failed"]
    assert not bad, bad[:1]
    return wall


def measure(kind: str, workers: int, task: Task, plans: list[TrialSpec], baseline: list[TrialSpec]) -> dict:
    t0 = time.perf_counter()
    executor = make(kind, workers, task)
    run_all(executor, baseline[:1] * max(1, workers))  # warm-up: every worker has run a trial
    startup = time.perf_counter() - t0
    try:
        wall = run_all(executor, plans)
        # After the plans: by then Ray's own start-up processes (agents, prestarted workers) have settled.
        overhead_wall = run_all(executor, baseline) if workers == 1 else float("nan")
    finally:
        executor.close()
    row = {"executor": kind, "workers": workers, "startup_s": round(startup, 2), "plans": len(plans),
           "wall_s": round(wall, 2), "trials_per_min": round(60 * len(plans) / wall, 2),
           "baseline_s_per_trial": round(overhead_wall / len(baseline), 4)}  # fmt: skip
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=12)
    parser.add_argument("--repeat-overhead", type=int, default=16)
    parser.add_argument("--only", nargs="*", default=None, help="e.g. inline:1 ray:1 (default: all five)")
    parser.add_argument("--full-kd", action="store_true", help="distillation epochs as sampled (no 1-epoch cap)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # inline runs single-threaded, as every worker does
    task = load_task(DEFAULT_TASK)
    profiles = tuple(get_profile(p) for p in load_space(default_space_path()).profiles)
    sampled = fixed_plans(args.plans, cap_kd=not args.full_kd)
    plans = [TrialSpec(p.to_dict(), profiles, seed=i, number=i) for i, p in enumerate(sampled)]
    baseline = [TrialSpec(CompressionPlan().to_dict(), profiles, seed=0, number=i) for i in range(args.repeat_overhead)]
    configs: list[tuple[str, int]] = [("inline", 1), ("process", 1), ("process", 2), ("ray", 1), ("ray", 2)]
    if args.only:
        configs = [(k, int(w)) for k, w in (c.split(":") for c in args.only)]
    rows = [measure(kind, w, task, plans, baseline) for kind, w in configs]
    df = pd.DataFrame(rows)
    inline_rows = df.loc[df["executor"] == "inline"]
    inline_s = inline_rows["baseline_s_per_trial"].iloc[0] if len(inline_rows) else float("nan")
    df["speedup_vs_1_worker"] = [
        r.trials_per_min / df.loc[(df["executor"] == r.executor) & (df["workers"] == 1), "trials_per_min"].iloc[0]
        for r in df.itertuples()
    ]
    df["overhead_s_per_trial_vs_inline"] = (df["baseline_s_per_trial"] - inline_s).round(4)
    df["cpu_count"] = os.cpu_count()
    df["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    OUT.mkdir(parents=True, exist_ok=True)
    name = "executors_full_kd" if args.full_kd else "executors"
    df.to_csv(OUT / f"{name}.csv", index=False)
    plot(df, OUT / f"{name}.png")
    print(df.to_string(index=False))


def plot(df: pd.DataFrame, path: Path) -> None:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    labels = [f"{r.executor} x{r.workers}" for r in df.itertuples()]
    ax1.bar(labels, df["trials_per_min"], color=["grey", "C0", "C0", "C1", "C1"])
    ax1.set_ylabel("trials / minute (default task, 12 fixed plans)")
    ax1.tick_params(axis="x", rotation=30)
    one = df[df["workers"] == 1]
    ax2.bar([f"{r.executor}" for r in one.itertuples()], one["baseline_s_per_trial"], color=["grey", "C0", "C1"])
    ax2.set_ylabel("seconds per baseline trial (1 worker)")
    for i, v in enumerate(one["baseline_s_per_trial"]):
        ax2.text(i, v, f"{v:.3f}", ha="center", va="bottom")
    fig.suptitle(f"Executors on {os.cpu_count()} cores (load avg {df['load_avg_1min_at_end'].iloc[0]} at end)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
