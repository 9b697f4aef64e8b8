"""How each axis kind moves through the station's roles, and what the station measures at a point.

:func:`check_plan` checks every setpoint of a plan against the station file's limits without touching
an instrument (the roles check again before each command). :func:`bind_axes` gives each axis a mover:
V_g and B ramp through the gate and magnet roles (steps, rates, leakage, quench), T sets the heater and
waits until the sample thermometer is stable (:class:`TemperatureStabilizer`), P_rf sets the RF source
(:data:`~qbs_lab.plan.RF_OFF`: output off) and f_rf its frequency, I_exc the lock-in's excitation and
f_exc its frequency. :func:`station_measurements` reads R, X, Y, I, T_mc, T_sample, B_meas, V_g_meas
and I_leak.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from qbs_lab.clock import Clock
from qbs_lab.drivers.errors import LimitError, SafetyError
from qbs_lab.plan import RF_OFF, Plan, TemperaturePolicy
from qbs_lab.station import Station, StationConfig

__all__ = [
    "STATION_VARIABLES",
    "Mover",
    "StabilizationTimeout",
    "TemperatureStabilizer",
    "bind_axes",
    "check_plan",
    "station_measurements",
]

#: what the station measures at every point: name -> (units, long_name)
STATION_VARIABLES: dict[str, tuple[str, str]] = {
    "R": ("Ohm", "sample resistance"),
    "X": ("V", "lock-in in-phase voltage"),
    "Y": ("V", "lock-in quadrature voltage"),
    "I": ("A", "excitation current applied"),
    "T_mc": ("K", "mixing-chamber temperature"),
    "T_sample": ("K", "sample-stage temperature"),
    "B_meas": ("T", "magnetic field read back"),
    "V_g_meas": ("V", "gate voltage read back"),
    "I_leak": ("A", "gate leakage current"),
}

#: the phase each axis kind's moves are accounted to (estimate and progress)
PHASE = {
    "V_g": "ramp",
    "B": "ramp",
    "T": "stabilize",
    "P_rf": "ramp",
    "I_exc": "ramp",
    "f_exc": "ramp",
    "f_rf": "ramp",
}


class StabilizationTimeout(SafetyError):
    """The sample did not stabilize at a temperature setpoint within the policy's timeout."""


@dataclass
class Mover:
    """Moves one axis: ``move(value)`` returns when the axis is there (waits included)."""

    name: str
    phase: str
    move: Callable[[float], None]


def check_plan(plan: Plan, config: StationConfig) -> list[str]:
    """Every setpoint of ``plan`` against the station's limits; the problems, one line each (none: [])."""
    problems: list[str] = []
    setpoints = plan.setpoints()
    for name, values in setpoints.items():
        for v in values:
            try:
                _check_one(name, v, plan, config)
            except LimitError as err:
                problems.append(f"{name} = {v:g}: {err}")
                break  # one line per axis: the first value out of bounds tells the story
    return problems


def _check_one(name: str, v: float, plan: Plan, config: StationConfig) -> None:
    if name == "V_g":
        config.gate.check(v)
    elif name == "B":
        config.magnet.check(v, plan.field_policy.rate or config.magnet.max_rate)
        if plan.field_policy.sweep == "continuous":  # the sweep's own rate, checked before any line
            config.magnet.check(v, plan.field_policy.sweep_rate)
        for rate in plan.search.field_rates() if plan.search is not None else ():
            config.magnet.check(v, rate)
    elif name == "T":
        lim = config.thermometry
        if not 0 < v <= lim.max_temperature:
            raise LimitError(f"temperature setpoint {v:g} K is outside (0, {lim.max_temperature}] K")
        heater = plan.temperature_policy.heater_range(v)
        if heater > lim.max_heater_range * (1 + 1e-9):
            raise LimitError(
                f"heater range {heater:g} A for {v:g} K is above the cap {lim.max_heater_range:g} A"
            )
    elif name == "P_rf":
        if config.rf is None or config.role_instrument("rf") is None:
            raise LimitError("the station has no RF source (roles.rf and safety.rf)")
        if v != RF_OFF and round(v, 2) > config.rf.max_power:
            raise LimitError(f"RF power {v:g} dBm is above the cap {config.rf.max_power} dBm")
    elif name == "f_rf":
        if config.rf is None or config.role_instrument("rf") is None:
            raise LimitError("the station has no RF source (roles.rf and safety.rf)")
        if not 1e6 <= v <= 20e9:
            raise LimitError(f"RF frequency {v:g} Hz is outside 1 MHz to 20 GHz")
    elif name == "f_exc":
        if not 1.0 <= v <= 102e3:
            raise LimitError(f"lock-in frequency {v:g} Hz is outside 1 Hz to 102 kHz")
    elif name == "I_exc":
        volts = v * config.bias_resistor
        if not (v > 0 and 0.004 <= volts <= 5.0):
            raise LimitError(
                f"excitation {v:g} A needs {volts:g} V rms through {config.bias_resistor:g} Ohm;"
                " the lock-in's sine output goes from 0.004 to 5 V"
            )


class TemperatureStabilizer:
    """Sets the heater for a setpoint and waits until the sample thermometer is stable.

    The readings come when the physics asks for them: out of the band, the time to enter it is
    predicted from the readings (an exponential approach: its time constant measured on the fly), and
    the next reading comes half-way to it (at most ``poll`` s later, at least :attr:`fine` s); in the
    band, the next reading is at the end of the hold. ``outcomes`` records each setpoint's result:
    (setpoint [K], seconds waited, "stable" or "timeout"); ``floor`` sums what the physics needed: the
    time to the last reading outside the band, plus the hold.
    """

    #: the shortest wait between readings [s]
    fine = 0.25

    def __init__(self, station: Station, policy: TemperaturePolicy, clock: Clock) -> None:
        self.station, self.policy, self.clock = station, policy, clock
        self.outcomes: list[tuple[float, float, str]] = []
        self.watch: Callable[[], None] | None = None  # called at every poll (the runner's hazard check)
        self.floor = 0.0

    def move(self, setpoint: float) -> None:
        p, thermo = self.policy, self.station.thermometry
        thermo.set_heater_range(p.heater_range(setpoint))
        thermo.set_setpoint(setpoint)
        band = p.band(setpoint)
        start = self.clock.now()
        stable_since: float | None = None
        last_out = start  # the last reading outside the band: the physics took at least this long
        history: list[tuple[float, float]] = []  # (time, distance from the setpoint) of each reading
        while True:
            now = self.clock.now()
            error = abs(thermo.temperature_sample() - setpoint)
            if error <= band:
                stable_since = now if stable_since is None else stable_since
                if now - stable_since >= p.hold:
                    self.outcomes.append((setpoint, now - start, "stable"))
                    self.floor += min(last_out - start + p.hold, now - start)
                    return
                wait = min(p.poll, stable_since + p.hold - now)
            else:
                stable_since, last_out = None, now
                wait = p.poll
                # the approach's time constant from a reading at least a poll back (closer ones are
                # mostly noise); read again half-way to the predicted entry: the readings close in on
                # it, so little time passes between the last reading outside the band and the first in
                back = [h for h in history if h[0] <= now - p.poll]
                if error < 1.5 * band:  # near the band, the thermometer's noise decides: read often
                    wait = self.fine
                elif back and back[-1][1] > error:
                    tau = (now - back[-1][0]) / math.log(back[-1][1] / error)
                    wait = min(p.poll, max(self.fine, 0.5 * tau * math.log(error / band)))
            history.append((now, error))
            if now - start >= p.timeout:
                self.outcomes.append((setpoint, now - start, "timeout"))
                self.floor += now - start
                if p.on_timeout == "abort":
                    raise StabilizationTimeout(
                        f"the sample did not stay within {band * 1e3:.2g} mK of {setpoint * 1e3:.4g} mK for"
                        f" {p.hold:g} s within {p.timeout:g} s (it reads"
                        f" {thermo.temperature_sample() * 1e3:.4g} mK)"
                    )
                return
            if self.watch is not None:
                self.watch()  # hazards (quench, leakage) are not left to wait for the next point
            self.clock.sleep(max(wait, 1e-3))


def bind_axes(
    plan: Plan, station: Station | None, clock: Clock
) -> tuple[dict[str, Mover], TemperatureStabilizer | None]:
    """A mover for every axis and fixed setpoint of ``plan`` (custom axes use their setters)."""
    movers = {a.name: Mover(a.name, "ramp", a.setter) for a in plan.axes if a.setter is not None}
    stabilizer = None
    for name in [a.name for a in plan.axes] + list(plan.fixed):
        if name in movers:
            continue
        if station is None:
            raise ValueError(f"axis {name} needs a station")
        if name == "T":
            stabilizer = TemperatureStabilizer(station, plan.temperature_policy, clock)
            movers[name] = Mover(name, PHASE[name], stabilizer.move)
        else:
            movers[name] = Mover(name, PHASE[name], _station_setter(name, plan, station))
    return movers, stabilizer


def _station_setter(name: str, plan: Plan, station: Station) -> Callable[[float], None]:
    if name == "V_g":
        return station.gate.ramp_to
    if name == "B":
        rate = plan.field_policy.rate
        return lambda tesla: station.magnet.ramp_to(tesla, rate)
    if name == "P_rf":
        rf = station.rf
        if rf is None:
            raise LimitError("the station has no RF source for the axis P_rf")

        def set_rf(dbm: float) -> None:
            if dbm == RF_OFF:
                rf.set_output(False)
                return
            rf.set_power(dbm)
            rf.set_output(True)

        return set_rf
    if name == "f_exc":
        return station.lockin.set_frequency
    if name == "f_rf":
        if station.rf is None:
            raise LimitError("the station has no RF source for f_rf")
        return station.rf.set_frequency
    bias = station.config.bias_resistor  # I_exc: the lock-in's sine output through the bias resistor
    return lambda amps: station.lockin.set_amplitude(amps * bias)


def station_measurements(station: Station) -> Callable[[], tuple[float, ...]]:
    """A function that reads the station's standard set, in :data:`STATION_VARIABLES` order."""
    meter, thermo, magnet, gate = station.resistance, station.thermometry, station.magnet, station.gate

    def read() -> tuple[float, ...]:
        r = meter.measure(settle=False)
        return (
            r.R,
            r.X,
            r.Y,
            r.I,
            thermo.temperature_mc(),
            thermo.temperature_sample(),
            magnet.field(),
            gate.voltage(),
            gate.leakage(),
        )

    return read


def park(station: Station, fault: bool = False) -> list[str]:
    """The station's safe state (``safe_state:`` in the station file); what failed, if any.

    RF off and the gate at its safe value unless the policy says ``hold``; the magnet to 0 T, held, or
    left persistent at its field (``persistent``). The heater is switched off only after a fault or an
    interruption (``fault``), and only with ``heater: off``: after a completed run the next one may want
    the same temperature.
    """
    policy = station.config.safe_state
    failures: list[str] = []
    steps: list[tuple[str, Callable[[], None]]] = []
    if station.rf is not None and policy.rf == "off":
        steps.append(("RF output off", lambda: station.rf.set_output(False)))  # type: ignore[union-attr]
    if policy.gate == "zero":
        steps.append((f"gate to {station.config.gate.safe_value} V", station.gate.to_safe_value))
    if policy.magnet == "zero":
        steps.append(("magnet to 0 T", lambda: station.magnet.ramp_to(0.0)))
    elif policy.magnet == "persistent":
        steps.append(("magnet persistent", station.magnet.make_persistent))
    if fault and policy.heater == "off":
        steps.append(("heater off", station.thermometry.heater_off))
    for what, step in steps:
        try:
            step()
        except Exception as err:  # park what can be parked; report the rest
            failures.append(f"{what}: {type(err).__name__}: {err}")
    return failures


def describe_parked(station: Station, fault: bool, failures: list[str]) -> str:
    """Where :func:`park` left each instrument, in words: ``gate 0 V, magnet 0 T (driven), heater off,
    RF off``; a step that failed says so (``gate NOT parked: ...``)."""
    policy = station.config.safe_state

    def step(prefix: str, done: str) -> str:
        failed = [f for f in failures if f.startswith(prefix)]
        return f"{done.split(' ')[0]} NOT parked ({failed[0]})" if failed else done

    parts = []
    if policy.gate == "zero":
        parts.append(step("gate to", f"gate {station.config.gate.safe_value:g} V"))
    else:
        parts.append("gate held at its last voltage")
    if policy.magnet == "zero":
        parts.append(step("magnet to 0 T", "magnet 0 T (driven)"))
    elif policy.magnet == "persistent":
        parts.append(step("magnet persistent", "magnet persistent at its field (supply at 0 A)"))
    else:
        parts.append("magnet held at its field (driven)")
    if fault and policy.heater == "off":
        parts.append(step("heater off", "heater off"))
    else:
        parts.append("heater on at its setpoint")
    if station.rf is not None:
        parts.append(step("RF output off", "RF off") if policy.rf == "off" else "RF held as it was")
    return ", ".join(parts)
