"""The QCoDeS Oxford Mercury iPS driver as a magnet role adapter: one axis of the vector supply.

The Mercury iPS drives up to three magnet axes (groups ``GRPX``, ``GRPY``, ``GRPZ``); the role is one
superconducting magnet, so the adapter binds one axis, z by default. Field in tesla and rates in
tesla per second, as the driver converts them (the instrument works in T/min: ``SIG:RFST``).

Mapped: ``field`` -> the axis's ``SIG:FLD`` (the supply's output field); ``set_ramp_rate`` -> the axis's
own ``SIG:RFST`` on the instrument; ``start_ramp`` -> the driver's ``<axis>_target`` (so its
``field_limits`` function and target cache stay in force; it writes the unchanged targets of the other
two axes too) then that axis's ``ramp_to_target`` (``ACTN:RTOS``, unclamping first), without waiting;
``pause`` -> ``ACTN:HOLD``; ``status`` from ``ACTN``: ``RTOS``/``RTOZ`` ramping, ``HOLD`` holding,
``CLMP`` (output clamped, ramping disabled until released) paused.

Not mapped, because the driver does not expose it: a quench (the Mercury iPS reports one among its
system alarms, ``READ:SYS:ALRM``, which the driver never reads), so ``status`` never says QUENCH on
this supply; the persistent switch's heating and cooling (``SIG:SWHT`` is only on/off), and the
persistent field (``SIG:PFLD``): ``field`` is the supply's output, as with the AMI 430 adapter.
"""

from __future__ import annotations

from typing import Any

from qbs_lab.drivers.protocols import MagnetStatus

__all__ = ["QcodesMercuryiPS"]

_STATES = {
    "TO SET": MagnetStatus.RAMPING,
    "TO ZERO": MagnetStatus.RAMPING,
    "HOLD": MagnetStatus.HOLDING,
    "CLAMP": MagnetStatus.PAUSED,
}


class QcodesMercuryiPS:
    """Binds one axis (x, y or z) of ``qcodes.instrument_drivers.oxford.OxfordMercuryiPS``."""

    def __init__(self, driver: Any, axis: str = "z") -> None:
        axis = axis.lower()
        if axis not in ("x", "y", "z"):
            raise ValueError(f"the Mercury iPS has axes x, y and z, not {axis!r}")
        self.driver, self.axis = driver, axis
        self.group = getattr(driver, f"GRP{axis.upper()}")

    def field(self) -> float:
        return float(self.group.field())

    def set_ramp_rate(self, tesla_per_second: float) -> None:
        self.group.field_ramp_rate(tesla_per_second)

    def ramp_rate(self) -> float:
        return float(self.group.field_ramp_rate())

    def start_ramp(self, target: float) -> None:
        getattr(self.driver, f"{self.axis}_target")(target)
        self.group.ramp_to_target()

    def pause(self) -> None:
        self.group.ramp_status("HOLD")

    def status(self) -> MagnetStatus:
        return _STATES.get(self.group.ramp_status(), MagnetStatus.OTHER)
