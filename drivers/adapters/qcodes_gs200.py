"""The QCoDeS Yokogawa GS200 driver as a gate-source role adapter: source voltage, no current reading."""

from __future__ import annotations

import math
from typing import Any

from qbs_lab.drivers.errors import LimitError

__all__ = ["QcodesGS200"]

#: the GS200's current protection (limiter) level: 1 mA to 200 mA, 1 mA steps [A]
PROTECTION_MIN, PROTECTION_MAX, PROTECTION_STEP = 1e-3, 200e-3, 1e-3


class QcodesGS200:
    """Binds ``qcodes.instrument_drivers.yokogawa.YokogawaGS200``.

    The GS200 is a source: :meth:`leakage_current` returns NaN, always. The gate role's leakage check
    then cannot trip (it skips non-finite readings): such a gate is guarded by the source's current
    protection level alone, which cannot be set below 1 mA. (A GS200 fitted with the /MON option can
    measure its current, but QCoDeS reads it only on a fixed range of 1 V or more, with measurement
    enabled and the output on; this adapter does not use it.)

    - :meth:`set_voltage` goes through the driver's ``voltage`` in ``ramp_mode`` JUMP (set here: the
      role does the ramping), so the level must lie within the instrument's present range (the
      driver raises ValueError otherwise, before sending anything): choose ``voltage_range`` for the
      gate limits in the station file.
    - :meth:`voltage` is the programmed level (``:SOUR:LEV?``).
    - :meth:`set_current_limit` sets the current protection level (``:SOUR:PROT:CURR``), rounded
      down to the 1 mA step and capped at 200 mA, so never looser than asked; a limit below 1 mA is
      refused with :class:`LimitError` before anything is sent.
    """

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        if driver.source_mode() != "VOLT":
            driver.source_mode("VOLT")  # the driver refuses while the output is on
        driver.ramp_mode("JUMP")  # a driver-side setting only; nothing is sent

    def set_voltage(self, volts: float) -> None:
        self.driver.voltage(volts)

    def voltage(self) -> float:
        return float(self.driver.voltage())

    def leakage_current(self) -> float:
        """NaN: the GS200 does not measure the current it sources (see the class docstring)."""
        return math.nan

    def set_output(self, on: bool) -> None:
        self.driver.output("on" if on else "off")

    def output(self) -> bool:
        return self.driver.output() == "on"

    def set_current_limit(self, amps: float) -> None:
        amps = abs(amps)
        if amps < PROTECTION_MIN:
            raise LimitError(
                f"current limit {amps:.3g} A is below the Yokogawa GS200's smallest current protection"
                f" level, {PROTECTION_MIN:g} A: set the gate's current_limit to at least that"
            )
        steps = math.floor(amps / PROTECTION_STEP + 1e-9)
        self.driver.current_limit(min(steps * PROTECTION_STEP, PROTECTION_MAX))
