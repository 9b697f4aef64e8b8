"""What a procedure asks for: the axes of a sweep, their policies, and the order the grid is run in.

A :class:`Plan` is pure data, made by a procedure and checked and run by :mod:`qbs_lab.runner`. Axes are
nested outermost first; each is swept over its ``values`` in the given order, and an axis marked
``snake`` reverses direction each time an axis outside it steps, so that a slow axis (a magnet, a gate)
never ramps back across the whole range between lines. Units are SI: V_g [V], B [T], T [K] (setpoint),
P_rf [dBm] (:data:`RF_OFF` for the output off), I_exc [A], f_exc [Hz], f_rf [Hz].

>>> plan = Plan("example", axes=(Axis("T", (0.05, 0.1)), Axis("B", linspace(0, 0.02, 3), snake=True)))
>>> [tuple(map(float, p)) for p in plan.coordinates_in_order()]
[(0.05, 0.0), (0.05, 0.01), (0.05, 0.02), (0.1, 0.02), (0.1, 0.01), (0.1, 0.0)]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

__all__ = [
    "AXIS_KINDS",
    "RF_OFF",
    "Axis",
    "FieldPolicy",
    "Measurement",
    "Plan",
    "Search",
    "SettlePolicy",
    "TemperaturePolicy",
    "linspace",
]

#: The axis names the runner binds to the station's roles: units and CF long names.
AXIS_KINDS: dict[str, tuple[str, str]] = {
    "V_g": ("V", "gate voltage"),
    "B": ("T", "magnetic field"),
    "T": ("K", "temperature setpoint"),
    "P_rf": ("dBm", "RF power at the source"),
    "I_exc": ("A", "excitation current"),
    "f_exc": ("Hz", "lock-in reference frequency"),
    "f_rf": ("Hz", "RF frequency"),
}

#: a P_rf value that means "RF output off" (a finite coordinate, far below any source's lowest level)
RF_OFF = -200.0


def linspace(start: float, stop: float, num: int) -> tuple[float, ...]:
    """``num`` evenly spaced values from ``start`` to ``stop`` inclusive, as plain floats."""
    if num < 1:
        raise ValueError(f"a range needs at least one point, not {num}")
    if num > 1_000_000:  # refused before allocating: a typo of a few zeros is not a sweep
        raise ValueError(f"a range of {num:,} points is more than 1,000,000")
    return tuple(float(v) for v in np.linspace(start, stop, num))


@dataclass(frozen=True)
class FieldPolicy:
    """How the magnet moves: ``rate`` [T/s] (None: the station's limit) between points.

    ``sweep="continuous"`` (B the innermost axis): each B line is one ramp at ``sweep_rate`` [T/s]
    while the lock-in is read every ``interval`` [s], its filter's lag corrected (``lag_correction``)
    and the samples binned onto the line's grid (:mod:`qbs_lab.continuous`).
    """

    rate: float | None = None
    sweep: str = "stepped"
    sweep_rate: float = 2e-5
    interval: float = 0.2
    lag_correction: bool = True


@dataclass(frozen=True)
class TemperaturePolicy:
    """How a temperature setpoint is reached, on the sample thermometer.

    The point counts as stable once the sample reads within ``tolerance`` (a fraction of the setpoint,
    or ``min_tolerance`` [K] if larger) continuously for ``hold`` seconds, read every ``poll`` seconds.
    After ``timeout`` seconds without that, ``on_timeout`` decides: ``"abort"`` stops the run (status
    aborted, instruments parked), ``"continue"`` measures anyway and records it in the dataset.
    ``heater_zones`` maps the highest setpoint of a zone [K] to the heater range [A] used up to it, as a
    Lakeshore's zone table does; ranges above the station's cap are refused before the run starts.
    """

    tolerance: float = 0.02
    min_tolerance: float = 0.5e-3
    hold: float = 60.0
    timeout: float = 1800.0
    poll: float = 5.0
    on_timeout: str = "abort"
    heater_zones: tuple[tuple[float, float], ...] = (
        (0.1, 316e-6),
        (0.35, 1e-3),
        (0.7, 3.16e-3),
        (1.5, 10e-3),
    )

    def band(self, setpoint: float) -> float:
        """Half-width [K] of the band the sample must stay in."""
        return max(self.tolerance * setpoint, self.min_tolerance)

    def heater_range(self, setpoint: float) -> float:
        """The heater range [A] for a setpoint [K] (the last zone's beyond the table)."""
        for top, amps in self.heater_zones:
            if setpoint <= top:
                return amps
        return self.heater_zones[-1][1]


@dataclass(frozen=True)
class SettlePolicy:
    """The lock-in: its time constant [s] (set at the start; None keeps the instrument's) and how
    settled each reading must be (``residual``: the filter's remaining fraction of a step; None: the
    station's ``settle_residual``)."""

    time_constant: float | None = 0.3
    residual: float | None = None


@dataclass(frozen=True)
class Axis:
    """One swept quantity: its ``name`` (one of :data:`AXIS_KINDS`, or any name with a ``setter``),
    its ``values`` in sweep order, and whether it runs ``snake`` (serpentine)."""

    name: str
    values: tuple[float, ...]
    snake: bool = False
    #: a custom axis's setter (an in-memory parameter, a user's own instrument); None for the kinds
    setter: Callable[[float], None] | None = field(default=None, compare=False)
    units: str = ""
    long_name: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name, "axis")
        values = tuple(float(v) for v in self.values)
        object.__setattr__(self, "values", values)
        if not values:
            raise ValueError(f"axis {self.name} has no values")
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"axis {self.name} has a value that is not a finite number")
        if len(set(values)) != len(values):
            raise ValueError(f"axis {self.name} repeats a value: a grid coordinate must be unique")
        if self.setter is None and self.name not in AXIS_KINDS:
            raise ValueError(f"axis {self.name!r} is none of {', '.join(AXIS_KINDS)} and has no setter")
        if self.name in AXIS_KINDS:
            units, long_name = AXIS_KINDS[self.name]
            object.__setattr__(self, "units", self.units or units)
            object.__setattr__(self, "long_name", self.long_name or long_name)


@dataclass(frozen=True)
class Measurement:
    """A custom measured quantity: a getter and its CF attributes (the station's are built in).

    The runner waits before each point only for what the point's readings need: the lock-in's
    settling when a measurement says it reads the lock-in (``lockin=True``), and each measurement's own
    ``settle`` [s] (the longest of them); by default neither, so no fridge time goes to settling.
    """

    name: str
    getter: Callable[[], float]
    units: str = ""
    long_name: str = ""
    settle: float = 0.0
    lockin: bool = False

    def __post_init__(self) -> None:
        _check_name(self.name, "measurement")
        if not (math.isfinite(self.settle) and self.settle >= 0):
            raise ValueError(f"measurement {self.name}: settle must be a time >= 0 s, not {self.settle!r}")
        if self.name == "t":
            raise ValueError("measurement name 't' is taken: every run stores its time as t")


def _check_name(name: object, what: str) -> None:
    """Axis and variable names name files in the store: identifiers only, never a path."""
    if not isinstance(name, str) or not name.isidentifier() or not name.isascii():
        raise ValueError(
            f"{what} name {name!r} is not an identifier (ASCII letters, digits and _, not starting with"
            " a digit): it names a folder of the run's store"
        )


class Search(Protocol):
    """An adaptive plan's decisions: where to measure next, from what was measured so far.

    A plan with a ``search`` is not run point by point over its grid: the runner hands the station to
    :meth:`run` (with a :class:`qbs_lab.search.SearchContext`), which moves, measures, stores readings
    on grid cells of its choosing and returns what it decided and concluded (a JSON-ready dict). Every
    setpoint it may send is declared by :meth:`setpoints` and every field rate by
    :meth:`field_rates`, so the station's limits are checked before the run starts.
    """

    def setpoints(self) -> dict[str, Sequence[float]]: ...

    def field_rates(self) -> Sequence[float]: ...

    def run(self, ctx: Any) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Plan:
    """A sweep: axes (outermost first), fixed setpoints, policies, and what is measured.

    ``fixed`` setpoints (same names as axes) are applied once before the first point and stored as
    scalar coordinates. With ``measurements`` empty, the station's standard set is measured (R, X, Y,
    I, T_mc, T_sample, B_meas, V_g_meas, I_leak); custom ``measurements`` replace it (a plan with no
    station, such as the overhead benchmark's). ``park`` returns gate, magnet and RF to the station's
    safe state when the run ends (always after an interruption or a fault).
    """

    procedure: str
    axes: tuple[Axis, ...]
    fixed: dict[str, float] = field(default_factory=dict)
    field_policy: FieldPolicy = FieldPolicy()
    temperature_policy: TemperaturePolicy = TemperaturePolicy()
    settle: SettlePolicy = SettlePolicy()
    measurements: tuple[Measurement, ...] = ()
    park: bool = True
    parameters: dict[str, Any] = field(default_factory=dict)
    #: an adaptive plan: the search decides what is measured (the axes are the grid it stores on)
    search: Search | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        names = [a.name for a in self.axes]
        if not names:
            raise ValueError("a plan needs at least one axis")
        if len(set(names)) != len(names):
            raise ValueError(f"an axis appears twice: {names}")
        for name in self.fixed:
            if name not in AXIS_KINDS:
                raise ValueError(f"fixed setpoint {name!r} is none of {', '.join(AXIS_KINDS)}")
            if name in names:
                raise ValueError(f"{name} is both swept and fixed")
        fp = self.field_policy
        if fp.sweep not in ("stepped", "continuous"):
            raise ValueError(f"sweep must be 'stepped' or 'continuous', not {fp.sweep!r}")
        if fp.sweep == "continuous":
            if names[-1] != "B":
                raise ValueError("a continuous sweep needs B as the innermost axis")
            if not (fp.sweep_rate > 0 and fp.interval > 0):
                raise ValueError("a continuous sweep needs sweep_rate > 0 T/s and interval > 0 s")
        if self.temperature_policy.on_timeout not in ("abort", "continue"):
            raise ValueError("temperature_policy.on_timeout must be 'abort' or 'continue'")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a.values) for a in self.axes)

    @property
    def dims(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def order(self) -> np.ndarray:
        """Grid indices in run order, shape (size, ndim): row k is the k-th point's index tuple."""
        shape = self.shape
        base = np.indices(shape).reshape(len(shape), -1).T  # C order: last axis fastest
        idx = base.copy()
        for k, axis in enumerate(self.axes):
            if axis.snake and k > 0:
                # the number of the line in run order (from the unreversed indices): odd lines run back
                outer = np.ravel_multi_index(base[:, :k].T, shape[:k])
                odd = outer % 2 == 1
                idx[odd, k] = shape[k] - 1 - idx[odd, k]
        return idx

    def coordinates_in_order(self) -> Iterable[tuple[float, ...]]:
        for row in self.order():
            yield tuple(self.axes[k].values[i] for k, i in enumerate(row))

    def setpoints(self) -> dict[str, Sequence[float]]:
        """Every value each kind of axis will be sent to (fixed ones included), for limit checks."""
        out: dict[str, Sequence[float]] = {a.name: a.values for a in self.axes}
        out.update({k: (v,) for k, v in self.fixed.items()})
        if self.search is not None:  # the search's own setpoints (e.g. a setpoint ramp's highest)
            for k, v in self.search.setpoints().items():
                out[k] = (*out.get(k, ()), *v)
        return out
