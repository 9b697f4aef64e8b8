"""The QCoDeS R&S SGS100A driver as an RF-source role adapter."""

from __future__ import annotations

from typing import Any

__all__ = ["QcodesSGS100A"]


class QcodesSGS100A:
    """Binds ``qcodes.instrument_drivers.rohde_schwarz.RohdeSchwarzSGS100A``."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def frequency(self) -> float:
        return float(self.driver.frequency())

    def set_frequency(self, hertz: float) -> None:
        self.driver.frequency(hertz)

    def power(self) -> float:
        return float(self.driver.power())

    def set_power(self, dbm: float) -> None:
        self.driver.power(dbm)

    def output(self) -> bool:
        return self.driver.status() in ("on", True, 1, "1")

    def set_output(self, on: bool) -> None:
        self.driver.status("on" if on else "off")
