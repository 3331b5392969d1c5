"""Per-trial wall time of the default search's own trial mix, inline on one thread: the same plans (the baseline,
the space's recipes and seeded random samples of the default space) built, fine-tuned, scored and priced.

Used side by side on two checkouts to show a change does not slow the default search: run it once per
checkout, alternating, on the same machine (``--src`` imports autoslim from another source tree)::

    python benchmarks/trial_speed.py --label new
    python benchmarks/trial_speed.py --label old --src /tmp/old      # a `git worktree` of the previous commit

Appends to results/benchmarks/trial_speed.csv (label, plan, seconds, accuracy).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

OUT = Path("results/benchmarks/trial_speed.csv")


def _use_source(src: str) -> None:
    """Import autoslim from ``src`` rather than the editable install (whose finder would win over sys.path)."""
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()]
    sys.path.insert(0, src)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", required=True)
    ap.add_argument("--src", default=None)
    ap.add_argument("--plans", type=int, default=10, help="random plans after the baseline and recipes")
    args = ap.parse_args()
    if args.src:
        _use_source(args.src)
    import optuna
    import torch

    import autoslim
    from autoslim.cost import get_profile
    from autoslim.plan import CompressionPlan
    from autoslim.search import load_space
    from autoslim.tasks import load_task
    from autoslim.trial import TrialSpec, run_trial

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    root = Path(args.src) if args.src else Path(__file__).resolve().parents[1]
    space = load_space(root / "search_spaces" / "default.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    plans = [CompressionPlan(), *(CompressionPlan.from_params(r) for r in space.recipes)]
    for _ in range(args.plans):
        plans.append(CompressionPlan.from_params(space.sample(study.ask())))
    task = load_task("mnist1d-cnn")
    profiles = tuple(get_profile(p) for p in space.profiles)
    cache: dict = {}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    new_file = not OUT.exists()
    with OUT.open("a", newline="") as fh:
        out = csv.writer(fh)
        if new_file:
            out.writerow(["label", "source", "trial", "plan", "seconds", "accuracy", "status"])
        total = 0.0
        for i, plan in enumerate(plans):
            t0 = time.perf_counter()
            r = run_trial(TrialSpec(plan.to_dict(), profiles, seed=i, number=i), task, cache=cache)
            dt = time.perf_counter() - t0
            total += dt
            out.writerow([args.label, autoslim.__file__, i, plan.describe(), round(dt, 3), r.accuracy, r.status])
    print(f"{args.label}: {len(plans)} trials in {total:.1f} s ({autoslim.__file__})")


if __name__ == "__main__":
    main()
