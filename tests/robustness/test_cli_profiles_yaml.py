"""`profiles show NAME --yaml` prints a profile that `--profile FILE` loads back, for every built-in and host."""

from __future__ import annotations

import dataclasses
import os
import platform
from pathlib import Path

import pytest

from autoslim.cost import builtin_profiles, get_profile
from autoslim.cost.calibrate import save_profile
from tests.robustness.cli_support import assert_no_traceback, run


@pytest.fixture
def host_saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A calibrated host profile in the user folder (as `profiles calibrate` leaves it: measured fields set)."""
    monkeypatch.setenv("AUTOSLIM_PROFILES", str(tmp_path / "profiles"))
    base = builtin_profiles()["x86-avx512-vnni"]
    families = {"conv1d": {"ops_per_s": {"fp32": 2e9}, "overhead_s": {"int8": 1e-6}}}
    host = dataclasses.replace(
        base, name="host", measure_latency=True, activation_bytes_per_s={"fp32": 1e9}, kernel_families=families
    )
    save_profile(host, tmp_path / "profiles" / f"host-{platform.node() or 'local'}-{os.cpu_count()}.yaml")


@pytest.mark.usefixtures("host_saved")
@pytest.mark.parametrize("name", [*sorted(builtin_profiles()), "host"])
def test_poor_profiles_show_yaml_round_trips(tmp_path: Path, name: str) -> None:
    for args in (["--yaml"], []):  # the plain output is YAML too (its header is a comment)
        result = run("profiles", "show", name, *args)
        assert result.exit_code == 0, result.output
        assert_no_traceback(result)
        path = tmp_path / f"{name}.yaml"
        path.write_text(result.output)
        assert get_profile(str(path)) == get_profile(name)
    assert not run("profiles", "show", name, "--yaml").output.startswith("#")
