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
    """Binds ``qcodes.instrument_drivers.american_magnetics.AMIModel430``.

    A field step is one message: the driver's ``set_field`` asks the coil constant, the current
    limit, the quench, persistent and ramping states and whether a switch is installed, pauses, sets
    the target and asks for RAMP (nine messages, 18 ms at 2 ms a message, more than a small step's
    ramp). The coil constant, the current limit and the switch's presence are front-panel setup that
    no run changes: they are read once, at the first ramp. Without a switch the target and RAMP then go
    in one compound message on the driver's own VISA session (``CONF:FIELD:TARG <B>;RAMP``); a quench
    or a refused RAMP shows in the state the role reads at the ramp's arrival. With a switch, or as one
    axis of QCoDeS's 3-axis driver, every ramp goes through ``set_field``, whose checks of the switch
    heater and of the parent's field limits stay in force.
    """

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self._field_limit: float | None = None  # coil constant x current limit [T], read once
        self._switch: bool | None = None  # a persistent switch is installed (read once)
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
        if self._field_limit is None or self._switch is None:
            self._field_limit = float(self.driver.ask("COIL?")) * float(self.driver.current_limit())
            self._switch = bool(self.driver.switch_heater.enabled())
        # a switch's heater, or a 3-axis parent's field-vector limits: the driver's own checks
        if self._switch or getattr(self.driver, "_parent_instrument", None) is not None:
            self.driver.set_field(target, block=False)
            return
        if abs(target) > self._field_limit:  # set_field's own check, on the cached limit
            raise ValueError(f"Aborted _set_field; {target} is higher than limit of {self._field_limit}")
        self.driver.write(f"CONF:FIELD:TARG {target};RAMP")

    def pause(self) -> None:
        self.driver.pause()

    def status(self) -> MagnetStatus:
        return _STATES.get(self.driver.ramping_state(), MagnetStatus.OTHER)

    # -- persistent mode (optional capability of a magnet adapter) --------------------------------
    def has_persistent_switch(self) -> bool:
        self._switch = bool(self.driver.switch_heater.enabled())
        return self._switch

    def make_persistent(self) -> None:
        """Switch heater off (the driver waits while the switch cools), then the supply's current to
        zero: the coil keeps its field, persistent."""
        self.driver.switch_heater.state(False)
        self.driver.zero()
