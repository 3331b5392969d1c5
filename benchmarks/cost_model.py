"""Does the calibrated `host` estimate predict real latency? Estimate vs. measurement on >= 30 compressed models.

Variants: the default mnist1d-cnn teacher and a 2-D residual CNN (3x32x32 input), each under structured pruning
ratios x layer cuts x (float | int8 weights and activations). Estimates come from the analytic roofline with the
`host` profile freshly calibrated on this machine; measurements run each model for real (onnxruntime, 1 thread,
int8 through its integer kernels), median of repeats. Reports Spearman rho and median relative error.

    python benchmarks/cost_model.py

Writes results/benchmarks/cost_model.csv and cost_model.png.
"""

from __future__ import annotations

import copy
import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import torch
from torch import nn

from autoslim.cost.calibrate import calibrate, save_profile
from autoslim.cost.estimate import estimate_cost
from autoslim.cost.measure import measure_latency_ms
from autoslim.plan import CompressionPlan
from autoslim.tasks import load_task
from autoslim.techniques import ApplyContext, get_technique

OUT = Path("results/benchmarks")


class Block2d(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                                  nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


def cnn2d() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), Block2d(32), Block2d(32),
        nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), Block2d(64), Block2d(64),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    ).eval()  # fmt: skip


def variants(model: nn.Module, example: torch.Tensor, calib: torch.Tensor):
    for ratio, cut, int8 in itertools.product((0.0, 0.25, 0.5, 0.7, 0.85), (0, 2), (False, True)):
        steps: dict = {}
        if cut:
            steps["cut.blocks"] = {"n_blocks": cut}
        if ratio:
            steps["prune.structured"] = {"ratio": ratio}
        if int8:
            steps["quantize"] = {"weight_bits": 8, "act_bits": 8}
        plan = CompressionPlan.from_params(steps)
        m = copy.deepcopy(model)
        ctx = ApplyContext(example_inputs=example, calibration_inputs=calib)
        for step in plan.steps:
            m = get_technique(step.technique).apply(m, step.config, ctx)
        yield plan.describe(), m.eval()


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    host = calibrate("host")
    save_profile(host, OUT / "host_profile.yaml")
    task = load_task()
    x2 = torch.randn(256, 3, 32, 32)
    models = [("mnist1d-cnn", task.teacher(), task.example_inputs, task.calibration_inputs()),
              ("cnn2d-32px", cnn2d(), x2[:2], x2)]  # fmt: skip
    rows = []
    for name, model, example, calib in models:
        for words, m in variants(model, example, calib):
            est = estimate_cost(m, example, host).latency_ms
            measured, backend = measure_latency_ms(m, example[:1], calibration_inputs=calib)
            rows.append(
                {"model": name, "plan": words, "estimated_ms": est, "measured_ms": measured, "backend": backend}
            )
            print(f"{name:12s} {words:55s} est {est:.4f} ms  measured {measured:.4f} ms ({backend})", flush=True)
    df = pd.DataFrame(rows)
    df["rel_error"] = (df["estimated_ms"] - df["measured_ms"]).abs() / df["measured_ms"]
    df.to_csv(OUT / "cost_model.csv", index=False)
    rho = df["estimated_ms"].rank().corr(df["measured_ms"].rank())
    per_model = {m: g["estimated_ms"].rank().corr(g["measured_ms"].rank()) for m, g in df.groupby("model")}
    med = df["rel_error"].median()
    print(f"{len(df)} variants: Spearman rho {rho:.3f} (per model {per_model}), median relative error {med:.1%}")
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=110)
    for (name, g), c in zip(df.groupby("model"), ("#1f77b4", "#d62728"), strict=False):
        ax.scatter(g["measured_ms"], g["estimated_ms"], s=22, c=c, label=name)
    lo, hi = (
        df[["measured_ms", "estimated_ms"]].min().min() * 0.8,
        df[["measured_ms", "estimated_ms"]].max().max() * 1.2,
    )
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="estimate = measured")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("measured latency (ms, onnxruntime, 1 thread)")
    ax.set_ylabel("estimated latency (ms, calibrated host profile)")
    ax.set_title(f"host cost model: Spearman {rho:.3f}, median rel. error {med:.0%}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "cost_model.png")


if __name__ == "__main__":
    main()
