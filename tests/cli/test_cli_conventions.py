"""The CLI follows Typer/rich conventions: every default in --help, fixed choices as choices, --version, a top-level
help for users; one search run as a user runs it (a subprocess in their project folder) shows the rest."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from autoslim.cli import app
from autoslim.cli.options import ExecutorKind, Format, Sampler
from autoslim.export import FORMATS
from autoslim.search.study import SAMPLERS
from tests.conftest import TINY_PROFILES, write_space

ROW = re.compile(r"^│\s+(?:\*\s+)?(--[\w-]+)")  # the first line of an option's row in rich's help panel


def _commands(cmd: Any, path: tuple[str, ...] = ()):
    """Every (sub)command. Typer vendors its own click, so classes are told apart by what they have."""
    yield path, cmd
    if hasattr(cmd, "commands"):
        for name, sub in cmd.commands.items():
            yield from _commands(sub, (*path, name))


def _help(*path: str) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    return result.output


def _option_blocks(text: str) -> dict[str, str]:
    """Each option's row in the help panel, wrapped lines included."""
    blocks: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        match = ROW.match(line)
        if match:
            current = match.group(1)
            blocks[current] = []
        elif not line.startswith("│"):
            current = None
        if current is not None:
            blocks[current].append(line)
    return {k: " ".join(v) for k, v in blocks.items()}


COMMANDS = [path for path, _ in _commands(typer.main.get_command(app))]


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "autoslim")
def test_help_shows_every_default(path: tuple[str, ...]) -> None:
    cmd = dict(_commands(typer.main.get_command(app)))[path]
    blocks = _option_blocks(_help(*path))
    for param in cmd.params:
        if param.param_type_name != "option" or param.name in ("help", "version"):
            continue
        block = blocks[param.opts[0]]
        assert "[default:" in block or "[required]" in block, (path, param.opts[0], block)


def test_rich_markup_does_not_swallow_defaults_or_brackets() -> None:
    text = _help("search")
    assert "[default: (the shipped default.yaml)]" in text and "[default: (one per CPU core)]" in text
    assert "[default: 50]" in text


def test_fixed_choices_are_choices() -> None:
    assert [s.value for s in Sampler] == list(SAMPLERS) and [f.value for f in Format] == list(FORMATS)
    assert [e.value for e in ExecutorKind] == ["inline", "process", "ray"]
    assert "auto|tpe|nsga2|gp|random" in _help("search") and "inline|process|ray" in _help("search")
    assert "onnx|onnx-int8|torchscript|state-dict" in _help("export")


def test_version_and_a_top_level_help_for_users() -> None:
    result = CliRunner().invoke(app, ["--version"])
    from importlib.metadata import version

    assert result.exit_code == 0 and result.output.strip() == f"autoslim {version('autoslim')}"
    text = _help()
    assert "thin Typer" not in text and "Shrink a trained PyTorch model" in text
    assert "autoslim search --budget 50" in text and "autoslim pick results/default" in text


def test_no_query_is_refused_before_the_study_is_read(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["pick", str(tmp_path / "nowhere"), "--profile", "x"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "error: say what to pick: --max-accuracy-drop 0.01" in result.output


PROJECT_TASK = '''
    """A user's task module, beside which `autoslim` runs (no PYTHONPATH): it reports its teacher's training."""
    from autoslim.tasks.progress import report_progress
    from autoslim.testing.tiny import tiny_task


    def my_task():
        for epoch in (1, 2, 3):
            report_progress("my-model teacher", epoch, 3, f"val accuracy {0.8 + epoch / 100:.2%}", epoch * 0.5)
        return tiny_task()
'''


@pytest.fixture(scope="module")
def project_search(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """`autoslim search --task mypkg.tasks:my_task` run in the folder holding mypkg/, output not a terminal."""
    project = tmp_path_factory.mktemp("project")
    (project / "mypkg").mkdir()
    (project / "mypkg" / "__init__.py").write_text("")
    (project / "mypkg" / "tasks.py").write_text(textwrap.dedent(PROJECT_TASK))
    space = {"name": "tiny", "profiles": TINY_PROFILES,
             "techniques": {"cut.blocks": {"when": "optional", "params": {"n_blocks": 99}},
                            "prune.unstructured": {"params": {"amount": {"float": [0.3, 0.8]}}},
                            "quantize": {"params": {"weight_bits": {"choice": [4, 8]}}}},
             "recipes": [{"quantize": {"weight_bits": 8, "act_bits": 8}},
                         {"cut.blocks": {"n_blocks": 99}}]}  # fmt: skip
    write_space(project / "space.yaml", space)
    env = {"PATH": str(Path(sys.executable).parent), "COLUMNS": "200", "HOME": str(project),
           "AUTOSLIM_CACHE": str(project / "cache")}  # fmt: skip
    command = [sys.executable, "-W", "default", "-c", "from autoslim.cli import main; main()", "search",
               "--budget", "4", "--task", "mypkg.tasks:my_task", "--space", "space.yaml", "--workers", "1",
               "--no-preflight"]  # fmt: skip
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return project, done


def test_a_task_module_imports_from_the_current_directory(project_search) -> None:
    project, _ = project_search
    assert len(pd.read_csv(project / "results" / "default" / "trials.csv")) == 4


def test_optuna_experimental_warnings_are_silenced(project_search) -> None:
    _, done = project_search
    assert "ExperimentalWarning" not in done.stderr, done.stderr


def test_the_teacher_s_own_progress_is_shown(project_search) -> None:
    _, done = project_search
    for epoch in (1, 2, 3):
        assert f"my-model teacher: epoch {epoch}/3, val accuracy {80 + epoch:.2f}%" in done.stdout


def test_log_lines_tables_and_csv_number_trials_alike(project_search) -> None:
    project, done = project_search
    logged = [int(n) for n in re.findall(r"^trial (\d+): ", done.stdout, flags=re.M)]
    assert logged == pd.read_csv(project / "results" / "default" / "trials.csv")["trial"].tolist() == [0, 1, 2, 3]


def test_the_end_of_a_search_says_what_next(project_search) -> None:
    _, done = project_search
    out = done.stdout
    assert "the best point within 1 pp of it, per profile:" in out
    assert f"report: {Path('results') / 'default' / 'report.html'}" in out
    pick = re.search(r"^next: (autoslim pick .+)$", out, flags=re.M)
    export = re.search(r"^\s+(autoslim export .+)$", out, flags=re.M)
    assert pick and export, out
    assert "--task mypkg.tasks:my_task --trial" in export.group(1)
    # failures in words, reasons whole (the cut.blocks recipe cannot remove 99 blocks)
    assert re.search(r"1 trial\(s\) did not finish ok \(1 infeasible\); most common reasons:", out), out
    assert "{'" not in out


def test_the_printed_commands_run_as_printed(project_search) -> None:
    project, done = project_search
    env = {"PATH": str(Path(sys.executable).parent), "COLUMNS": "200", "HOME": str(project),
           "AUTOSLIM_CACHE": str(project / "cache")}  # fmt: skip
    pick = re.search(r"^next: autoslim (pick .+)$", done.stdout, flags=re.M)
    export = re.search(r"^\s+autoslim (export .+)$", done.stdout, flags=re.M)
    assert pick and export
    for line in (pick.group(1), export.group(1)):
        args = [sys.executable, "-c", "from autoslim.cli import main; main()", *shlex.split(line)]
        ran = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True, timeout=300)
        assert ran.returncode == 0, ran.stdout + ran.stderr
    assert (project / "deploy" / "manifest.json").is_file()
