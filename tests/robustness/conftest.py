"""Shared set-up of the study-integrity tests: a fast space, a search config, the CLI, and a real PostgreSQL.

The PostgreSQL server is started by the tests themselves (Debian's ``postgresql`` package: ``initdb`` into a
temporary folder, ``pg_ctl start`` listening on 127.0.0.1 only, a Unix socket in that folder) and stopped at the
end; where the binaries or the driver are missing the tests that need it skip with a message saying so.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autoslim.cli import app
from autoslim.cost import get_profile
from autoslim.search import SearchConfig, space_from_dict
from tests.conftest import TINY_PROFILES, TINY_TASK, write_space

# No fine-tune: a trial is ~0.3 s (evaluate + cost), so a test can run tens of them.
FAST_SPACE = {
    "name": "fast",
    "profiles": TINY_PROFILES,
    "techniques": {
        "prune.unstructured": {"params": {"amount": {"float": [0.3, 0.8]}}},
        "quantize": {"params": {"weight_bits": {"choice": [4, 8]}}},
    },
    "recipes": [{"quantize": {"weight_bits": 8}}],
}


@pytest.fixture
def study_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo_root_on_path: Path) -> None:
    """Not autouse (other tests share this folder): ``pytestmark = pytest.mark.usefixtures("study_env")``."""
    monkeypatch.setenv("AUTOSLIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "400")  # rich would wrap messages at 80 columns


def fast_config(results: Path, budget: int, *, space: dict | None = None, **kw) -> SearchConfig:
    return SearchConfig(space=space_from_dict(space or FAST_SPACE, source="fast.yaml"),
                        profiles=[get_profile(p) for p in TINY_PROFILES], budget=budget, task=TINY_TASK,
                        study=kw.pop("study", "s"), results_dir=results, workers=1, preflight=False,
                        **kw)  # fmt: skip


def cli_search(results: Path, space_file: Path, budget: int, *extra: str, study: str = "s"):
    args = ["search", "--budget", str(budget), "--task", TINY_TASK, "--space", str(space_file), "--results",
            str(results), "--study", study, "--workers", "1", "--no-preflight", *extra]  # fmt: skip
    return CliRunner().invoke(app, args)


def cli_command(results: Path, space_file: Path, budget: int, *extra: str, study: str = "s") -> list[str]:
    """The same search as a separate process (for kills, and for drivers that must run side by side)."""
    import sys

    return [sys.executable, "-c", "from autoslim.cli import main; main()", "search", "--budget", str(budget),
            "--task", TINY_TASK, "--space", str(space_file), "--results", str(results), "--study", study,
            "--workers", "1", "--no-preflight", *extra]  # fmt: skip


@pytest.fixture
def fast_space_file(tmp_path: Path) -> Path:
    return write_space(tmp_path / "fast.yaml", FAST_SPACE)


def assert_one_line_error(output: str, *needles: str) -> str:
    """The CLI's answer to bad input: one ``error:`` line naming the input, no traceback."""
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# --- a real PostgreSQL server, on loopback ------------------------------------------------------------------


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))  # Debian keeps them off PATH
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """``postgresql://postgres@127.0.0.1:PORT`` of a throw-away server; stopped (pg_ctl stop -m fast) at the end."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -c constraints.txt -e '.[dev]')")
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found: apt-get install -y postgresql")
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: run it as the package's postgres user
        runuser = shutil.which("runuser")
        try:
            pg_user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the PostgreSQL server")
        if not runuser:
            pytest.skip("running as root and runuser is missing to start PostgreSQL as 'postgres'")
        as_user = [runuser, "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="autoslim-pg-"))
    if as_user:
        os.chown(base, pg_user.pw_uid, pg_user.pw_gid)
    data, port = base / "data", _free_port()

    def run(*cmd: str) -> None:
        subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=120)

    try:
        run(initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        # -h 127.0.0.1: loopback only; -k: the Unix socket stays in our folder; fsync off: a test server.
        run(pg_ctl, "-D", str(data), "-l", str(base / "server.log"), "-w", "-t", "60", "start", "-o",
            f"-h 127.0.0.1 -p {port} -k {base} -c fsync=off -c max_connections=100")  # fmt: skip
    except subprocess.CalledProcessError as exc:
        log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"could not start PostgreSQL: {exc.stderr.decode(errors='replace')[-500:]} {log[-500:]}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "stop", "-m", "fast"], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


_db_numbers = itertools.count()


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A new, empty database on the session's server for each test."""
    import psycopg

    name = f"autoslim_{os.getpid()}_{next(_db_numbers)}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    return f"{postgres_server}/{name}"
