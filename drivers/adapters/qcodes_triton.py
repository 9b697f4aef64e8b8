"""The QCoDeS Oxford Triton driver as a thermometry role adapter; heater H1 drives the mixing chamber.

The Triton regulates with a temperature loop on a thermometer channel (``DEV:T<n>:TEMP:LOOP``): the
loop holding heater H1 has the setpoint (TSET), the PID and the heater range (``LOOP:RANGE``, mA).
The driver's ``pid_*`` parameters address the loop of its ``pid_control_channel``, a client-side
number (5 when the driver starts, whatever the fridge is doing), so this adapter first finds the
channel whose loop holds H1 and points the driver at it.

What the driver cannot express, and how it is mapped:

- Range 0 ("off"): the Triton has no zero range. ``set_heater_range(0)`` switches the loop off and
  sets the heater's manual power to 0 (``SET:DEV:H1:HTR:SIG:POWR:0``, sent with ``driver.write``: the
  driver has no heater-power parameter; an Oxford loop switched off may leave the heater at its last
  power). As on a Lakeshore at range 0, the heater then stays off, even when the role asks for closed
  loop, until a non-zero range is set again: the adapter remembers it.
- ``heater_output``: the Triton reports the heater's current, not a percentage: the adapter reads
  ``READ:DEV:H1:HTR:SIG:CURR`` (``driver.ask``) and divides by the range.
- Moving the loop to another channel carries the setpoint and the range over, so that the new
  channel's own (stale) loop settings never drive the heater, and leaves its loop off until set.
- Only heater H1: the driver binds H1 and no other heater to a loop.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["QcodesTriton"]

#: the Triton's MC heater ranges as the driver takes them [mA], by full-scale current [A]
_RANGES_MA: dict[float, float] = {
    316e-6: 0.316,
    1e-3: 1,
    3.16e-3: 3.16,
    10e-3: 10,
    31.6e-3: 31.6,
    100e-3: 100,
}
_SCALE = {"": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


class QcodesTriton:
    """Binds ``qcodes.instrument_drivers.oxford.OxfordTriton`` (heater: ``H1``)."""

    heater_ranges: tuple[float, ...] = (0.0, *_RANGES_MA)

    def __init__(self, driver: Any, heater: str = "H1") -> None:
        if heater != "H1":
            raise ValueError(
                f"the QCoDeS OxfordTriton driver binds only heater H1 to a temperature loop, not {heater!r}"
            )
        self.driver, self.heater = driver, heater
        self.channel = self._heater_channel()
        if self.channel is not None:
            driver.pid_control_channel(self.channel)  # H1 is there already: points the driver at it
        self._heater_on = driver.pid_mode() == "on"  # a range other than 0 has been chosen
        self._loop_wanted = self._heater_on  # closed loop has been asked for

    def _heater_channel(self) -> int | None:
        for ch in range(1, 17):
            if self.driver.ask(f"READ:DEV:T{ch}:TEMP:LOOP:HTR").rsplit(":", 1)[-1].strip() == self.heater:
                return ch
        return None

    def temperature(self, channel: int) -> float:
        value = getattr(self.driver, f"T{channel}")()
        return math.nan if value is None else float(value)  # None: NOT_FOUND

    def setpoint(self) -> float:
        return float(self.driver.pid_setpoint())

    def set_setpoint(self, kelvin: float) -> None:
        self.driver.pid_setpoint(kelvin)

    def heater_range(self) -> float:
        if not self._heater_on and self.driver.pid_mode() == "off":
            return 0.0
        return float(self.driver.pid_range()) * 1e-3

    def set_heater_range(self, amps: float) -> None:
        if amps <= 0.0:
            self._heater_on = False
            self.driver.pid_mode("off")
            self.driver.write(f"SET:DEV:{self.heater}:HTR:SIG:POWR:0")
            return
        ma = next(m for a, m in _RANGES_MA.items() if abs(a - amps) <= 1e-3 * a)
        self.driver.pid_range(ma)
        self._heater_on = True
        if self._loop_wanted:
            self.driver.pid_mode("on")

    def set_closed_loop(self, channel: int, pid: tuple[float, float, float] | None = None) -> None:
        if channel != self.channel:
            setpoint, ma = self.driver.pid_setpoint(), self.driver.pid_range()
            self.driver.pid_mode("off")
            self.driver.pid_control_channel(channel)  # SET:DEV:T<channel>:TEMP:LOOP:HTR:H1
            self.driver.pid_mode("off")
            self.driver.pid_range(min(_RANGES_MA.values(), key=lambda m: abs(m - ma)))
            self.driver.pid_setpoint(setpoint)
            self.channel = channel
        if pid is not None:
            self.driver.pid_p(pid[0])
            self.driver.pid_i(pid[1])
            self.driver.pid_d(pid[2])
        self._loop_wanted = True
        if self._heater_on:
            self.driver.pid_mode("on")

    def heater_output(self) -> float:
        full_scale = self.heater_range()
        if full_scale == 0.0:
            return 0.0
        reply = self.driver.ask(f"READ:DEV:{self.heater}:HTR:SIG:CURR").rsplit(":", 1)[-1]
        match = re.fullmatch(r"\s*([-+]?[\d.]+(?:[eE][-+]?\d+)?)\s*([mun]?)A\s*", reply)
        if match is None:
            raise ValueError(f"unexpected heater current reply {reply!r}")
        return 100.0 * float(match.group(1)) * _SCALE[match.group(2)] / full_scale
