"""Who is training a run folder: a lock held for the life of the training process.

A run killed with ``kill -9`` (or by a power cut) cannot write that it ended, so its
metrics say "running" forever.  The training process holds ``RUN/.lock`` with
``fcntl.flock``; the operating system releases it when the process dies, however it
dies.  A reader that can take the lock knows nobody trains the run any more: the run
was interrupted and can be resumed.  Where ``flock`` is missing (Windows) or refused
(some network disks), the holder touches the file as a heartbeat instead, and a
heartbeat older than ``HEARTBEAT_STALE_S`` means the process is gone.  The file's
content says which of the two a reader must trust.  The file is never deleted: a
process opening it while another deletes it would lock a different file.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from ssl_studio.regular_file import open_own_regular, open_regular, read_regular

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_NAME = ".lock"
HEARTBEAT_S = 10.0
HEARTBEAT_STALE_S = 120.0
NO_LOCK_STALE_S = 600.0  # run folders written before the lock existed: quiet this long means gone


class RunBusyError(Exception):
    """Another live process holds the run folder's lock."""


class RunLock:
    """Held by the process that trains a run folder; ``release`` (or the process's death) frees it."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fh = None
        self.mode = "flock"
        self._last_beat = 0.0

    def acquire(self) -> "RunLock":
        """Take the lock; ``RunBusyError`` if a live process holds it, ``OSError`` if the file cannot be made
        (``NotRegularFile`` when a folder, pipe, device or link stands in its place: the lock never writes through one)."""
        fd = open_own_regular(self.path, os.O_RDWR | os.O_CREAT)
        fh = os.fdopen(fd, "r+", encoding="utf-8")
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise RunBusyError(str(self.path)) from None
                except OSError:  # ENOLCK, EOPNOTSUPP: a disk without flock
                    self.mode = "heartbeat"
            else:
                self.mode = "heartbeat"
            if self.mode == "heartbeat" and heartbeat_fresh(self.path):
                raise RunBusyError(str(self.path))
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "mode": self.mode, "since": time.time()}))
            fh.flush()
        except BaseException:
            fh.close()
            raise
        self._fh = fh
        self._last_beat = time.monotonic()
        return self

    def beat(self) -> None:
        """Heartbeat mode only: touch the file now and then (cheap; never raises)."""
        if self._fh is None or self.mode != "heartbeat" or time.monotonic() - self._last_beat < HEARTBEAT_S:
            return
        self._last_beat = time.monotonic()
        try:
            os.utime(self.path)
        except OSError:
            pass

    def release(self) -> None:
        fh, self._fh = self._fh, None
        if fh is None:
            return
        try:
            if self.mode == "heartbeat":
                os.utime(self.path, (0, 0))  # stale at once: the run is over
            fh.close()  # closing the descriptor releases the flock
        except OSError:
            pass


def heartbeat_fresh(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime < HEARTBEAT_STALE_S
    except OSError:
        return False


def _mode(path: Path) -> str:
    try:
        return str(json.loads(read_regular(path).decode("utf-8")).get("mode", "flock"))
    except (OSError, ValueError, AttributeError):
        return "flock"


def run_is_live(run_dir: str | Path) -> bool:
    """Whether a process is training ``run_dir`` right now (on this machine, or on a disk that shares flock)."""
    run_dir = Path(run_dir)
    path = run_dir / LOCK_NAME
    if not path.is_file():
        if os.path.lexists(path):  # a folder, pipe or link in its place: no process can hold that lock
            return False
        try:  # written before the lock existed: alive while it keeps writing metrics
            return time.time() - (run_dir / "metrics.jsonl").stat().st_mtime < NO_LOCK_STALE_S
        except OSError:
            return False
    if fcntl is None or _mode(path) == "heartbeat":
        return heartbeat_fresh(path)
    try:
        fh = open_regular(path)
    except OSError:
        return heartbeat_fresh(path)
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return heartbeat_fresh(path)
    else:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return False
    finally:
        fh.close()
