"""Waits that end when the physics ends, on the simulated lab's virtual clock (fridge time, not wall time).

- A field step costs its ramp time (travel / rate) plus well under a second, small step or large.
- A procedure whose measurements are its own (no lock-in read) spends no fridge time settling and never
  touches the lock-in; one that declares a settle time waits that long before each point; one that
  says it reads the lock-in waits the lock-in's settling.
- A temperature setpoint costs the thermal time to reach the band and the hold, plus little: the
  stabilizer's readings come when the approach says the band will be reached.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

import pytest
from conftest import STATION

from qbs_lab.actuators import TemperatureStabilizer
from qbs_lab.plan import Axis, Measurement, Plan, TemperaturePolicy, linspace
from qbs_lab.runner import Runner
from qbs_lab.sim.lab import SimLab
from qbs_lab.station import Station, load_station

CONFIG = load_station(STATION)
RATE = CONFIG.magnet.max_rate


@contextlib.contextmanager
def station(seed: int = 0) -> Iterator[tuple[SimLab, Station]]:
    with SimLab.from_station(STATION, seed=seed) as lab:
        with contextlib.redirect_stdout(io.StringIO()):
            st = CONFIG.connect(lab=lab)
        with st:
            yield lab, st


@pytest.mark.parametrize("steps", [[0.006, 0.00603, 0.0065, 0.0185, 0.0, -0.004, 0.0001]])
def test_a_field_step_costs_its_ramp_time_plus_well_under_a_second(steps: list[float]) -> None:
    with station() as (lab, st):
        clock, magnet = st.clock, st.magnet
        here = magnet.field()
        for target in steps:
            reads0 = len([c for c in lab.command_log("magnet") if c.header == "STATE?"])
            t0 = clock.now()
            magnet.ramp_to(target)
            took = clock.now() - t0
            ramp = abs(target - here) / RATE
            assert ramp <= took < ramp + 0.1, (target, took, ramp)  # well under a second above it
            assert lab.state.magnet.magnet_field() == pytest.approx(target, abs=1e-9)
            # the state is read every poll during the ramp, then once at its arrival, not every 0.5 s
            # past it (the old wait's floor of 0.5 s a step)
            reads = len([c for c in lab.command_log("magnet") if c.header == "STATE?"]) - reads0
            assert reads <= ramp / CONFIG.magnet.poll + 3, (target, reads)
            here = target


def test_field_steps_of_a_run_are_at_their_floor() -> None:
    """A field sweep of 60 small steps: the ramp phase is the floor (travel / rate) plus ~20 ms a step."""
    plan = Plan("steps", axes=(Axis("B", linspace(0.0, 0.012, 61)),), fixed={}, park=False)
    with station() as (_, st):
        result = Runner(plan, st).run()
    assert result.status == "completed", result.message
    assert result.floor["ramp"] == pytest.approx(0.012 / RATE)
    assert result.floor["ramp"] <= result.phases["ramp"] < result.floor["ramp"] + 60 * 0.05


def test_own_measurements_spend_no_fridge_time_settling() -> None:
    values = iter(range(10**6))
    plan = Plan(
        "own",
        axes=(Axis("V_g", (0.0, 0.5, 1.0, 1.5)),),
        measurements=(Measurement("n", lambda: float(next(values))),),
        park=False,
    )
    with station() as (lab, st):
        before = list(lab.command_log("lockin"))
        result = Runner(plan, st).run()
        lockin_commands = lab.command_log("lockin")[len(before) :]
    assert result.status == "completed", result.message
    assert result.phases["settle"] == 0.0 and result.floor["settle"] == 0.0
    assert lockin_commands == []  # its time constant not even set: no lock-in is read
    # the gate's ramps at 1 V/s are the fridge time, nearly all of it
    assert result.phases["ramp"] == pytest.approx(1.5, abs=0.1)


@pytest.mark.parametrize(("settle", "lockin"), [(1.5, False), (0.0, True), (20.0, True)])
def test_a_procedure_declares_its_own_settle_time(settle: float, lockin: bool) -> None:
    plan = Plan(
        "own",
        axes=(Axis("V_g", (0.0, 0.5, 1.0)),),
        measurements=(
            Measurement("a", lambda: 1.0, settle=settle, lockin=lockin),
            Measurement("b", lambda: 2.0),
        ),
        park=False,
    )
    with station() as (_, st):
        result = Runner(plan, st).run()
        lockin_settle = st.resistance.settle_time() if lockin else 0.0
    assert result.status == "completed", result.message
    per_point = max(settle, lockin_settle)
    assert result.phases["settle"] == pytest.approx(3 * per_point, abs=0.05)
    if lockin:
        assert lockin_settle > 1.0  # the lock-in's own settling (0.3 s, 24 dB/oct: ~4 s)


def test_measurement_settle_must_be_a_time() -> None:
    with pytest.raises(ValueError, match="settle must be a time >= 0 s"):
        Measurement("a", lambda: 1.0, settle=-1.0)
    with pytest.raises(ValueError, match="settle must be a time >= 0 s"):
        Measurement("a", lambda: 1.0, settle=float("nan"))


@pytest.mark.parametrize("setpoints", [(0.06, 0.24, 0.12), (0.1, 0.09)])
def test_a_temperature_costs_its_thermal_time_and_hold_plus_little(setpoints: tuple[float, ...]) -> None:
    policy = TemperaturePolicy(hold=30.0)
    with station(seed=3) as (_, st):
        stab = TemperatureStabilizer(st, policy, st.clock)
        for T in setpoints:
            floor0, t0 = stab.floor, st.clock.now()
            stab.move(T)
            took, floor = st.clock.now() - t0, stab.floor - floor0
            assert stab.outcomes[-1][2] == "stable"
            assert abs(st.thermometry.temperature_sample() - T) <= policy.band(T) * 1.5
            # the floor: the last reading outside the band, plus the hold; the wait ends just after
            assert policy.hold <= floor <= took
            assert took - floor < 2.0, (T, took, floor)
