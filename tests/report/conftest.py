"""Studies to report on: a hand-made one (milliseconds: every status, a far-off point, a profile at batch 64) and a
real tiny search (seconds, once per module that asks for it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from autoslim.cost import builtin_profiles, get_profile
from autoslim.report.frame import trials_frame
from autoslim.report.results import StudyResults, open_results
from tests.conftest import REPO_ROOT, TINY_PROFILES, TINY_TASK, write_space

PROFILES = [builtin_profiles()[n] for n in ("x86-avx512-vnni", "mcu-cortex-m7", "gpu-a100")]
GPU = PROFILES[2]
assert GPU.batch_size > 1  # the per-batch labels need one profile served at batch > 1

# (status, accuracy, x86 latency ms, reason, sampled params)
TRIALS = [
    ("ok", 0.95, 1.00, "", {}),  # 0: the baseline
    ("ok", 0.945, 0.50, "", {"quantize": True, "quantize.weight_bits": 8}),
    ("ok", 0.93, 0.25, "", {"quantize": True, "quantize.weight_bits": 4, "prune.structured": False}),
    ("ok", 0.40, 0.10, "", {"prune.structured": True, "prune.structured.ratio": 0.85, "quantize": False}),  # far off
    ("ok", 0.90, 0.60, "", {"prune.structured": True, "prune.structured.ratio": 0.3, "quantize": False}),
    ("infeasible", None, None, "cannot prune layer 3 of 12", {"prune.structured": True}),
    ("infeasible", None, None, "cannot prune layer 7 of 12", {"prune.structured": True}),
    ("stopped", None, None, "accuracy 0.81 after epoch 1 < floor 0.94", {"quantize": False}),
    ("pruned", None, None, "accuracy 0.79 after epoch 2 < floor 0.94", {"quantize": False}),  # before the rename
    ("failed", None, None, "RuntimeError: boom\nTraceback (most recent call last): ...", {"quantize": True}),
]
DISTRIBUTIONS = {
    "quantize": CategoricalDistribution([True, False]),
    "quantize.weight_bits": CategoricalDistribution([4, 8]),
    "prune.structured": CategoricalDistribution([True, False]),
    "prune.structured.ratio": FloatDistribution(0.2, 0.9),
}


def costs(latency_ms: float) -> dict[str, dict]:
    """Costs on every profile for a trial with this x86 latency (the others follow it)."""
    size = int(1_000_000 * latency_ms)
    return {
        "x86-avx512-vnni": {"latency_ms": latency_ms, "model_bytes": size, "peak_activation_bytes": 4096,
                            "macs": 2_000_000, "energy_mj": None, "fits": True, "fit_reason": ""},
        "mcu-cortex-m7": {"latency_ms": 40 * latency_ms, "model_bytes": size, "peak_activation_bytes": 4096,
                          "macs": 2_000_000, "energy_mj": 1.5 * latency_ms, "fits": size < 1_500_000,
                          "fit_reason": "" if size < 1_500_000 else f"model {size:,} B > storage 1,500,000 B"},
        "gpu-a100": {"latency_ms": 0.05 * latency_ms, "model_bytes": size, "peak_activation_bytes": 64 * 4096,
                     "macs": 64 * 2_000_000, "energy_mj": 2.0 * latency_ms, "fits": True, "fit_reason": ""},
    }  # fmt: skip


def handmade_study() -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize", "minimize", "minimize"])
    names = [p.name for p in PROFILES]
    objectives = ["accuracy"] + [f"{p.name}:{p.objective}" for p in PROFILES]
    study.set_user_attr("autoslim", {"task": "mnist1d-cnn", "space": "default", "profiles": names,
                                     "objectives": objectives})  # fmt: skip
    for n, (status, acc, lat, reason, params) in enumerate(TRIALS):
        ok = status == "ok"
        plan = {"steps": [{"technique": "quantize", "config": {}}]} if params.get("quantize") else {"steps": []}
        attrs = {"status": status, "accuracy": acc, "costs": costs(lat) if ok else {}, "reason": reason,
                 "plan_words": "baseline (uncompressed)" if n == 0 else f"plan of trial {n}", "plan": plan,
                 "params": 1000 - 10 * n if ok else None, "duration_s": 1.5 + n, "baseline": n == 0, "seed": n,
                 "threads": 1, "notes": {"device": "cpu"}}  # fmt: skip
        values = [acc, *(costs(lat)[p.name][p.objective] for p in PROFILES)] if ok else None
        state = optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.PRUNED
        study.add_trial(optuna.trial.create_trial(state=state, values=values, params=params, user_attrs=attrs,
                                                  distributions={k: DISTRIBUTIONS[k] for k in params}))  # fmt: skip
    return study


@pytest.fixture
def handmade(tmp_path: Path) -> StudyResults:
    study = handmade_study()
    return StudyResults(tmp_path, study, PROFILES, trials_frame(study, PROFILES))


@pytest.fixture(scope="module")
def tiny_search(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudyResults]:
    """A real 8-trial search of the tiny task (two TINY profiles and gpu-a100), written as `autoslim search` does."""
    from autoslim.search import SearchConfig, load_space, run_search

    tmp = tmp_path_factory.mktemp("tiny_search")
    with pytest.MonkeyPatch.context() as mp:  # as tests.conftest.repo_root_on_path, for a module-scoped fixture
        mp.chdir(REPO_ROOT)
        mp.syspath_prepend(str(REPO_ROOT))
        mp.setenv("PYTHONPATH", str(REPO_ROOT))
        mp.setenv("AUTOSLIM_CACHE", str(tmp / "cache"))
        config = SearchConfig(space=load_space(write_space(tmp / "space.yaml")), budget=8, task=TINY_TASK,
                              profiles=[get_profile(p) for p in [*TINY_PROFILES, "gpu-a100"]], study="s",
                              results_dir=tmp / "results", workers=1)  # fmt: skip
        outcome = run_search(config)
        yield open_results(outcome.folder)
