"""The dilution refrigerator's thermal state: mixing chamber, sample stage, thermometers and the heater.

The mixing chamber (MC) balances heater power against the dilution unit's cooling power,
P_cool(T) = k_cool * (T^2 - T_base^2), with a heat capacity C = c_mc * T (so the relaxation time,
C / (dP_cool/dT) = c_mc / (2 k_cool), is the same at every temperature: ``tau_mc``). The sample stage
follows the MC with its own lag ``tau_sample``. The heater is driven like a Lakeshore 372's sample heater:
off, open loop (a manual percentage of the selected current range) or closed loop (PID on a thermometer
channel), with the setpoint optionally ramped at a set rate and the heater switched off when a channel
exceeds its temperature limit. Heater power is (output fraction * range current)^2 * heater resistance.

Thermometers are channels of the resistance bridge: each is tied to a stage (``mc``, ``sample``, or a
fixed plate temperature). Resistance readings follow a RuOx-like law R = R0 * exp((T0/T)^0.25).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["HEATER_RANGES", "Cryostat", "CryostatParams"]

#: Lakeshore 372 sample-heater ranges: index -> full-scale current [A] (0 = off).
HEATER_RANGES: tuple[float, ...] = (
    0.0,
    31.6e-6,
    100e-6,
    316e-6,
    1e-3,
    3.16e-3,
    10e-3,
    31.6e-3,
    100e-3,
)


@dataclass(frozen=True)
class CryostatParams:
    """Thermal parameters (SI). Defaults: a small dilution refrigerator."""

    T_base: float = 0.015  # K, base temperature with no heater
    k_cool: float = 1e-3  # W/K^2, cooling power coefficient (10 uW at 100 mK)
    tau_mc: float = 40.0  # s, mixing chamber relaxation time
    tau_sample: float = 20.0  # s, sample stage lag behind the MC
    heater_resistance: float = 120.0  # Ohm
    #: thermometer channel -> stage ('mc', 'sample') or a fixed temperature [K] for other plates
    channels: dict[int, str | float] = field(
        default_factory=lambda: {1: 45.0, 2: 3.4, 5: 0.85, 6: "mc", 8: "sample"}
    )
    R0: float = 1000.0  # Ohm, RuOx law prefactor
    T0: float = 6.0  # K, RuOx law scale


class Cryostat:
    """State of the fridge's cold stages and the heater that drives the mixing chamber."""

    #: largest integration step [s]; the MC time constant is tens of seconds
    max_step = 0.5

    def __init__(self, params: CryostatParams | None = None, T_start: float | None = None) -> None:
        self.params = params or CryostatParams()
        p = self.params
        self.T_mc = p.T_base if T_start is None else T_start
        self.T_sample = self.T_mc
        self.channels: dict[int, str | float] = dict(p.channels)
        self.heater_resistance = p.heater_resistance
        # heater (Lakeshore 372 sample heater, output 0)
        self.heater_mode = "off"  # "off", "open_loop", "closed_loop"
        self.heater_range = 0  # index into HEATER_RANGES
        self.manual_output = 0.0  # % of range, open loop (and added to the PID output)
        self.setpoint = 0.0  # K
        self.pid: tuple[float, float, float] = (10.0, 20.0, 0.0)  # P, I [s], D [s]
        self.control_channel = 6
        self.setpoint_target: float | None = None  # K, where a setpoint ramp is heading
        self.setpoint_ramp_rate = 0.0  # K/s
        self.temperature_limits: dict[int, float] = {}  # channel -> K: heater off above it
        self.limit_tripped = False
        self.stuck_heater = False  # fault: heater output stuck at full scale
        self._integral = 0.0
        self._dTdt = 0.0

    # -- readings ---------------------------------------------------------------------------
    def temperature(self, channel: int) -> float:
        """True temperature [K] at a thermometer channel (0 if no sensor is connected there)."""
        stage = self.channels.get(channel)
        if stage is None:
            return 0.0
        if stage == "mc":
            return self.T_mc
        if stage == "sample":
            return self.T_sample
        return float(stage)

    def resistance(self, channel: int) -> float:
        """Sensor resistance [Ohm] at a channel (RuOx-like law), 0 if no sensor."""
        T = self.temperature(channel)
        if T <= 0:
            return 0.0
        return self.params.R0 * math.exp((self.params.T0 / T) ** 0.25)

    def heater_output(self) -> float:
        """Heater output [% of the range's full-scale current]."""
        if self.stuck_heater:
            return 100.0
        if self.heater_mode == "off" or self.heater_range == 0:
            return 0.0
        if self.heater_mode == "open_loop":
            return min(max(self.manual_output, 0.0), 100.0)
        return self._pid_output()

    def heater_power(self) -> float:
        """Power dissipated in the heater [W]."""
        rng = len(HEATER_RANGES) - 1 if self.stuck_heater else self.heater_range
        current = self.heater_output() / 100.0 * HEATER_RANGES[rng]
        return current * current * self.heater_resistance

    def ramp_setpoint(self, target: float, rate: float) -> None:
        """Move the setpoint to ``target`` [K] at ``rate`` [K/s] (at once when rate is 0)."""
        if rate > 0 and target != self.setpoint:
            self.setpoint_target, self.setpoint_ramp_rate = target, rate
        else:
            self.setpoint, self.setpoint_target = target, None

    # -- dynamics ---------------------------------------------------------------------------
    def _pid_output(self) -> float:
        P, I, D = self.pid
        error = self.setpoint - self.temperature(self.control_channel)
        integral = self._integral / I if I > 0 else 0.0
        # derivative on the measurement, not the error, so a setpoint step gives no kick
        out = P * (error + integral - D * self._dTdt) * 100.0 + self.manual_output
        return min(max(out, 0.0), 100.0)

    def step(self, dt: float) -> None:
        """Advance the thermal state by ``dt`` seconds (one explicit step, dt <= max_step)."""
        p = self.params
        if self.setpoint_target is not None:
            gap = self.setpoint_target - self.setpoint
            move = self.setpoint_ramp_rate * dt
            if abs(gap) <= move:
                self.setpoint, self.setpoint_target = self.setpoint_target, None
            else:
                self.setpoint += math.copysign(move, gap)
        if any(self.temperature(ch) > limit for ch, limit in self.temperature_limits.items()):
            # the controller's over-temperature protection: every heater off, and it stays off
            self.heater_mode, self.heater_range, self.limit_tripped = "off", 0, True
        T_control = self.temperature(self.control_channel)
        if self.heater_mode == "closed_loop" and self.heater_range > 0:
            error = self.setpoint - T_control
            # anti-windup: integrate only while the output is not pinned at a rail
            out = self._pid_output()
            if 0.0 < out < 100.0 or (out >= 100.0 and error < 0) or (out <= 0.0 and error > 0):
                self._integral += error * dt
        else:
            self._integral = 0.0
        T = self.T_mc
        c_mc = p.tau_mc * 2 * p.k_cool  # J/K^2, so that C = c_mc*T relaxes in tau_mc
        p_cool = p.k_cool * (T * T - p.T_base * p.T_base)
        dT = (self.heater_power() - p_cool) / (c_mc * T) * dt
        # a large heater step can overshoot an explicit step at low T: cap the relative change
        self.T_mc = max(T + max(min(dT, 0.5 * T), -0.5 * (T - p.T_base)), p.T_base)
        self.T_sample += (self.T_mc - self.T_sample) * (1.0 - math.exp(-dt / p.tau_sample))
        self._dTdt = (self.temperature(self.control_channel) - T_control) / dt if dt > 0 else 0.0

    def advance(self, dt: float) -> None:
        """Advance by ``dt`` seconds in steps of at most :attr:`max_step`."""
        while dt > 0:
            h = min(dt, self.max_step)
            self.step(h)
            dt -= h
