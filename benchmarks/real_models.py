"""The real-model zoo searched end to end: a ``--budget 12`` search per zoo model with its matching built-in space,
then, per model, what preflight kept, how many trials were infeasible or failed (and which technique failed), and
the best reduction within 1 pp of the baseline metric — bytes on the microcontroller, latency on every latency
profile — beside int8 PTQ alone (the spaces' first recipe).

    python benchmarks/real_models.py [--budget 12] [--models zoo-vgg,zoo-unet] [--workers 2] [--summarize]

Writes results/benchmarks/real_models.csv (one row per model and profile) and prints it. Studies are kept under
results/benchmarks/real_models/<model>/ (report.html, trials.csv, preflight.csv), so ``--summarize`` re-reads them.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from autoslim.cost import HardwareProfile, get_profile
from autoslim.report.frame import front_frame
from autoslim.report.results import open_results
from autoslim.search import SearchConfig, load_space, run_search
from autoslim.tasks.zoo import ZOO_TASKS

OUT = Path("results/benchmarks")
RUNS = OUT / "real_models"
SPACES = Path(__file__).resolve().parents[1] / "search_spaces"
MCU = "mcu-cortex-m7"  # the bytes criterion is judged here, whatever the space lists


def space_for(model: str) -> str:
    """The built-in space a user of this architecture would pick."""
    return "transformer" if any(k in model for k in ("bert", "minilm")) else "cnn"


def profiles_for(space_name: str) -> list[HardwareProfile]:
    names = list(load_space(SPACES / f"{space_name}.yaml").profiles)
    return [get_profile(n) for n in [*names, *([MCU] if MCU not in names else [])]]


def failing_technique(reason: str) -> str:
    """The technique an infeasible/failed trial's reason names first (reasons start ``technique: ...``)."""
    head = str(reason).split(":", 1)[0].strip()
    return head if "." in head and " " not in head else "other"


def summarize(model: str, folder: Path, wall_s: float | None) -> list[dict]:
    df = open_results(folder).trials  # <profile>.<objective> columns, as front_frame reads them
    space = space_for(model)
    kept = ""
    if (folder / "preflight.csv").exists():
        pre = pd.read_csv(folder / "preflight.csv")
        status_col = next((c for c in ("status", "applies") if c in pre.columns), None)
        if status_col is not None:
            kept = ",".join(f"{t}={s}" for t, s in zip(pre["technique"], pre[status_col], strict=True))
    bad = df[df["status"].isin(["infeasible", "failed"])]
    by_tech = bad["reason"].fillna("").map(failing_technique).value_counts().to_dict()
    base = df[df["is_baseline"] & (df["status"] == "ok")].iloc[0]
    int8 = df[df["is_recipe"] & (df["status"] == "ok") & df["plan"].str.fullmatch(r"w8/a8")]
    rows = []
    for p in profiles_for(space):
        metric = p.objective if p.name != MCU else "model_bytes"
        col = f"{p.name}.{metric}"
        front = front_frame(df, p) if p.name != MCU else df[(df["status"] == "ok") & df["feasible"]]
        within = front[front["accuracy"] >= base["accuracy"] - 0.01]
        best = within.loc[within[col].idxmin()] if len(within) else None
        int8_ok = int8[int8["accuracy"] >= base["accuracy"] - 0.01]
        rows.append({
            "model": model, "space": space, "trials": len(df), "wall_s": wall_s,
            "infeasible_or_failed": len(bad), "bad_share": round(len(bad) / len(df), 3),
            "failures_by_technique": ";".join(f"{k}={v}" for k, v in by_tech.items()), "preflight": kept,
            "baseline_metric": round(float(base["accuracy"]), 4), "profile": p.name, "cost": metric,
            "best_1pp_x": round(float(base[col]) / float(best[col]), 2) if best is not None else None,
            "best_1pp_drop_pp": round(100 * (base["accuracy"] - best["accuracy"]), 2) if best is not None else None,
            "int8_ptq_x": round(float(base[col]) / float(int8_ok[col].min()), 2) if len(int8_ok) else None,
            "best_plan": best["plan"] if best is not None else "",
        })  # fmt: skip
    return rows


def _write(rows: list[dict]) -> None:
    """real_models.csv: this run's models, plus the rows of models this run did not touch (a rerun of one model
    keeps the others' figures)."""
    path = OUT / "real_models.csv"
    table = pd.DataFrame(rows)
    if path.exists():
        old = pd.read_csv(path)
        table = pd.concat([old[~old["model"].isin(table["model"])], table], ignore_index=True)
    table.to_csv(path, index=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=12)
    ap.add_argument("--models", default=",".join(ZOO_TASKS), help="comma-separated zoo task names")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--summarize", action="store_true", help="re-read the studies already run")
    args = ap.parse_args()
    rows = []
    for model in [m for m in args.models.split(",") if m]:
        folder = RUNS / model
        wall = None
        if not args.summarize:
            space = space_for(model)
            cfg = SearchConfig(space=load_space(SPACES / f"{space}.yaml"), profiles=profiles_for(space),
                               budget=args.budget, task=model, study=model, results_dir=RUNS,
                               workers=args.workers, seed=0)  # fmt: skip
            t0 = time.perf_counter()
            outcome = run_search(cfg)
            wall = round(time.perf_counter() - t0, 1)
            for note in outcome.notes:
                print(f"[{model}] {note}")
        rows += summarize(model, folder, wall)
        OUT.mkdir(parents=True, exist_ok=True)
        _write(rows)  # after every model: a long run keeps what it did
    print(pd.DataFrame(rows).drop(columns=["best_plan", "preflight"]).to_string(index=False))


if __name__ == "__main__":
    main()
