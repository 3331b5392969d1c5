"""Per-group channels vs one ratio for all, at matched latency: where can a per-layer policy pay on latency?

    python benchmarks/policies_matched.py [--models zoo-resnet18,zoo-vgg,zoo-bert-cls] [--profile arm-cortex-a76]
    python benchmarks/policies_matched.py --models zoo-minilm-embed --ratios 0.2,0.5,0.8 --targets 0.8,0.5,0.3 \
        --seeds 1 --kd-lr 0.0003 --kd-epoch-steps 30          # the pretrained encoder: ~25 min
                                          [--ratios 0.2,0.35,0.5,0.65,0.8] [--targets 0.8,0.6,0.45,0.3,0.2] [--seeds 2]

Per zoo model:

1. **Response** (no fine-tune, cost only): each latency profile's speed-up over the float model after int8 alone,
   and after 50% / 80% of every group's channels + int8. When channels move latency by a few percent (a small
   model's layers are dispatch overhead), no allocation of channels can buy latency, however well it spends them.
2. **Matched plans**, fine-tuned alike (KD 4 epochs, lr ``--kd-lr`` 0.004, T 4, alpha 0.7; then w8/a8) and scored on the
   validation split, ``--seeds`` trial seeds each:
   - uniform: ``prune.structured`` with one ``ratio`` r for every group, r in ``--ratios``;
   - per-group: ``prune.structured`` with ``policy: sensitivity``, a ratio per group so the model stays under t of
     the input's latency on ``--profile`` (``target_of: input``), t in ``--targets``.
   Both on the same latency axis: per-group wins where its points lie above the uniform curve.

Writes results/benchmarks/policies_matched.csv (``kind`` response / plan; the rows of models not named in
``--models`` are kept) and policies_matched.png (accuracy vs. latency on ``--profile``, one panel per model).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import torch

from autoslim.cost import get_profile
from autoslim.plan import CompressionPlan
from autoslim.tasks import load_task
from autoslim.techniques import InfeasibleError
from autoslim.trial import TrialSpec, build_model, price, run_trial

OUT = Path("results/benchmarks")
LATENCY = ("gpu-a100", "jetson-orin-nano", "x86-avx512-vnni", "arm-cortex-a76", "npu-phone-int8")
KD = {"epochs": 4, "lr": 0.004, "temperature": 4.0, "alpha": 0.7}  # --kd-lr / --kd-epoch-steps change it
INT8 = {"weight_bits": 8, "act_bits": 8}


def response(model: str) -> list[dict]:
    task = load_task(model)
    profiles = [get_profile(n) for n in LATENCY]
    base = price(task.teacher(), task.example_inputs, profiles)
    rows = []
    for label, ratio in (("int8", None), ("50% channels + int8", 0.5), ("80% channels + int8", 0.8)):
        steps = ([("prune.structured", {"ratio": ratio})] if ratio else []) + [("quantize", INT8)]
        try:
            built, _ = build_model(CompressionPlan.from_steps(steps), task)
        except (InfeasibleError, RuntimeError) as exc:  # e.g. a head count torch-pruning cannot divide
            rows += [{"kind": "response", "model": model, "plan": label, "profile": p.name, "speedup": None,
                      "reason": str(exc)[:200]} for p in profiles]  # fmt: skip
            continue
        got = price(built.cpu(), task.example_inputs, profiles)
        rows += [{"kind": "response", "model": model, "plan": label, "profile": p.name,
                  "speedup": base[p.name]["latency_ms"] / got[p.name]["latency_ms"]} for p in profiles]  # fmt: skip
    return rows


def matched(model: str, profile: str, ratios: list[float], targets: list[float], seeds: int, kd: dict) -> list[dict]:
    task = load_task(model)
    profiles = tuple(get_profile(n) for n in (*LATENCY, "mcu-cortex-m7"))
    importance = "l2"
    plans = [("uniform", r, {"ratio": r, "importance": importance}) for r in ratios]
    plans += [("per-group", t, {"policy": "sensitivity", "target": t, "target_profile": profile,
                                "target_of": "input", "importance": importance}) for t in targets]  # fmt: skip
    rows = []
    for label, knob, prune in plans:
        for seed in range(seeds):
            plan = CompressionPlan.from_steps([("prune.structured", prune), ("distill.kd", kd), ("quantize", INT8)])
            res = run_trial(TrialSpec(plan=plan.to_dict(), profiles=profiles, seed=seed), task)
            said = CompressionPlan.from_dict(res.plan).describe() if res.plan else plan.describe()
            row = {"kind": "plan", "model": model, "policy": label, "knob": knob, "seed": seed, "status": res.status,
                   "accuracy": res.accuracy, "seconds": res.duration_s, "plan": said, "reason": res.reason}  # fmt: skip
            for p in profiles:
                row[f"{p.name}.{p.objective}"] = (res.costs or {}).get(p.name, {}).get(p.objective)
            rows.append(row)
            print(f"{model} {label} {knob} s{seed}: {res.status} {res.accuracy} "
                  f"{row.get(f'{profile}.latency_ms')} — {said}", flush=True)  # fmt: skip
    return rows


def plot(df: pd.DataFrame, profile: str, path: Path) -> None:
    plans = df[(df["kind"] == "plan") & (df["status"] == "ok")]
    models = list(dict.fromkeys(plans["model"]))
    # At least 7 inches wide: the suptitle and the y label fit beside a single model's panel
    fig, axes = plt.subplots(1, len(models), figsize=(max(7.0, 4.4 * len(models)), 4.2), squeeze=False, dpi=100)
    col = f"{profile}.latency_ms"
    for ax, model in zip(axes[0], models, strict=True):
        for label, color in (("uniform", "#4c72b0"), ("per-group", "#dd8452")):
            sub = plans[(plans["model"] == model) & (plans["policy"] == label)]
            mean = sub.groupby("knob")[[col, "accuracy"]].mean().sort_values(col)
            ax.scatter(sub[col], 100 * sub["accuracy"], color=color, alpha=0.35, s=14)
            ax.plot(mean[col], 100 * mean["accuracy"], "o-", color=color, label=f"{label} (mean of seeds)")
        ax.set(
            title=model,
            xlabel=f"{profile} latency (ms)",
            ylabel="validation metric (%)\n(accuracy; MiniLM: cosine; CREPE: raw pitch acc.)",
        )
        ax.legend(fontsize=7)
    fig.suptitle("channels per group (sensitivity, latency target) vs. one ratio, each then KD 4 ep + int8", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="zoo-resnet18,zoo-vgg,zoo-bert-cls")
    ap.add_argument("--profile", default="arm-cortex-a76")
    ap.add_argument("--ratios", default="0.2,0.35,0.5,0.65,0.8")
    ap.add_argument("--targets", default="0.8,0.6,0.45,0.3,0.2")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--name", default="policies_matched")
    # a pretrained encoder wants a gentler fine-tune than the CNNs (the transformer space: lr 1e-4 ... 3e-3, an
    # epoch of 30 steps): lr 0.004 took MiniLM's metric to 0.31
    ap.add_argument("--kd-lr", type=float, default=KD["lr"])
    ap.add_argument("--kd-epoch-steps", type=int, default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    OUT.mkdir(parents=True, exist_ok=True)
    models = args.models.split(",")
    csv = OUT / f"{args.name}.csv"
    # Rows of models not rerun are kept: one model can be measured again without the others.
    kept = pd.read_csv(csv) if csv.exists() else pd.DataFrame()
    kept = kept[~kept["model"].isin(models)] if len(kept) else kept
    rows: list[dict] = []
    ratios = [float(x) for x in args.ratios.split(",")]
    targets = [float(x) for x in args.targets.split(",")]
    for model in models:
        rows += response(model)
        kd = {**KD, "lr": args.kd_lr} | ({"epoch_steps": args.kd_epoch_steps} if args.kd_epoch_steps else {})
        rows += matched(model, args.profile, ratios, targets, args.seeds, kd)
        pd.concat([kept, pd.DataFrame(rows)], ignore_index=True).to_csv(csv, index=False)
    df = pd.concat([kept, pd.DataFrame(rows)], ignore_index=True)
    plot(df, args.profile, OUT / f"{args.name}.png")
    resp = df[df["kind"] == "response"].pivot_table(index=["model", "plan"], columns="profile", values="speedup")
    print(resp.round(2).to_string())


if __name__ == "__main__":
    main()
