"""A progress line for long runs: points done, percent, time elapsed and time left.

Time left comes from the run's estimated schedule when there is one (the fridge time at which each
point is expected, from ``qbs-lab estimate``), scaled by how the run keeps up with it; otherwise from
the mean time per point so far. On a terminal the line redraws in place (at most 5 times a second);
in a log file a line is written every 10 %.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Sequence
from typing import TextIO

__all__ = ["ESTIMATE_PROGRESS_POINTS", "Progress", "SearchProgress", "WorkProgress", "format_duration"]

#: an estimate of at least this many points shows its progress (~20 s of wall time and more)
ESTIMATE_PROGRESS_POINTS = 2000


def format_duration(seconds: float) -> str:
    """h:mm:ss (d h:mm:ss beyond a day)."""
    seconds = max(0, round(seconds))
    days, rem = divmod(seconds, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    return (f"{days}d " if days else "") + f"{h:d}:{m:02d}:{s:02d}"


class Progress:
    """A subscriber that draws progress; ``schedule[k]`` is the expected time [s] of point k, and
    ``schedule_end`` the expected end (parking included)."""

    def __init__(
        self,
        total: int,
        *,
        start: int = 0,
        schedule: Sequence[float] | None = None,
        schedule_end: float | None = None,
        label: str = "",
        out: TextIO | None = None,
        t_start: float = 0.0,
    ) -> None:
        self.total, self.start, self.label = total, start, label
        self.schedule, self.schedule_end = schedule, schedule_end
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self.t_start = t_start  # the run's time axis value when this segment started
        self._last_draw = 0.0
        self._last_decile = -1
        self._shown = 0  # characters of the line on screen now (cleared on every redraw)
        self.done = start
        self.t = t_start

    def __call__(self, k: int, index: tuple[int, ...], values: Sequence[float]) -> None:
        self.done, self.t = k + 1, values[-1]
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw >= 0.2 or self.done == self.total:
                self._last_draw = now
                self._draw(self.line())
        else:
            decile = 10 * self.done // self.total
            if decile != self._last_decile:
                self._last_decile = decile
                self.out.write(self.line() + "\n")
                self.out.flush()

    def time_left(self) -> float | None:
        """Seconds left [run's clock], or None before there is anything to go by."""
        elapsed = self.t - self.t_start
        if self.schedule is not None and self.schedule_end is not None and self.done > 0:
            k = self.done - 1 - self.start
            if 0 <= k < len(self.schedule):
                predicted = self.schedule[k] - (self.schedule[0] if self.start else 0.0)
                factor = elapsed / predicted if predicted > 0 else 1.0
                return max(0.0, (self.schedule_end - self.schedule[k]) * factor)
        n = self.done - self.start
        if n <= 0:
            return None
        return elapsed / n * (self.total - self.done)

    def line(self) -> str:
        width = 24
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(width * frac) + "." * (width - int(width * frac))
        left = self.time_left()
        left_text = f", {format_duration(left)} left" if left is not None and self.done < self.total else ""
        return (
            f"{self.label}[{bar}] {self.done}/{self.total} points {100 * frac:3.0f}%"
            f"  {format_duration(self.t)} elapsed{left_text}"
        )

    def _draw(self, text: str, end: str = "") -> None:
        """Redraw in place: the whole previous line overwritten (a shorter one leaves no tail), never
        wider than the terminal (a wrapped line cannot be redrawn)."""
        text = text[: max(20, shutil.get_terminal_size().columns - 1)]
        self.out.write("\r" + text + " " * max(0, self._shown - len(text)) + end)
        self._shown = 0 if end else len(text)
        self.out.flush()

    def message(self, text: str) -> None:
        """A line of its own above the progress line (which is drawn again below it)."""
        if not self.tty:
            self.out.write(text + "\n")
            self.out.flush()
            return
        self.out.write("\r" + text.ljust(self._shown) + "\n")  # whole, even if it wraps
        self._shown = 0
        self._draw(self.line())

    def finish(self) -> None:
        if self.tty:
            self._draw(self.line(), end="\n")


class SearchProgress(Progress):
    """Progress of an adaptive run: it stores readings on a grid it does not fill, so the fraction done
    and the time left come from the search's own expected end (:meth:`expect`, updated after each of
    its steps; before the first, the estimate's end), not from the points stored."""

    def __init__(self, total: int, **kwargs: object) -> None:
        super().__init__(total, **kwargs)  # type: ignore[arg-type]
        self.end_s: float | None = self.schedule_end
        self._shown_fraction = 0.0

    def expect(self, end_s: float | None) -> None:
        """The run's expected end [s on its time axis]."""
        if end_s is not None:
            self.end_s = end_s
            if self.tty:
                self._draw(self.line())

    def time_left(self) -> float | None:
        return None if self.end_s is None else max(0.0, self.end_s - self.t)

    def __call__(self, k: int, index: tuple[int, ...], values: Sequence[float]) -> None:
        decile = self._decile()
        self.done, self.t = k + 1, values[-1]
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw >= 0.2:
                self._last_draw = now
                self._draw(self.line())
        elif self._decile() != decile:
            self.out.write(self.line() + "\n")
            self.out.flush()

    def _decile(self) -> int:
        return int(10 * self._fraction())

    def _fraction(self) -> float:
        """Of the expected fridge time, how much has passed: never less than already shown (the
        expected end moves as the search learns)."""
        if self.end_s is None or self.end_s <= self.t_start:
            return self._shown_fraction
        frac = min(1.0, (self.t - self.t_start) / (self.end_s - self.t_start))
        self._shown_fraction = max(self._shown_fraction, frac)
        return self._shown_fraction

    def line(self) -> str:
        width = 24
        frac = self._fraction()
        bar = "#" * int(width * frac) + "." * (width - int(width * frac))
        left = self.time_left()
        left_text = f", about {format_duration(left)} left" if left is not None else ""
        return (
            f"{self.label}[{bar}] {100 * frac:3.0f}% of the expected fridge time, {self.done} cells stored"
            f"  {format_duration(self.t)} elapsed{left_text}"
        )


class WorkProgress(Progress):
    """Progress of work that is not a run, such as timing a plan on the simulated twin: points done
    and the wall-clock time left (a 100 000-point estimate takes minutes; the user sees it move).
    Drawn as :class:`Progress` is (same cadence, line cleared on every redraw); gone when done."""

    def __init__(self, total: int, label: str, *, start: int = 0, out: TextIO | None = None) -> None:
        super().__init__(total, start=start, label=label, out=out)
        self.t0 = time.monotonic()

    def line(self) -> str:
        n = self.done - self.start
        wall = time.monotonic() - self.t0
        left = f", about {format_duration(wall / n * (self.total - self.done))} left" if n > 0 else ""
        return f"{self.label}: {self.done}/{self.total} points {100 * self.done / self.total:3.0f}%{left}"

    def finish(self) -> None:
        if self.tty:  # the line gives way to the result
            self._draw("", end="\r")
