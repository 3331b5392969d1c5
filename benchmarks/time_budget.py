"""`autoslim search --time-budget 10m` as a user runs it: does it end within the budget plus one trial's time, with
every front written?

    python benchmarks/time_budget.py [--budget 10m] [--multifidelity] [--workers 2]

Runs the CLI in a fresh results folder (the task's teacher cache is kept, as a user's second run would have it),
times the whole command, reads the trials it finished and checks the files every study must have (trials.csv,
one pareto_<profile>.csv per profile, report.html). Appends a row to results/benchmarks/time_budget.csv. Run it
alone on the machine: a second job makes every trial, and so the overshoot, longer.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from autoslim.search.time_budget import parse_duration

OUT = Path("results/benchmarks")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", default="10m", help="the --time-budget given to the search")
    ap.add_argument("--multifidelity", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="autoslim-time-budget-"))
    cmd = [sys.executable, "-m", "autoslim", "search", "--time-budget", args.budget, "--results", str(folder),
           "--study", "tb", "--workers", str(args.workers),
           *(["--multifidelity"] if args.multifidelity else [])]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, "CI": "true"}, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    study = folder / "tb"
    trials = pd.read_csv(study / "trials.csv") if (study / "trials.csv").exists() else pd.DataFrame()
    profiles = sorted(p.name.removeprefix("pareto_").removesuffix(".csv") for p in study.glob("pareto_*.csv"))
    budget_s = parse_duration(args.budget)
    longest = float(trials["duration_s"].max()) if len(trials) else float("nan")
    row = {
        "time_budget_s": budget_s, "multifidelity": args.multifidelity, "workers": args.workers, "rc": proc.returncode,
        "wall_s": round(wall, 1), "over_budget_s": round(wall - budget_s, 1), "longest_trial_s": round(longest, 1),
        "within_budget_plus_one_trial": wall <= budget_s + longest, "trials": len(trials),
        "ok": int((trials["status"] == "ok").sum()) if len(trials) else 0,
        "fronts_written": ",".join(profiles), "report_html": (study / "report.html").exists(),
    }  # fmt: skip
    print(proc.stdout[-3000:], proc.stderr[-2000:], sep="\n")
    print(pd.Series(row).to_string())
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "time_budget.csv"
    table = pd.DataFrame([row])
    if path.exists():
        table = pd.concat([pd.read_csv(path), table], ignore_index=True)
    table.to_csv(path, index=False)
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
