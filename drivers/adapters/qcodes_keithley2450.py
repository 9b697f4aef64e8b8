"""The QCoDeS Keithley 2450 driver as a gate-source role adapter: source voltage, measure current."""

from __future__ import annotations

from typing import Any

__all__ = ["QcodesKeithley2450"]


class QcodesKeithley2450:
    """Binds ``qcodes.instrument_drivers.Keithley.Keithley2450``."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        if driver.source.function() != "voltage":
            # changing the source function turns the output off on a 2450: do it only when needed
            driver.source.function("voltage")
        if driver.sense.function() != "current":
            driver.sense.function("current")

    def set_voltage(self, volts: float) -> None:
        self.driver.source.voltage(volts)

    def voltage(self) -> float:
        return float(self.driver.source.voltage())

    def leakage_current(self) -> float:
        if not self.output():  # the driver measures only with the output on; off, nothing is sourced
            return 0.0
        return float(self.driver.sense.current())

    def set_output(self, on: bool) -> None:
        self.driver.output_enabled(on)

    def output(self) -> bool:
        return bool(self.driver.output_enabled())

    def set_current_limit(self, amps: float) -> None:
        self.driver.source.limit(amps)
