"""search_spaces/*.yaml ship inside the wheel (as autoslim/search_spaces), so an installed autoslim finds its
default space from any directory. (.ci/run also installs the wheel into a fresh venv and runs a search.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.robustness.cli_support import assert_no_traceback, run


def test_poor_the_package_list_names_every_package_and_the_spaces() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(REPO_ROOT).parts) for p in (REPO_ROOT / "autoslim").rglob("__init__.py")}
    assert set(config["packages"]) == found | {"autoslim.search_spaces"}
    assert config["package-dir"]["autoslim.search_spaces"] == "search_spaces"
    assert "*.yaml" in config["package-data"]["autoslim.search_spaces"]


def test_poor_the_wheel_holds_the_search_spaces(tmp_path: Path) -> None:
    src = tmp_path / "src"  # a copy: setuptools leaves build/ in the tree it builds
    for name in ("autoslim", "search_spaces"):
        shutil.copytree(REPO_ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, src / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                            str(tmp_path), str(src)], capture_output=True, text=True, timeout=120)  # fmt: skip
    if build.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {build.stderr[-300:]}")
    (wheel,) = tmp_path.glob("autoslim-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.name for p in (REPO_ROOT / "search_spaces").glob("*.yaml")}
    assert shipped and {f"autoslim/search_spaces/{n}" for n in shipped} <= names
    assert "autoslim/cost/profiles/x86-avx512-vnni.yaml" in names


def test_poor_spaces_list_works_from_another_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "400")
    result = run("spaces", "list")
    assert result.exit_code == 0 and "default.yaml" in result.output
    assert_no_traceback(result)
