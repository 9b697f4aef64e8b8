"""A run's end record: how it ended, in a file whose room is taken when the run starts.

``<run_id>-<procedure>.end`` beside the store is written full of spaces when the run starts, so its
blocks are allocated then; at the end the outcome (status, message, time) is written over it in place,
which needs no new block and so works on a full disk (on file systems that overwrite in place: ext4,
xfs, tmpfs). The next command that finds the catalog or the store still saying ``running`` takes the
outcome from here (:func:`qbs_lab.runs.reconcile`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["EndRecord"]

SIZE = 4096


class EndRecord:
    """The end record beside the store at ``store_path``."""

    def __init__(self, store_path: str | Path) -> None:
        self.path = Path(store_path).with_suffix(".end")

    def reserve(self) -> None:
        """Take the room (a run's start); an outcome written before is cleared."""
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, b" " * SIZE, 0)
            os.fsync(fd)
        finally:
            os.close(fd)

    def write(self, **outcome: Any) -> bool:
        """Write the outcome over the reserved room; False when that failed too."""
        data = json.dumps(outcome, default=str).encode()[: SIZE - 1]
        try:
            fd = os.open(self.path, os.O_WRONLY)
        except OSError:
            return False
        try:
            os.pwrite(fd, data.ljust(SIZE), 0)
            os.fsync(fd)
        except OSError:
            return False
        finally:
            os.close(fd)
        return True

    def clear(self) -> None:
        """Blank it again (a resume starts): the room stays taken."""
        self.write()

    def read(self) -> dict[str, Any] | None:
        """The outcome written, or None (none yet, no file, or unreadable)."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace").strip()
            record = json.loads(text) if text else None
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and record else None
