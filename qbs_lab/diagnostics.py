"""What the user should not have to read on the terminal, kept in one log file instead.

The terminal gets one line per problem; the details go to :func:`log_path` (``$QBS_LAB_LOG``, else
``$XDG_STATE_HOME/qbs_lab/qbs-lab.log``, else ``~/.local/state/qbs_lab/qbs-lab.log``):

- the logging of the libraries we drive (QCoDeS logs a 25-line traceback when an instrument cannot
  be reached, before our own one-line message says the same);
- the traceback of an unexpected error, which the command reports as one line pointing here.
"""

from __future__ import annotations

import logging
import os
import tempfile
import traceback
from datetime import datetime
from pathlib import Path

__all__ = ["LIBRARY_LOGGERS", "log_path", "log_traceback", "route_library_logging"]

#: the third-party loggers whose records go to the log file only
LIBRARY_LOGGERS = ("qcodes", "pyvisa", "pyvisa_py", "pyvisa-py", "pymeasure", "zarr", "numcodecs", "asyncio")


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


class _LazyFileHandler(logging.Handler):
    """Appends records to the log file, opened per record (nothing is created until something logs;
    a log that cannot be written is dropped, never an error of the command)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s  %(name)s %(levelname)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            path = log_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write(text + "\n")
        except Exception:  # a log that cannot be written must not end the command
            pass


def route_library_logging() -> None:
    """Send the libraries' logging, and their warnings (a zarr store's metadata advice, ...), to the
    log file only, not the terminal; idempotent."""
    logging.captureWarnings(True)
    for name in (*LIBRARY_LOGGERS, "py.warnings"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, _LazyFileHandler) for h in logger.handlers):
            logger.addHandler(_LazyFileHandler())
        logger.propagate = False


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
