"""Walk the README as a new user would: command 1's search (on 2 trials), then every `autoslim` command the README
shows after it, run as written by bash in a fresh folder (the project folder holding `mypkg/` for the commands that
name it). A command that cannot run here is listed in SKIP with the reason; any other new command is walked."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BUDGET = 2

SKIP = {  # a pattern of the command -> why it is not run here
    r"--storage postgresql://": "needs the PostgreSQL server it names (dbhost); tests/robustness run --storage on one",
    r"--ray-address HEAD": "needs the Ray cluster it names (HEAD:6379); tests/execution cover Ray",
}
NOT_AUTOSLIM = ("python3 -m venv", ". .venv/bin/activate", "pip install", "python -m pytest", "ruff ", "mypy ",
                "ray start")  # set-up, the test suite itself and a cluster's own tools  # fmt: skip

# What a user's project holds beside the README's `--task mypkg.tasks:my_task` (the README's own snippet needs their
# model file and loaders): the contract kit's tiny task under that name.
MYPKG = """
    from autoslim.testing.tiny import tiny_task


    def my_task():
        return tiny_task()
"""


def bash_commands(text: str) -> list[str]:
    """Every command of the README's ```bash blocks, in order: continuation lines joined, comments dropped,
    `a && b` split."""
    commands = []
    for block in re.findall(r"```bash\n(.+?)\n```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands += [part.strip() for part in line.split(" && ")]
    return commands


def walk() -> list[str]:
    """Command 1's search, then every autoslim command after it (in README order)."""
    commands = bash_commands(README)
    first = next(i for i, c in enumerate(commands) if c.startswith("autoslim search"))
    return [c for c in commands[first:] if c.startswith("autoslim ")]


def with_budget(command: str) -> str:
    return re.sub(r"--budget \d+", f"--budget {BUDGET}", command)


def test_every_readme_command_is_walked_or_skipped_with_a_reason() -> None:
    for command in bash_commands(README):
        assert command.startswith(("autoslim ", *NOT_AUTOSLIM)), f"unknown README command, walk it: {command}"
    walked = walk()
    assert walked[0] == "autoslim search --budget 50"  # command 1 (after its set-up)
    assert len(walked) > 8


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "COLUMNS": "200"}  # fmt: skip
    env.pop("PYTHONPATH", None)  # as a user's shell has it: `--task mypkg...` must import from the folder
    return subprocess.run(["bash", "-c", with_budget(command)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)  # fmt: skip


def _check(command: str, done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr, done.stderr


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """A fresh folder where command 1's search ran, and a user's project folder holding mypkg/."""
    clone, project = tmp_path_factory.mktemp("clone"), tmp_path_factory.mktemp("project")
    (project / "mypkg").mkdir()
    (project / "mypkg" / "__init__.py").write_text("")
    (project / "mypkg" / "tasks.py").write_text(textwrap.dedent(MYPKG))
    return clone, project, _run(walk()[0], clone)


def _setup(command: str, cwd: Path) -> None:
    """What the README assumes exists before a command: last night's and tonight's studies for `compare`."""
    if "results/last-night results/tonight" in command:
        for name in ("last-night", "tonight"):
            if not (cwd / "results" / name).exists():
                shutil.copytree(cwd / "results" / "default", cwd / "results" / name)


@pytest.mark.slow
@pytest.mark.parametrize("command", walk(), ids=lambda c: c[:70])
def test_the_readme_command_works_as_written(command: str, folders) -> None:
    reason = next((why for pattern, why in SKIP.items() if re.search(pattern, command)), None)
    if reason:
        pytest.skip(reason)
    if "--executor ray" in command and importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (pip install 'autoslim[ray]')")
    clone, project, first = folders
    if command == walk()[0]:
        _check(command, first)  # command 1 ran first, in the fixture: the others read its study
        assert (clone / "results" / "default" / "report.html").is_file()
        return
    cwd = project if "mypkg." in command else clone
    _setup(command, cwd)
    _check(command, _run(command, cwd))
