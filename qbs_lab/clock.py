"""Clocks: every wait in qbs_lab goes through one, so an overnight plan can be dry-run in seconds.

``RealClock`` is wall time, for the fridge. ``VirtualClock`` is simulated time that only moves when
something waits on it (or when an instrument is queried, by a small I/O latency), so a run on the
simulated lab is fast and repeats bit-identically.

Unmodified instrument drivers call ``time.sleep`` themselves (for example QCoDeS's AMI430 polls its
ramp state in a sleep loop). :func:`patch_driver_time` swaps the ``time`` module those driver modules
see for a shim whose ``sleep``/``time``/``monotonic``/``perf_counter`` follow a clock, so their waits
advance the simulation too. The shim is per-module: the rest of the process keeps real time.

Examples
--------
>>> clock = VirtualClock()
>>> clock.sleep(3600.0)
>>> clock.now()
3600.0
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
import time as _time
import types
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

__all__ = [
    "DRIVER_MODULES",
    "SPEED_ENV",
    "Clock",
    "ClockInUseError",
    "RealClock",
    "VirtualClock",
    "patch_driver_time",
]


@runtime_checkable
class Clock(Protocol):
    """What waits and timestamps need: seconds since the clock's epoch, and a sleep."""

    def now(self) -> float:
        """Seconds since this clock's epoch."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this clock."""
        ...


#: environment variable: pace the simulated lab of a run (``qbs-lab run --sim``) at this factor over
#: real time, e.g. 100, to watch a dry run in the live view; the estimate's twin is never paced
SPEED_ENV = "QBS_LAB_SIM_SPEED"


class ClockInUseError(RuntimeError):
    """The drivers' time already follows a different virtual clock (see :func:`patch_driver_time`)."""


class RealClock:
    """Wall time (monotonic). ``now()`` counts from the clock's creation."""

    virtual = False

    def __init__(self) -> None:
        self._t0 = _time.monotonic()

    def now(self) -> float:
        return _time.monotonic() - self._t0

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            _time.sleep(seconds)

    def __repr__(self) -> str:
        return f"RealClock(now={self.now():.3f} s)"


class VirtualClock:
    """Simulated time that advances only when something waits on it.

    Parameters
    ----------
    start : float
        Initial time in seconds.
    io_latency : float
        Seconds one instrument query costs (advanced by the transports through :meth:`tick`). It keeps
        busy-polling loops from spinning forever at a fixed instant, and makes a dry run's duration
        include communication, as at the fridge.
    speed : float, optional
        Pace the simulation in wall time: each wait also sleeps ``seconds / speed`` of real time (1 is
        real time, 100 a hundred times faster), so a dry run can be watched as it goes (the live
        page, a browser test). None (the default): as fast as the computer goes.
    """

    virtual = True

    def __init__(self, start: float = 0.0, io_latency: float = 2e-3, speed: float | None = None) -> None:
        self._t = float(start)
        self.io_latency = float(io_latency)
        self.speed = speed
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> VirtualClock:
        """A clock paced by the environment variable ``QBS_LAB_SIM_SPEED`` (a factor over real time),
        unpaced when it is unset."""
        text = os.environ.get(SPEED_ENV, "").strip()
        try:
            speed = float(text) if text else None
        except ValueError:
            speed = None
        return cls(speed=speed if speed is not None and speed > 0 else None)

    def now(self) -> float:
        return self._t

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._t += float(seconds)
            if self.speed:  # outside the lock: other threads' waits go on meanwhile
                _time.sleep(seconds / self.speed)

    def tick(self) -> None:
        """Advance by one I/O latency (called once per instrument message)."""
        self.sleep(self.io_latency)

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._t:.3f} s)"


class _ClockTime(types.ModuleType):
    """A stand-in for the ``time`` module whose clock functions follow the patched clock."""

    def __init__(self) -> None:
        super().__init__("time")
        self._epoch = _time.time()

    def __getattr__(self, name: str) -> object:  # everything else is the real module's
        return getattr(_time, name)

    @staticmethod
    def _clock() -> Clock | None:
        return _CLOCKS[-1] if _CLOCKS else None

    def sleep(self, seconds: float) -> None:
        clock = self._clock()
        if clock is None:
            _time.sleep(seconds)
        else:
            clock.sleep(seconds)

    def monotonic(self) -> float:
        clock = self._clock()
        return _time.monotonic() if clock is None else clock.now()

    perf_counter = monotonic

    def time(self) -> float:
        clock = self._clock()
        return _time.time() if clock is None else self._epoch + clock.now()


_SHIM = _ClockTime()
_CLOCKS: list[Clock] = []  # one entry per open patch block, all the same clock
_PATCH_LOCK = threading.Lock()
_SAVED: list[tuple[types.ModuleType, str, object]] = []


#: Modules whose waits must follow a virtual clock: drivers that sleep while polling, and QCoDeS's and
#: PyMeasure's own delay machinery (Parameter post_delay/inter_delay, Instrument query_delay).
DRIVER_MODULES: tuple[str, ...] = (
    "qcodes.parameters.parameter_base",
    "qcodes.instrument.instrument",
    "qcodes.instrument_drivers.american_magnetics.AMI430_visa",
    "qcodes.instrument_drivers.Lakeshore.lakeshore_base",
    "qcodes.instrument_drivers.Lakeshore.Lakeshore_model_372",
    "qcodes.instrument_drivers.stanford_research.SR830",
    "qcodes.instrument_drivers.stanford_research.SR86x",
    "qcodes.instrument_drivers.Keithley.Keithley_2450",
    "qcodes.instrument_drivers.rohde_schwarz.SGS100A",
    "pymeasure.instruments.instrument",
    "pymeasure.instruments.ami.ami430",
    "pymeasure.instruments.srs.sr830",
    "pymeasure.instruments.keithley.keithley2450",
)

_FUNCTIONS = ("sleep", "time", "monotonic", "perf_counter")


def _install(modules: tuple[str, ...]) -> None:
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if getattr(module, "time", None) is _time:
            _SAVED.append((module, "time", _time))
            module.time = _SHIM  # type: ignore[attr-defined]
        for fn in _FUNCTIONS:
            real = getattr(_time, fn)
            if getattr(module, fn, None) is real:
                _SAVED.append((module, fn, real))
                setattr(module, fn, getattr(_SHIM, fn))


@contextlib.contextmanager
def patch_driver_time(clock: Clock, modules: tuple[str, ...] = DRIVER_MODULES) -> Iterator[None]:
    """Make the named modules' waits and clocks follow ``clock`` for the duration of the block.

    Both styles are handled: ``import time`` (the module attribute is swapped for a shim) and
    ``from time import sleep, time`` (each such name is swapped for the shim's function). Modules that
    are not installed are skipped. Blocks may nest with the same clock; a different clock while one is
    patched raises :class:`ClockInUseError`, because the drivers' modules are shared by the whole
    process and their sleeps can follow only one clock. Real time comes back when the last block ends.
    """
    with _PATCH_LOCK:
        if _CLOCKS and _CLOCKS[-1] is not clock:
            raise ClockInUseError(
                "the instrument drivers already follow another virtual clock in this process"
            )
        _install(modules)
        _CLOCKS.append(clock)
    try:
        yield
    finally:
        with _PATCH_LOCK:
            for i in range(len(_CLOCKS) - 1, -1, -1):
                if _CLOCKS[i] is clock:
                    del _CLOCKS[i]
                    break
            if not _CLOCKS:
                for module, attr, original in reversed(_SAVED):
                    setattr(module, attr, original)
                _SAVED.clear()
