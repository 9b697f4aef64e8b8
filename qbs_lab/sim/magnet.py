"""The superconducting magnet and its supply, as an AMI 430 programmer runs them.

The supply ramps its output toward the target at the rate of the segment the present field lies in
(``segments``: (rate [T/s], upper bound [T]) pairs, as the 430's ramp segments), capped by the supply's
voltage limit (dI/dt <= V_lim / L), then holds. PAUSE stops the ramp where it is; ZERO ramps to zero
current. A quench drops the field to zero at once and latches state 7 until reset; it follows from
fault injection, from a ramp faster than the coil tolerates (``quench_rate``), and from heating the
persistent switch while the supply current differs from the coil's (a current step through the coil).

With a persistent switch installed, the field at the sample follows the supply only while the switch
heater is on (after its heating time); with the switch cold the magnet is persistent and its field is
frozen while the supply may ramp on its own.

States are the 430's ``STATE?`` codes.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Magnet", "MagnetState"]


class MagnetState(IntEnum):
    """AMI 430 ``STATE?`` codes."""

    RAMPING = 1
    HOLDING = 2
    PAUSED = 3
    MANUAL_UP = 4
    MANUAL_DOWN = 5
    ZEROING = 6
    QUENCH = 7
    AT_ZERO = 8
    HEATING_SWITCH = 9
    COOLING_SWITCH = 10


class Magnet:
    """Supply output, magnet field and ramp state machine (all SI: T, A, T/s, s)."""

    def __init__(
        self,
        coil_constant: float = 0.1,
        current_limit: float = 50.0,
        inductance: float = 20.0,
        switch_installed: bool = False,
    ) -> None:
        self.coil_constant = coil_constant  # T/A
        self.current_limit = current_limit  # A
        self.inductance = inductance  # H
        self.segments: list[tuple[float, float]] = [(0.001, coil_constant * current_limit)]
        self.target = 0.0
        self.state = MagnetState.AT_ZERO
        self.quenched = False
        self._supply_current = 0.0  # A
        self._magnet_current = 0.0  # A, in the coil (differs from the supply's when persistent)
        self._rate_now = 0.0  # A/s, signed, for the supply voltage L dI/dt
        self.voltage_limit = 2.0  # V, caps dI/dt at voltage_limit / inductance
        self.quench_rate = 0.05  # T/s: ramping faster than this quenches the coil
        self.switch_tolerance = 0.05  # A: supply/coil current mismatch a warm switch tolerates
        self.switch_installed = switch_installed
        self.switch_heater_on = False
        self.switch_current = 0.02  # A
        self.switch_heat_time = 20.0  # s
        self.switch_cool_time = 20.0  # s
        self._switch_timer = 0.0
        self._resume_state = MagnetState.HOLDING

    # -- readings -----------------------------------------------------------------------------
    def field(self) -> float:
        """Supply-side field [T] (supply current times coil constant)."""
        return self._supply_current * self.coil_constant

    def magnet_field(self) -> float:
        """Field at the sample [T]: frozen at its persistent value while the switch is cold."""
        return self._magnet_current * self.coil_constant

    def current(self) -> float:
        """Supply current [A]."""
        return self._supply_current

    def magnet_current(self) -> float:
        """Current in the coil [A]."""
        return self._magnet_current

    def voltage(self) -> float:
        """Supply voltage [V]: L dI/dt while ramping through a warm switch (or without one)."""
        if self.persistent():
            return 0.0
        return self.inductance * self._rate_now

    def persistent(self) -> bool:
        """True when a switch is installed and cold: the magnet keeps its field on its own."""
        return self.switch_installed and not self.switch_heater_on

    def ramp_rate(self, field: float, outward: bool = True) -> float:
        """Ramp rate [T/s] of the segment ``field`` lies in; on a boundary, the one being entered.

        Moving away from zero (``outward``) a field on a segment's upper bound belongs to the next
        segment; moving toward zero, to the one below. The supply's voltage limit caps the rate at
        voltage_limit / inductance (in A/s).
        """
        rate = self.segments[-1][0]
        for seg_rate, upper in self.segments:
            if abs(field) < upper or (not outward and abs(field) <= upper):
                rate = seg_rate
                break
        return min(rate, self.voltage_limit / self.inductance * self.coil_constant)

    # -- commands -------------------------------------------------------------------------------
    def _go(self, state: MagnetState) -> None:
        if self.quenched:
            return
        if self.state in (MagnetState.HEATING_SWITCH, MagnetState.COOLING_SWITCH):
            self._resume_state = state  # takes effect when the switch timer runs out
        else:
            self.state = state

    def ramp(self) -> None:
        self._go(MagnetState.RAMPING)

    def pause(self) -> None:
        self._go(MagnetState.PAUSED)

    def zero(self) -> None:
        self._go(MagnetState.ZEROING)

    def quench(self) -> None:
        """A quench: the stored field collapses and the supply latches state QUENCH."""
        self.quenched = True
        self.state = MagnetState.QUENCH
        self._supply_current = 0.0
        self._magnet_current = 0.0
        self._rate_now = 0.0

    def reset_quench(self) -> None:
        if self.quenched:
            self.quenched = False
            self.state = MagnetState.PAUSED

    def set_switch_heater(self, on: bool) -> None:
        """Switch heater on/off; the switch then heats or cools for its set time."""
        if not self.switch_installed or on == self.switch_heater_on:
            return
        if on and abs(self._supply_current - self._magnet_current) > self.switch_tolerance:
            self.quench()  # the warm switch would put the current difference across the coil at once
            return
        self.switch_heater_on = on
        if self.state not in (MagnetState.HEATING_SWITCH, MagnetState.COOLING_SWITCH):
            self._resume_state = self.state
        self.state = MagnetState.HEATING_SWITCH if on else MagnetState.COOLING_SWITCH
        self._switch_timer = self.switch_heat_time if on else self.switch_cool_time

    # -- dynamics ---------------------------------------------------------------------------
    def advance(self, dt: float) -> None:
        """Advance the supply by ``dt`` seconds (exact: piecewise-linear ramps)."""
        self._rate_now = 0.0
        if self.state in (MagnetState.HEATING_SWITCH, MagnetState.COOLING_SWITCH):
            used = min(dt, self._switch_timer)
            self._switch_timer -= used
            dt -= used
            if self._switch_timer > 0:
                return
            self.state = self._resume_state
        goal = None
        if self.state == MagnetState.RAMPING:
            goal = self.target / self.coil_constant
        elif self.state == MagnetState.ZEROING:
            goal = 0.0
        start, elapsed = self._supply_current, dt
        k = self.coil_constant
        while goal is not None and dt > 0 and self._supply_current != goal:
            i = self._supply_current
            direction = 1.0 if goal > i else -1.0
            outward = i * direction >= 0
            rate = self.ramp_rate(i * k, outward) / k  # A/s
            if rate * k > self.quench_rate and not self.persistent():
                self.quench()
                return
            # time to the goal or to the next segment boundary, whichever comes first
            boundary = goal
            for _, upper in self.segments:
                for b in (upper / k, -upper / k):
                    if (
                        (b - i) * direction > 1e-15
                        and (goal - b) * direction > 0
                        and abs(b - i) < abs(boundary - i)
                    ):
                        boundary = b
            t_needed = abs(boundary - i) / rate
            if t_needed <= dt:
                self._supply_current = boundary
                dt -= t_needed
            else:
                self._supply_current = i + direction * rate * dt
                dt = 0.0
        if goal is not None and self._supply_current == goal:
            self.state = MagnetState.HOLDING if self.state == MagnetState.RAMPING else MagnetState.AT_ZERO
        if elapsed > 0 and self.state in (MagnetState.RAMPING, MagnetState.ZEROING):
            self._rate_now = (self._supply_current - start) / elapsed
        if not self.persistent():
            self._magnet_current = self._supply_current
