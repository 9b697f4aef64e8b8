"""The runner: executes a :class:`~qbs_lab.plan.Plan` point by point on a station (or custom axes).

Per point, in run order (:meth:`Plan.order`, snake lines reversed): each axis whose index changed moves,
outermost first, through its mover (ramps and stabilization, waits on the clock); the lock-in settles
(only where a lock-in is read; a custom measurement may declare its own settle time);
the measurements are read; the point goes to the store and to every subscriber. Time spent is accounted
to the phases ``ramp``, ``stabilize``, ``settle``, ``measure``, ``suspended`` (paused by a suspender)
and ``park`` (on the clock, so in
simulation it is fridge time), which is what ``qbs-lab estimate`` reports, beside each phase's physics
floor (:attr:`RunResult.floor`: ramps at the allowed rates, settling, reaching and holding temperatures).

A stop request (Ctrl-C, :mod:`qbs_lab.interrupt`) ends the run at the next safe point with status
``interrupted``; a safety fault (leakage, quench, limit, a temperature that will not stabilize) or any
other error ends it ``aborted`` with the reason. Either way the gate, magnet and RF source are first
returned to the station's safe state (:func:`actuators.park`; a completed run parks too unless the plan
says ``park=False``), and only then is the store flushed: a flush that fails (a full disk) can no longer
keep the instruments from parking; it ends the run ``aborted`` with ``no space left on device (path)``.

A :class:`Supervisor` (the suspenders) is asked after every point whether the lab is fit, and about any
error raised while setting or reading. Its :class:`Trip` names a policy: ``pause`` waits for recovery
and then redoes the current line from its first point (the checkpoint; a suspect point is never
stored), ``abort`` ends the run, ``stop`` ends it and asks the queue to stop. Each interruption is kept
in :attr:`RunResult.interruptions`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from qbs_lab.actuators import (
    STATION_VARIABLES,
    bind_axes,
    park,
    station_measurements,
)
from qbs_lab.clock import Clock, RealClock
from qbs_lab.continuous import LineSweeper, save_raw
from qbs_lab.drivers.errors import SafetyError
from qbs_lab.filters import settle_time
from qbs_lab.interrupt import RunInterrupted, StopRequest
from qbs_lab.plan import Plan
from qbs_lab.search import SearchContext
from qbs_lab.station import Station
from qbs_lab.store.run_store import RunStore
from qbs_lab.store.space import storage_reason
from qbs_lab.trips import Supervisor, Trip, Tripped

__all__ = [
    "PHASES",
    "RunResult",
    "Runner",
    "Subscriber",
    "Supervisor",
    "SuspendAbort",
    "SuspendTimeout",
    "Trip",
    "Tripped",
    "first_unmeasured",
]

PHASES = ("ramp", "stabilize", "settle", "measure", "suspended", "park")


class SuspendAbort(SafetyError):
    """A suspender's policy ended the run (abort, or stop the queue)."""


class SuspendTimeout(SafetyError):
    """A paused run's condition did not recover in time."""


class Subscriber(Protocol):
    """Told of every point: its run-order number ``k``, grid ``index`` and ``values`` (t last)."""

    def __call__(self, k: int, index: tuple[int, ...], values: Sequence[float]) -> None: ...


@dataclass
class RunResult:
    """How a run ended: status (completed, interrupted, aborted), the points done, fridge time per
    phase [s], when each point was taken [s on the run's time axis], and the reason if it stopped."""

    status: str
    done: int
    points: int
    phases: dict[str, float]
    message: str | None = None
    park_failures: list[str] = field(default_factory=list)
    stabilization: list[tuple[float, float, str]] = field(default_factory=list)
    point_times: list[float] = field(default_factory=list)
    interruptions: list[dict[str, Any]] = field(default_factory=list)
    stop_queue: bool = False  # a suspender with the policy "stop" tripped
    #: per phase, the fridge time the physics needed [s]: ramps at the allowed rates, the lock-in's
    #: settling, the time to reach and hold each temperature (see :func:`efficiency`)
    floor: dict[str, float] = field(default_factory=dict)
    #: an adaptive plan's decisions and conclusion (:meth:`qbs_lab.plan.Search.run`)
    search: dict[str, Any] | None = None

    @property
    def duration(self) -> float:
        return sum(self.phases.values())

    @property
    def efficiency(self) -> float:
        """Physics floor / fridge time (1: every second went to physics)."""
        total = self.duration
        return sum(self.floor.values()) / total if total > 0 else 1.0


class Runner:
    """Runs ``plan`` on ``station`` (None for a plan of custom axes and measurements).

    Parameters
    ----------
    plan : Plan
    station : Station, optional
        The roles; their clock is the one the runner waits on unless ``clock`` is given.
    store : RunStore, optional
        Where points go (None: nowhere, as for an estimate).
    stop : StopRequest, optional
        Checked between points; the station's clock should be a GuardedClock on the same request.
    subscribers : sequence of Subscriber
        Called after each point (progress, online analysis).
    """

    def __init__(
        self,
        plan: Plan,
        station: Station | None = None,
        *,
        clock: Clock | None = None,
        store: RunStore | None = None,
        stop: StopRequest | None = None,
        subscribers: Sequence[Subscriber] = (),
        supervisor: Supervisor | None = None,
    ) -> None:
        self.plan, self.station, self.store = plan, station, store
        self.supervisor = supervisor
        self.clock: Clock = clock or (station.clock if station is not None else RealClock())
        self.stop = stop or StopRequest()
        self.subscribers = list(subscribers)
        #: an adaptive plan's log lines and running estimates go here (the run's log, the progress line)
        self.log: Callable[[str], None] = lambda line: None
        self.on_estimate: Callable[[dict[str, Any]], None] = lambda est: None
        self.movers, self.stabilizer = bind_axes(plan, station, self.clock)
        check_hazards = getattr(supervisor, "check_hazards", None)
        if self.stabilizer is not None and check_hazards is not None:

            def watch() -> None:
                trip = check_hazards()
                if trip is not None:
                    raise Tripped(trip)

            self.stabilizer.watch = watch
        if plan.measurements:
            getters = [m.getter for m in plan.measurements]
            self.variables = tuple(m.name for m in plan.measurements)

            def read() -> tuple[float, ...]:
                return tuple(g() for g in getters)

            self._read: Callable[[], tuple[float, ...]] = read
        elif station is not None:
            self.variables = tuple(STATION_VARIABLES)
            self._read = station_measurements(station)
        else:
            raise ValueError("a plan without a station needs its own measurements")
        self.variables = (*self.variables, "t")

    def variable_attrs(self) -> dict[str, dict[str, str]]:
        """CF attributes (units, long_name) of every stored variable, t last."""
        attrs = {m.name: {"units": m.units, "long_name": m.long_name} for m in self.plan.measurements}
        if not self.plan.measurements:
            attrs = {k: {"units": u, "long_name": n} for k, (u, n) in STATION_VARIABLES.items()}
        attrs["t"] = {"units": "s", "long_name": "time since the run started"}
        return attrs

    def run(self, start: int = 0, t_offset: float = 0.0) -> RunResult:
        """Run from the ``start``-th point in run order; ``t`` continues from ``t_offset`` [s]."""
        plan, clock, stop = self.plan, self.clock, self.stop
        phases = dict.fromkeys(PHASES, 0.0)
        order = plan.order()
        n = len(order)
        result = RunResult("running", start, n, phases)
        floor = result.floor = dict.fromkeys(PHASES, 0.0)
        roles_floor = self._roles_floor
        ramp_floor0, meter0 = roles_floor(), self._meter_settled()
        t_origin = clock.now() - t_offset
        sweeper: LineSweeper | None = None
        search: SearchContext | None = None
        try:
            t0 = clock.now()
            settle = self._prepare() if start < n else 0.0  # all measured: only park
            phases["settle"] += clock.now() - t0  # setting the time constant: part of settling
            movers = [self.movers[a.name] for a in plan.axes]
            values = [a.values for a in plan.axes]
            ndim = len(movers)
            read, store, subscribers, now = self._read, self.store, self.subscribers, clock.now
            times = result.point_times
            prev: tuple[int, ...] = (-1,) * ndim
            supervisor = self.supervisor
            fixed = [(self.movers[name], value) for name, value in plan.fixed.items()]
            need_fixed = start < n  # the fixed setpoints go first, and again after a pause
            if plan.field_policy.sweep == "continuous" and self.station is not None:
                sweeper = LineSweeper(self.station, plan.field_policy)
            k = start
            if plan.search is not None and start < n:  # an adaptive plan: the search decides
                search = self._search_context(result, t_origin, fixed, order)
                result.search = plan.search.run(search)
                k = n
            while k < n:
                idx = tuple(order[k].tolist())
                try:
                    if need_fixed:
                        for mover, value in fixed:
                            self._move(mover, value, phases)
                        need_fixed = False
                    for d in range(ndim):
                        if idx[d] != prev[d]:
                            self._move(movers[d], values[d][idx[d]], phases)
                    prev = idx
                    t0 = t1 = now()
                    try:
                        if settle > 0:
                            clock.sleep(settle)
                            floor["settle"] += settle
                    finally:
                        t1 = now()
                        phases["settle"] += t1 - t0
                    try:  # the reading, with its retries, and the suspenders' look at the lab after it
                        if sweeper is None:
                            batch = [(idx, (*read(), t1 - t_origin))]
                        else:  # a continuous sweep measures the rest of the line in one ramp
                            batch = self._sweep_line(sweeper, order, k, t_origin)
                        trip = supervisor.check() if supervisor is not None else None
                    finally:
                        phases["measure"] += now() - t1
                except (RunInterrupted, KeyboardInterrupt):
                    raise
                except Tripped as tripped:
                    trip = tripped.trip
                except Exception as err:
                    trip = supervisor.on_error(err) if supervisor is not None else None
                    if trip is None:
                        raise
                if trip is not None:  # the point is suspect: not stored; the policy decides what next
                    k = self._handle(trip, k, start, order, result, t_origin)
                    prev = (-1,) * ndim  # after a pause every setpoint is set again, fixed ones first
                    need_fixed = True
                    continue
                for idx, record in batch:
                    if store is not None:
                        store.record(idx, record)
                    for s in subscribers:
                        s(k, idx, record)
                    times.append(record[-1])
                    result.done = k + 1
                    k += 1
                prev = idx
                stop.check()
            result.status = "completed"
        except RunInterrupted as err:
            result.status, result.message = "interrupted", str(err)
        except KeyboardInterrupt:
            result.status, result.message = "interrupted", "stopped by Ctrl-C"
        except SafetyError as err:
            result.status, result.message = "aborted", f"{type(err).__name__}: {err}"
        except Exception as err:  # an instrument that stopped answering, a driver error, a full disk
            where = self.store.path if self.store is not None else "."
            result.status, result.message = "aborted", storage_reason(err, where)
        finally:
            # park first: the instruments go safe before any storage I/O that can fail (a full disk)
            if self.stabilizer is not None:
                result.stabilization = list(self.stabilizer.outcomes)
                floor["stabilize"] = self.stabilizer.floor
            floor["measure"] = self._meter_settled() - meter0  # autoranging's settle waits
            park_floor0 = roles_floor()
            floor["ramp"] = park_floor0 - ramp_floor0
            if sweeper is not None:  # a sweep's ramp is measuring time: its floor counts there
                floor["ramp"] -= sweeper.ramp_floor
                floor["measure"] += sweeper.floor - sweeper.overlap
            if search is not None:
                floor["ramp"] -= search.sweep_floor
                floor["measure"] += search.sweep_floor
            try:
                if self.station is not None and (plan.park or result.status != "completed"):
                    stop.parking = True
                    t0 = clock.now()
                    try:
                        result.park_failures = park(self.station, fault=result.status != "completed")
                    finally:
                        stop.parking = False
                        phases["park"] += clock.now() - t0
                        floor["park"] = roles_floor() - park_floor0
            finally:
                if self.store is not None:
                    try:
                        for idx, record in search.pending if search is not None else ():
                            self.store.record(idx, record)  # a search's last readings, after parking
                        self.store.flush()
                    except Exception as err:  # the points not yet on disk are lost; resume measures them
                        result.status, result.message = "aborted", storage_reason(err, self.store.path)
        return result

    def _move(self, mover: Any, value: float, phases: dict[str, float]) -> None:
        """One move, its fridge time accounted to its phase (a move cut short by a fault took fridge
        time all the same)."""
        t0 = self.clock.now()
        try:
            mover.move(value)
        finally:
            phases[mover.phase] += self.clock.now() - t0

    def _search_context(
        self,
        result: RunResult,
        t_origin: float,
        fixed: list[tuple[Any, float]],
        order: np.ndarray,
    ) -> SearchContext:
        """What an adaptive plan's search gets: the station, storing through the store and the
        subscribers, the fixed setpoints, and the stop request and suspenders between its steps."""
        store, subscribers = self.store, self.subscribers
        phases = result.phases

        def record(idx: tuple[int, ...], values: tuple[float, ...]) -> None:
            if store is not None:
                store.record(idx, values)
            for s in subscribers:
                s(result.done, idx, values)
            result.point_times.append(values[-1])
            result.done += 1

        def move_fixed() -> None:
            for mover, value in fixed:
                self._move(mover, value, phases)

        def check() -> bool:
            self.stop.check()
            trip = self.supervisor.check() if self.supervisor is not None else None
            if trip is None:
                return False
            self._handle(trip, 0, 0, order, result, t_origin)  # a pause returns once recovered
            move_fixed()  # after a pause every setpoint is set again
            return True

        assert self.station is not None
        return SearchContext(
            self.station,
            self.clock,
            t_origin,
            record,
            check,
            move_fixed,
            log=self.log,
            report=self.on_estimate,
            store_path=store.path if store is not None else None,
            phases=phases,
            floor=result.floor,
        )

    def _sweep_line(
        self, sweeper: LineSweeper, order: np.ndarray, k: int, t_origin: float
    ) -> list[tuple[tuple[int, ...], tuple[float, ...]]]:
        """Sweep B from point ``k`` (the magnet is at its field) to the end of its line; the points'
        indices and records. The raw samples go to the store's ``sweeps/`` folder."""
        outer = order[k, :-1]
        end = k + 1
        while end < len(order) and (order[end, :-1] == outer).all():
            end += 1
        grid = np.asarray(self.plan.axes[-1].values, dtype=float)[order[k:end, -1]]
        records, raw = sweeper.sweep(grid, t_origin)
        if self.store is not None:
            save_raw(self.store.path, k, tuple(order[k].tolist()), raw)
        return [(tuple(order[j].tolist()), rec) for j, rec in zip(range(k, end), records, strict=True)]

    def _roles_floor(self) -> float:
        """Seconds the gate's and magnet's ramps needed at their rates, so far."""
        st = self.station
        return 0.0 if st is None else st.gate.floor + st.magnet.floor

    def _meter_settled(self) -> float:
        return 0.0 if self.station is None else self.station.resistance.settled

    def _handle(
        self, trip: Trip, k: int, start: int, order: np.ndarray, result: RunResult, t_origin: float
    ) -> int:
        """Apply a trip's policy at point ``k``; the point to go on from (after a pause: the checkpoint,
        the first point of the current line, so the line is redone whole)."""
        entry = {
            "t": round(self.clock.now() - t_origin, 3),
            "point": k,
            "reason": trip.reason,
            "policy": trip.policy,
        }
        result.interruptions.append(entry)
        if trip.policy == "pause":
            waited0 = self.clock.now()
            try:
                recovered = trip.wait_for_recovery()
            except Tripped as hazard:  # a quench or a leak while paused: its own policy decides
                result.phases["suspended"] += self.clock.now() - waited0
                entry["outcome"] = f"interrupted by: {hazard.trip.reason}"
                return self._handle(hazard.trip, k, start, order, result, t_origin)
            result.phases["suspended"] += self.clock.now() - waited0
            entry["waited_s"] = round(self.clock.now() - waited0, 3)
            if recovered:
                line = order[k][:-1]
                checkpoint = k
                # the line's first point; a 1-D plan is one line of slow points: redo only this one
                while len(line) and checkpoint > start and (order[checkpoint - 1][:-1] == line).all():
                    checkpoint -= 1
                entry["redo_from"] = checkpoint
                entry["outcome"] = "recovered"
                return checkpoint
            entry["outcome"] = "not recovered in time: aborted"
            raise SuspendTimeout(f"{trip.reason}; not recovered within the suspender's timeout")
        if trip.policy == "stop":
            result.stop_queue = True
        entry["outcome"] = "aborted"
        raise SuspendAbort(trip.reason)

    def _prepare(self) -> float:
        """The settle wait per point [s]: the lock-in's (its time constant set) only where a lock-in is
        read (the station's measurements, or a custom one with ``lockin=True``), and the longest
        ``settle`` a custom measurement declares."""
        plan, station = self.plan, self.station
        own = max((m.settle for m in plan.measurements), default=0.0)
        reads_lockin = not plan.measurements or any(m.lockin for m in plan.measurements)
        if station is None or not reads_lockin:
            return own
        lockin = station.lockin
        if plan.settle.time_constant is not None:
            lockin.set_time_constant(plan.settle.time_constant)
        residual = plan.settle.residual or station.config.settle_residual
        return max(own, settle_time(lockin.time_constant(), lockin.filter_slope(), residual))


def first_unmeasured(plan: Plan, measured: np.ndarray) -> int:
    """The run-order number of the first point not yet measured (``plan.size`` when all are)."""
    order = plan.order()
    done = measured[tuple(order.T)]
    missing = np.flatnonzero(~done)
    return int(missing[0]) if len(missing) else plan.size
