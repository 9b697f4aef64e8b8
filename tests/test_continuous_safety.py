"""Safety of continuous sweeps, proved from what the magnet supply received (issue 15).

As in ``test_safety_properties.py``: sweep requests inside and outside the limits (fields beyond
max_field, rates above max_rate, zero, negative, NaN) go through :meth:`MagnetRole.sweep_to`; each
outside one must raise :class:`LimitError` and send nothing; each inside one must arrive. Then the AMI
430 emulator's command log must hold only field targets with |B| <= max_field and ramp rates in
(0, max_rate], and the field, sampled every 0.1 s of every wait, must never move faster than max_rate.
A whole continuous field_isotherms run is checked the same way, and a plan whose sweep rate is above
the station's limit is refused before any instrument is touched.
"""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pytest
from conftest import STATION
from hypothesis import given
from hypothesis import strategies as st
from test_safety_properties import (
    MAGNET,
    MAGNET_FIELDS,
    MAGNET_RATES,
    SETTINGS,
    FieldSampler,
    connect,
    magnet_allowed,
    magnet_commands,
    request,
)

from qbs_lab.actuators import check_plan
from qbs_lab.interrupt import GuardedClock, StopRequest
from qbs_lab.plan import Axis, FieldPolicy, Plan, TemperaturePolicy, linspace
from qbs_lab.runner import Runner
from qbs_lab.sim import SimLab
from qbs_lab.station import load_station

CONFIG = load_station(STATION)


def check_magnet_log(
    lab: SimLab, samples: list[tuple[float, float, float]], power_on: tuple[int, int]
) -> list[float]:
    """Every target and rate the supply received within the limits, the field never faster than
    max_rate; the rates received."""
    targets, rates = magnet_commands(lab.command_log("magnet"), lab.state.magnet.coil_constant, *power_on)
    for b in targets:
        assert abs(b) <= MAGNET.max_field, f"field target {b!r} T beyond {MAGNET.max_field} T"
    for r in rates:
        assert 0 < r <= MAGNET.max_rate, f"ramp rate {r!r} T/s outside (0, {MAGNET.max_rate}] T/s"
    for (t0, s0, m0), (t1, s1, m1) in pairwise(samples):
        allowed = MAGNET.max_rate * (t1 - t0) * (1 + 1e-9) + 1e-12
        assert abs(s1 - s0) <= allowed and abs(m1 - m0) <= allowed, (t0, s0, s1, m0, m1)
    return rates


@SETTINGS
@given(
    requests=st.lists(
        st.tuples(MAGNET_FIELDS, MAGNET_RATES, st.sampled_from([0.05, 0.2, 1.0])), min_size=1, max_size=3
    )
)
def test_sweep_to_never_sends_a_field_or_rate_outside_limits_and_never_sweeps_faster(
    requests: list[tuple[float, float | None, float]],
) -> None:
    with SimLab.from_station(STATION, seed=0) as lab:
        emulator = lab.emulator("magnet")
        power_on = emulator.field_units, emulator.ramp_rate_units
        sampler = FieldSampler(lab)
        with connect(lab, clock=sampler) as stn:
            for field, rate, interval in requests:
                rate_in = MAGNET.max_rate if rate is None else rate
                allowed = magnet_allowed(field, rate_in)
                readings: list[float] = []

                def sweep(
                    f: float = field, r: float = rate_in, i: float = interval, out: list[float] = readings
                ) -> None:
                    stn.magnet.sweep_to(f, r, i, lambda: out.append(stn.magnet.field()))

                request(lab, sweep, allowed)
                sampler.sample()
                if allowed:
                    assert sampler.samples[-1][2] == pytest.approx(field, abs=1e-9)
                    assert lab.state.magnet.segments[0][0] == pytest.approx(rate_in, rel=1e-6)
                    assert readings, "the sweep read nothing"
        lab.clock.sleep(10.0)
        sampler.sample()
        check_magnet_log(lab, sampler.samples, power_on)


def isotherms_plan(sweep_rate: float) -> Plan:
    return Plan(
        "field_isotherms",
        axes=(Axis("T", (0.06, 0.12)), Axis("B", linspace(0.006, 0.018, 13), snake=True)),
        fixed={"V_g": 15.0},
        field_policy=FieldPolicy(sweep="continuous", sweep_rate=sweep_rate, interval=0.5),
        temperature_policy=TemperaturePolicy(hold=10.0),
    )


def test_a_continuous_isotherms_run_sends_only_in_limit_targets_and_its_sweep_rate() -> None:
    plan = isotherms_plan(sweep_rate=5e-4)
    assert check_plan(plan, CONFIG) == []
    with SimLab.from_station(STATION, seed=4) as lab:
        emulator = lab.emulator("magnet")
        power_on = emulator.field_units, emulator.ramp_rate_units
        sampler = FieldSampler(lab)
        with CONFIG.connect(lab=lab, clock=GuardedClock(sampler, StopRequest())) as station:
            result = Runner(plan, station).run()
        assert result.status == "completed", result.message
        rates = check_magnet_log(lab, sampler.samples, power_on)
    # the sweeps went at the plan's rate, the moves between lines and the park at the station's
    assert set(np.round(rates, 9)) <= {5e-4, MAGNET.max_rate}
    assert any(math.isclose(r, 5e-4) for r in rates)
    # the field was at 18 mT only through sweeps at 0.5 mT/s: between samples 0.1 s apart, no faster
    sweeping = [
        abs(s1 - s0) / (t1 - t0)
        for (t0, s0, _), (t1, s1, _) in pairwise(sampler.samples)
        if t1 > t0 and 0.0065 < s0 < 0.0175 and 0.0065 < s1 < 0.0175
    ]
    assert max(sweeping) <= 5e-4 * (1 + 1e-6)


def test_a_sweep_rate_above_the_station_limit_is_refused_before_anything_is_sent() -> None:
    plan = isotherms_plan(sweep_rate=2 * MAGNET.max_rate)
    problems = check_plan(plan, CONFIG)
    assert problems and "ramp rate" in problems[0]
    # and the role refuses it again if a runner is handed the plan anyway: no rate above the limit sent
    with SimLab.from_station(STATION, seed=1) as lab:
        emulator = lab.emulator("magnet")
        power_on = emulator.field_units, emulator.ramp_rate_units
        sampler = FieldSampler(lab)
        with CONFIG.connect(lab=lab, clock=GuardedClock(sampler, StopRequest())) as station:
            result = Runner(plan, station).run()
        assert result.status == "aborted" and "LimitError" in (result.message or ""), result.message
        check_magnet_log(lab, sampler.samples, power_on)
