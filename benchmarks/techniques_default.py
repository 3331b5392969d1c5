"""Each technique at its default config on the default teacher: accuracy and bytes before and after.

Runs one `run_trial` per technique (plus the baseline) on mnist1d-cnn; bytes are `model_bytes` on the
mcu-cortex-m7 profile (weights at their stored width, bitmask sparse encoding where smaller), latency on
x86-avx512-vnni. Structural techniques are shown alone and followed by the default distillation fine-tune.

    python benchmarks/techniques_default.py

Writes results/benchmarks/techniques_default.csv.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from autoslim.cost import get_profile
from autoslim.plan import CompressionPlan
from autoslim.tasks import load_task
from autoslim.techniques import list_techniques
from autoslim.trial import TrialSpec, run_trial

OUT = Path("results/benchmarks")
STRUCTURAL = ("cut.blocks", "prune.structured", "factorize.lowrank", "prune.unstructured", "share.weights")


def main() -> None:
    torch.set_num_threads(1)
    task = load_task()
    profiles = (get_profile("mcu-cortex-m7"), get_profile("x86-avx512-vnni"))
    plans: list[dict] = [{}]
    for name in list_techniques():
        plans.append({name: {}})
        if name in STRUCTURAL:
            plans.append({name: {}, "distill.kd": {}})
    cache: dict = {}
    rows = []
    for steps in plans:
        plan = CompressionPlan.from_params(steps)
        r = run_trial(TrialSpec(plan.to_dict(), profiles, seed=0), task, cache=cache)
        rows.append({
            "plan": plan.describe(), "status": r.status, "accuracy": r.accuracy,
            "model_bytes": r.costs.get("mcu-cortex-m7", {}).get("model_bytes"),
            "x86_latency_ms": r.costs.get("x86-avx512-vnni", {}).get("latency_ms"),
            "params": r.params, "seconds": round(r.duration_s, 1),
            "reason": r.reason.splitlines()[0] if r.reason else "",
        })  # fmt: skip
        print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    base = df.iloc[0]
    df["accuracy_change_pp"] = (df["accuracy"] - base["accuracy"]) * 100
    df["bytes_ratio"] = base["model_bytes"] / df["model_bytes"]
    OUT.mkdir(parents=True, exist_ok=True)
    df.to_csv(OUT / "techniques_default.csv", index=False)
    print(df[["plan", "accuracy", "accuracy_change_pp", "model_bytes", "bytes_ratio", "x86_latency_ms"]].round(4)
          .to_string(index=False))  # fmt: skip


if __name__ == "__main__":
    main()
