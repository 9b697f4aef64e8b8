"""A quiet console: instrument connection lines and third-party warnings go to the run log, not the screen.

QCoDeS prints "Connected to: ..." for every instrument it opens and logs a full traceback when one
cannot be reached (our one-line error follows), and libraries warn about things a user cannot act on.
Inside :func:`quiet` such lines are kept as notes (and shown on the console too with ``verbose``,
``qbs-lab -v``); :func:`drain` hands them to whoever writes a run log (the run writes them at its start
and end). Our own lines pass untouched.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import warnings
from collections.abc import Iterator
from typing import TextIO

__all__ = ["drain", "quiet"]

#: lines on stdout that are an instrument's, not ours
_HEAD = "Connected to: "
NOISE = re.compile(rf"^{_HEAD}")

#: the libraries whose log records (QCoDeS's connection tracebacks among them) are notes, not screen text
LOGGERS = ("qcodes", "pyvisa", "pymeasure")

_notes: list[str] = []
_depth = 0


class _NoteHandler(logging.Handler):
    def __init__(self, verbose: bool) -> None:
        super().__init__(logging.WARNING)
        self.verbose = verbose
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        _notes.append(text)
        if self.verbose:
            print(text, file=sys.stderr)


class _Filter(io.TextIOBase):
    """Passes whole lines to ``stream``, keeping the noisy ones as notes."""

    def __init__(self, stream: TextIO, verbose: bool) -> None:
        self.stream, self.verbose, self._partial = stream, verbose, ""

    def write(self, text: str) -> int:
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            if NOISE.match(line):
                _notes.append(line)
                if not self.verbose:
                    continue
            self.stream.write(line + "\n")
        if self._partial and not _HEAD.startswith(self._partial[: len(_HEAD)]):
            self.stream.write(self._partial)  # text without a newline (a prompt, a progress line): now
            self._partial = ""
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()


@contextlib.contextmanager
def quiet(verbose: bool = False) -> Iterator[None]:
    """Connection lines and warnings become notes for the run log (on the console too if ``verbose``)."""
    global _depth
    if _depth:  # already quiet (the command line around the Python API)
        yield
        return
    _depth += 1
    _notes.clear()  # a command's notes are its own
    stdout = sys.stdout
    filt = _Filter(stdout, verbose)
    handler = _NoteHandler(verbose)
    for name in LOGGERS:  # with a handler of their own, Python's last-resort one never prints them
        logging.getLogger(name).addHandler(handler)

    def showwarning(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        text = f"{category.__name__}: {message} ({filename}:{lineno})"
        _notes.append(text)
        if verbose:
            print(f"warning: {text}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = showwarning
            sys.stdout = filt  # type: ignore[assignment]
            yield
    finally:
        if filt._partial:
            stdout.write(filt._partial)
        stdout.flush()
        sys.stdout = stdout
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(handler)
        _depth -= 1


def drain() -> list[str]:
    """The notes so far (each once)."""
    out = list(_notes)
    _notes.clear()
    return out
