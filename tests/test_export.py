"""export: a trial's saved plan rebuilds its model bit for bit; every format runs within 0.5 pp of the record."""

from __future__ import annotations

import json
import os
from pathlib import Path

import optuna
import pytest
import torch
from typer.testing import CliRunner

from autoslim import export
from autoslim.cli import app
from autoslim.cost import get_profile
from autoslim.evaluate import evaluate
from autoslim.export import ExportError, export_trial, load_state_dict_artifact
from autoslim.plan import CompressionPlan
from autoslim.report.pick import Query
from autoslim.search import SearchConfig, load_space, run_search
from autoslim.tasks import load_task
from autoslim.trial import build_model
from tests.conftest import TINY_PROFILES, TINY_SPACE, TINY_TASK, write_space

KD = {"epochs": 1, "batch_size": 64}
SPACE = {
    **TINY_SPACE,
    # trial 1: pruned + KD + w8/a8 (an int8 model); trial 2: pruned + KD + 8-bit weights only (a float model)
    "recipes": [
        {"prune.structured": {"ratio": 0.3}, "distill.kd": KD, "quantize": {"weight_bits": 8, "act_bits": 8}},
        {"prune.structured": {"ratio": 0.3}, "distill.kd": KD, "quantize": {"weight_bits": 8}},
    ],
}
MANIFEST_FIELDS = {
    "plan", "plan_words", "trial", "seed", "metrics", "recorded_accuracy", "reevaluated_accuracy",
    "artifact_accuracy", "onnxruntime_accuracy", "teacher_sha256", "task", "versions", "format", "agreement_ok",
}  # fmt: skip


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    config = SearchConfig(
        space=load_space(write_space(tmp / "space.yaml", SPACE)), profiles=[get_profile(p) for p in TINY_PROFILES],
        budget=3, task=TINY_TASK, study="s", results_dir=tmp / "results", workers=1, seed=5,
    )  # fmt: skip
    outcome = run_search(config)
    assert (outcome.trials["status"] == "ok").all(), outcome.trials["reason"].tolist()
    return outcome.folder


def _attrs(folder: Path, number: int) -> dict:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(folder / "study.journal")))
    return optuna.load_study(study_name="s", storage=storage).trials[number].user_attrs


def test_the_driver_records_seed_and_threads(study: Path) -> None:
    attrs = _attrs(study, 2)
    assert attrs["seed"] == 5 + 2  # search seed + trial number
    assert attrs["threads"] == torch.get_num_threads()


@pytest.mark.parametrize(("number", "fmt"), [(2, "onnx"), (1, "onnx-int8"), (2, "torchscript"), (2, "state-dict")])
def test_export_reproduces_the_trial(study: Path, tmp_path: Path, number: int, fmt: str) -> None:
    done = export_trial(study, task=TINY_TASK, trial=number, fmt=fmt, out=tmp_path)
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert set(m) >= MANIFEST_FIELDS
    assert m["trial"] == number and m["seed"] == 5 + number and m["seed_source"] == "recorded"
    assert m["reevaluated_accuracy"] == m["recorded_accuracy"] == _attrs(study, number)["accuracy"]
    assert abs(m["artifact_accuracy"] - m["recorded_accuracy"]) <= 0.005 and m["agreement_ok"]
    assert (m["onnxruntime_accuracy"] is not None) == fmt.startswith("onnx")
    assert m["plan"] == _attrs(study, number)["plan"]
    assert set(m["metrics"]["costs"]) == set(TINY_PROFILES)
    assert m["task"] == TINY_TASK and len(m["teacher_sha256"]) == 64
    assert {"autoslim", "torch", "onnx", "onnxruntime", "optuna"} <= set(m["versions"])
    assert done.artifact.exists() and done.artifact.name == m["artifact"]
    assert m["artifact_bytes"] == done.artifact.stat().st_size  # measured: tests/test_export_measure.py
    assert m["measured"]["baseline"]["format"] == m["format"] and m["measured"]["latency_ms"] > 0


def test_state_dict_loads_with_weights_only(study: Path, tmp_path: Path) -> None:
    done = export_trial(study, task=TINY_TASK, trial=2, fmt="state-dict", out=tmp_path, measure=False)
    saved = torch.load(done.artifact, weights_only=True)
    assert set(saved) == {"state_dict", "plan", "seed", "task"}
    assert CompressionPlan.from_dict(saved["plan"]).describe() == done.manifest["plan_words"]
    model = load_state_dict_artifact(done.artifact, load_task(TINY_TASK))
    assert evaluate(model, load_task(TINY_TASK).val) == done.manifest["artifact_accuracy"]


def test_onnx_of_an_int8_plan_is_exported_as_int8(study: Path, tmp_path: Path) -> None:
    done = export_trial(study, task=TINY_TASK, trial=1, fmt="onnx", out=tmp_path, measure=False)
    assert done.manifest["format"] == "onnx-int8" and done.manifest["requested_format"] == "onnx"
    assert done.artifact.name == "model.int8.onnx"


def test_export_by_pick(study: Path, tmp_path: Path) -> None:
    done = export_trial(
        study,
        task=TINY_TASK,
        profile=TINY_PROFILES[1],
        query=Query(max_accuracy_drop=0.05),
        fmt="onnx",
        out=tmp_path,
        measure=False,
    )
    assert done.manifest["trial"] in (0, 1, 2)


def test_bad_trial_numbers_and_choices_say_why(study: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"no trial 7; the study has trials 0\.\.2"):
        export_trial(study, task=TINY_TASK, trial=7, fmt="onnx", out=tmp_path)
    with pytest.raises(ExportError, match="unknown format"):
        export_trial(study, task=TINY_TASK, trial=1, fmt="tflite", out=tmp_path)
    with pytest.raises(ExportError, match="either a trial number or a profile"):
        export_trial(study, task=TINY_TASK, fmt="onnx", out=tmp_path)
    assert not list(tmp_path.iterdir())


def test_cli_exports_and_fails_clearly(study: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    ok = CliRunner().invoke(
        app, ["export", str(study), "--task", TINY_TASK, "--trial", "2", "--format", "onnx", "--out", str(tmp_path)]
    )
    assert ok.exit_code == 0, ok.output
    assert "manifest" in ok.output and (tmp_path / "model.onnx").exists()
    bad = CliRunner().invoke(
        app, ["export", str(study), "--task", TINY_TASK, "--trial", "9", "--format", "onnx", "--out", str(tmp_path)]
    )
    assert bad.exit_code == 1 and "no trial 9" in bad.output


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("AUTOSLIM_CACHE"), reason="needs the default task's teacher cached")
def test_default_task_int8_export_agrees_with_onnxruntime(tmp_path: Path) -> None:
    """Structured pruning + KD + w8/a8 on mnist1d-cnn: the int8 ONNX model agrees with the simulation within 0.5 pp."""
    space = {
        "name": "one-plan", "profiles": ["x86-avx512-vnni"],
        "techniques": {"prune.structured": {"params": {"ratio": 0.5}}, "distill.kd": {"params": {"epochs": 1}},
                       "quantize": {"params": {"weight_bits": 8}}},
        "recipes": [{"prune.structured": {"ratio": 0.5, "importance": "l2"}, "distill.kd": {"epochs": 1},
                     "quantize": {"weight_bits": 8, "act_bits": 8}}],
    }  # fmt: skip
    config = SearchConfig(
        space=load_space(write_space(tmp_path / "space.yaml", space)), profiles=[get_profile("x86-avx512-vnni")],
        budget=2, study="s", results_dir=tmp_path / "results", workers=1,
    )  # fmt: skip
    folder = run_search(config).folder
    done = export_trial(folder, task="mnist1d-cnn", trial=1, fmt="onnx-int8", out=tmp_path / "out")
    m = done.manifest
    assert m["reevaluated_accuracy"] == m["recorded_accuracy"] > 0.9
    assert abs(m["onnxruntime_accuracy"] - m["recorded_accuracy"]) <= 0.005


def test_activation_bits_come_from_the_plan_s_numeric_steps() -> None:
    assert export._act_bits(CompressionPlan.from_params({"quantize": {"act_bits": 8}, "distill.kd": {}})) == 8
    assert export._act_bits(CompressionPlan.from_params({"quantize": {}})) is None
    assert export._act_bits(CompressionPlan.from_params({"prune.unstructured": {}})) is None
    # an earlier step's activation quantization stays on the model through a later weight-only one
    assert export._act_bits(CompressionPlan.from_steps([("quantize", {"act_bits": 8}), ("quantize", {})])) == 8


def test_a_state_dict_rebuild_leaves_out_the_fine_tunes_unless_a_structural_step_follows_them() -> None:
    plain = CompressionPlan.from_params({"prune.structured": {"ratio": 0.3}, "distill.kd": KD, "quantize": {}})
    assert export._architecture_only(plain) == ["distill.kd"]
    repeated = CompressionPlan.from_steps([("prune.structured", {"ratio": 0.3}), ("distill.kd", KD),
                                           ("prune.structured", {"ratio": 0.3}), ("distill.kd", KD)])  # fmt: skip
    assert export._architecture_only(repeated) == []  # the second prune ranks the fine-tuned channels


def test_the_state_dict_of_a_repeated_plan_loads_into_its_rebuilt_architecture(tmp_path: Path) -> None:
    plan = CompressionPlan.from_steps([("prune.structured", {"ratio": 0.3}), ("distill.kd", KD),
                                       ("prune.structured", {"ratio": 0.3}), ("distill.kd", KD)])  # fmt: skip
    task = load_task(TINY_TASK)
    model, _ = build_model(plan, task, seed=0)
    saved = tmp_path / "model.pt"
    torch.save({"state_dict": model.state_dict(), "plan": plan.to_dict(), "seed": 0, "task": TINY_TASK}, saved)
    loaded = load_state_dict_artifact(saved, task)
    x = task.val[0][:16]
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
