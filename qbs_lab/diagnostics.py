"""The traceback of an unexpected error, kept in a log file: the command reports it as one line
pointing here (the libraries' own logging and warnings are :mod:`qbs_lab.console`'s notes).

The file is :func:`log_path`: ``$QBS_LAB_LOG``, else ``$XDG_STATE_HOME/qbs_lab/qbs-lab.log``, else
``~/.local/state/qbs_lab/qbs-lab.log``.
"""

from __future__ import annotations

import os
import tempfile
import traceback
from datetime import datetime
from pathlib import Path

__all__ = ["log_path", "log_traceback"]


def log_path() -> Path:
    """The log file (its directory is made on first use; a temporary one if the usual is not writable)."""
    if os.environ.get("QBS_LAB_LOG"):
        return Path(os.environ["QBS_LAB_LOG"])
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    path = Path(state) / "qbs_lab" / "qbs-lab.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if os.access(path.parent, os.W_OK):
            return path
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / f"qbs-lab-{os.getuid()}.log"


def log_traceback(err: BaseException, command: str) -> Path | None:
    """Append ``err``'s traceback to the log file; its path (None if it could not be written)."""
    path = log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{datetime.now().astimezone().isoformat(timespec='seconds')}  qbs-lab {command}\n")
            f.write("".join(traceback.format_exception(err)))
    except OSError:
        return None
    return path
