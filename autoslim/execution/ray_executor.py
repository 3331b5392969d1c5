"""Run trials on a Ray cluster (or a local Ray instance): one actor per slot, each holding the task once.

An in-memory task (every split tensors): the driver materialises the teacher and puts the whole task (weights and
data) into the object store **once**; every actor receives it by reference at start-up and keeps it (and its
teacher-logit cache) for all the trials it runs, so a trial costs one actor call (~0.1 s over inline), not a task
load. A task fed by DataLoaders is not pickled at all when it was named by reference (``module:attr``): each actor
rebuilds it from that reference, as the process executor's workers do, so a dataset that streams from disk or
does not pickle never crosses the wire (the module must then be importable on every node).

A worker that dies mid-trial (killed, out of memory, node lost) is replaced by a fresh actor and its trial runs
once more; a second death records the trial as failed with the reason, and the search goes on.

Ray is optional: ``pip install 'autoslim[ray]'``. Nothing here imports it until an executor is built.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from autoslim.tasks import Task
from autoslim.trial import TrialResult, TrialSpec

INSTALL_HINT = "pip install 'autoslim[ray]'"


def import_ray() -> Any:
    """The ``ray`` module, or an ImportError naming the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}") from exc
    return ray


class TrialWorker:
    """One Ray actor: the task, a per-process cache and a device, kept across trials."""

    def __init__(self, task: Task | str, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        if isinstance(task, str):  # a DataLoader task: rebuilt here from its reference, never pickled
            from autoslim.tasks import load_task

            task = load_task(task)
        self.task = task
        self.cache: dict[str, Any] = {}
        self.device = _assigned_device()

    def pid(self) -> int:
        return os.getpid()

    def run(self, spec: TrialSpec) -> TrialResult:
        from autoslim.trial import run_trial

        result = run_trial(spec, self.task, cache=self.cache, device=self.device)
        result.notes.update(device=self.device, worker_pid=os.getpid())
        return result


def _assigned_device() -> str:
    """The GPU Ray gave this actor (Ray sets CUDA_VISIBLE_DEVICES, so it is ``cuda:0`` here), else the CPU."""
    import ray
    import torch

    return "cuda:0" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"


@dataclass
class _Job:
    spec: TrialSpec
    future: Future[TrialResult]
    attempt: int = 0
    slot: int = -1
    retry_reason: str = ""


class RayExecutor:
    """Executor contract (``slots``, ``submit``, ``close``) over Ray actors.

    Example::

        executor = RayExecutor(load_task("mnist1d-cnn"), address="head:6379", workers=8, gpus_per_trial=1)
        result = executor.submit(spec).result()
        executor.close()

    ``address=None`` starts a local Ray instance on loopback (and stops it on ``close``); ``workers=None`` makes
    one slot per ``cpus_per_trial`` CPUs (or ``gpus_per_trial`` GPUs) in the cluster.
    """

    def __init__(
        self,
        task: Task,
        *,
        address: str | None = None,
        workers: int | None = None,
        cpus_per_trial: float = 1.0,
        gpus_per_trial: float = 0.0,
        retries: int = 1,
        task_ref: str | None = None,
    ) -> None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report leaves this machine
        if address is None:  # a local instance stays on loopback (read when Ray is first imported)
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray = import_ray()
        self._ray = ray
        self.retries = retries
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            _init_ray(ray, address, workers, cpus_per_trial)
        self.slots = workers or _slots_in_cluster(ray.cluster_resources(), cpus_per_trial, gpus_per_trial)
        if task_ref is not None and not task.in_memory:
            self._task_ref: Any = task_ref  # each actor loads it (see the module docstring)
        else:  # the teacher goes in materialised: a factory that reads a local file would fail on another node
            self._task_ref = ray.put(dataclasses.replace(task, model=task.teacher()))
        self.ships = "reference" if isinstance(self._task_ref, str) else "object store"
        self._actor_cls = ray.remote(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_restarts=0)(TrialWorker)
        self._threads = max(1, int(cpus_per_trial))
        self._lock = threading.Lock()
        self._closed = False
        self._actors = [self._new_actor() for _ in range(self.slots)]
        self._free = list(range(self.slots))
        self._waiting: deque[_Job] = deque()
        self._running: dict[Any, _Job] = {}  # ObjectRef -> job
        self._done: queue.Queue[Any] = queue.Queue()  # finished ObjectRefs, None to stop
        self._watcher = threading.Thread(target=self._watch, name="ray-executor", daemon=True)
        self._watcher.start()

    def _new_actor(self) -> Any:
        return self._actor_cls.remote(self._task_ref, self._threads)

    def worker_pids(self) -> list[int]:
        """The process id of every actor (tests kill one mid-trial)."""
        return list(self._ray.get([a.pid.remote() for a in self._actors]))

    def submit(self, spec: TrialSpec) -> Future[TrialResult]:
        job = _Job(spec, Future())
        with self._lock:
            if self._closed:
                raise RuntimeError("executor is closed")
            self._waiting.append(job)
            self._dispatch()
        return job.future

    def _dispatch(self) -> None:  # holds self._lock
        while self._waiting and self._free:
            job = self._waiting.popleft()
            job.slot = self._free.pop()
            ref = self._actors[job.slot].run.remote(job.spec)
            self._running[ref] = job
            # Called from a Ray thread: only hand the ref over, the watcher does the work.
            ref.future().add_done_callback(lambda _f, ref=ref: self._done.put(ref))

    def _watch(self) -> None:
        exceptions = self._ray.exceptions
        died = (exceptions.RayActorError, exceptions.WorkerCrashedError)
        while (ref := self._done.get()) is not None:
            with self._lock:
                job = self._running.pop(ref, None)
                if job is None or self._closed:
                    continue
                try:
                    result: TrialResult | None = self._ray.get(ref)
                except died as exc:
                    result = self._replace_worker(job, exc)
                except Exception as exc:  # e.g. a result that cannot be unpickled
                    result = TrialResult("failed", reason=f"Ray task failed: {type(exc).__name__}: {exc}")
                if result is None:  # resubmitted on the fresh actor
                    continue
                if job.attempt:
                    result.notes["retried_after"] = job.retry_reason
                self._free.append(job.slot)
                self._dispatch()
            job.future.set_result(result)

    def _replace_worker(self, job: _Job, exc: Exception) -> TrialResult | None:  # holds self._lock
        self._ray.kill(self._actors[job.slot], no_restart=True)
        self._actors[job.slot] = self._new_actor()
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if job.attempt < self.retries:
            job.attempt += 1
            job.retry_reason = f"worker died: {type(exc).__name__}: {first_line}"
            self._waiting.appendleft(job)
            self._free.append(job.slot)
            self._dispatch()
            return None
        return TrialResult(
            "failed",
            reason=f"worker died {job.attempt + 1} time(s) running this trial: {type(exc).__name__}: {first_line}",
        )

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            jobs = list(self._waiting) + list(self._running.values())
            self._waiting.clear()
            self._running.clear()
        self._done.put(None)
        self._watcher.join(timeout=10)
        for job in jobs:
            job.future.cancel()
        for actor in self._actors:
            self._ray.kill(actor, no_restart=True)
        if self._owns_ray:  # started or connected here: stop the local instance / disconnect from the cluster
            self._ray.shutdown()


def _init_ray(ray: Any, address: str | None, workers: int | None, cpus_per_trial: float) -> None:
    quiet = {"include_dashboard": False, "logging_level": "WARNING", "configure_logging": True}
    if address:
        ray.init(address=address, **quiet)
        return
    # A local instance on loopback only, big enough for the workers asked for even on a small machine.
    cpus = max(os.cpu_count() or 1, int((workers or 0) * cpus_per_trial + 0.999))
    ray.init(address="local", num_cpus=cpus, _node_ip_address="127.0.0.1", **quiet)  # never an old `ray start`


def _slots_in_cluster(resources: dict[str, float], cpus_per_trial: float, gpus_per_trial: float) -> int:
    by_cpu = int(resources.get("CPU", 1) // cpus_per_trial) if cpus_per_trial > 0 else 1 << 30
    by_gpu = int(resources.get("GPU", 0) // gpus_per_trial) if gpus_per_trial > 0 else 1 << 30
    return max(1, min(by_cpu, by_gpu))
