"""`autoslim check`: the preflight table (technique, applies, why, size and cost before/after) on the console."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from autoslim.cli import app
from autoslim.tasks import Task
from tests.conftest import TINY_PROFILES, TINY_TASK, write_space

pytestmark = pytest.mark.usefixtures("repo_root_on_path")


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # rich wraps at 80 columns otherwise
    monkeypatch.setenv("AUTOSLIM_CACHE", str(tmp_path / "cache"))


def linear_task() -> Task:
    """One Linear layer: nothing to cut or prune."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 12), torch.randint(0, 4, (64,))
    return Task(name="linear", model=nn.Sequential(nn.Linear(12, 4)).eval(), train=(x, y), val=(x, y),
                example_inputs=x[:2])  # fmt: skip


SPACE = {"name": "check", "techniques": {
    "cut.blocks": {"params": {"n_blocks": {"int": [1, 8]}}},
    "prune.structured": {"params": {"ratio": {"float": [0.2, 0.6]}}},
    "quantize": {"params": {"weight_bits": {"choice": [4, 8]}}},
}}  # fmt: skip


def check(task: str, space: Path, *extra: str):
    args = ["check", "--task", task, "--space", str(space), *(a for p in TINY_PROFILES for a in ("--profile", p))]
    return CliRunner().invoke(app, [*args, *extra])


def rows(output: str) -> dict[str, str]:
    """Table lines by their first cell (the header's is "technique")."""
    lines = [line.replace("┃", "│") for line in output.splitlines()]
    return {line.split("│")[1].strip(): line for line in lines if line.count("│") > 3}


def test_check_prints_the_preflight_table(tmp_path: Path) -> None:
    result = check(TINY_TASK, write_space(tmp_path / "s.yaml", SPACE))
    assert result.exit_code == 0, result.output
    table = rows(result.output)
    assert {"technique", "cut.blocks", "prune.structured", "quantize"} <= set(table)
    for col in ("applies", "why", "params", "x86-avx512-vnni: latency_ms / bytes", "mcu-cortex-m7: bytes"):
        assert col in table["technique"]
    assert "narrowed" in table["cut.blocks"] and "n_blocks narrowed to [1, 4]" in table["cut.blocks"]
    assert "yes" in table["prune.structured"] and "ratio=0.6" in table["prune.structured"]
    assert "→" in table["quantize"] and "26,476 →" in table["quantize"]  # the teacher's bytes, then the model's
    assert "1 narrowed, 0 removed" in result.output


def test_check_says_what_cannot_apply_and_why(tmp_path: Path) -> None:
    result = check("tests.cli.test_check_cli:linear_task", write_space(tmp_path / "s.yaml", SPACE), "--no-cache")
    assert result.exit_code == 0, result.output
    table = rows(result.output)
    assert "no" in table["cut.blocks"] and "no block is removable" in table["cut.blocks"]
    assert "no channel could be removed" in table["prune.structured"]
    assert "yes" in table["quantize"]
    assert "2 removed" in result.output
    assert not (tmp_path / "cache" / "preflight").exists()


def test_check_reports_a_bad_space_with_exit_code_2(tmp_path: Path) -> None:
    bad = write_space(tmp_path / "bad.yaml", {"name": "bad", "techniques": {"nope": {}}})
    result = check(TINY_TASK, bad)
    assert result.exit_code == 2 and "unknown technique" in result.output
