"""One driver per local journal study: an advisory lock file in the study folder.

A journal file has no notion of "another process is running this study": a second driver would see the first
one's running trials as stale, fail them, and the first would then die telling a finished trial. So a driver
holds ``study.lock`` (``fcntl.flock``) while it runs::

    with StudyLock(folder):      # raises StudyInUseError naming PID, host and start time of the holder
        ...                      # open the journal, ask, tell

The kernel drops a flock when its holder dies (even by ``kill -9``), so a dead driver's lock is simply taken
over; the PID / host / time written inside only serve the message. Several drivers sharing one study use an
RDB storage (``--storage URL``) instead, which needs no lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

LOCK_NAME = "study.lock"


class StudyInUseError(ValueError):
    """Another live driver holds this study's lock."""

    exit_code = 2  # bad input for the CLI: the user named a study that is busy


class StudyLock:
    """An exclusive, non-blocking flock on ``folder/study.lock``; released on exit (or by the kernel on death)."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> StudyLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_NOFOLLOW: a lock file planted as a symlink is not followed (the folder may come from someone else).
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise StudyInUseError(
                f"{self.path.parent}: study in use by PID {holder.get('pid', '?')} on {holder.get('host', '?')} "
                f"since {holder.get('since', '?')}; wait for that search to end (or stop it), or share one study "
                "between drivers with --storage URL"
            ) from None
        # The file is never deleted: unlinking a locked file lets a third driver lock a new inode beside it.
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode() + b"\n", 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.ftruncate(fd, 0)  # an empty lock file: nobody holds it
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> StudyLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _read_holder(fd: int) -> dict:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}  # written half-way at this very moment: the message shows '?'
    return data if isinstance(data, dict) else {}
