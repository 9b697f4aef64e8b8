"""The derived role: the sample's resistance R = V / I from the lock-in and the measurement chain.

The lock-in's sine output V_osc drives the current through a bias resistor R_bias much larger than
the sample, and the lock-in reads the voltage X across the sample: I = (V_osc - X) / R_bias and
R = X / I. Before a reading the meter waits until the output filter has settled to ``residual`` of a
step (:func:`qbs_lab.filters.settle_time`, from the time constant and slope), so a change made just
before (a field step, a new excitation) is fully seen. A clipped reading moves the sensitivity up a decade
and is taken again; a reading below 5 % of full scale moves it down to the smallest range it fills
less than half of (autoranging).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qbs_lab.drivers.errors import RoleError
from qbs_lab.drivers.protocols import LockinAdapter, LockinStatus

from qbs_lab.clock import Clock
from qbs_lab.filters import settle_time

__all__ = ["ResistanceMeter", "ResistanceReading"]


@dataclass(frozen=True)
class ResistanceReading:
    """One resistance point: R [Ohm], X and Y [V], current I [A], and what the lock-in said."""

    R: float
    X: float
    Y: float
    I: float
    sensitivity: float
    status: LockinStatus


class ResistanceMeter:
    """R = V/I with a settle wait and sensitivity autoranging.

    Parameters
    ----------
    lockin : LockinAdapter
    bias_resistor : float
        R_bias [Ohm] between the lock-in's sine output and the sample.
    clock : Clock
    residual : float
        How settled a reading must be: the filter's remaining step fraction (1e-3: within 0.1 %).
    """

    def __init__(
        self, lockin: LockinAdapter, bias_resistor: float, clock: Clock, residual: float = 1e-3
    ) -> None:
        self.lockin, self.bias_resistor, self.clock, self.residual = lockin, bias_resistor, clock, residual
        self.settled = 0.0  # seconds waited for the filter to settle, summed (physics, not overhead)

    def settle_time(self) -> float:
        """Seconds to wait after a change before a reading is settled to ``residual``."""
        return settle_time(self.lockin.time_constant(), self.lockin.filter_slope(), self.residual)

    def measure(
        self, *, settle: bool = True, autorange: bool = True, max_tries: int = 12
    ) -> ResistanceReading:
        """One settled reading of R (with the settle wait unless ``settle`` is False)."""
        if settle:
            self._settle()
        for _ in range(max_tries):
            self.lockin.status()  # clear flags latched before this reading
            x, y = self.lockin.read_xy()
            status = self.lockin.status()
            sens = self.lockin.sensitivity()
            if not autorange or not self._rerange(x, y, sens, status):
                break
            self._settle()
        else:
            raise RoleError(f"lock-in did not settle on a sensitivity in {max_tries} tries")
        v_osc = self.lockin.amplitude()
        current = (v_osc - x) / self.bias_resistor
        R = x / current if current else math.inf
        return ResistanceReading(R, x, y, current, sens, status)

    def _settle(self) -> None:
        wait = self.settle_time()
        self.settled += wait
        self.clock.sleep(wait)

    def _rerange(self, x: float, y: float, sens: float, status: LockinStatus) -> bool:
        """Step the sensitivity if the reading asks for it; True when a new reading is needed."""
        scale = self.lockin.sensitivities
        i = min(range(len(scale)), key=lambda k: abs(scale[k] - sens))
        biggest = max(abs(x), abs(y))
        if status.output_overload and i + 1 < len(scale):
            # the reading is clipped, its size unknown: up a decade (three ranges), not one range per try
            self.lockin.set_sensitivity(scale[min(i + 3, len(scale) - 1)])
            return True
        if biggest > 0.95 * sens and i + 1 < len(scale):
            self.lockin.set_sensitivity(scale[i + 1])
            return True
        if not status.input_overload and i > 0 and biggest < 0.05 * sens and biggest < 0.5 * scale[i - 1]:
            # straight to the smallest range the reading fills less than half of: one re-read, not many
            lower = [s for s in scale[:i] if biggest < 0.5 * s]
            self.lockin.set_sensitivity(lower[0] if lower else scale[i - 1])
            return True
        return False
