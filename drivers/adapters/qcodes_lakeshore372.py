"""The QCoDeS Lakeshore 372 driver as a thermometry role adapter; the sample heater drives the MC."""

from __future__ import annotations

from typing import Any

__all__ = ["QcodesLakeshore372"]

#: the 372's sample-heater ranges as QCoDeS names them, with their full-scale currents [A]
_RANGES: dict[str, float] = {
    "off": 0.0,
    "31.6μA": 31.6e-6,
    "100μA": 100e-6,
    "316μA": 316e-6,
    "1mA": 1e-3,
    "3.16mA": 3.16e-3,
    "10mA": 10e-3,
    "31.6mA": 31.6e-3,
    "100mA": 100e-3,
}


class QcodesLakeshore372:
    """Binds ``qcodes.instrument_drivers.Lakeshore.LakeshoreModel372`` (heater: ``sample_heater``)."""

    heater_ranges: tuple[float, ...] = tuple(_RANGES.values())

    def __init__(self, driver: Any, heater: str = "sample_heater") -> None:
        self.driver = driver
        self.heater = getattr(driver, heater)

    def temperature(self, channel: int) -> float:
        return float(getattr(self.driver, f"ch{channel:02d}").temperature())

    def setpoint(self) -> float:
        return float(self.heater.setpoint())

    def set_setpoint(self, kelvin: float) -> None:
        self.heater.setpoint(kelvin)

    def heater_range(self) -> float:
        return _RANGES[self.heater.output_range()]

    def set_heater_range(self, amps: float) -> None:
        name = next(n for n, a in _RANGES.items() if abs(a - amps) <= 1e-3 * max(amps, 1e-9))
        self.heater.output_range(name)

    def set_closed_loop(self, channel: int, pid: tuple[float, float, float] | None = None) -> None:
        self.heater.input_channel(channel)
        if pid is not None:
            self.heater.P(pid[0])
            self.heater.I(pid[1])
            self.heater.D(pid[2])
        self.heater.mode("closed_loop")

    def heater_output(self) -> float:
        return float(self.heater.output())
