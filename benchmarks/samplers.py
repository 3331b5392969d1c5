"""Which sampler should `--sampler auto` use? Hypervolume per profile at budget 50 on the default task.

For each seed: TPE, NSGA-II, GP and random search at budget 50, plus random search at budget 150 (the first 50
trials of the same random study are the budget-50 run). Hypervolume per profile: the front of (accuracy,
cost / 1.1 x baseline cost), reference point (cost 1, accuracy 0), so every profile reads on one scale.
The hand recipes alone (baseline + the space's recipes) give the floor every sampler must beat.

    python benchmarks/samplers.py [--seeds 3] [--budget 50] [--workers 2]

Writes results/benchmarks/samplers.csv and samplers.png.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from autoslim.cost import get_profile
from autoslim.report.frame import front_hypervolumes
from autoslim.search import SearchConfig, default_space_path, load_space, run_search

OUT = Path("results/benchmarks")


def hypervolumes(df: pd.DataFrame, profiles: list, upto: int) -> dict[str, float]:
    return front_hypervolumes(df, profiles, among=df[df["trial"] < upto])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--samplers", default="tpe,nsga2,gp,random")
    ap.add_argument("--first-seed", type=int, default=0, help="resume a benchmark: earlier seeds' rows are kept")
    args = ap.parse_args()
    space = load_space(default_space_path())
    profiles = [get_profile(n) for n in space.profiles]
    runs = OUT / "sampler_runs"
    csv = OUT / "samplers.csv"
    kept = pd.read_csv(csv) if csv.exists() and args.first_seed > 0 else pd.DataFrame()
    rows = kept[kept["seed"] < args.first_seed].to_dict("records") if len(kept) else []
    for seed in range(args.first_seed, args.seeds):
        for sampler in args.samplers.split(","):
            budget = 3 * args.budget if sampler == "random" else args.budget
            name = f"{sampler}-s{seed}"
            shutil.rmtree(runs / name, ignore_errors=True)
            t0 = time.perf_counter()
            cfg = SearchConfig(space=space, profiles=profiles, budget=budget, study=name, results_dir=runs, seed=seed,
                               workers=args.workers, sampler=sampler)  # fmt: skip
            outcome = run_search(cfg)
            wall = time.perf_counter() - t0
            n_recipes = 1 + len(space.recipes)
            points = [(f"{sampler}@{args.budget}", args.budget)]
            if sampler == "random":
                points += [(f"random@{budget}", budget), ("recipes only", n_recipes)]
            for label, upto in points:
                for prof, hv in hypervolumes(outcome.trials, profiles, upto).items():
                    rows.append({"seed": seed, "sampler": label, "profile": prof, "hypervolume": hv, "wall_s": wall})
            print(f"{name}: {wall:.0f} s", flush=True)
            pd.DataFrame(rows).to_csv(csv, index=False)
    df = pd.DataFrame(rows)
    summary = df.groupby(["profile", "sampler"])["hypervolume"].agg(["mean", "std"]).unstack("sampler")
    print(summary.round(4).to_string())
    fig, axes = plt.subplots(1, len(profiles), figsize=(4 * len(profiles), 4), dpi=100)
    for ax, p in zip(axes, profiles, strict=True):
        sub = df[df["profile"] == p.name].groupby("sampler")["hypervolume"]
        means, stds = sub.mean().sort_values(), sub.std()
        ax.barh(means.index, means.values, xerr=stds[means.index].values, color="#4c72b0")
        ax.set_title(p.name, fontsize=9)
        ax.set_xlim(means.min() * 0.9, means.max() * 1.02)
    axes[0].set_ylabel("sampler @ budget")
    fig.suptitle(f"hypervolume per profile (mean ± sd over {args.seeds} seeds, default task)")
    fig.tight_layout()
    fig.savefig(OUT / "samplers.png")


if __name__ == "__main__":
    main()
