"""What a supervisor (the suspenders) tells the runner: a :class:`Trip`, raised as :class:`Tripped`.

The contract between :mod:`qbs_lab.runner` and :mod:`qbs_lab.suspenders`, kept below both so that
neither imports the other (the station file validates its ``suspenders:`` section, and the runner
imports the station).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Supervisor", "Trip", "Tripped"]


@dataclass
class Trip:
    """A suspender's verdict: what is wrong, the policy (``pause``, ``abort``, ``stop``), and for a pause
    how to wait for recovery (blocks on the clock; False when it timed out)."""

    reason: str
    policy: str
    wait_for_recovery: Callable[[], bool] = lambda: False


class Supervisor(Protocol):
    """Watches the lab while a run goes: ``check`` after every point, ``on_error`` for an exception
    raised while setting or reading (None: not its business, the run aborts as usual)."""

    def check(self) -> Trip | None: ...

    def on_error(self, err: Exception) -> Trip | None: ...


class Tripped(Exception):
    """Raised from inside a wait (a temperature stabilization, another condition's pause) when a hazard
    trips there; the runner applies the trip's policy."""

    def __init__(self, trip: Trip) -> None:
        super().__init__(trip.reason)
        self.trip = trip
