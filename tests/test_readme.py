"""The README is the front door: its test command is what CI runs, and what it links to exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def quickstart_commands() -> list[str]:
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_quickstart_has_exactly_two_commands_search_then_tests() -> None:
    first, second = quickstart_commands()
    assert first.endswith("autoslim search --budget 50") and "constraints.txt" in first
    assert "pytest" in second and "constraints.txt" in second


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    assert quickstart_commands()[1] in (ROOT / ".ci" / "run").read_text().splitlines()


def test_linked_files_and_images_exist() -> None:
    for target in re.findall(r"\]\(((?!http|#)[^)]+)\)", README):
        assert (ROOT / target).exists(), target
