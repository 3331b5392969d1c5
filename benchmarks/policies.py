"""Per-layer policies vs uniform settings on the default task, and the sensitivity table behind them.

    python benchmarks/policies.py [--seeds 5] [--uniform-seeds 3] [--budget 50] [--workers 2] [--only table]
    python benchmarks/policies.py --zoo zoo-resnet18,zoo-bert-cls [--zoo-seeds 3] [--zoo-budget 30]
    python benchmarks/policies.py --zoo zoo-minilm-embed --zoo-seed-list 0 --zoo-spaces uniform [--zoo-resume]
    python benchmarks/policies.py --zoo zoo-minilm-embed --zoo-budget 24 --zoo-rungs continue   # multi-fidelity

1. The sensitivity table of the default task (quantize bits, unstructured amounts, structured ratios per channel
   group), measured cold: seconds.
2. Its proxy (the distillation loss against the teacher on 512 calibration inputs) against the measured metric drop
   on the full validation split when only that layer takes that value: Spearman rho over every (layer, value),
   and over the layers at each value.
3. The allocator: Lagrangian vs exact DP on the real table at targets 4% ... 30% of the float model's bytes.
4. Searches at ``--budget``: the default space (uniform and sensitivity policies) for ``--seeds`` seeds, the same
   space with the policies removed (uniform only) for ``--uniform-seeds``; per seed the smallest model within 1 pp
   of the teacher (mcu bytes, x smaller), the best latency ratio within 1 pp per latency profile, and the
   hypervolume of every profile's front (as benchmarks/samplers.py: cost / 1.1 x baseline, accuracy from 0).

5. ``--zoo zoo-resnet18,zoo-bert-cls``: per zoo model, its built-in space (as benchmarks/real_models.py picks it)
   as shipped (uniform) and with ``policy: [uniform, sensitivity]`` on ``quantize`` (the knob's choices as
   candidates, allocated for the bytes profile), ``prune.structured`` (a ratio per channel group) and
   ``factorize.lowrank`` (a rank per layer), the last two allocated for any of the space's profiles, every target a
   share of what the step receives; same budget (``--zoo-budget``, 30), ``--zoo-seeds`` seeds (3): hypervolume
   and best reduction within 1 pp per profile and seed.

Writes results/benchmarks/policies.csv (searches), policies_table.csv (table, proxy, allocator), policies_zoo.csv
and policies.png.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import re
import shutil
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import torch
import yaml
from scipy.stats import spearmanr

from autoslim.cost import get_profile
from autoslim.evaluate import score
from autoslim.nn_utils import weight_layers
from autoslim.policy import sensitivity as sens
from autoslim.policy.allocate import allocate
from autoslim.policy.show import heatmap_png
from autoslim.report.frame import front_hypervolumes
from autoslim.search import SearchConfig, default_space_path, load_space, run_search
from autoslim.search.space import space_from_dict
from autoslim.tasks import load_task
from autoslim.techniques import InfeasibleError, get_technique
from autoslim.trial import build_model

OUT = Path("results/benchmarks")
RUNS = OUT / "policy_runs"
MCU = "mcu-cortex-m7"


def uniform_space():
    """The default space with every ``policy`` / ``target`` line (and recipe) removed: what the search was before."""
    data = yaml.safe_load(default_space_path().read_text())
    for body in data["techniques"].values():
        for key in ("policy", "target", "target_profiles", "target_of"):
            (body or {}).pop(key, None)
    # and without the recipes that ask for a policy
    data["recipes"] = [r for r in data.get("recipes", []) if not any("policy" in (p or {}) for p in r.values())]
    data["name"] = "default-uniform"
    return space_from_dict(data, source="default-uniform")


def search_rows(df: pd.DataFrame, profiles: list, label: str, seed: int, wall: float) -> list[dict]:
    ok = df[df["status"] == "ok"]
    base = ok[ok["is_baseline"]].iloc[0]
    near = ok[ok["accuracy"] >= base["accuracy"] - 0.01]
    rows = []
    hvs = front_hypervolumes(df, profiles)
    for p in profiles:
        col = f"{p.name}.{p.objective}"
        hv = hvs[p.name]
        best = float(near[col].min())
        policy = int(ok["plan"].str.contains("per layer|per group").sum()) if "plan" in ok else None
        rows.append({
            "space": label, "seed": seed, "profile": p.name, "objective": p.objective, "hypervolume": hv,
            "best_1pp_x": float(base[col]) / best, "baseline_accuracy": float(base["accuracy"]), "wall_s": wall,
            "per_layer_trials": policy, "trials_ok": len(ok),
        })  # fmt: skip
    return rows


def searches(args: argparse.Namespace) -> pd.DataFrame:
    space = load_space(default_space_path())
    profiles = [get_profile(n) for n in space.profiles]
    csv = OUT / args.csv
    rows: list[dict] = []
    seeds = [int(s) for s in args.seed_list.split(",")] if args.seed_list else range(args.seeds)
    plan = [("per-layer", space, s) for s in seeds]
    plan += [("uniform", uniform_space(), s) for s in range(args.uniform_seeds)]
    for label, sp, seed in plan:
        name = f"{label}-s{seed}"
        shutil.rmtree(RUNS / name, ignore_errors=True)
        t0 = time.perf_counter()
        cfg = SearchConfig(space=sp, profiles=profiles, budget=args.budget, study=name, results_dir=RUNS, seed=seed,
                           workers=args.workers)  # fmt: skip
        outcome = run_search(cfg)
        wall = time.perf_counter() - t0
        rows += search_rows(outcome.trials, profiles, label, seed, wall)
        print(f"{name}: {wall:.0f} s, mcu best<=1pp {rows[-1]['best_1pp_x']:.1f}x", flush=True)
        pd.DataFrame(rows).to_csv(csv, index=False)
    return pd.DataFrame(rows)


def table_checks() -> list[dict]:
    """Cold table timing, proxy vs measured drops, allocator comparison."""
    task = load_task("mnist1d-cnn")
    torch.set_num_threads(2)
    model, ctx = build_model(_empty(), task)
    out: list[dict] = []
    shutil.rmtree(sens.cache_root() / "sensitivity", ignore_errors=True)
    base_acc = score(task.teacher(), task)
    for tech, cfg in (("quantize", get_technique("quantize").make_config({})),
                      ("prune.unstructured", get_technique("prune.unstructured").make_config({})),
                      ("prune.structured", get_technique("prune.structured").make_config({}))):  # fmt: skip
        policy = get_technique(tech).layer_policy
        assert policy is not None
        t0 = time.perf_counter()
        table = sens.sensitivity_table(tech, policy.candidates, cfg, ctx)
        seconds = time.perf_counter() - t0
        out.append({"kind": "table", "technique": tech, "seconds": seconds, "layers": len(table.layers),
                    "candidates": len(table.candidates), "loss": table.loss_kind})  # fmt: skip
        proxy, drop = [], []
        per_value: dict = {v: ([], []) for v in table.candidates}
        for i, name in enumerate(table.layers):
            for j, value in enumerate(table.candidates):
                try:
                    m = sens.perturbed(tech, task.teacher(), name, value, cfg, ctx)
                except InfeasibleError:
                    continue  # a width the forward pins: no model to score (its table entry is inf)
                d = base_acc - score(m.eval(), task)
                proxy.append(table.loss[i][j])
                drop.append(d)
                per_value[value][0].append(table.loss[i][j])
                per_value[value][1].append(d)
        rho = spearmanr(proxy, drop).statistic
        out.append({"kind": "proxy", "technique": tech, "value": "all", "spearman_rho": rho, "pairs": len(proxy),
                    "max_drop_pp": 100 * max(drop)})  # fmt: skip
        # Drops below 0.1 pp (6 of 6,000 samples) are within the measurement's noise: their order is a coin toss.
        big = [(p, d) for p, d in zip(proxy, drop, strict=True) if d >= 0.001]
        if len(big) > 2:
            out.append({"kind": "proxy", "technique": tech, "value": "drop>=0.1pp",
                        "spearman_rho": spearmanr(*zip(*big, strict=True)).statistic, "pairs": len(big),
                        "max_drop_pp": 100 * max(drop)})  # fmt: skip
        for value, (p, d) in per_value.items():
            out.append({"kind": "proxy", "technique": tech, "value": value,
                        "spearman_rho": spearmanr(p, d).statistic if len(set(d)) > 1 else None,
                        "pairs": len(p), "max_drop_pp": 100 * max(d)})  # fmt: skip
        print(f"{tech}: table {seconds:.1f} s; proxy rho {rho:.3f} over {len(proxy)} pairs", flush=True)
        heatmap(table, tech)
    out += allocator_checks(model, ctx)
    return out


def _empty():
    from autoslim.plan import CompressionPlan

    return CompressionPlan()


def allocator_checks(model, ctx) -> list[dict]:
    from autoslim.cost.layers import layer_stats
    from autoslim.policy.resolve import _layer_cost, _row

    tech = get_technique("quantize")
    cfg = tech.make_config({"act_bits": 8})
    policy = tech.layer_policy
    table = sens.sensitivity_table("quantize", policy.candidates, tech.make_config({}), ctx)
    stats = {s.name: s for s in layer_stats(model, ctx.example_inputs)}
    mcu = get_profile(MCU)
    names = [n for n, _ in weight_layers(model) if n in stats]
    options = [[(_layer_cost(policy.restat(stats[n], v, cfg), mcu, "model_bytes", False), _row(table, n)[v])
                for v in policy.candidates] for n in names]  # fmt: skip
    full = sum(_layer_cost(stats[n], mcu, "model_bytes", False) for n in names)
    rows = []
    for share in (0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3):
        got = {}
        for method in ("lagrangian", "dp"):
            t0 = time.perf_counter()
            a = allocate(options, share * full, method=method)
            got[method] = (a, time.perf_counter() - t0)
        lag, dp = got["lagrangian"][0], got["dp"][0]
        rows.append({"kind": "allocator", "technique": "quantize", "value": share, "lagrangian_loss": lag.loss,
                     "dp_loss": dp.loss, "lagrangian_ms": 1e3 * got["lagrangian"][1], "dp_ms": 1e3 * got["dp"][1],
                     "gap": (lag.loss - dp.loss) / dp.loss if dp.loss else 0.0, "fits": lag.fits})  # fmt: skip
    return rows


def heatmap(table, tech: str) -> None:
    heatmap_png(table, OUT / f"policies_sensitivity_{re.sub(r'[^a-z]', '_', tech)}.png")


COLORS = {"per-layer": "#dd8452", "uniform": "#4c72b0"}  # the same in the bars and the line plot


def plot(df: pd.DataFrame) -> None:
    profiles = list(dict.fromkeys(df["profile"]))
    # The bars compare like with like: the seeds both spaces ran (the criterion's mean of 3), not every seed.
    both = set.intersection(*(set(g["seed"]) for _, g in df.groupby("space")))
    fig, axes = plt.subplots(1, len(profiles) + 1, figsize=(3.6 * (len(profiles) + 1), 3.6), dpi=100)
    for ax, p in zip(axes, profiles, strict=False):
        sub = df[(df["profile"] == p) & df["seed"].isin(both)].groupby("space")["hypervolume"]
        means = sub.mean()
        ax.bar(means.index, means.values, yerr=sub.std().fillna(0).values,
               color=[COLORS.get(s, "grey") for s in means.index])  # fmt: skip
        lo = sub.min().min()
        ax.set_ylim(lo * 0.995, sub.max().max() * 1.002)
        ax.set_title(f"{p}: hypervolume (seeds {min(both)}-{max(both)})", fontsize=9)
    mcu = df[df["profile"] == MCU]
    for label, sub in mcu.groupby("space"):
        axes[-1].plot(sub["seed"], sub["best_1pp_x"], "o-", label=label, color=COLORS.get(str(label), "grey"))
    axes[-1].axhline(100, color="grey", ls=":")
    axes[-1].set_title("mcu bytes: smallest <= 1 pp (x smaller)", fontsize=9)
    axes[-1].set_xlabel("seed")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "policies.png")


def zoo(models: list[str], budget: int, workers: int, seeds: list[int], spaces: list[str], resume: bool = False,
        rungs: str | None = None) -> pd.DataFrame:  # fmt: skip
    """Both spaces per model and seed. Rows already in policies_zoo.csv for other (model, space, seed) are kept, so
    a slow model can be measured a seed and a space at a time; ``resume`` continues an interrupted study (its
    wall_s is then this call's only) instead of starting it again. ``rungs`` (restart / continue) runs both spaces
    as multi-fidelity searches (1/9, 1/3, 1; eta 3; hypervolume rule) with that fine-tune: the budget still
    counts plans, so the comparison stays at the same budget, in less time on a model whose trials take minutes."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from real_models import SPACES, profiles_for, space_for

    csv = OUT / "policies_zoo.csv"
    earlier = pd.read_csv(csv) if csv.exists() else pd.DataFrame(columns=["model", "space", "seed"])
    runs = set(itertools.product(models, spaces, seeds, [rungs or "none"]))
    ladders = earlier["rungs"].fillna("none") if "rungs" in earlier else ["none"] * len(earlier)
    keys = zip(earlier["model"], earlier["space"], earlier["seed"], ladders, strict=True)
    keep = [(m, sp, int(se), lad) not in runs for m, sp, se, lad in keys]
    rows: list[dict] = earlier[keep].to_dict("records")
    for model in models:
        name = space_for(model)
        data = yaml.safe_load((SPACES / f"{name}.yaml").read_text())
        profiles = profiles_for(name)
        per_layer = copy.deepcopy(data)
        # Every target is a share of what the step receives (target_of: input), so a step after a cut or a pruning
        # still has work to do. Bits are allocated for the bytes profiles only: on the int8 CPUs and GPUs the cost
        # model gives weights below 8 bits no faster kernel, so a latency target would allocate int8 everywhere.
        by_bytes = [p.name for p in profiles if p.objective == "model_bytes"] or [p.name for p in profiles]
        per_layer["techniques"]["quantize"] |= {"policy": ["uniform", "sensitivity"], "target_of": "input",
                                                "target": {"float": [0.06, 0.26], "log": True},
                                                "target_profiles": by_bytes}  # fmt: skip
        for tech in ("prune.structured", "factorize.lowrank"):  # the latency levers, for any profile's target
            if tech in per_layer["techniques"]:
                per_layer["techniques"][tech] |= {"policy": ["uniform", "sensitivity"], "target_of": "input",
                                                  "target": {"float": [0.1, 0.8], "log": True}}  # fmt: skip
        bodies = {"uniform": data, "per-layer": per_layer}
        if rungs is not None:
            for body in bodies.values():
                body["rungs"] = {"rule": "hypervolume", "fine_tune": rungs}
        for seed, label in itertools.product(seeds, spaces):
            body = bodies[label]
            study = f"{model}-{label}-s{seed}" + (f"-mf-{rungs}" if rungs else "")
            if not resume:
                shutil.rmtree(RUNS / study, ignore_errors=True)
            t0 = time.perf_counter()
            cfg = SearchConfig(space=space_from_dict(body, source=f"{name}-{label}"), profiles=profiles,
                               budget=budget, task=model, study=study, results_dir=RUNS, seed=seed,
                               workers=workers)  # fmt: skip
            outcome = run_search(cfg)
            if outcome.interrupted:  # a stopped study is not a row: --zoo-resume finishes it, then it is written
                print(f"{study}: interrupted after {outcome.ran} trial(s); not written", flush=True)
                return pd.DataFrame(rows)
            for r in search_rows(outcome.trials, profiles, label, seed, time.perf_counter() - t0):
                rows.append({"model": model, **r, "rungs": rungs or "none"})
            print(f"{study}: {time.perf_counter() - t0:.0f} s", flush=True)
            pd.DataFrame(rows).sort_values(["model", "space", "seed"], kind="stable").to_csv(csv, index=False)
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--uniform-seeds", type=int, default=3)
    ap.add_argument("--seed-list", default=None, help="comma-separated seeds of the per-layer space (pilots)")
    ap.add_argument("--csv", default="policies.csv", help="file name under results/benchmarks/ for the searches")
    ap.add_argument("--budget", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", choices=("table", "search", "plot"), default=None,
                    help="plot: redraw policies.png from the searches' CSV (--csv), running nothing")  # fmt: skip
    ap.add_argument("--zoo", default=None, help="comma-separated zoo models: run only the zoo comparison")
    ap.add_argument("--zoo-seeds", type=int, default=3, help="sampler seeds per zoo model and space")
    ap.add_argument("--zoo-seed-list", default=None, help="comma-separated seeds instead of 0 .. --zoo-seeds - 1")
    ap.add_argument("--zoo-spaces", default="uniform,per-layer", help="which of the two spaces to run")
    ap.add_argument("--zoo-resume", action="store_true", help="continue interrupted zoo studies, not restart them")
    ap.add_argument("--zoo-budget", type=int, default=30, help="trials per zoo search (recipes and baseline included)")
    ap.add_argument("--zoo-rungs", choices=["restart", "continue"], default=None,
                    help="run both zoo spaces as multi-fidelity searches with rungs of this fine-tune")  # fmt: skip
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.only == "plot":
        plot(pd.read_csv(OUT / args.csv))
        return
    if args.zoo:
        seeds = [int(x) for x in args.zoo_seed_list.split(",")] if args.zoo_seed_list else list(range(args.zoo_seeds))
        df = zoo(args.zoo.split(","), args.zoo_budget, args.workers, seeds, args.zoo_spaces.split(","),
                 args.zoo_resume, args.zoo_rungs)  # fmt: skip
        print(df.pivot_table(index=["model", "profile"], columns="space", values=["hypervolume", "best_1pp_x"]))
        return
    if args.only != "search":
        rows = table_checks()
        pd.DataFrame(rows).to_csv(OUT / "policies_table.csv", index=False)
        print(pd.DataFrame(rows).to_string())
    if args.only != "table":
        df = searches(args)
        summary = df.groupby(["profile", "space"])[["hypervolume", "best_1pp_x"]].agg(["mean", "min"])
        print(summary.round(4).to_string())
        plot(df)


if __name__ == "__main__":
    main()
