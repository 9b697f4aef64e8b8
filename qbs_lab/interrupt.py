"""Ctrl-C that stops a run at a safe point, never inside an instrument transaction.

While a run goes, :func:`catch_sigint` turns SIGINT into a request (:class:`StopRequest`) instead of a
``KeyboardInterrupt`` thrown wherever Python happens to be (which could be half-way through a VISA
query, leaving a reply unread). The request is honoured where waiting is safe: every sleep of a
:class:`GuardedClock` (the roles wait on it between gate steps, while a magnet ramps, while the fridge
stabilizes) and between points. A third Ctrl-C while the instruments are being parked says what is
happening instead of stopping it.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from qbs_lab.clock import Clock

__all__ = ["GuardedClock", "RunInterrupted", "StopRequest", "catch_sigint"]


class RunInterrupted(Exception):
    """A stop was requested (Ctrl-C); raised at a safe point."""


class StopRequest:
    """A flag set by Ctrl-C (or by code: :meth:`set`), checked at safe points."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.parking = False  # True while instruments are being returned to their safe state
        self.count = 0

    def set(self) -> None:
        self.count += 1
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`RunInterrupted` if a stop was requested (and no parking is under way)."""
        if self._event.is_set() and not self.parking:
            raise RunInterrupted("stopped by request (Ctrl-C)")


class GuardedClock:
    """A clock whose sleeps are safe points: a requested stop raises :class:`RunInterrupted` there.

    A long real-time sleep is cut into pieces of at most 0.2 s, so a stop is honoured promptly.
    """

    def __init__(self, clock: Clock, stop: StopRequest) -> None:
        self.clock, self.stop = clock, stop
        self.virtual = getattr(clock, "virtual", False)

    def now(self) -> float:
        return self.clock.now()

    def sleep(self, seconds: float) -> None:
        self.stop.check()
        if self.virtual:
            self.clock.sleep(seconds)
            return
        end = self.clock.now() + seconds
        while (left := end - self.clock.now()) > 0:
            self.clock.sleep(min(left, 0.2))
            self.stop.check()

    def __getattr__(self, name: str) -> object:  # io_latency, tick, ... of a virtual clock
        return getattr(self.clock, name)


@contextmanager
def catch_sigint(stop: StopRequest) -> Iterator[StopRequest]:
    """Route Ctrl-C to ``stop`` in this block (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()
        if stop.parking:
            print(
                "\nqbs-lab: parking the instruments (gate and magnet to their safe state); please wait",
                file=sys.stderr,
                flush=True,
            )
        elif stop.count == 1:
            print("\nqbs-lab: stopping at the next safe point...", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
