"""A plug-in technique gets everything a built-in gets: the shipped contract, a search, pricing, words, export.

``tests.plugin_technique`` registers ``demo.bias_drop`` from outside the package with no edit to the core.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autoslim.cost import builtin_profiles, estimate_cost, get_profile
from autoslim.export import export_trial, load_state_dict_artifact
from autoslim.plan import CompressionPlan
from autoslim.search import SearchConfig, run_search, space_from_dict
from autoslim.testing import check_technique, no_weight_layers_task
from autoslim.trial import build_model
from tests.conftest import TINY_PROFILES
from tests.plugin_technique import NAME, BiasDropConfig, biased_layers, plugin_task

pytestmark = pytest.mark.usefixtures("repo_root_on_path")

TASK = "tests.plugin_technique:plugin_task"
SPACE = {
    "name": "plugin",
    "profiles": TINY_PROFILES,
    "techniques": {
        NAME: {"when": "always", "params": {"fraction": {"float": [0.3, 1.0]}}},
        "quantize": {"params": {"weight_bits": {"choice": [4, 8]}}},
    },
    "recipes": [{NAME: {"fraction": 0.5}, "quantize": {"weight_bits": 8}}],
}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOSLIM_CACHE", str(tmp_path / "cache"))  # preflight results are cached there


def test_the_plugin_keeps_the_shipped_contract() -> None:
    report = check_technique(NAME, BiasDropConfig(fraction=0.5), infeasible_task=no_weight_layers_task())
    assert report.status == "ok" and report.role == "structural"
    assert report.description == "drop 50% of biases"
    assert set(report.costs) == set(builtin_profiles())
    assert "no Conv or Linear layer" in (report.refused_without_weight_layers or "")


def test_the_plugin_is_priced_smaller_and_described() -> None:
    task = plugin_task()
    plan = CompressionPlan.from_params({"quantize": {"weight_bits": 8}, NAME: {"fraction": 1.0}})
    assert [s.technique for s in plan.steps] == [NAME, "quantize"]  # order 45: before the fine-tune and quantize
    assert plan.describe() == "drop 100% of biases → w8"
    model, ctx = build_model(plan, task)
    assert biased_layers(model) == [] and ctx.notes[NAME]["kept"] == 0
    p = get_profile("mcu-cortex-m7")
    quantized, _ = build_model(CompressionPlan.from_params({"quantize": {"weight_bits": 8}}), task)
    assert (
        estimate_cost(model, task.example_inputs, p).model_bytes
        < estimate_cost(quantized, task.example_inputs, p).model_bytes
    )


def _config(tmp_path: Path, **kw) -> SearchConfig:
    return SearchConfig(
        space=space_from_dict(SPACE), profiles=[get_profile(p) for p in TINY_PROFILES], task=TASK,
        study="plugin", results_dir=tmp_path / "results", **kw,
    )  # fmt: skip


def test_the_plugin_runs_in_a_search_and_its_trials_export(tmp_path: Path) -> None:
    outcome = run_search(_config(tmp_path, budget=3, workers=1))
    df = outcome.trials
    assert (df["status"] == "ok").all(), df["reason"].tolist()
    plugin = df[df["plan"].str.contains("of biases")]
    assert len(plugin) == 2  # the recipe and the sampled trial (`when: always`); the baseline has no steps
    for p in TINY_PROFILES:
        assert plugin[f"{p}.model_bytes"].notna().all() and plugin[f"{p}.latency_ms"].notna().all()
        assert (plugin[f"{p}.model_bytes"] < df.loc[0, f"{p}.model_bytes"]).all()
    assert df.loc[1, "plan"] == "drop 50% of biases → w8"

    onnx = export_trial(outcome.folder, task=TASK, trial=1, fmt="onnx", out=tmp_path / "onnx")
    assert onnx.artifact.stat().st_size > 0 and onnx.manifest["plan_words"] == "drop 50% of biases → w8"
    assert onnx.manifest["artifact_accuracy"] == pytest.approx(onnx.manifest["recorded_accuracy"], abs=0.005)
    saved = export_trial(outcome.folder, task=TASK, trial=2, fmt="state-dict", out=tmp_path / "sd")
    model = load_state_dict_artifact(saved.artifact, plugin_task())
    names = [n for n, _ in biased_layers(model)]
    assert len(names) < len(biased_layers(plugin_task().teacher()))  # the loaded architecture lacks the dropped biases


def test_the_plugin_runs_in_a_worker_process(tmp_path: Path) -> None:
    """A spawned worker imports only the task's module: that registers the plug-in before the first plan."""
    outcome = run_search(_config(tmp_path, budget=2, workers=1, executor="process", preflight=False))
    df = outcome.trials
    assert df["status"].tolist() == ["ok", "ok"], df["reason"].tolist()
    assert df.loc[1, "plan"] == "drop 50% of biases → w8"


def test_a_repeated_plugin_step_runs_twice() -> None:
    plan = CompressionPlan.from_steps([(NAME, {"fraction": 0.5}), ("distill.kd", {"epochs": 1}), (NAME, {})])
    back = CompressionPlan.from_json(plan.to_json())
    assert back == plan and [s.technique for s in back.steps] == [NAME, "distill.kd", NAME]
    task = plugin_task()
    assert len(biased_layers(task.teacher())) == 2  # the two Linear layers; the convolutions have no bias
    seen: list[str] = []
    model, _ = build_model(back, task, on_step=lambda name, m: seen.append(f"{name}:{len(biased_layers(m))}"))
    assert seen == ["teacher:2", f"{NAME}:1", "distill.kd:1", f"{NAME}:0"]  # each step drops at least one bias
    with torch.no_grad():
        assert torch.isfinite(model(task.val[0][:8])).all()
