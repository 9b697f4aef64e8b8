"""The QCoDeS AMI 430 driver as a magnet role adapter (tesla and seconds on the instrument)."""

from __future__ import annotations

from typing import Any

from qbs_lab.drivers.protocols import MagnetStatus

__all__ = ["QcodesAMI430"]

_STATES = {
    "ramping": MagnetStatus.RAMPING,
    "holding": MagnetStatus.HOLDING,
    "paused": MagnetStatus.PAUSED,
    "at zero current": MagnetStatus.AT_ZERO,
    "zeroing current": MagnetStatus.RAMPING,
    "quench detected": MagnetStatus.QUENCH,
    "heating switch": MagnetStatus.SWITCH,
    "cooling switch": MagnetStatus.SWITCH,
}


class QcodesAMI430:
    """Binds ``qcodes.instrument_drivers.american_magnetics.AMIModel430``."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        # SI on the instrument itself: field in tesla, rates per second (the 430's coil constant
        # then converts; QCoDeS issue #1525 is about getting this order right)
        driver.field_units("tesla")
        driver.ramp_rate_units("seconds")

    def field(self) -> float:
        return float(self.driver.field())

    def set_ramp_rate(self, tesla_per_second: float) -> None:
        self.driver.ramp_rate(tesla_per_second)

    def ramp_rate(self) -> float:
        return float(self.driver.ramp_rate())

    def start_ramp(self, target: float) -> None:
        self.driver.set_field(target, block=False)

    def pause(self) -> None:
        self.driver.pause()

    def status(self) -> MagnetStatus:
        return _STATES.get(self.driver.ramping_state(), MagnetStatus.OTHER)

    # -- persistent mode (optional capability of a magnet adapter) --------------------------------
    def has_persistent_switch(self) -> bool:
        return bool(self.driver.switch_heater.enabled())

    def make_persistent(self) -> None:
        """Switch heater off (the driver waits while the switch cools), then the supply's current to
        zero: the coil keeps its field, persistent."""
        self.driver.switch_heater.state(False)
        self.driver.zero()
