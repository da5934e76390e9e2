"""Writing a run folder's files so that a failed write loses nothing and says what to do in one sentence.

A full, read-only or failing disk must not leave a half-written file holding the
space, must not replace the previous good file, and must end the run with a
sentence naming the run folder (and, where a checkpoint exists to go on from,
``ssl-studio resume RUN``), never a traceback.  Every writer of the run folder goes
through ``atomic_write`` (whole files) or turns its ``OSError`` into a
``RunWriteError`` with ``describe_write_error``.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Callable, IO

from ssl_studio.regular_file import NotRegularFile


class RunWriteError(Exception):
    """A file of the run folder could not be written; ``message`` is the one sentence to show."""

    def __init__(self, message: str, path: Path | None = None, errno_: int | None = None):
        super().__init__(message)
        self.message = message
        self.path = path
        self.errno = errno_


def free_mb(path: str | Path) -> float | None:
    """Free space (MiB) on the disk holding ``path`` or its nearest existing parent; None when unknown."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free / 2**20
    except OSError:
        return None


def describe_write_error(exc: OSError, file: str | Path, run_dir: str | Path, resumable: bool) -> str:
    """One sentence: what failed (named by ``file`` and the run folder) and what to do next."""
    run = str(run_dir)
    then = f"then run ssl-studio resume {run}" if resumable else "then start the run again"
    code = getattr(exc, "errno", None)
    if isinstance(exc, NotRegularFile):
        return f"{file} in {run} is {exc.what}, not a file, so it could not be written; move it away, {then}."
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        mb = free_mb(run_dir)
        free = "free space unknown" if mb is None else f"{mb:.1f} MB free" if mb < 10 else f"{mb:,.0f} MB free"
        quota = " (or your quota on it is used up)" if code != errno.ENOSPC else ""
        return f"The disk holding {run} is full{quota} ({free}), so {file} could not be written; free space, {then}."
    if code == errno.EFBIG:
        return (f"{file} is larger than this process may write (ulimit -f) or the disk holding {run} allows; raise the limit, "
                f"{then}.")
    if code == errno.EROFS:
        return f"The disk holding {run} is read-only, so {file} could not be written; make it writable, {then}."
    if code in (errno.EISDIR, errno.ENOTDIR, errno.EEXIST):
        return f"{file} could not be written because a folder or file stands in its way in {run}; move it away, {then}."
    if code in (errno.EACCES, errno.EPERM):
        return f"Permission denied writing {file}; make {run} writable for you, {then}."
    reason = exc.strerror or type(exc).__name__
    return f"Writing {file} failed ({reason}); check the disk holding {run}, {then}."


def remove_quietly(path: Path) -> None:
    """Delete a temporary file; a failure here must not hide the error that made it useless."""
    try:
        os.unlink(path)
    except OSError:
        pass


def atomic_write(final: Path, write: Callable[[IO[bytes]], None], run_dir: Path, resumable: Callable[[], bool],
                 tmp: Path | None = None, sync: bool = False) -> None:
    """Write ``final`` through a temporary file renamed over it; on any failure the temporary file is
    removed, ``final`` keeps its previous content, and an ``OSError`` becomes a ``RunWriteError``."""
    tmp = tmp or final.with_name(final.name + ".tmp")
    try:
        # a temporary file left behind may be a link or a named pipe (a copied or hostile folder): writing through it
        # would overwrite the file it names, or wait for a reader forever, so it is removed first
        remove_quietly(tmp)
        with open(tmp, "xb") as fh:
            write(fh)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        os.replace(tmp, final)
    except OSError as exc:
        remove_quietly(tmp)
        raise RunWriteError(describe_write_error(exc, _relative(final, run_dir), run_dir, resumable()), final, exc.errno) from None
    except BaseException:
        remove_quietly(tmp)
        raise


def _relative(path: Path, run_dir: Path) -> str:
    try:
        return str(Path(path).relative_to(run_dir))
    except ValueError:
        return str(path)
