"""Disk space: telling a full disk apart from other storage errors, and checking room before a run.

A full disk shows up as ``OSError(ENOSPC)`` from a store write (often without a file name: the error
comes from the buffered write, not the open) and as SQLite's "database or disk is full", or a bare
"disk I/O error" when the write-ahead log cannot grow. :func:`disk_full` recognises all of them, so a run
can end with the one line ``no space left on device (path)`` instead of chained tracebacks.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from pathlib import Path

__all__ = [
    "DiskFull",
    "InsufficientSpace",
    "check_free_space",
    "disk_full",
    "free_bytes",
    "storage_reason",
]

#: below this many free bytes, SQLite's unspecific "disk I/O error" is taken for a full disk
_NEARLY_FULL = 1 << 20
_SQLITE_FULL, _SQLITE_IOERR = 13, 10


class DiskFull(OSError):
    """No space left on the device holding ``filename``."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(errno.ENOSPC, "No space left on device", str(path))

    def __str__(self) -> str:
        return f"no space left on device ({self.filename})"


def free_bytes(path: str | Path) -> int:
    """Free bytes for an unprivileged writer on the file system of ``path`` (or its nearest parent)."""
    p = Path(path).resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def disk_full(err: BaseException, path: str | Path) -> DiskFull | None:
    """``err`` as a :class:`DiskFull` naming ``path`` (when the error itself names none), or None."""
    if isinstance(err, DiskFull):
        return err
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(err.filename or path)
    if isinstance(err, sqlite3.DatabaseError):
        code = getattr(err, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        if primary == _SQLITE_FULL or "disk is full" in str(err):
            return DiskFull(path)
        if primary == _SQLITE_IOERR or "disk I/O error" in str(err):
            try:
                if free_bytes(path) < _NEARLY_FULL:
                    return DiskFull(path)
            except OSError:
                return None
    return None


def storage_reason(err: BaseException, path: str | Path) -> str:
    """One line for a storage error: ``no space left on device (path)``, or the error itself."""
    full = disk_full(err, path)
    if full is not None:
        return str(full)
    return f"{type(err).__name__}: {err}"


def check_free_space(data_dir: str | Path, needed: int) -> None:
    """Raise :class:`InsufficientSpace` when ``data_dir`` has less than ``needed`` bytes free."""
    free = free_bytes(data_dir)
    if free < needed:
        raise InsufficientSpace(data_dir, free, needed)


class InsufficientSpace(Exception):
    """Not enough room for a run's store before it starts."""

    def __init__(self, data_dir: str | Path, free: int, needed: int) -> None:
        super().__init__(
            f"{data_dir}: {_mib(free)} free, the run needs about {_mib(needed)} (its store, log and"
            " catalog row); free some space or choose another --data"
        )
        self.free, self.needed = free, needed


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"
