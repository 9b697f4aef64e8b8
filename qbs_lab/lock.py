"""One lab, one runner: an exclusive lock on a station or a data directory.

Whatever drives a station (``run``, ``resume``, ``queue run``, ``station check`` on the instruments)
holds the station's lock, and whatever writes a data directory's runs (the same commands, and
``runs --rebuild``) holds the data directory's, for as long as it works. A second process is refused at
once with one line naming the holder: its pid, its command and since when.

The lock is ``flock(2)`` on a lock file (``.<station file>.lock`` beside the station file,
``qbs-lab.lock`` in the data directory). The kernel releases it when the holder's process ends, however
it ends (SIGKILL, a crash), so a lock is never left behind; the file keeps who held it, so the next
holder can say that it took over from a process that is gone. Within one process the lock is
re-entrant: ``queue run`` holds it and each of its runs takes it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

__all__ = ["LockError", "data_lock", "hold", "set_command", "station_lock"]

_command: str | None = None
_guard = threading.Lock()
# path -> (pid, fd, depth): the locks this process holds (pid: a forked child holds none of them)
_held: dict[str, tuple[int, int, int]] = {}


class LockError(Exception):
    """Another process holds the lock (or the lock file cannot be made); one line."""


def set_command(command: str) -> None:
    """The command line to record as the holder (the CLI sets it; default: ``sys.argv``)."""
    global _command
    _command = command


def _this_command() -> str:
    if _command is not None:
        return _command
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else ["python"]
    return shlex.join(argv)


def station_lock(station_file: str | Path) -> Path:
    """The lock file of a station: hidden, beside its station file."""
    path = Path(station_file).resolve()
    return path.with_name(f".{path.name}.lock")


def data_lock(data_dir: str | Path) -> Path:
    """The lock file of a data directory."""
    return Path(data_dir).resolve() / "qbs-lab.lock"


@contextmanager
def hold(path: Path, what: str, *, note: bool = True) -> Iterator[None]:
    """Hold the lock at ``path`` (``what`` names it in messages: "the station station.yaml") or raise
    :class:`LockError` at once. Prints to stderr when it takes over from a process that is gone."""
    key = str(path)
    with _guard:
        held = _held.get(key)
        if held is not None and held[0] == os.getpid():
            _held[key] = (held[0], held[1], held[2] + 1)
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _guard:
                pid, fd, depth = _held[key]
                _held[key] = (pid, fd, depth - 1)
        return
    fd = _acquire(path, what, note)
    with _guard:
        _held[key] = (os.getpid(), fd, 1)
    try:
        yield
    finally:
        with _guard:
            del _held[key]
        _release(fd)


def _acquire(path: Path, what: str, note: bool) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o664)
    except OSError as err:
        raise LockError(f"{what}: cannot make its lock file {path} ({err.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read(fd)
        os.close(fd)
        who = _describe(holder) if holder else "another process"
        raise LockError(
            f"{what} is in use by {who}; one runner per lab: wait for it to end or stop it first"
        ) from None
    previous = _read(fd)
    if note and previous and previous.get("pid") != os.getpid():
        print(
            f"qbs-lab: note: {what}: took over the lock left by {_describe(previous)}, which is gone",
            file=sys.stderr,
            flush=True,
        )
    record = {"pid": os.getpid(), "command": _this_command(), "since": _now()}
    with contextlib.suppress(OSError):  # a full disk: the lock holds all the same, only unnamed
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
    return fd


def _release(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)  # released cleanly: nobody to take over from
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def _read(fd: int) -> dict[str, object] | None:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        record = json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _describe(record: dict[str, object]) -> str:
    return f"process {record.get('pid')} ({record.get('command')}) since {record.get('since')}"


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")
