"""What does early stop of hopeless KD fine-tunes save? A search with and without it (default space: trials
dominated on every profile stop; constrained space: also trials that cannot get within 1 pp).

Both searches run inline on one thread with the same seed, so they sample the same plans until the first stopped
trial changes what the sampler has seen. Reported per run: the summed trial durations (almost all of it KD
fine-tune), trials stopped early, and per profile the hypervolume (as in benchmarks/samplers.py) and the best front
point within 1 pp of the baseline (its objective and the reduction vs. the baseline).

    python benchmarks/early_stop.py [--space search_spaces/default.yaml] [--budget 50] [--seed 0]

Writes results/benchmarks/early_stop.csv (early_stop_<space>.csv for another space).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pandas as pd
import torch
from samplers import hypervolumes  # benchmarks/samplers.py: the same hypervolume, comparable figures

from autoslim.cost import get_profile
from autoslim.report.frame import front_frame
from autoslim.search import SearchConfig, default_space_path, load_space, run_search

OUT = Path("results/benchmarks")


def run(space_path: Path, early_stop: bool, budget: int, seed: int) -> list[dict]:
    space = load_space(space_path)
    profiles = [get_profile(p) for p in space.profiles]
    study = f"early_stop_{space.name}_{'on' if early_stop else 'off'}"
    shutil.rmtree(OUT / study, ignore_errors=True)
    config = SearchConfig(space=space, profiles=profiles, budget=budget, study=study, results_dir=OUT, seed=seed,
                          workers=1, early_stop=early_stop)  # fmt: skip
    df = run_search(config).trials
    base = df[df["is_baseline"] & (df["status"] == "ok")].iloc[0]
    hv = hypervolumes(df, profiles, budget)
    rows = []
    for p in profiles:
        col = f"{p.name}.{p.objective}"
        front = front_frame(df, p)
        within = front[front["accuracy"] >= base["accuracy"] - 0.01]
        best = within.loc[within[col].idxmin()] if len(within) else None
        rows.append({
            "early_stop": early_stop, "trial_seconds": round(float(df["duration_s"].sum()), 1),
            "stopped": int(df["status"].isin(["stopped", "pruned"]).sum()), "ok": int((df["status"] == "ok").sum()),
            "space": space.name, "profile": p.name, "objective": p.objective, "hypervolume": round(hv[p.name], 4),
            "best_1pp_trial": None if best is None else int(best["trial"]),
            "best_1pp_accuracy": None if best is None else float(best["accuracy"]),
            "best_1pp_value": None if best is None else float(best[col]),
            "reduction_x": None if best is None else float(base[col]) / float(best[col]),
        })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", type=Path, default=default_space_path())
    parser.add_argument("--budget", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = run(args.space, False, args.budget, args.seed) + run(args.space, True, args.budget, args.seed)
    table = pd.DataFrame(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    name = (
        "early_stop.csv"
        if args.space.resolve() == default_space_path().resolve()
        else f"early_stop_{args.space.stem}.csv"
    )
    table.to_csv(OUT / name, index=False)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
