"""Safety of the roles, proved from what the instruments received (issue 3, first "Done when").

Hypothesis sends random sequences of set requests through the roles of the reference station on the
simulated lab: requests inside the limits, outside them, on their edges, NaN and infinities. Each
request outside the limits must raise :class:`LimitError` and send nothing to any instrument; each
request inside them must be carried out (so a role that sends nothing cannot pass). Then the
emulators' command logs (``SimLab.command_log``: what each instrument received, when, on the lab's
clock) are read back, command by command, and must show that

- gate (Keithley 2450): every source level lies in [min, max]; consecutive levels differ by at most
  max_step; consecutive levels are at least |dV| / max_rate apart in time;
- magnet (AMI 430): every field target has |B| <= max_field; every ramp rate set on the supply is in
  (0, max_rate] (in T/s, converted from the units the supply was put in); and the field itself, sampled
  every 0.1 s of every wait, never moved faster than max_rate;
- thermometry (Lakeshore 372): every setpoint of the sample heater (output 0) is in [0,
  max_temperature] and every heater range of output 0 has a full-scale current <= max_heater_range;
- RF (SGS100A): every power level is <= max_power, and the output is never switched on while the
  level is above the cap (the source may be left above it from the front panel).

The limits are the reference station.yaml's, read with the project's loader. Headers are matched as
the instruments read them (short or long form, any case) with the emulators' SCPI pattern matcher.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import pytest
from conftest import STATION
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from qbs_lab.drivers.errors import LimitError

from qbs_lab.sim import SimLab
from qbs_lab.sim.cryostat import HEATER_RANGES
from qbs_lab.sim.emulators.base import LoggedCommand
from qbs_lab.sim.scpi import Pattern
from qbs_lab.station import Station, load_station

CONFIG = load_station(STATION)
GATE, MAGNET, THERMO, RF = CONFIG.gate, CONFIG.magnet, CONFIG.thermometry, CONFIG.rf
assert RF is not None, "the reference station has an RF source"

STEP_TOL = 1e-9  # V: a level may differ from the previous one by max_step + STEP_TOL at most
TIME_TOL = 1e-9  # s: consecutive levels may come TIME_TOL sooner than |dV| / max_rate
FIELD_SAMPLE = 0.1  # s: the magnet's field is sampled this often during every wait of the role

#: full-scale current [A] of the Lakeshore 372 sample-heater range index (RANGE 0,<index>)
LAKESHORE_RANGES = (0.0, 31.6e-6, 100e-6, 316e-6, 1e-3, 3.16e-3, 10e-3, 31.6e-3, 100e-3)

SETTINGS = settings(
    max_examples=50,
    deadline=None,
    # the autouse fixture that closes QCoDeS instruments is not needed per example: each example
    # opens its own SimLab and closes its own Station
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

NASTY = (math.nan, math.inf, -math.inf)


# -- helpers ----------------------------------------------------------------------------------------
def connect(lab: SimLab, clock: Any = None) -> Station:
    """The reference station's roles on the simulated lab (a ``with`` block closes the drivers)."""
    return CONFIG.connect(visalib=lab.visalib, clock=clock or lab.clock)


def request(lab: SimLab, call: Callable[[], object], allowed: bool) -> None:
    """Make one set request: inside the limits it must go through; outside them it must raise
    :class:`LimitError` and leave every instrument's command log as it was."""
    if allowed:
        call()
        return
    before = {name: len(lab.command_log(name)) for name in lab.instruments}
    with pytest.raises(LimitError):
        call()
    sent = {
        name: f"{len(log) - n} commands, from {[c.command for c in log[n : n + 4]]}"
        for name, n in before.items()
        if len(log := lab.command_log(name)) != n
    }
    assert not sent, f"a refused request reached the instruments: {sent}"


def writes(log: list[LoggedCommand], *patterns: str) -> list[LoggedCommand]:
    """The commands (not queries) of ``log`` whose header matches one of ``patterns``."""
    compiled = [Pattern(p) for p in patterns]
    return [c for c in log if any(p.match(c.header) is not None for p in compiled)]


def number(command: LoggedCommand, i: int) -> float:
    """Argument ``i`` as a number; anything else fails the test (a value we cannot read is unsafe)."""
    try:
        return float(command.args[i])
    except (IndexError, ValueError):
        pytest.fail(f"cannot read argument {i} of {command.command!r} as a number")


# -- gate ---------------------------------------------------------------------------------------
GATE_LEVEL = "[:SOURce#]:VOLTage[:LEVel][:IMMediate][:AMPLitude]"
#: other ways to move the 2450's output: none may be used
GATE_OTHER_ROUTES = (
    "[:SOURce#]:CURRent[:LEVel][:IMMediate][:AMPLitude]",
    "[:SOURce#]:SWEep:VOLTage:LINear",
    "[:SOURce#]:SWEep:VOLTage:LINear:STEP",
    "[:SOURce#]:SWEep:VOLTage:LIST",
    "[:SOURce#]:SWEep:VOLTage:LOG",
    "[:SOURce#]:LIST:VOLTage",
)


def gate_allowed(volts: float) -> bool:
    return math.isfinite(volts) and GATE.min <= volts <= GATE.max


# absolute targets (anywhere, on and just past the edges, not numbers) and moves by whole steps from
# the last target reached (the distances at which a ramp's step is exactly max_step)
GATE_REQUESTS = st.one_of(
    st.tuples(st.just("to"), st.floats(GATE.min - 20, GATE.max + 20)),
    st.tuples(
        st.just("to"),
        st.sampled_from(
            [
                GATE.min,
                GATE.max,
                GATE.safe_value,
                math.nextafter(GATE.max, math.inf),
                math.nextafter(GATE.min, -math.inf),
                GATE.max + 1e-9,
                *NASTY,
            ]
        ),
    ),
    st.tuples(st.just("by_steps"), st.integers(-4, 4)),
)


def run_gate(requests: list[tuple[str, float]]) -> None:
    """Send ``requests`` through the gate role (("to", V) or ("by_steps", k): k max_steps from the last
    target reached) on a fresh lab, then check the Keithley's log (:func:`check_gate_log`)."""
    with SimLab.from_station(STATION, seed=0) as lab:
        level0 = (lab.clock.now(), lab.state.gate.voltage_setpoint)  # what the source holds at start
        reached = GATE.safe_value
        any_allowed = False
        with connect(lab) as stn:
            for kind, value in requests:
                target = reached + value * GATE.max_step if kind == "by_steps" else value
                allowed = gate_allowed(target)
                request(lab, lambda t=target: stn.gate.ramp_to(t), allowed)
                if allowed:
                    reached, any_allowed = target, True
                    assert lab.state.gate.voltage_setpoint == pytest.approx(target, abs=1e-9)
                    assert lab.state.gate.output_on
        check_gate_log(lab.command_log("gate"), level0, any_allowed)


def check_gate_log(log: list[LoggedCommand], level0: tuple[float, float], any_allowed: bool) -> None:
    """Every level in [min, max], every step <= max_step, every step no sooner than max_rate allows
    (``level0``: time and level the source held before the log's first command)."""
    assert not writes(log, *GATE_OTHER_ROUTES), "the gate was moved by other than its level"
    for c in writes(log, "[:SOURce#]:FUNCtion[:MODE]"):
        assert c.args and c.args[0].upper().startswith("VOLT"), f"source function changed: {c.command}"
    levels = [level0, *((c.time, number(c, 0)) for c in writes(log, GATE_LEVEL))]
    if any_allowed:
        assert len(levels) > 1, "no level was ever sent"
    for _, v in levels[1:]:
        assert GATE.min <= v <= GATE.max, f"gate level {v!r} V outside [{GATE.min}, {GATE.max}] V"
    for (t0, v0), (t1, v1) in pairwise(levels):
        step = abs(v1 - v0)
        assert step <= GATE.max_step + STEP_TOL, (
            f"gate step {v0!r} -> {v1!r} V is {step!r} V, above max_step {GATE.max_step} V"
        )
        assert t1 - t0 >= step / GATE.max_rate - TIME_TOL, (
            f"gate step {v0!r} -> {v1!r} V came {t1 - t0:.6g} s after the previous level, sooner than"
            f" {step / GATE.max_rate:.6g} s at max_rate {GATE.max_rate} V/s"
        )


@SETTINGS
@given(requests=st.lists(GATE_REQUESTS, min_size=1, max_size=6))
def test_gate_never_receives_a_level_outside_limits_a_large_step_or_a_fast_step(
    requests: list[tuple[str, float]],
) -> None:
    run_gate(requests)


@settings(SETTINGS, max_examples=25)
@given(start=st.floats(GATE.min + 2.5, GATE.max - 2.5), steps=st.sampled_from([-4, -3, -2, 2, 3, 4]))
@example(start=1.57421875, steps=2)  # the source reads back 1.574219 V: 7 significant digits
def test_gate_ramp_of_whole_steps_from_any_level_never_steps_more_than_max_step(
    start: float, steps: int
) -> None:
    """A ramp whose length is a whole number of max_steps has steps of exactly max_step: the edge. The
    ramp must be cut from the level the source holds, which its readback only approximates."""
    run_gate([("to", start), ("by_steps", steps)])


# -- magnet -------------------------------------------------------------------------------------
class FieldSampler:
    """The lab's clock for the roles, sampling the magnet's field every FIELD_SAMPLE s of each wait.

    The virtual clock moves only on waits and I/O, so cutting a wait into slices changes nothing for
    the instruments; the samples (time, supply field, field in the magnet) are taken from the lab's
    physical state, brought up to each instant.
    """

    def __init__(self, lab: SimLab) -> None:
        self.lab = lab
        self.samples: list[tuple[float, float, float]] = []
        self.sample()

    def now(self) -> float:
        return self.lab.clock.now()

    def sleep(self, seconds: float) -> None:
        slices = max(1, math.ceil(seconds / FIELD_SAMPLE))
        for _ in range(slices):
            self.lab.clock.sleep(seconds / slices)
            self.sample()

    def sample(self) -> None:
        state = self.lab.state
        with state.lock:
            state.sync()
            self.samples.append((self.lab.clock.now(), state.magnet.field(), state.magnet.magnet_field()))


def magnet_allowed(field: float, rate: float | None) -> bool:
    rate = MAGNET.max_rate if rate is None else rate
    return (
        math.isfinite(field)
        and abs(field) <= MAGNET.max_field
        and math.isfinite(rate)
        and 0 < rate <= MAGNET.max_rate
    )


MAGNET_FIELDS = st.one_of(
    st.floats(-1.5 * MAGNET.max_field, 1.5 * MAGNET.max_field),
    st.sampled_from(
        [MAGNET.max_field, -MAGNET.max_field, math.nextafter(MAGNET.max_field, math.inf), *NASTY]
    ),
)
# in-limit rates no slower than max_rate / 4 keep a ramp within a few hundred seconds of lab time
MAGNET_RATES = st.one_of(
    st.none(),
    st.floats(MAGNET.max_rate / 4, MAGNET.max_rate),
    st.sampled_from(
        [
            MAGNET.max_rate,
            math.nextafter(MAGNET.max_rate, math.inf),
            1.5 * MAGNET.max_rate,
            5 * MAGNET.max_rate,
            0.0,
            -MAGNET.max_rate,
            *NASTY,
        ]
    ),
)


def magnet_commands(
    log: list[LoggedCommand], coil: float, field_units: int, rate_units: int
) -> tuple[list[float], list[float]]:
    """Every field target [T] and every segment ramp rate [T/s] the supply received, converted from
    the units in force when each was sent: ``field_units`` and ``rate_units`` at power-on (0 kG,
    1 T; 0 per second, 1 per minute), then as the log's unit commands set them. ``coil`` [T/A]."""
    targets: list[float] = []
    rates: list[float] = []
    for c in log:
        if writes([c], "CONFigure:COIL"):
            pytest.fail(f"the coil constant was changed: {c.command}")
        field_per_tesla = 10.0 if field_units == 0 else 1.0
        seconds_per_unit = 60.0 if rate_units == 1 else 1.0
        if writes([c], "CONFigure:FIELD:UNITS"):
            field_units = int(number(c, 0)) if c.error is None else field_units
        elif writes([c], "CONFigure:RAMP:RATE:UNITS"):
            rate_units = int(number(c, 0)) if c.error is None else rate_units
        elif writes([c], "CONFigure:FIELD:TARGet"):
            targets.append(number(c, 0) / field_per_tesla)
        elif writes([c], "CONFigure:CURRent:TARGet"):
            targets.append(number(c, 0) * coil)
        elif writes([c], "CONFigure:RAMP:RATE:FIELD"):  # <segment>,<rate>,<upper bound>
            rates.append(number(c, 1) / field_per_tesla / seconds_per_unit)
        elif writes([c], "CONFigure:RAMP:RATE:CURRent"):
            rates.append(number(c, 1) * coil / seconds_per_unit)
    return targets, rates


@SETTINGS
@given(requests=st.lists(st.tuples(MAGNET_FIELDS, MAGNET_RATES), min_size=1, max_size=4))
def test_magnet_never_receives_a_field_or_rate_outside_limits_and_never_ramps_faster(
    requests: list[tuple[float, float | None]],
) -> None:
    with SimLab.from_station(STATION, seed=0) as lab:
        emulator = lab.emulator("magnet")
        power_on_units = emulator.field_units, emulator.ramp_rate_units
        sampler = FieldSampler(lab)
        with connect(lab, clock=sampler) as stn:
            for field, rate in requests:
                allowed = magnet_allowed(field, rate)
                request(lab, lambda f=field, r=rate: stn.magnet.ramp_to(f, r), allowed)
                sampler.sample()
                if allowed:
                    assert sampler.samples[-1][2] == pytest.approx(field, abs=1e-9)
                    expected_rate = MAGNET.max_rate if rate is None else rate
                    assert lab.state.magnet.segments[0][0] == pytest.approx(expected_rate, rel=1e-6)
        lab.clock.sleep(10.0)  # nothing may move after the last request
        sampler.sample()
        coil = lab.state.magnet.coil_constant
        targets, rates = magnet_commands(lab.command_log("magnet"), coil, *power_on_units)

    if any(magnet_allowed(f, r) and f != 0 for f, r in requests):
        assert targets, "no field target was ever sent"
    for b in targets:
        assert abs(b) <= MAGNET.max_field, f"field target {b!r} T beyond {MAGNET.max_field} T"
    for r in rates:
        assert 0 < r <= MAGNET.max_rate, f"ramp rate {r!r} T/s outside (0, {MAGNET.max_rate}] T/s"
    samples = sampler.samples
    for (t0, s0, m0), (t1, s1, m1) in pairwise(samples):
        allowed_change = MAGNET.max_rate * (t1 - t0) * (1 + 1e-9) + 1e-12
        for name, b0, b1 in (("supply", s0, s1), ("magnet", m0, m1)):
            assert abs(b1 - b0) <= allowed_change, (
                f"{name} field moved {b0!r} -> {b1!r} T in {t1 - t0:.6g} s (t = {t0:.6g} s):"
                f" {abs(b1 - b0) / (t1 - t0):.6g} T/s, above max_rate {MAGNET.max_rate} T/s"
            )


# -- thermometry --------------------------------------------------------------------------------
def setpoint_allowed(kelvin: float) -> bool:
    return math.isfinite(kelvin) and 0 <= kelvin <= THERMO.max_temperature


def heater_range_allowed(amps: float) -> bool:
    return any(
        r <= THERMO.max_heater_range and math.isclose(amps, r, rel_tol=1e-12) for r in LAKESHORE_RANGES
    )


THERMO_REQUESTS = st.one_of(
    st.tuples(st.just("setpoint"), st.floats(-0.5, 2 * THERMO.max_temperature)),
    st.tuples(
        st.just("setpoint"),
        st.sampled_from(
            [0.0, THERMO.max_temperature, math.nextafter(THERMO.max_temperature, math.inf), -1e-9, *NASTY]
        ),
    ),
    st.tuples(st.just("range"), st.sampled_from(LAKESHORE_RANGES)),
    st.tuples(
        st.just("range"),
        st.sampled_from([THERMO.max_heater_range * 1.01, 5e-4, 1.0, -1e-3, *NASTY]),
    ),
    st.tuples(st.just("off"), st.just(0.0)),
)


@SETTINGS
@given(requests=st.lists(THERMO_REQUESTS, min_size=1, max_size=8))
def test_thermometry_never_receives_a_setpoint_above_its_cap_or_a_heater_range_above_its_cap(
    requests: list[tuple[str, float]],
) -> None:
    with SimLab.from_station(STATION, seed=0) as lab:
        fridge = lab.state.fridge
        with connect(lab) as stn:
            role = stn.thermometry
            for kind, value in requests:
                if kind == "setpoint":
                    allowed = setpoint_allowed(value)
                    request(lab, lambda v=value: role.set_setpoint(v), allowed)
                    if allowed:
                        aim = fridge.setpoint if fridge.setpoint_target is None else fridge.setpoint_target
                        assert aim == pytest.approx(value)
                elif kind == "range":
                    allowed = heater_range_allowed(value)
                    request(lab, lambda v=value: role.set_heater_range(v), allowed)
                    if allowed:
                        assert HEATER_RANGES[fridge.heater_range] == pytest.approx(value)
                else:
                    role.heater_off()
                    assert fridge.heater_range == 0
        log = lab.command_log("fridge")

    for c in log:
        header = c.header.upper()
        if header not in ("SETP", "RANGE") or not c.args or number(c, 0) != 0:
            continue  # only output 0, the sample heater on the mixing chamber, is capped
        if header == "SETP":
            kelvin = number(c, 1)
            assert 0 <= kelvin <= THERMO.max_temperature, (
                f"setpoint {kelvin!r} K outside [0, {THERMO.max_temperature}] K: {c.command!r}"
            )
        else:
            index = number(c, 1)
            assert index in range(len(LAKESHORE_RANGES)), f"no such heater range: {c.command!r}"
            amps = LAKESHORE_RANGES[int(index)]
            assert amps <= THERMO.max_heater_range, (
                f"heater range {amps:g} A above the cap {THERMO.max_heater_range:g} A: {c.command!r}"
            )


# -- RF -----------------------------------------------------------------------------------------
RF_POWER = "[:SOURce]:POWer[:LEVel][:IMMediate][:AMPLitude]"
RF_OUTPUT = ("OUTPut[:STATe]", "OUTPut:MASTer[:STATe]")
RF_MIN = -120.0  # dBm, the QCoDeS driver's lowest level (its validator refuses below)

RF_REQUESTS = st.one_of(
    st.tuples(st.just("power"), st.floats(RF_MIN, 30.0)),
    st.tuples(
        st.just("power"),
        st.sampled_from([RF.max_power, math.nextafter(RF.max_power, math.inf), RF.max_power + 0.004, *NASTY]),
    ),
    st.tuples(st.just("output"), st.booleans()),
)


@SETTINGS
@given(
    front_panel=st.floats(RF_MIN, 25.0).map(lambda p: round(p, 2)),
    requests=st.lists(RF_REQUESTS, min_size=1, max_size=8),
)
def test_rf_never_receives_a_power_above_its_cap_nor_switches_on_above_it(
    front_panel: float, requests: list[tuple[str, float | bool]]
) -> None:
    with SimLab.from_station(STATION, seed=0) as lab:
        rf = lab.state.rf
        with lab.state.lock:  # the source as someone left it on the front panel, output off
            rf.power, rf.output_on = front_panel, False
        with connect(lab) as stn:
            assert stn.rf is not None
            role = stn.rf
            for kind, value in requests:
                if kind == "power":
                    allowed = math.isfinite(value) and value <= RF.max_power
                    request(lab, lambda v=value: role.set_power(v), allowed)
                    if allowed:
                        assert rf.power == pytest.approx(round(value, 2), abs=1e-9)
                else:
                    role.set_output(bool(value))
                    assert rf.output_on is bool(value)
                    if value:
                        assert rf.power <= RF.max_power
        log = lab.command_log("rf")

    power, output_on = front_panel, False
    for c in log:
        if writes([c], RF_POWER):
            dbm = number(c, 0)
            assert dbm <= RF.max_power, f"RF power {dbm!r} dBm above the cap {RF.max_power} dBm"
            if c.error is None:
                power = dbm
        elif writes([c], *RF_OUTPUT) and c.error is None:
            output_on = c.args[0].strip().upper() in ("1", "ON")
            assert not (output_on and power > RF.max_power), (
                f"RF output switched on at {power} dBm, above the cap {RF.max_power} dBm"
            )


# -- refused requests send nothing ------------------------------------------------------------------
def test_gate_out_of_limit_requests_send_nothing() -> None:
    with SimLab.from_station(STATION, seed=0) as lab, connect(lab) as stn:
        stn.gate.ramp_to(1.0)
        for volts in (GATE.max + 1e-6, GATE.min - 1.0, 1e3, math.nan, math.inf, -math.inf):
            request(lab, lambda v=volts: stn.gate.ramp_to(v), allowed=False)
        assert lab.state.gate.voltage_setpoint == pytest.approx(1.0)


def test_magnet_out_of_limit_requests_send_nothing() -> None:
    with SimLab.from_station(STATION, seed=0) as lab, connect(lab) as stn:
        stn.magnet.ramp_to(0.01)
        bad = [
            (MAGNET.max_field * 1.001, None),
            (-MAGNET.max_field * 2, None),
            (math.nan, None),
            (0.02, MAGNET.max_rate * 1.001),
            (0.02, 0.0),
            (0.02, -MAGNET.max_rate),
            (0.02, math.inf),
        ]
        for field, rate in bad:
            request(lab, lambda f=field, r=rate: stn.magnet.ramp_to(f, r), allowed=False)
        assert stn.magnet.field() == pytest.approx(0.01, abs=1e-9)


def test_thermometry_out_of_limit_requests_send_nothing() -> None:
    with SimLab.from_station(STATION, seed=0) as lab, connect(lab) as stn:
        role = stn.thermometry
        role.set_setpoint(0.1)
        role.set_heater_range(1e-3)
        for kelvin in (THERMO.max_temperature * 1.001, 300.0, -0.1, math.nan, math.inf):
            request(lab, lambda k=kelvin: role.set_setpoint(k), allowed=False)
        for amps in (31.6e-3, 100e-3, 5e-4, -1e-3, math.nan):
            request(lab, lambda a=amps: role.set_heater_range(a), allowed=False)
        assert lab.state.fridge.setpoint == pytest.approx(0.1)
        assert HEATER_RANGES[lab.state.fridge.heater_range] == pytest.approx(1e-3)


def test_rf_out_of_limit_requests_send_nothing() -> None:
    with SimLab.from_station(STATION, seed=0) as lab, connect(lab) as stn:
        assert stn.rf is not None
        role = stn.rf
        role.set_power(RF.max_power - 10)
        for dbm in (RF.max_power + 0.01, 20.0, math.nan, math.inf):
            request(lab, lambda p=dbm: role.set_power(p), allowed=False)
        assert lab.state.rf.power == pytest.approx(RF.max_power - 10)
