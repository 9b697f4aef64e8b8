"""The PyMeasure SR830 driver as a lock-in role adapter."""

from __future__ import annotations

from typing import Any

from pymeasure.instruments.srs.sr830 import LIAStatus
from qbs_lab.drivers.protocols import LockinStatus

__all__ = ["PymeasureSR830"]


class PymeasureSR830:
    """Binds ``pymeasure.instruments.srs.SR830`` through its controls (``snap``, ``time_constant``,
    ``filter_slope``, ``sensitivity``, ``sine_voltage``, ``frequency``) and its LIA status byte
    (``lia_status``, read and cleared: INPUT_OVERLOAD, OUTPUT_OVERLOAD, REF_UNLOCK).

    PyMeasure truncates out-of-range values to the instrument's range (sine out 4 mV..5 V, the next
    larger time constant or sensitivity) instead of refusing them; the roles check limits first."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.sensitivities: tuple[float, ...] = tuple(float(v) for v in sorted(driver.SENSITIVITIES))

    def read_xy(self) -> tuple[float, float]:
        x, y = self.driver.snap("X", "Y")  # SNAP? 1,2: one instant
        return float(x), float(y)

    def time_constant(self) -> float:
        return float(self.driver.time_constant)

    def set_time_constant(self, seconds: float) -> None:
        self.driver.time_constant = seconds

    def filter_slope(self) -> int:
        return int(self.driver.filter_slope)

    def sensitivity(self) -> float:
        return float(self.driver.sensitivity)

    def set_sensitivity(self, volts: float) -> None:
        self.driver.sensitivity = volts

    def amplitude(self) -> float:
        return float(self.driver.sine_voltage)

    def set_amplitude(self, volts: float) -> None:
        self.driver.sine_voltage = volts

    def frequency(self) -> float:
        return float(self.driver.frequency)

    def set_frequency(self, hertz: float) -> None:
        self.driver.frequency = hertz

    def status(self) -> LockinStatus:
        flags = LIAStatus(self.driver.lia_status)  # LIAS?: the whole status byte
        return LockinStatus(
            input_overload=bool(flags & LIAStatus.INPUT_OVERLOAD),
            output_overload=bool(flags & LIAStatus.OUTPUT_OVERLOAD),
            unlocked=bool(flags & LIAStatus.REF_UNLOCK),
        )
