"""The default search as a user runs it: `autoslim search --budget 50` for several seeds, wall time and the best
point within 1 pp of the baseline on each profile (its reduction of the profile's objective and of stored bytes).

    python benchmarks/default_search.py [--seeds 5] [--budget 50]
    python benchmarks/default_search.py --summarize RESULTS_DIR [--wall-s 154,206,...]   # studies s0, s1, ... run
                                                                                         # by hand (and their times)

Writes results/benchmarks/default_search.csv. Needs the teacher cached (run the quickstart once) for wall times
that are the search alone.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from autoslim.cost import get_profile
from autoslim.report.frame import front_frame
from autoslim.report.results import open_results
from autoslim.search import default_space_path, load_space

OUT = Path("results/benchmarks")


def summarize(folder: Path, seed: int, wall_s: float | None) -> list[dict]:
    df = open_results(folder).trials  # <profile>.<objective> columns, as front_frame reads them
    base = df[df["is_baseline"] & (df["status"] == "ok")].iloc[0]
    rows = []
    for name in load_space(default_space_path()).profiles:
        p = get_profile(name)
        col, size = f"{p.name}.{p.objective}", f"{p.name}.model_bytes"
        front = front_frame(df, p)
        within = front[front["accuracy"] >= base["accuracy"] - 0.01]
        best = within.loc[within[col].idxmin()]
        rows.append({
            "seed": seed, "wall_s": wall_s, "ok": int((df["status"] == "ok").sum()),
            "stopped": int(df["status"].isin(["stopped", "pruned"]).sum()), "profile": p.name, "objective": p.objective,
            "best_1pp_trial": int(best["trial"]), "drop_pp": round(100 * (base["accuracy"] - best["accuracy"]), 2),
            "objective_reduction_x": round(float(base[col]) / float(best[col]), 1),
            "bytes_reduction_x": round(float(base[size]) / float(best[size]), 1), "plan": best["plan"],
        })  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=50)
    ap.add_argument("--summarize", type=Path, help="a results folder holding studies s0, s1, ... already run")
    ap.add_argument("--wall-s", default="", help="with --summarize: their wall times, comma-separated")
    args = ap.parse_args()
    runs = args.summarize or OUT / "default_search_runs"
    rows = []
    walls = [float(w) for w in args.wall_s.split(",") if w]
    for seed in range(args.seeds):
        wall = walls[seed] if seed < len(walls) else None
        if args.summarize is None:
            shutil.rmtree(runs / f"s{seed}", ignore_errors=True)
            t0 = time.perf_counter()
            cmd = [sys.executable, "-m", "autoslim", "search", "--budget", str(args.budget), "--seed", str(seed),
                   "--study", f"s{seed}", "--results", str(runs)]  # fmt: skip
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            wall = round(time.perf_counter() - t0, 1)
        rows += summarize(runs / f"s{seed}", seed, wall)
    table = pd.DataFrame(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    table.to_csv(OUT / "default_search.csv", index=False)
    print(table.drop(columns="plan").to_string(index=False))


if __name__ == "__main__":
    main()
