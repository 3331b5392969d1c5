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


def test_quickstart_timing_is_the_measured_one() -> None:
    """The search time the quickstart promises is the benchmark's last measurement (benchmarks: default 50-trial
    search, idle 2-core machine), stated as a range with the machine: rerun the benchmark, and this says so."""
    import csv

    rows = list(csv.DictReader((ROOT / "results" / "benchmarks" / "default_side_by_side.csv").open()))
    measured = float(rows[-1]["seconds"])
    intro = README.split("## Quickstart", 1)[1].split("```bash", 1)[0]
    text = " ".join(intro.split())
    low, high = (int(x) for x in re.search(r"(\d+)–(\d+) minutes on an idle 2-core", text).groups())
    said = int(re.search(r"the search alone took (\d+) s there with the teacher cached", text).group(1))
    assert said == round(measured), (said, measured)
    assert low * 60 <= measured <= high * 60
    assert "default_side_by_side.csv" in text and "70 s" not in text
