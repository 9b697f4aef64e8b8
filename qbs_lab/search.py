"""What the runner hands an adaptive plan's search (:class:`qbs_lab.plan.Search`): the station, the
clock, and the ways to store readings, account fridge time, log decisions and report the estimate.

The runner owns everything around the search: the fixed setpoints (``move_fixed``), the stop
request and the suspenders between the search's steps (``check``), the store and the subscribers
behind ``record``, parking first and flushing after, on every way out. A search moves only through
the station's roles, so nothing outside the station's limits reaches an instrument.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qbs_lab.clock import Clock
    from qbs_lab.station import Station

__all__ = ["SearchContext"]


@dataclass
class SearchContext:
    """The search's view of a run.

    ``record(index, values)``: one grid cell's readings (``values`` in the runner's variable order, t
    last) to the store and every subscriber. ``check()``: the stop request and the suspenders' look
    at the lab; True when the lab paused and recovered since the last check (the readings since are
    suspect: the search drops them and goes on), an exception when the run must end. ``report(est)``:
    a running estimate (a JSON-ready dict, ``expected_end_s`` among its keys: the run's expected end
    [s on the run's time axis]). ``pending``: cells the search could not record before an exception
    (the runner stores them after parking).
    """

    station: Station
    clock: Clock
    t_origin: float
    record: Callable[[tuple[int, ...], tuple[float, ...]], None]
    check: Callable[[], bool]
    move_fixed: Callable[[], None]
    log: Callable[[str], None] = lambda line: None
    report: Callable[[dict[str, Any]], None] = lambda est: None
    store_path: Path | None = None
    phases: dict[str, float] = field(default_factory=dict)
    floor: dict[str, float] = field(default_factory=dict)
    pending: list[tuple[tuple[int, ...], tuple[float, ...]]] = field(default_factory=list)
    #: the magnet role's floor spent sweeping while measuring (the runner moves it from ramps to
    #: measuring in the physics floor)
    sweep_floor: float = 0.0

    def now(self) -> float:
        """Seconds on the run's time axis."""
        return self.clock.now() - self.t_origin

    def timed(self, phase: str, action: Callable[[], Any]) -> Any:
        """Run ``action``, its fridge time accounted to ``phase`` (also when it raises)."""
        t0 = self.clock.now()
        try:
            return action()
        finally:
            self.phases[phase] = self.phases.get(phase, 0.0) + self.clock.now() - t0
