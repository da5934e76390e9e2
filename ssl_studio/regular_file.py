"""Opening a file the lab reads only when it is a regular file, so that no name can make a read hang or never end.

A run folder, a config or a data folder may hold, under an ordinary name, a named pipe
(opening it waits for a writer that never comes), a device such as a link to ``/dev/zero``
(reading it never ends) or a socket.  ``open_regular`` opens without blocking and checks
the file type of what it opened (not of the name, which could change in between), so a
reader either gets a regular file or ``NotRegularFile``, an ``OSError`` whose text says
what stands there.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO


class NotRegularFile(OSError):
    """What stands under the name is not a regular file (a folder, a named pipe, a device, a socket)."""

    def __init__(self, path: str | Path, what: str):
        super().__init__(errno.EISDIR if what == "a folder" else errno.EINVAL, f"is {what}, not a file", str(path))
        self.what = what


def kind_of(mode: int) -> str | None:
    """None for a regular file, else what it is, in words ("a named pipe", ...)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def special_kind(path: str | Path) -> str | None:
    """What stands at ``path`` (links followed) when it exists and is not a regular file; None otherwise."""
    try:
        return kind_of(os.stat(path).st_mode)
    except (OSError, ValueError):
        return None


def open_regular(path: str | Path) -> BinaryIO:
    """``path`` opened for binary reading; ``NotRegularFile`` (an ``OSError``) when it is not a regular file."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        what = kind_of(os.fstat(fd).st_mode)
        if what is not None:
            raise NotRegularFile(path, what)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def open_own_regular(path: str | Path, flags: int) -> int:
    """A descriptor of ``path`` opened with ``flags`` (e.g. to append or lock) only when it is a regular file reached
    without a link; ``NotRegularFile`` when a link, folder, pipe or device stands there, so a write never goes
    through one (a link would write into the file it names, a pipe nobody reads would block)."""
    path = Path(path)
    try:
        fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError:
        what = "a link" if path.is_symlink() else special_kind(path)
        if what is not None:  # ELOOP for a link, ENXIO for a named pipe nobody reads
            raise NotRegularFile(path, what) from None
        raise
    what = kind_of(os.fstat(fd).st_mode)
    if what is not None:
        os.close(fd)
        raise NotRegularFile(path, what)
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return fd


def read_regular(path: str | Path) -> bytes:
    """The bytes of the regular file at ``path`` (see ``open_regular``)."""
    with open_regular(path) as fh:
        return fh.read()


__all__ = ["NotRegularFile", "kind_of", "open_own_regular", "open_regular", "read_regular", "special_kind"]
