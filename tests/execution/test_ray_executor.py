"""The Ray executor against a real cluster: ``ray start --head`` on loopback (2 CPUs) in its own process group.

The cluster is started once per module and stopped by killing its process group (never ``ray stop``, which would
stop every Ray process of the user). Workers get the repo on PYTHONPATH from the cluster's environment.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from autoslim.cost import get_profile
from autoslim.plan import CompressionPlan
from autoslim.search import Progress, SearchConfig, load_space, run_search
from autoslim.tasks import load_task
from autoslim.trial import TrialSpec, run_trial
from tests.conftest import REPO_ROOT, TINY_PROFILES, TINY_SPACE, TINY_TASK, write_space

# Before Ray is imported: this machine's Ray processes (cluster, drivers) stay on loopback, and the test cluster
# runs without token authentication so every process here can join it.
RAY_LOOPBACK_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}
os.environ.update(RAY_LOOPBACK_ENV)
ray = pytest.importorskip("ray")
from autoslim.execution.ray_executor import RayExecutor, import_ray  # noqa: E402

pytestmark = pytest.mark.usefixtures("repo_root_on_path")

# Every trial but the baseline fine-tunes for a second or two: long enough to kill a worker mid-trial.
SLOW_SPACE = {
    "name": "slow",
    "profiles": TINY_PROFILES,
    "techniques": {
        "prune.unstructured": {"when": "always", "params": {"amount": {"float": [0.3, 0.8]}}},
        "distill.kd": {"when": "always", "params": {"epochs": 25, "batch_size": 32}},
    },
}


COMPLETE = re.compile(r'"state":1[,}]')  # a trial told COMPLETE in Optuna's journal


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_env() -> dict[str, str]:
    return {
        **os.environ,
        **RAY_LOOPBACK_ENV,
        "PYTHONPATH": str(REPO_ROOT),
        "AUTOSLIM_TEST_RAY_WORKER": "1",
    }


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _start_head() -> tuple[subprocess.Popen, int]:
    """``ray start --head --block`` on fresh loopback ports, once its GCS and client server both listen.

    A port ``_free_port`` handed out can be taken by another of Ray's processes before Ray binds it: the client
    server then exits, ``--block`` takes the whole head down with it and this process loses the GCS (pytest exited
    mid-run with status 1, no summary). So the head is only used once both listen; a head that died meanwhile is
    started again on other ports (3 tries)."""
    ray_bin = Path(sys.executable).with_name("ray")
    for _ in range(3):
        port, client_port = _free_port(), _free_port()
        args = [str(ray_bin), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
                "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "false", "--disable-usage-stats",
                "--ray-client-server-port", str(client_port),
                "--dashboard-agent-listen-port", str(_free_port())]  # fmt: skip
        head = subprocess.Popen(args, env=_ray_env(), start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 60
        while head.poll() is None and not (_listening(port) and _listening(client_port)):
            assert time.monotonic() < deadline, "Ray head did not come up in 60 s"
            time.sleep(0.3)
        time.sleep(3.0)  # the head exits a second or so after one of its processes does
        if head.poll() is None:
            return head, port
        _kill_group(head)
    raise AssertionError("ray start --head exited three times")


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A 2-CPU Ray head on 127.0.0.1; yields its address and leaves the test process connected to it."""
    head, port = _start_head()
    address = f"127.0.0.1:{port}"
    try:
        ray.init(address=address, include_dashboard=False, logging_level="WARNING")
        yield address
    finally:
        ray.shutdown()
        _kill_group(head)


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            time.sleep(0.5)  # let the rest of the group (gcs, raylet, workers) take the signal too
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group is left


def _specs(n: int) -> list[TrialSpec]:
    profiles = tuple(get_profile(p) for p in TINY_PROFILES)
    plans = [
        CompressionPlan(),
        CompressionPlan.from_params({"quantize": {"weight_bits": 8, "act_bits": 8}}),
        CompressionPlan.from_params({"prune.unstructured": {"amount": 0.5}, "distill.kd": {"epochs": 1}}),
    ]
    return [TrialSpec(plans[i % len(plans)].to_dict(), profiles, seed=i, number=i) for i in range(n)]


@pytest.mark.slow
def test_ray_trials_match_inline_and_a_worker_dying_twice_fails_the_trial(cluster: str) -> None:
    specs = _specs(3)
    executor = RayExecutor(load_task(TINY_TASK), address=cluster, workers=2)
    try:
        assert executor.slots == 2
        results = [f.result(timeout=120) for f in [executor.submit(s) for s in specs]]
    finally:
        executor.close()
    task = load_task(TINY_TASK)
    for spec, got in zip(specs, results, strict=True):
        want = run_trial(spec, task)
        assert got.status == want.status == "ok", got.reason
        assert got.accuracy == pytest.approx(want.accuracy)
        assert got.costs == want.costs
        assert got.notes["device"] == "cpu"  # no GPU on the cluster: the CPU fallback

    dying = RayExecutor(load_task("tests.execution.ray_tasks:dying_task"), address=cluster, workers=1)
    try:
        result = dying.submit(specs[0]).result(timeout=120)
    finally:
        dying.close()
    assert result.status == "failed"
    assert "worker died 2 time(s)" in result.reason


@pytest.mark.slow
def test_search_on_a_cluster_survives_a_worker_killed_mid_trial(tmp_path: Path, cluster: str) -> None:
    space = load_space(write_space(tmp_path / "slow.yaml", SLOW_SPACE))
    cfg = SearchConfig(space=space, profiles=[get_profile(p) for p in TINY_PROFILES], budget=7, task=TINY_TASK,
                       study="s", results_dir=tmp_path / "results", workers=2, executor="ray",
                       ray_address=cluster)  # fmt: skip
    killed: list[int] = []
    events: list[Progress] = []

    def kill_soon(pid: int) -> None:  # the worker has just been handed its next (slow) trial
        time.sleep(0.5)
        os.kill(pid, signal.SIGKILL)

    def on_progress(p: Progress) -> None:
        events.append(p)
        if p.result is not None and p.done >= 2 and not killed and "worker_pid" in p.result.notes:
            killed.append(p.result.notes["worker_pid"])
            threading.Thread(target=kill_soon, args=(killed[0],), daemon=True).start()

    outcome = run_search(cfg, on_progress=on_progress)

    assert killed, "no worker was killed"
    assert outcome.ran == 7 and not outcome.interrupted
    results = [e.result for e in events if e.result is not None]
    retried = [r for r in results if "retried_after" in r.notes]
    assert len(retried) == 1 and "worker died" in retried[0].notes["retried_after"]
    assert retried[0].notes["worker_pid"] != killed[0]
    trials = pd.read_csv(tmp_path / "results" / "s" / "trials.csv")
    assert trials["trial"].tolist() == list(range(7))  # every finished trial is in the file
    assert (trials["status"] == "ok").all(), trials["reason"].tolist()


@pytest.mark.slow
def test_cli_on_a_cluster_killed_driver_resumes_with_the_same_command(tmp_path: Path, cluster: str) -> None:
    space_file = write_space(tmp_path / "tiny.yaml", TINY_SPACE)
    cmd = [str(Path(sys.executable).with_name("autoslim")), "search", "--budget", "5", "--task", TINY_TASK,
           "--space", str(space_file), "--results", str(tmp_path / "results"), "--study", "s",
           "--executor", "ray", "--ray-address", cluster, "--workers", "2"]  # fmt: skip
    env = {**_ray_env(), "COLUMNS": "400"}
    env.pop("AUTOSLIM_TEST_RAY_WORKER")
    journal = tmp_path / "results" / "s" / "study.journal"
    driver = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while not (journal.exists() and len(COMPLETE.findall(journal.read_text())) >= 2):
        assert driver.poll() is None and time.monotonic() < deadline, driver.stdout and driver.stdout.read()
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver dies without any clean-up
    driver.wait(timeout=10)

    again = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    trials = pd.read_csv(tmp_path / "results" / "s" / "trials.csv")
    finished = trials[trials["status"] != "interrupted"]
    assert len(finished) == 5 and (finished["status"] == "ok").all(), trials["reason"].tolist()
    assert finished["is_baseline"].sum() == 1


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'autoslim\[ray\]'"):
        import_ray()


@pytest.mark.slow
@pytest.mark.usefixtures("repo_root_on_path")
def test_a_dataloader_task_reaches_ray_actors_by_reference_not_by_pickle(cluster: str) -> None:
    from tests.loader_task import loader_task  # its dataset raises when pickled

    ref = "tests.loader_task:loader_task"
    plan = CompressionPlan.from_params({"prune.unstructured": {"amount": 0.5}, "distill.kd": {"epochs": 1}})
    spec = TrialSpec(plan.to_dict(), tuple(get_profile(p) for p in TINY_PROFILES))
    executor = RayExecutor(loader_task(), address=cluster, workers=1, task_ref=ref)
    try:
        assert executor.ships == "reference"
        result = executor.submit(spec).result(timeout=120)
    finally:
        executor.close()
    assert result.status == "ok", result.reason
    assert result.notes["distill.kd"]["loss"].startswith("custom")
