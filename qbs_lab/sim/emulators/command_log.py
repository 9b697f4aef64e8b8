"""An emulator's command log, bounded: what tests and safety proofs need, in flat memory.

An instrument may receive tens of millions of commands in a long dry run; keeping every one grew a
process past 1 GB after 3.8 million. :class:`CommandLog` keeps instead:

- ``len(log)``: how many commands ever arrived (fault triggers and tests count on it);
- the most recent ``keep`` commands (a ring buffer), indexed by their absolute position, so
  ``log[n:]`` still means "what arrived since the n-th command";
- per command (the matched command pattern, e.g. ``:SOURce#:VOLTage[:LEVel]...``): how many arrived
  (:attr:`counts`) and the smallest and largest first numeric argument ever sent (:attr:`extremes`),
  which proves a limit over the whole run whatever was dropped;
- optionally every command, spilled to a file (``spill=path``) and read back when iterated.

Iterating, or indexing before the retained window, on a log that dropped commands and has no spill
file raises :class:`LogTruncatedError` rather than silently proving a limit from part of the run.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

from qbs_lab.sim.scpi import parse_arguments, split_header

__all__ = ["DEFAULT_KEEP", "CommandLog", "LogTruncatedError", "LogView", "LoggedCommand"]

#: commands kept in memory per instrument (a few MB); more than any test sends
DEFAULT_KEEP = 50_000


class LogTruncatedError(IndexError):
    """The commands asked for were dropped from memory (and the log has no spill file)."""


@dataclass(frozen=True, slots=True)
class LoggedCommand:
    """One command as the instrument received it.

    ``time`` is on the lab's clock [s]; ``command`` is one ``;``-separated part of a message, as sent;
    ``reply`` is the answer to a query (None for a write); ``error`` is the error it raised, if any.
    """

    time: float
    command: str
    reply: str | None
    error: str | None = None

    @property
    def header(self) -> str:
        return split_header(self.command)[0]

    @property
    def args(self) -> list[str]:
        return parse_arguments(split_header(self.command)[1])


def _first_number(command: str) -> float | None:
    args = split_header(command)[1]
    if not args:
        return None
    try:
        value = float(args.split(",", 1)[0])
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class _Spill:
    """Every command, one JSON array a line, appended to a file and streamed back."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.path.open("w", encoding="utf-8")

    def write(self, entry: LoggedCommand) -> None:
        self.file.write(json.dumps([entry.time, entry.command, entry.reply, entry.error]) + "\n")

    def read(self, start: int = 0, stop: int | None = None) -> Iterator[LoggedCommand]:
        self.file.flush()
        with self.path.open(encoding="utf-8") as f:
            for i, line in enumerate(f):
                if stop is not None and i >= stop:
                    return
                if i >= start:
                    yield LoggedCommand(*json.loads(line))


class LogView(Sequence[LoggedCommand]):
    """A snapshot of a command log: absolute indices, the retained commands, the spill file if any."""

    def __init__(self, first: int, entries: list[LoggedCommand], spill: _Spill | None) -> None:
        self.first = first  # absolute index of entries[0]
        self._entries = entries
        self._spill = spill

    def __len__(self) -> int:
        return self.first + len(self._entries)

    @property
    def truncated(self) -> bool:
        """Commands were dropped from memory (what remains: :attr:`recent`, the spill file)."""
        return self.first > 0

    @property
    def recent(self) -> list[LoggedCommand]:
        """The commands still in memory, oldest first."""
        return list(self._entries)

    @overload
    def __getitem__(self, i: int) -> LoggedCommand: ...

    @overload
    def __getitem__(self, i: slice) -> list[LoggedCommand]: ...

    def __getitem__(self, i: int | slice) -> LoggedCommand | list[LoggedCommand]:
        n = len(self)
        if isinstance(i, slice):
            start, stop, step = i.indices(n)
            if start >= stop:
                return []
            return list(self._range(start, stop))[::step]
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("command log index out of range")
        return next(iter(self._range(i, i + 1)))

    def _range(self, start: int, stop: int) -> Iterator[LoggedCommand]:
        if start >= self.first:
            if stop - start == 1:
                yield self._entries[start - self.first]  # a deque indexes fast at both ends
            else:
                yield from itertools.islice(self._entries, start - self.first, stop - self.first)
            return
        if self._spill is None:
            raise LogTruncatedError(
                f"commands {start}..{self.first - 1} were dropped from the log (it keeps the last "
                f"{len(self._entries)}); use its counts and extremes, or a spill file"
            )
        yield from self._spill.read(start, stop)

    def __iter__(self) -> Iterator[LoggedCommand]:
        return self._range(0, len(self))

    def __repr__(self) -> str:
        return f"<command log: {len(self)} commands, {len(self._entries)} in memory>"


class CommandLog(LogView):
    """The live log of one emulator (see the module docstring). ``keep``: commands kept in memory."""

    def __init__(self, keep: int = DEFAULT_KEEP, spill: str | Path | None = None) -> None:
        self._ring: deque[LoggedCommand] = deque(maxlen=keep)
        super().__init__(0, self._ring, _Spill(Path(spill)) if spill is not None else None)  # type: ignore[arg-type]
        self.keep = keep
        self.count = 0
        #: commands received per key (the matched command pattern, else the header in upper case)
        self.counts: Counter[str] = Counter()
        #: key -> (smallest, largest) first numeric argument of the writes with that key (refused
        #: ones too: they reached the instrument)
        self.extremes: dict[str, tuple[float, float]] = {}
        #: commands that raised an error (their entries: see :attr:`recent`)
        self.error_count = 0

    def __len__(self) -> int:
        return self.count

    @property
    def first(self) -> int:  # type: ignore[override]
        return self.count - len(self._ring)

    @first.setter
    def first(self, value: int) -> None:  # the base class's attribute; derived here
        pass

    def append(self, entry: LoggedCommand, key: str | None = None) -> None:
        """Record one command; ``key`` names the command for counts and extremes."""
        self._ring.append(entry)
        self.count += 1
        if self._spill is not None:
            self._spill.write(entry)
        key = key or split_header(entry.command)[0].upper()
        self.counts[key] += 1
        if entry.error is not None:
            self.error_count += 1
        if entry.reply is None:  # a write, refused or not: it reached the instrument
            value = _first_number(entry.command)
            if value is not None:
                lo, hi = self.extremes.get(key, (value, value))
                self.extremes[key] = (min(lo, value), max(hi, value))

    def snapshot(self) -> LogView:
        """A frozen copy: later commands do not change it."""
        return LogView(self.first, list(self._ring), self._spill)

    def clear(self) -> None:
        self._ring.clear()
        self.count = self.error_count = 0
        self.counts.clear()
        self.extremes.clear()
