"""The QCoDeS Keithley 2400 driver as a gate-source role adapter: source voltage, measure current."""

from __future__ import annotations

import math
from typing import Any

from qbs_lab.drivers.errors import SafetyError

__all__ = ["QcodesKeithley2400"]


class QcodesKeithley2400:
    """Binds ``qcodes.instrument_drivers.Keithley.Keithley2400``.

    - :meth:`voltage` is the programmed source level (``:SOUR:VOLT:LEV?``), as the 2450 adapter's:
      the driver's ``volt`` reads through ``:READ?``, which the 2400 refuses with the output off
      (its VOLT element is the same programmed level anyway while only current is measured).
    - :meth:`leakage_current` is the driver's ``curr`` (the CURR element of ``:READ?``); 0.0 with the
      output off, when nothing is sourced and the 2400 cannot measure. An overflow (+9.9e37) or NAN
      (+9.91e37) reading is returned as is: far above any leakage limit, it stops a ramp.
    - :meth:`set_current_limit` writes ``:SENS:CURR:PROT`` in exponent form and reads it back. The
      driver's ``compliancei`` formats with ``{:f}``: any limit below 0.5 uA goes out as
      ``0.000000``, which the 2400 refuses (+822), keeping its old, larger compliance. A limit the
      instrument did not take raises :class:`SafetyError`.
    """

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        if driver.mode() != "VOLT":
            driver.mode("VOLT")  # the driver turns the current measurement on with it
        elif "CURR" not in driver.sense().upper():
            driver.sense("CURR")

    def set_voltage(self, volts: float) -> None:
        self.driver.volt(volts)

    def voltage(self) -> float:
        return float(self.driver.ask(":SOUR:VOLT:LEV?"))

    def leakage_current(self) -> float:
        if not self.output():
            return 0.0
        return float(self.driver.curr())

    def set_output(self, on: bool) -> None:
        self.driver.output(on)

    def output(self) -> bool:
        return bool(self.driver.output())

    def set_current_limit(self, amps: float) -> None:
        self.driver.write(f":SENS:CURR:PROT {amps:.6E}")
        taken = float(self.driver.compliancei())
        if not math.isclose(taken, abs(amps), rel_tol=1e-5):
            raise SafetyError(
                f"the Keithley 2400 did not take the current compliance {amps:.3g} A: it is at"
                f" {taken:.3g} A (it cannot go below 0.1 % of its current measure range)"
            )
