"""export for people: the runtime is checked before the rebuild, the artifact's size on disk and its latency here are
printed and recorded beside the teacher exported the same way, a trial on no front warns, and a failed export
leaves no empty folder behind."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autoslim import export
from autoslim.cli import app
from autoslim.export import ExportError, export_trial
from autoslim.export_checks import MissingRuntimeError
from autoslim.report.pick import MissingQueryError, Query
from tests.conftest import TINY_PROFILES, TINY_TASK, write_space
from tests.robustness.conftest import FAST_SPACE

MCU = TINY_PROFILES[1]


def run(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "300"})


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("measure")
    space = write_space(tmp / "fast.yaml", FAST_SPACE)
    result = run("search", "--budget", "6", "--task", TINY_TASK, "--space", str(space), "--results",
                 str(tmp / "results"), "--study", "m", "--workers", "1", "--no-preflight")  # fmt: skip
    assert result.exit_code == 0, result.output
    return tmp / "results" / "m"


@pytest.mark.parametrize("fmt", ["onnx-int8", "torchscript"])
def test_export_records_size_on_disk_and_latency_beside_the_teacher(study: Path, tmp_path: Path, fmt: str) -> None:
    result = run("export", str(study), "--task", TINY_TASK, "--trial", "1", "--profile", MCU, "--format", fmt,
                 "--out", str(tmp_path))  # fmt: skip
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["artifact_bytes"] == (tmp_path / m["artifact"]).stat().st_size
    x = m["measured"]
    assert x["artifact_bytes"] == m["artifact_bytes"] and x["latency_ms"] > 0
    assert x["timing"]["batch"] == 1 and x["timing"]["threads"] == 1 and x["timing"]["runs"] >= 20
    assert x["timing"]["runtime"].startswith("onnxruntime" if fmt == "onnx-int8" else "torch")
    base = x["baseline"]
    assert base["format"] == m["format"] and base["artifact_bytes"] > 0 and base["latency_ms"] > 0
    assert x["vs_baseline"]["smaller"] == pytest.approx(base["artifact_bytes"] / m["artifact_bytes"])
    assert x["machine"]["cores"] and x["machine"]["cpu"]
    assert f"on disk {m['artifact_bytes'] / 1000:.3g} KB ({m['artifact_bytes']:,} B)" in result.output
    assert "the teacher exported the same way" in result.output and "latency here" in result.output


def test_the_batch_is_the_profile_s(study: Path, tmp_path: Path) -> None:
    done = export_trial(study, task=TINY_TASK, trial=1, profile="x86-avx512-vnni", fmt="onnx", out=tmp_path)
    assert done.manifest["measured"]["timing"]["batch"] == 1
    assert done.manifest["measured"]["baseline"]["timing"]["batch"] == 1


def test_a_trial_on_no_front_warns(study: Path, tmp_path: Path) -> None:
    from autoslim.report.results import open_results

    results = open_results(study)
    on_front = {int(n) for p in TINY_PROFILES for n in results.front(p)["trial"]}
    ok = set(results.trials[results.trials["status"] == "ok"]["trial"].astype(int))
    off = sorted(ok - on_front)
    if not off:
        pytest.skip("every finished trial of this study is on a front")
    result = run("export", str(study), "--task", TINY_TASK, "--trial", str(off[0]), "--format", "state-dict",
                 "--out", str(tmp_path), "--no-measure")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"warning: trial {off[0]} is not on any profile's front" in result.output
    assert json.loads((tmp_path / "manifest.json").read_text())["measured"] is None
    on = run("export", str(study), "--task", TINY_TASK, "--trial", str(min(on_front)), "--format", "state-dict",
             "--out", str(tmp_path / "on"), "--no-measure")  # fmt: skip
    assert on.exit_code == 0 and "warning" not in on.output


def test_a_missing_runtime_is_one_line_with_the_install_command(study: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    out = tmp_path / "deploy"
    result = run("export", str(study), "--task", TINY_TASK, "--trial", "1", "--format", "onnx-int8", "--out", str(out))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.strip() == (
        "error: --format onnx-int8 needs onnx, which is not installed here: pip install onnx "
        "(autoslim's own install brings them)"
    )
    assert not out.exists()
    with pytest.raises(MissingRuntimeError):
        export_trial(study, task=TINY_TASK, trial=1, fmt="onnx", out=out)


def test_a_failed_export_leaves_no_empty_folder(study: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(export, "_write_file", broken)
    out = tmp_path / "a" / "b" / "deploy"
    result = run("export", str(study), "--task", TINY_TASK, "--trial", "1", "--format", "onnx", "--out", str(out))
    assert result.exit_code == 1 and "disk full" in result.output
    assert not (tmp_path / "a").exists()
    kept = tmp_path / "mine"
    (kept / "deploy").mkdir(parents=True)
    (kept / "notes.txt").write_text("the user's")
    assert run("export", str(study), "--task", TINY_TASK, "--trial", "1", "--out", str(kept / "deploy")).exit_code == 1
    assert (kept / "deploy").is_dir() and (kept / "notes.txt").exists()  # folders that were there stay


def test_trial_and_pick_options_exclude_each_other(study: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="not both"):
        export_trial(study, task=TINY_TASK, trial=1, profile=MCU, query=Query(max_accuracy_drop=0.01), fmt="onnx",
                     out=tmp_path)  # fmt: skip
    with pytest.raises(MissingQueryError, match="say what to pick"):  # a ValueError: bad input, exit code 2
        export_trial(study, task=TINY_TASK, profile=MCU, fmt="onnx", out=tmp_path)
    result = run("export", str(study), "--task", TINY_TASK, "--profile", MCU, "--out", str(tmp_path))
    assert result.exit_code == 2 and result.output.startswith("error: say what to pick")
    assert not list(tmp_path.iterdir())
