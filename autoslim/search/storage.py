"""Where a study lives: a journal file in its folder (one driver, locked) or an Optuna RDB (``--storage URL``).

With an RDB storage (``sqlite:///study.db``, ``postgresql://user@host/db``) several drivers share one study: the
database hands out trial numbers atomically, so nothing is lost or duplicated. A driver cannot tell another
driver's running trial from a dead one's, so stale trials are found by Optuna's heartbeat: each driver records a
heartbeat for its running trials every ``interval`` seconds, and ``optuna.storages.fail_stale_trials`` fails
those silent for longer than the grace period (their hand recipes are queued again by the callback)::

    storage = rdb_storage("postgresql://me@127.0.0.1:5432/autoslim", heartbeat_s=10)
    beats = Heartbeats(storage); beats.add(trial._trial_id) ... beats.discard(trial._trial_id); beats.stop()
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from typing import Any

import optuna
from optuna.storages import RDBStorage

GRACE_BEATS = 6  # a trial is stale after this many missed heartbeats (a loaded machine may delay a few)


class StorageError(ValueError):
    """The --storage URL cannot be opened; the message names it (password hidden)."""

    exit_code = 2


def shown_url(url: str) -> str:
    """The URL for messages: the password hidden, never printed."""
    try:
        import sqlalchemy

        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # unparsable: show its scheme only, the rest may embed a secret
        return url.split("://", 1)[0] + "://…" if "://" in url else url


def _requeue_stale(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Heartbeat-stale callback: a hand recipe, warm-start plan or the baseline runs again (sampled trials need
    not: the sampler goes on). The stale trial itself stays FAIL, so it never counts toward the budget."""
    attrs = trial.user_attrs
    keep = {k: attrs[k] for k in ("recipe", "warm_start", "baseline") if attrs.get(k)}
    if keep:
        study.enqueue_trial(trial.params, user_attrs={**keep, "requeue_of": trial.number})


def rdb_storage(url: str, *, heartbeat_s: int = 10) -> RDBStorage:
    """An Optuna RDB storage with heartbeats on; a clear ``StorageError`` where the URL cannot be used."""
    if "://" not in url:
        raise StorageError(f"--storage {shown_url(url)}: not a database URL; use e.g. sqlite:///study.db or "
                           "postgresql://USER@HOST:PORT/DB")  # fmt: skip
    # SQLite serializes writers: several drivers wait for the file lock instead of failing at once.
    engine: dict[str, Any] = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        return _open_rdb(url, engine, heartbeat_s)
    except ImportError as exc:
        raise StorageError(f"--storage {shown_url(url)}: its database driver is not installed ({exc}); "
                           "for PostgreSQL: pip install 'psycopg[binary]'") from None  # fmt: skip
    except Exception as exc:  # sqlalchemy's ArgumentError / OperationalError, the server's refusal
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"--storage {shown_url(url)}: cannot open it ({first})") from None


def _open_rdb(url: str, engine: dict[str, Any], heartbeat_s: int, *, tries: int = 5) -> RDBStorage:
    """RDBStorage, retried when drivers started together race to create Optuna's tables: PostgreSQL answers the
    loser's CREATE TABLE with a unique violation (``pg_type_typname_nsp_index``); once the winner's tables exist,
    the retry finds them."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(tries):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(url, engine_kwargs=engine, heartbeat_interval=heartbeat_s,
                                  grace_period=GRACE_BEATS * heartbeat_s,
                                  heartbeat_stale_trial_callback=_requeue_stale)  # fmt: skip
        except (IntegrityError, ProgrammingError):
            if attempt == tries - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def ask(study: optuna.Study) -> optuna.Trial:
    """``study.ask()``, without Optuna's warning that heartbeats are meant for ``optimize``: the driver records
    them itself (``Heartbeats``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed", UserWarning)
        return study.ask()


def fail_stale(study: optuna.Study) -> None:
    """Optuna's heartbeat check: fail trials of dead drivers (a no-op for storages without heartbeats)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


class Heartbeats:
    """One thread recording a heartbeat for each trial this driver runs (Optuna's own heartbeat thread only runs
    inside ``study.optimize``; the driver uses ask / tell)."""

    def __init__(self, storage: optuna.storages.BaseStorage) -> None:
        self._storage = storage if isinstance(storage, RDBStorage) else None
        self._ids: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self._storage is not None:
            interval = self._storage.get_heartbeat_interval()
            self._thread = threading.Thread(target=self._run, args=(interval or 10,), daemon=True)
            self._thread.start()

    def add(self, trial_id: int) -> None:
        if self._storage is not None:
            self._storage.record_heartbeat(trial_id)  # at once: a driver killed right away leaves a stale trial
            self._ids.add(trial_id)

    def discard(self, trial_id: int) -> None:
        self._ids.discard(trial_id)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self, interval: float) -> None:
        assert self._storage is not None
        while not self._stop.wait(interval):
            for trial_id in list(self._ids):
                # A database hiccup: the next beat retries; the grace period spans several beats.
                with contextlib.suppress(Exception):
                    self._storage.record_heartbeat(trial_id)
