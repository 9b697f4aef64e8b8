"""What an adapter provides for each role: a thin binding of one concrete driver, in SI units.

Adapters do no safety checking and no ramping: the roles (:mod:`qbs_lab.drivers.roles`) do that, the
same for every driver. An adapter only translates: one call, one driver action. Units: V, A, T, T/s,
K, Hz, dBm, s.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol, runtime_checkable

__all__ = [
    "GateSourceAdapter",
    "LockinAdapter",
    "LockinStatus",
    "MagnetAdapter",
    "MagnetStatus",
    "RfSourceAdapter",
    "ThermometryAdapter",
]


@runtime_checkable
class GateSourceAdapter(Protocol):
    """A voltage source on the gate, measuring the current it sources (the leakage)."""

    def set_voltage(self, volts: float) -> None:
        """Set the source level at once (the role ramps in steps)."""
        ...

    def voltage(self) -> float:
        """The voltage at the output [V], as read back."""
        ...

    def leakage_current(self) -> float:
        """The current the gate draws [A]."""
        ...

    def set_output(self, on: bool) -> None: ...

    def output(self) -> bool: ...

    def set_current_limit(self, amps: float) -> None:
        """The source's compliance [A]."""
        ...


@dataclass(frozen=True)
class LockinStatus:
    """Flags that make a reading untrustworthy."""

    input_overload: bool = False
    output_overload: bool = False
    unlocked: bool = False

    @property
    def ok(self) -> bool:
        return not (self.input_overload or self.output_overload or self.unlocked)


@runtime_checkable
class LockinAdapter(Protocol):
    """A voltage lock-in amplifier whose sine output drives the excitation."""

    #: the instrument's sensitivities, full scale [V rms], ascending
    sensitivities: tuple[float, ...]

    def read_xy(self) -> tuple[float, float]:
        """X and Y [V rms] taken at one instant."""
        ...

    def time_constant(self) -> float: ...

    def set_time_constant(self, seconds: float) -> None: ...

    def filter_slope(self) -> int:
        """dB/octave: 6, 12, 18 or 24."""
        ...

    def sensitivity(self) -> float: ...

    def set_sensitivity(self, volts: float) -> None:
        """One of :attr:`sensitivities`."""
        ...

    def amplitude(self) -> float:
        """Sine output [V rms]."""
        ...

    def set_amplitude(self, volts: float) -> None: ...

    def frequency(self) -> float: ...

    def set_frequency(self, hertz: float) -> None: ...

    def status(self) -> LockinStatus:
        """Overload and reference-unlock flags (read, and cleared, at this instant)."""
        ...


class MagnetStatus(Enum):
    """The supply's state, common to all magnet drivers."""

    RAMPING = "ramping"
    HOLDING = "holding"
    PAUSED = "paused"
    AT_ZERO = "at zero"
    SWITCH = "persistent switch heating or cooling"
    QUENCH = "quench"
    OTHER = "other"


@runtime_checkable
class MagnetAdapter(Protocol):
    """A superconducting magnet's supply, one axis."""

    def field(self) -> float:
        """Field at the sample [T]."""
        ...

    def set_ramp_rate(self, tesla_per_second: float) -> None:
        """Set the ramp rate on the instrument itself."""
        ...

    def ramp_rate(self) -> float: ...

    def start_ramp(self, target: float) -> None:
        """Set the target [T] and start ramping; returns at once."""
        ...

    def pause(self) -> None: ...

    def status(self) -> MagnetStatus: ...


@runtime_checkable
class ThermometryAdapter(Protocol):
    """Thermometers by channel and the heater that drives the mixing chamber (PID on the controller)."""

    #: heater current ranges [A], ascending, index 0 = off
    heater_ranges: tuple[float, ...]

    def temperature(self, channel: int) -> float: ...

    def setpoint(self) -> float: ...

    def set_setpoint(self, kelvin: float) -> None: ...

    def heater_range(self) -> float:
        """Full-scale heater current [A] (0: off)."""
        ...

    def set_heater_range(self, amps: float) -> None:
        """One of :attr:`heater_ranges`."""
        ...

    def set_closed_loop(self, channel: int, pid: tuple[float, float, float] | None = None) -> None:
        """PID control on ``channel`` (with these P, I, D when given)."""
        ...

    def heater_output(self) -> float:
        """Heater output [% of range]."""
        ...


@runtime_checkable
class RfSourceAdapter(Protocol):
    """A CW RF generator."""

    def frequency(self) -> float: ...

    def set_frequency(self, hertz: float) -> None: ...

    def power(self) -> float: ...

    def set_power(self, dbm: float) -> None: ...

    def output(self) -> bool: ...

    def set_output(self, on: bool) -> None: ...
