"""Does multi-fidelity search buy the fronts sooner? Full-fidelity vs. multi-fidelity search on the default task.

Per seed: the full-fidelity search (every trial runs its whole KD fine-tune) with ``--budget`` trials, then the
multi-fidelity search (rungs at 1/9, 1/3 and 1 of each fine-tune, eta 3, rank rule; ``autoslim.search.ladder``)
with a time budget equal to the full search's wall time, both on the same workers. Each profile's hypervolume
(cost as a share of 1.1x the baseline's, as ``autoslim compare``) is followed over wall time from the trials'
completion times: only trials told ok (the top rung) count, as only they are on the fronts.

Reported per seed and profile: the plans each search ran (a late promotion goes on with a plan already counted:
``multi_late_promotions``), each search's final hypervolume, the wall time the multi-fidelity search took to
reach the full search's final hypervolume (and its share of the full search's wall time), and the multi-fidelity
hypervolume at the full search's wall time.

    python benchmarks/multifidelity.py [--seeds 3] [--budget 50] [--workers 2] [--task mnist1d-cnn]
    python benchmarks/multifidelity.py --task zoo-minilm-embed --space search_spaces/transformer.yaml \
        --budget 24 --seed-list 0 --name multifidelity_zoo_minilm --rule hypervolume

``--seed-list`` runs only those seeds and keeps the other seeds' rows and curves already in ``<name>.csv`` and
``<name>_curves.csv``: a slow model's seeds can be measured one session at a time.

Writes results/benchmarks/multifidelity.csv and multifidelity.png (hypervolume over wall time, per profile).
Run it alone on the machine: both searches are timed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import shutil
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from autoslim.cost import get_profile
from autoslim.report.frame import front_hypervolumes
from autoslim.report.results import open_results
from autoslim.search import SearchConfig, default_space_path, load_space, run_search
from autoslim.search.rungs import Rungs

OUT = Path("results/benchmarks")


Run = tuple[pd.DataFrame, float, dt.datetime]  # trials, wall seconds, when it began


def run(mode: str, seed: int, args: argparse.Namespace, time_budget_s: float | None) -> Run:
    space = load_space(Path(args.space) if args.space else default_space_path())
    profiles = [get_profile(n) for n in space.profiles]
    name = study_name(mode, seed, args)
    if mode == "multi":
        rungs = space.rungs or Rungs()
        space = dataclasses.replace(space, rungs=Rungs(rungs.fractions, reduction_factor=rungs.reduction_factor,
                                                       rule=args.rule, fine_tune=args.fine_tune))  # fmt: skip
    runs = runs_dir(args)
    shutil.rmtree(runs / name, ignore_errors=True)
    begun = dt.datetime.now()
    t0 = time.perf_counter()
    cfg = SearchConfig(space=space, profiles=profiles, budget=args.budget if mode == "full" else None,
                       time_budget_s=time_budget_s, task=args.task, study=name, results_dir=runs, seed=seed,
                       workers=args.workers, multifidelity=mode == "multi")  # fmt: skip
    out = run_search(cfg)
    return out.trials, time.perf_counter() - t0, begun


def study_name(mode: str, seed: int, args: argparse.Namespace) -> str:
    name = f"mf_{mode}_s{seed}" + (f"_{args.rule}" * (mode == "multi" and args.rule != "rank"))
    return name + f"_{args.fine_tune}" * (mode == "multi" and args.fine_tune != "restart")


def late_promotions(folder: Path) -> set[int]:
    """Trials a late promotion went on from (ASHA's: ``autoslim.search.ladder``): the same plans as their late
    trials, so the plan count leaves them out."""
    trials = open_results(folder).study.get_trials(deepcopy=False)
    return {int(t.user_attrs["late_of"]) for t in trials if isinstance(t.user_attrs.get("late_of"), int)}


def runs_dir(args: argparse.Namespace) -> Path:
    """The study folders of a run named ``--name`` (local, not committed): one per model, so a zoo model's full
    runs stay there for ``--reuse-full`` while the default task's are run again."""
    return OUT / ("multifidelity_runs" if args.name == "multifidelity" else f"{args.name}_runs")


def earlier_full(seed: int, csv: str, args: argparse.Namespace) -> Run:
    """An earlier full-fidelity run: its trials (from its study folder), wall time and start."""
    earlier = pd.read_csv(csv)
    wall = float(earlier[earlier["seed"] == seed]["full_wall_s"].iloc[0])
    results = open_results(runs_dir(args) / f"mf_full_s{seed}")
    df = results.trials
    begun = pd.to_datetime(df["datetime_start"]).min().to_pydatetime()
    return df, wall, begun


def hv_over_time(df: pd.DataFrame, begun: dt.datetime, profiles: list, times: list[float]) -> pd.DataFrame:
    done = (pd.to_datetime(df["datetime_complete"]) - pd.Timestamp(begun)).dt.total_seconds()
    rows = []
    for t in times:
        hvs = front_hypervolumes(df, profiles, among=df[done <= t])
        rows += [{"t_s": t, "profile": name, "hv": hv} for name, hv in hvs.items()]
    return pd.DataFrame(rows)


def _earlier(csv: Path, seeds: list[int]) -> pd.DataFrame:
    """Rows an earlier run wrote for seeds other than ``seeds`` (none if there is no file)."""
    if not csv.exists():
        return pd.DataFrame()
    df = pd.read_csv(csv)
    return df[~df["seed"].isin(seeds)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seed-list", default=None, help="comma-separated seeds to run (others' rows are kept)")
    ap.add_argument("--budget", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--task", default="mnist1d-cnn")
    ap.add_argument("--space", default=None)
    ap.add_argument("--name", default="multifidelity", help="output files' stem under results/benchmarks/")
    ap.add_argument("--rule", default="rank", choices=["rank", "hypervolume"], help="the promotion rule")
    ap.add_argument("--fine-tune", default="restart", choices=["restart", "continue"],
                    help="what a promoted trial's next rung does with the fine-tune (the rungs' fine_tune)")
    ap.add_argument("--reuse-full", default=None, metavar="CSV",
                    help="take the full-fidelity runs (folders and wall times) of an earlier run of this script "
                    "instead of running them again, e.g. to compare promotion rules")  # fmt: skip
    args = ap.parse_args()
    space = load_space(Path(args.space) if args.space else default_space_path())
    profiles = [get_profile(n) for n in space.profiles]
    seeds = [int(x) for x in args.seed_list.split(",")] if args.seed_list else list(range(args.seeds))
    rows, curves = _earlier(OUT / f"{args.name}.csv", seeds), _earlier(OUT / f"{args.name}_curves.csv", seeds)
    rows = rows.to_dict("records") if len(rows) else []
    curves = [curves] if len(curves) else []
    # Warm-up, untimed: the teacher is trained or loaded into the cache and the preflight of the space cached, so
    # neither timed search pays for them
    warm = SearchConfig(space=space, profiles=profiles, budget=1, task=args.task, study="mf_warmup",
                        results_dir=runs_dir(args), workers=1)  # fmt: skip
    shutil.rmtree(warm.folder, ignore_errors=True)
    run_search(warm)
    for seed in seeds:
        if args.reuse_full:
            full, wall_full, begun_full = earlier_full(seed, args.reuse_full, args)
        else:
            full, wall_full, begun_full = run("full", seed, args, None)
        multi, wall_multi, begun_multi = run("multi", seed, args, wall_full)
        grid = [wall_full * i / 100 for i in range(1, 101)]
        hv_full = hv_over_time(full, begun_full, profiles, grid)
        hv_multi = hv_over_time(multi, begun_multi, profiles, grid)
        for mode, hv in (("full", hv_full), ("multi", hv_multi)):
            curves.append(hv.assign(seed=seed, mode=mode))
        top = multi["rung"].dropna() if "rung" in multi else pd.Series(dtype=float)
        late = late_promotions(runs_dir(args) / study_name("multi", seed, args))
        for p in profiles:
            f = hv_full[hv_full["profile"] == p.name].set_index("t_s")["hv"]
            m = hv_multi[hv_multi["profile"] == p.name].set_index("t_s")["hv"]
            target = float(f.iloc[-1])
            reached = m[m >= target - 1e-12]
            t_reach = float(reached.index[0]) if len(reached) else None
            rows.append({
                "seed": seed, "profile": p.name, "objective": p.objective,
                "full_trials": len(full), "full_wall_s": round(wall_full, 1), "full_hv": round(target, 5),
                "multi_trials": len(multi) - len(late), "multi_late_promotions": len(late),
                "multi_ok": int((multi["status"] == "ok").sum()),
                "multi_at_top_rung": int((top == top.max()).sum()) if len(top) else 0,
                "multi_wall_s": round(wall_multi, 1),
                "multi_hv_at_full_wall": round(float(m.iloc[-1]), 5),
                "multi_s_to_full_hv": None if t_reach is None else round(t_reach, 1),
                "multi_share_of_full_wall": None if t_reach is None else round(t_reach / wall_full, 3),
            })  # fmt: skip
        pd.DataFrame(rows).sort_values(["seed"], kind="stable").to_csv(OUT / f"{args.name}.csv", index=False)
        pd.concat(curves).to_csv(OUT / f"{args.name}_curves.csv", index=False)  # after every seed: a kill keeps them
        print(pd.DataFrame(rows)[pd.DataFrame(rows)["seed"] == seed].to_string(index=False))
    table = pd.DataFrame(rows)
    curve = pd.concat(curves)
    fig, axes = plt.subplots(1, len(profiles), figsize=(4 * len(profiles), 3.6), squeeze=False)
    for ax, p in zip(axes[0], profiles, strict=True):
        for (seed, mode), g in curve[curve["profile"] == p.name].groupby(["seed", "mode"]):
            ax.plot(g["t_s"], g["hv"], color="tab:blue" if mode == "full" else "tab:orange", alpha=0.8,
                    ls="-" if seed == 0 else "--" if seed == 1 else ":",
                    label=f"{mode} fidelity, seed {seed}")  # fmt: skip
        ax.set(title=p.name, xlabel="wall time (s)", ylabel="hypervolume")
    axes[0][0].legend(fontsize=6)
    fig.suptitle(f"multi- vs. full-fidelity search, {args.task} (full: budget {args.budget})")
    fig.tight_layout()
    fig.savefig(OUT / f"{args.name}.png", dpi=110)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
