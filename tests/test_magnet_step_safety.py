"""A field step's short path (one message to start it, one read at its arrival), proved from the AMI 430's
command log on the simulated lab.

- Safety (hypothesis): random sequences of small steps from the held field, long ramps, targets and
  rates on and past the limits, NaN and infinities. Each refused request sends nothing; each allowed
  one is carried out; the log shows every field target within max_field and among the targets asked
  for, every rate set within (0, max_rate], a step from a held field started by the one compound
  message ``CONF:FIELD:TARG <B>;RAMP``, and the field (sampled every 0.1 s of each wait) never faster
  than max_rate.
- A regression guard on the messages a step sends: from a held field, a step shorter than ``poll``
  sends two messages (start, the read at arrival) and costs its ramp time plus one message; a longer
  one adds one state read per ``poll`` of ramp.
- A quench during a step, between steps and during a long ramp, and a supply paused from its front
  panel, still end the step with :class:`QuenchError` / :class:`SafetyError`.
- With a persistent switch installed the adapter keeps the driver's ``set_field`` and its checks.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterator
from itertools import pairwise

import pytest
from conftest import STATION
from hypothesis import example, given
from hypothesis import strategies as st
from qbs_lab.drivers.errors import QuenchError, SafetyError
from test_safety_properties import (
    MAGNET_FIELDS,
    MAGNET_RATES,
    SETTINGS,
    FieldSampler,
    connect,
    magnet_allowed,
    magnet_commands,
    request,
)

from qbs_lab.plan import Axis, Plan, linspace
from qbs_lab.runner import Runner
from qbs_lab.sim import SimLab
from qbs_lab.sim.emulators.command_log import LoggedCommand
from qbs_lab.station import Station, load_station

CONFIG = load_station(STATION)
MAGNET = CONFIG.magnet
RATE = MAGNET.max_rate


@contextlib.contextmanager
def rig(seed: int = 0) -> Iterator[tuple[SimLab, Station]]:
    with SimLab.from_station(STATION, seed=seed) as lab:
        with contextlib.redirect_stdout(io.StringIO()):
            stn = CONFIG.connect(lab=lab)
        with stn:
            yield lab, stn


def messages(log: list[LoggedCommand]) -> list[list[str]]:
    """The commands of ``log`` grouped by message: the parts of one ``;``-compound message arrive at
    one instant, and every message costs the lab's I/O latency, so no two messages share a time."""
    grouped: dict[float, list[str]] = {}
    for c in log:
        grouped.setdefault(c.time, []).append(c.command.upper())
    return list(grouped.values())


def is_start(message: list[str], target: float) -> bool:
    """The step's start: the target and RAMP in one message."""
    return (
        len(message) == 2
        and message[0].startswith("CONF:FIELD:TARG ")
        and float(message[0].split()[1]) == target
        and message[1] == "RAMP"
    )


# -- safety ---------------------------------------------------------------------------------------
# a small step from the field held (as in a field sweep of 25 to 400 points), or any request
STEP_REQUESTS = st.one_of(
    st.tuples(st.just("by"), st.floats(-2e-3, 2e-3), MAGNET_RATES),
    st.tuples(st.just("to"), MAGNET_FIELDS, MAGNET_RATES),
)


@SETTINGS
@given(requests=st.lists(STEP_REQUESTS, min_size=1, max_size=8))
@example(requests=[("to", 0.006, None), ("by", 3e-5, None), ("by", 3e-5, None), ("by", -1e-3, None)])
@example(requests=[("to", MAGNET.max_field, None), ("by", 1e-6, None), ("by", -1e-6, RATE * 1.5)])
@example(requests=[("to", 0.01, RATE / 2), ("by", 1e-4, RATE), ("by", 1e-4, math.nan)])
def test_steps_never_send_a_field_or_rate_outside_limits_and_start_in_one_message(
    requests: list[tuple[str, float, float | None]],
) -> None:
    with SimLab.from_station(STATION, seed=0) as lab:
        emulator = lab.emulator("magnet")
        power_on_units = emulator.field_units, emulator.ramp_rate_units
        sampler = FieldSampler(lab)
        asked: set[float] = set()
        held: float | None = None  # the field the last allowed request ended holding at
        with connect(lab, clock=sampler) as stn:
            for kind, value, rate in requests:
                field = (held or 0.0) + value if kind == "by" else value
                allowed = magnet_allowed(field, rate)
                n0 = len(lab.command_log("magnet"))
                request(lab, lambda f=field, r=rate: stn.magnet.ramp_to(f, r), allowed)
                if not allowed:
                    continue
                asked.add(field)
                sampler.sample()
                assert sampler.samples[-1][2] == pytest.approx(field, abs=1e-9)
                sent = messages(lab.command_log("magnet")[n0:])
                if held is not None:  # from a held field: no read before the start, one message
                    start = next(i for i, m in enumerate(sent) if any("CONF:FIELD:TARG" in c for c in m))
                    assert is_start(sent[start], field), sent
                    assert all(
                        c.startswith("CONF:RAMP:RATE") or c.startswith("RAMP:RATE")
                        for m in sent[:start]
                        for c in m
                    ), f"reads before the step's start: {sent[:start]}"
                held = field
        lab.clock.sleep(10.0)  # nothing may move after the last request
        sampler.sample()
        coil = lab.state.magnet.coil_constant
        targets, rates = magnet_commands(lab.command_log("magnet"), coil, *power_on_units)

    assert set(targets) <= asked, f"targets sent that were never asked for: {set(targets) - asked}"
    if any(f != 0 for f in asked):
        assert targets, "no field target was ever sent"
    for b in targets:
        assert abs(b) <= MAGNET.max_field, f"field target {b!r} T beyond {MAGNET.max_field} T"
    for r in rates:
        assert 0 < r <= MAGNET.max_rate, f"ramp rate {r!r} T/s outside (0, {MAGNET.max_rate}] T/s"
    for (t0, s0, m0), (t1, s1, m1) in pairwise(sampler.samples):
        allowed_change = MAGNET.max_rate * (t1 - t0) * (1 + 1e-9) + 1e-12
        for name, b0, b1 in (("supply", s0, s1), ("magnet", m0, m1)):
            assert abs(b1 - b0) <= allowed_change, (
                f"{name} field moved {b0!r} -> {b1!r} T in {t1 - t0:.6g} s (t = {t0:.6g} s)"
            )


# -- messages per step: a regression guard ----------------------------------------------------------
@pytest.mark.parametrize("size", [3e-5, 5e-4, -2e-4, 0.0])
def test_a_short_step_from_a_held_field_sends_two_messages_and_costs_one(size: float) -> None:
    with rig() as (lab, stn):
        clock, magnet, latency = stn.clock, stn.magnet, lab.clock.io_latency
        magnet.ramp_to(0.006)  # the first ramp reads the supply's state and field and sets the rate
        here = 0.006
        for k in range(20):
            target = here + size
            n0, t0 = len(lab.command_log("magnet")), clock.now()
            magnet.ramp_to(target)
            took = clock.now() - t0
            sent = messages(lab.command_log("magnet")[n0:])
            assert len(sent) == 2, (k, sent)  # was 11: set_field's nine, a state read before and after
            assert is_start(sent[0], target) and sent[1] == ["STATE?"], sent
            ramp = abs(size) / RATE
            # the start message, then the ramp: the read is sent to reach the supply as it arrives
            # (a step of no travel waits for nothing: its read's own time is then its cost)
            assert ramp + latency <= took <= max(ramp, latency) + latency + 1e-5, (k, took, ramp)
            assert lab.state.magnet.magnet_field() == pytest.approx(target, abs=1e-12)
            here = target


def test_a_long_ramp_reads_the_state_every_poll_and_once_at_its_arrival() -> None:
    with rig() as (lab, stn):
        stn.magnet.ramp_to(0.006)
        n0, t0 = len(lab.command_log("magnet")), stn.clock.now()
        stn.magnet.ramp_to(0.018)
        took = stn.clock.now() - t0
        sent = messages(lab.command_log("magnet")[n0:])
        ramp = 0.012 / RATE
        reads = [m for m in sent if m == ["STATE?"]]
        assert is_start(sent[0], 0.018) and len(sent) == 1 + len(reads)
        assert ramp / MAGNET.poll - 1 <= len(reads) <= math.ceil(ramp / MAGNET.poll) + 1
        assert ramp + lab.clock.io_latency <= took <= ramp + lab.clock.io_latency + 1e-5


def test_a_run_of_small_steps_costs_its_floor_plus_one_message_a_step() -> None:
    plan = Plan("steps", axes=(Axis("B", linspace(0.0, 0.012, 201)),), fixed={}, park=False)
    with rig() as (lab, stn):
        n0 = len(lab.command_log("magnet"))
        result = Runner(plan, stn).run()
        latency = lab.clock.io_latency
        sent = messages(lab.command_log("magnet")[n0:])
    assert result.status == "completed", result.message
    starts = [m for m in sent if any(c.startswith("CONF:FIELD:TARG") for c in m)]
    assert len(starts) == 201 and all(len(m) == 2 and m[1] == "RAMP" for m in starts)
    state_reads = sum(m == ["STATE?"] for m in sent)
    assert state_reads <= 201 + 2  # one at each arrival, and the first ramp's own
    floor = result.floor["ramp"]
    assert floor == pytest.approx(0.012 / RATE)
    # 200 steps of 60 µT are 30 ms of ramp each: the start message is all they add; the first ramp
    # (to 0 T) asks the state, the field, the rate (read, set, read back), the coil constant, current
    # limit and switch, starts and reads: 11 messages
    assert floor + 200 * latency <= result.phases["ramp"] <= floor + (200 + 11) * latency + 1e-3


# -- faults during and after a step ---------------------------------------------------------------
def test_a_quench_during_a_short_step_ends_it() -> None:
    with rig() as (lab, stn):
        stn.magnet.ramp_to(0.006)
        lab.faults.add("quench", "magnet", at_time=stn.clock.now() + 0.1)
        with pytest.raises(QuenchError):
            stn.magnet.ramp_to(0.007)  # 0.5 s of ramp: the quench comes 0.1 s into it
        assert lab.state.magnet.quenched
        n0 = len(lab.command_log("magnet"))
        with pytest.raises(QuenchError):  # the next one reads the state first and sends no target
            stn.magnet.ramp_to(0.0071)
        assert not any("TARG" in c.command.upper() for c in lab.command_log("magnet")[n0:])


def test_a_quench_between_steps_ends_the_next_at_its_arrival_and_nothing_moves() -> None:
    with rig() as (lab, stn):
        stn.magnet.ramp_to(0.006)
        lab.state.magnet.quench()  # while the point at 6 mT is measured
        n0, t0 = len(lab.command_log("magnet")), stn.clock.now()
        with pytest.raises(QuenchError):
            stn.magnet.ramp_to(0.00603)
        log = lab.command_log("magnet")[n0:]
        ramp = [c for c in log if c.command.upper() == "RAMP"]
        assert ramp and ramp[0].error is not None  # the latched supply refused it
        assert stn.clock.now() - t0 <= 0.00003 / RATE + 2 * lab.clock.io_latency + 1e-5
        assert lab.state.magnet.field() == 0.0 and lab.state.magnet.magnet_field() == 0.0


def test_a_quench_during_a_long_ramp_is_seen_within_poll() -> None:
    with rig() as (lab, stn):
        stn.magnet.ramp_to(0.006)
        at = stn.clock.now() + 2.2
        lab.faults.add("quench", "magnet", at_time=at)
        with pytest.raises(QuenchError):
            stn.magnet.ramp_to(0.018)  # 6 s of ramp
        assert at < stn.clock.now() <= at + MAGNET.poll + lab.clock.io_latency


def test_a_supply_paused_from_its_front_panel_during_a_step_is_a_fault() -> None:
    with rig() as (lab, stn):
        stn.magnet.ramp_to(0.006)
        original = lab.clock.sleep

        def sleep_then_pause(seconds: float) -> None:
            original(seconds)
            with lab.state.lock:  # every wait and message ends with the supply paused
                lab.state.sync()
                lab.state.magnet.pause()

        lab.clock.sleep = sleep_then_pause  # type: ignore[method-assign]
        try:
            with pytest.raises(SafetyError, match="paused"):
                stn.magnet.ramp_to(0.0065)
        finally:
            lab.clock.sleep = original  # type: ignore[method-assign]
        assert lab.state.magnet.field() < 0.0065


# -- a persistent switch keeps the driver's checks ------------------------------------------------------
def test_with_a_switch_installed_a_step_goes_through_set_field_and_its_switch_check() -> None:
    with SimLab.from_station(STATION, seed=0) as lab:
        lab.state.magnet.switch_installed = True
        with contextlib.redirect_stdout(io.StringIO()):
            stn = CONFIG.connect(lab=lab)
        with stn:
            with pytest.raises(Exception, match="Switch heater is not on"):
                stn.magnet.ramp_to(0.006)  # the supply would ramp, the coil would not follow
            assert lab.state.magnet.magnet_field() == 0.0
            stn.drivers["magnet"].switch_heater.state(True)
            n0 = len(lab.command_log("magnet"))
            stn.magnet.ramp_to(0.006)
            sent = [c.command.upper() for c in lab.command_log("magnet")[n0:]]
            assert "PS?" in sent and "PAUSE" in sent  # the driver's own set_field
            assert lab.state.magnet.magnet_field() == pytest.approx(0.006, abs=1e-9)


def test_a_supply_slower_than_its_rate_still_ends_each_step_at_its_hold() -> None:
    """A supply whose voltage limit caps the ramp at half the rate set: the read at the expected
    arrival finds it ramping, the role reads again (often, then less often) and each step ends held."""
    with rig() as (lab, stn):
        stn.magnet.ramp_to(0.006)
        m = lab.state.magnet
        m.voltage_limit = 0.5 * RATE / m.coil_constant * m.inductance  # dI/dt <= V / L: half the rate
        here = 0.006
        for _ in range(10):
            t0 = stn.clock.now()
            stn.magnet.ramp_to(here + 1e-4)
            took = stn.clock.now() - t0
            here += 1e-4
            assert m.magnet_field() == pytest.approx(here, abs=1e-12)
            assert 2e-4 / RATE <= took < 2e-4 / RATE + 0.1  # the slower ramp, plus the reads past it
