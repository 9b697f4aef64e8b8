"""The QCoDeS SR830 driver as a lock-in role adapter."""

from __future__ import annotations

from typing import Any

from qbs_lab.drivers.protocols import LockinStatus

__all__ = ["QcodesSR830"]


class QcodesSR830:
    """Binds ``qcodes.instrument_drivers.stanford_research.SR830`` (its LIAS? bits: 0 input overload,
    2 output overload, 3 reference unlock)."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.sensitivities: tuple[float, ...] = tuple(sorted(driver._VOLT_TO_N))

    def read_xy(self) -> tuple[float, float]:
        x, y = self.driver.snap("x", "y")
        return float(x), float(y)

    def time_constant(self) -> float:
        return float(self.driver.time_constant())

    def set_time_constant(self, seconds: float) -> None:
        self.driver.time_constant(seconds)

    def filter_slope(self) -> int:
        return int(self.driver.filter_slope())

    def sensitivity(self) -> float:
        return float(self.driver.sensitivity())

    def set_sensitivity(self, volts: float) -> None:
        self.driver.sensitivity(volts)

    def amplitude(self) -> float:
        return float(self.driver.amplitude())

    def set_amplitude(self, volts: float) -> None:
        self.driver.amplitude(volts)

    def frequency(self) -> float:
        return float(self.driver.frequency())

    def set_frequency(self, hertz: float) -> None:
        self.driver.frequency(hertz)

    def status(self) -> LockinStatus:
        bits = int(self.driver.ask("LIAS?"))
        return LockinStatus(
            input_overload=bool(bits & 1), output_overload=bool(bits & 4), unlocked=bool(bits & 8)
        )
