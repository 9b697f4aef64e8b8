"""Suspenders on the simulated lab (virtual clock) and notifications.

Faults are injected into the lab's physical state at set virtual times by a clock hook (:class:`Hooked`,
between the lab's clock and the station's GuardedClock): a heater stuck at full scale, a quench, a
leakage spike, a lock-in input overload. Each run then shows its policy: a pause that waits and redoes
the line (every point stored, none taken while the fault lasted), a pause that times out, an abort that
leaves the gate at 0 V, a stop that asks the queue to stop. The notifier is tested against a command
and a webhook on 127.0.0.1.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import STATION
from qbs_lab.drivers.errors import LeakageError, QuenchError, RoleError
from qbs_lab.drivers.protocols import LockinStatus, MagnetStatus

from qbs_lab.clock import VirtualClock
from qbs_lab.interrupt import GuardedClock, StopRequest
from qbs_lab.notify import Notifier, validate_notify
from qbs_lab.plan import Axis, Measurement, Plan
from qbs_lab.procedure import load_procedure, parse_settings
from qbs_lab.runner import Runner, RunResult
from qbs_lab.sim import SimLab
from qbs_lab.sim.scpi import Pattern
from qbs_lab.station import Station, load_station
from qbs_lab.store.run_store import RunStore
from qbs_lab.suspenders import Suspenders, conditions, not_answering, validate_suspenders

CONFIG = load_station(STATION)
LIMIT = CONFIG.gate.leakage_limit  # 1 nA
GATE_LEVEL = Pattern("[:SOURce#]:VOLTage[:LEVel][:IMMediate][:AMPLitude]")
BAND = 0.05  # the mixing chamber's band in these tests: 5 % of the setpoint


# -- helpers ------------------------------------------------------------------------------------------
class Hooked:
    """A clock that runs scheduled actions once its time has passed them (checked at every now/sleep)."""

    virtual = True

    def __init__(self, clock: VirtualClock, events: list[tuple[float, Callable[[], None]]]) -> None:
        self.clock, self.events = clock, sorted(events, key=lambda e: e[0])
        self.fired: list[float] = []

    def _fire(self) -> None:
        while self.events and self.clock.now() >= self.events[0][0]:
            _, action = self.events.pop(0)
            self.fired.append(self.clock.now())
            action()

    def now(self) -> float:
        self._fire()
        return self.clock.now()

    def sleep(self, seconds: float) -> None:
        end = self.clock.now() + seconds
        while self.events and self.events[0][0] <= end:  # stop at each action's time on the way
            self.clock.sleep(self.events[0][0] - self.clock.now())
            self._fire()
        self.clock.sleep(end - self.clock.now())
        self._fire()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.clock, name)


def fault(lab: SimLab, apply: Callable[[Any], None]) -> Callable[[], None]:
    """An action that changes the lab's state (brought up to now first, so the change starts now)."""

    def action() -> None:
        with lab.state.lock:
            lab.state.sync()
            apply(lab.state)

    return action


@contextmanager
def sim(seed: int, schedule: Callable[[SimLab], list[tuple[float, Callable[[], None]]]]) -> Iterator[Any]:
    """Lab, hooked clock, station (on a GuardedClock over the hook) and stop request; closed after."""
    lab = SimLab.from_station(STATION, seed=seed)
    try:
        hooked = Hooked(lab.clock, schedule(lab))
        stop = StopRequest()
        clock = GuardedClock(hooked, stop)
        station = CONFIG.connect(lab=lab, clock=clock)
        try:
            yield lab, station, clock, stop, hooked
        finally:
            station.close()
    finally:
        lab.close()


def isotherms() -> Plan:
    """field_isotherms at 100 and 150 mK, 6 fields each: 12 points, about 430 s of fridge time."""
    proc = load_procedure("field_isotherms")
    return proc.plan(parse_settings(proc, ["temperatures=0.1,0.15", "num=6"]))


def field_sweep() -> Plan:
    """field_sweep 0 to 20 mT in 11 points at 15 V (no temperature): the gate is at 15 V by t = 16 s."""
    proc = load_procedure("field_sweep")
    return proc.plan(parse_settings(proc, ["B_stop=0.02", "num=11"]))


def run(
    plan: Plan,
    station: Station,
    stop: StopRequest,
    sus: Suspenders | None,
    store: RunStore | None = None,
) -> tuple[RunResult, list[tuple[int, tuple[int, ...], tuple[float, ...]]]]:
    """Run with the suspenders; the result and every point handed to subscribers (k, index, values)."""
    points: list[tuple[int, tuple[int, ...], tuple[float, ...]]] = []
    runner = Runner(
        plan,
        station,
        stop=stop,
        store=store,
        supervisor=sus,
        subscribers=[lambda k, i, v: points.append((k, i, tuple(v)))],
    )
    if store is not None:
        runner.store = store
    return runner.run(), points


def assert_gate_parked(lab: SimLab) -> None:
    """The gate at 0 V in the lab, and the last level the source received was 0 V."""
    with lab.state.lock:
        lab.state.sync()
        assert lab.state.gate.voltage_setpoint == pytest.approx(0.0, abs=1e-9)
        assert lab.state.gate.output_voltage() == pytest.approx(0.0, abs=1e-9)
    levels = [c for c in lab.command_log("gate") if GATE_LEVEL.match(c.header) is not None]
    assert levels and float(levels[-1].args[0]) == pytest.approx(0.0, abs=1e-9)


VARS = ("R", "X", "Y", "I", "T_mc", "T_sample", "B_meas", "V_g_meas", "I_leak", "t")
T_MC, I_LEAK, T = VARS.index("T_mc"), VARS.index("I_leak"), VARS.index("t")


# -- (a) heater runaway: pause, recover, redo the line; or time out ------------------------------------
HEATER_STUCK, HEATER_FREED = 198.0, 228.0  # s: during the first isotherm's third point (its settling)


def test_heater_runaway_pauses_and_redoes_the_line(tmp_path: Path) -> None:
    events: list[tuple[str, dict[str, Any]]] = []

    def schedule(lab: SimLab) -> list[tuple[float, Callable[[], None]]]:
        return [
            (HEATER_STUCK, fault(lab, lambda s: setattr(s.fridge, "stuck_heater", True))),
            (HEATER_FREED, fault(lab, lambda s: setattr(s.fridge, "stuck_heater", False))),
        ]

    with sim(2, schedule) as (_, station, clock, stop, hooked):
        plan = isotherms()
        section = {"mixing_chamber": {"band": BAND, "hold": 60, "poll": 10, "timeout": 3000}}
        sus = Suspenders(station, section, clock, notify=lambda e, **f: events.append((e, f)))
        runner = Runner(plan, station, stop=stop, supervisor=sus)
        store = RunStore.for_plan(tmp_path / "run.zarr", plan, runner.variable_attrs())
        result, points = run(plan, station, stop, sus, store)

    assert hooked.fired and hooked.fired[0] == pytest.approx(HEATER_STUCK, abs=1.0)
    assert result.status == "completed" and result.done == plan.size == 12
    assert store.measured().all()
    # one interruption: reason with numbers and units, redone from the line's first point
    (entry,) = result.interruptions
    assert entry["policy"] == "pause" and entry["outcome"] == "recovered"
    assert "mixing chamber at" in entry["reason"] and "mK" in entry["reason"]
    assert "setpoint 100 mK" in entry["reason"] and "band ±5 %" in entry["reason"]
    T_tripped = float(entry["reason"].split("mixing chamber at ")[1].split(" mK")[0]) * 1e-3
    assert T_tripped > 0.1 * (1 + BAND)
    assert entry["point"] == 2 and entry["redo_from"] == 0  # the first isotherm's line, from its start
    assert HEATER_STUCK <= entry["t"] < HEATER_STUCK + 15  # caught at the first point after the fault
    # it waited until T_mc was back within 4.5 % (hysteresis 0.1) for the hold (60 s), at least
    assert entry["waited_s"] >= HEATER_FREED - entry["t"] + 60
    # the two points before the fault went to subscribers, then the whole line again
    assert [k for k, _, _ in points] == [0, 1, *range(12)]
    # no stored point was measured while the fridge was out of its band: the first line's points are the
    # redone ones, taken after the recovery, and every stored T_mc is within the band of its setpoint
    ds = store.dataset()
    t_stored = ds["t"].values
    recovered_at = entry["t"] + entry["waited_s"]
    assert (t_stored[0] >= recovered_at).all()
    T_set = ds["T"].values[:, None]
    assert (np.abs(ds["T_mc"].values - T_set) <= BAND * T_set).all()
    assert (np.abs(ds["T_mc"].values - T_set) <= 0.01 * T_set).all()  # in fact within 1 %: regulated
    # notified when the pause began and when it ended
    assert [e for e, _ in events] == ["suspended", "resumed"]
    assert events[0][1]["condition"] == "mixing_chamber" and events[0][1]["message"] == entry["reason"]


def test_heater_runaway_that_does_not_recover_times_out_and_aborts() -> None:
    def schedule(lab: SimLab) -> list[tuple[float, Callable[[], None]]]:
        return [(HEATER_STUCK, fault(lab, lambda s: setattr(s.fridge, "stuck_heater", True)))]

    with sim(2, schedule) as (lab, station, clock, stop, _):
        section = {"mixing_chamber": {"band": BAND, "ceiling": 0.5, "hold": 60, "poll": 10, "timeout": 300}}
        sus = Suspenders(station, section, clock)
        result, points = run(isotherms(), station, stop, sus)
        with lab.state.lock:
            lab.state.sync()
            heater_range = lab.state.fridge.heater_range
        assert_gate_parked(lab)

    assert result.status == "aborted"
    assert "not recovered within the suspender's timeout" in result.message
    assert "above the ceiling 500 mK" in result.message  # the ceiling is checked first
    (entry,) = result.interruptions
    assert entry["outcome"] == "not recovered in time: aborted" and "redo_from" not in entry
    assert 300 <= entry["waited_s"] <= 300 + 10 + 1  # the timeout, read every 10 s (no spinning)
    assert len(points) == 2 and result.done == 2
    assert heater_range == 0  # safe state after a fault: heater off
    assert result.park_failures == []


def test_without_suspenders_the_runaway_goes_into_the_data() -> None:
    """The control: the same fault with no supervisor stores points taken far above the setpoint."""

    def schedule(lab: SimLab) -> list[tuple[float, Callable[[], None]]]:
        return [(HEATER_STUCK, fault(lab, lambda s: setattr(s.fridge, "stuck_heater", True)))]

    with sim(2, schedule) as (_, station, _clock, stop, _hooked):
        result, points = run(isotherms(), station, stop, None)
    assert result.status == "aborted"  # in the end the next isotherm cannot stabilize
    hot = [v[T_MC] for _, _, v in points if v[T_MC] > 0.1 * (1 + BAND)]
    assert len(hot) >= 3 and min(hot) > 1.0  # stored at more than 1 K on a 100 mK isotherm


# -- (b) quench, (c) leakage: abort or stop ------------------------------------------------------------
QUENCH_AT = 25.0
LEAK_IN_RAMP = 11.0  # s: the gate ramps from 2 to 4 V then (the first point is done and checked by 10 s)


@pytest.mark.parametrize("policy", ["abort", "stop"])
def test_quench_aborts_the_run_with_the_gate_parked(policy: str) -> None:
    def schedule(lab: SimLab) -> list[tuple[float, Callable[[], None]]]:
        return [(QUENCH_AT, fault(lab, lambda s: s.magnet.quench()))]

    with sim(3, schedule) as (lab, station, clock, stop, _):
        # abort is the default; probed after every point (every: 0), so no point after it is stored
        section = {"quench": {"policy": policy, "every": 0}}
        result, points = run(field_sweep(), station, stop, Suspenders(station, section, clock))
        assert_gate_parked(lab)

    assert result.status == "aborted"
    assert "quench" in result.message.lower() and result.message.startswith("SuspendAbort")
    (entry,) = result.interruptions
    assert entry["policy"] == policy and entry["outcome"] == "aborted" and "quench" in entry["reason"]
    assert entry["t"] >= QUENCH_AT
    assert result.stop_queue is (policy == "stop")
    assert 0 < len(points) < 11  # the points before the quench are kept
    assert all(v[T] < QUENCH_AT for _, _, v in points)
    # the magnet cannot be ramped to zero while latched in QUENCH: reported, the rest still parked
    assert any("magnet" in f and "Quench" in f for f in result.park_failures)


def test_quench_polled_while_the_field_holds() -> None:
    """A gate sweep at fixed field: no magnet command would ever notice the quench; the poll does."""
    plan = Plan("gate_sweep", axes=(Axis("V_g", (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)),), fixed={"B": 0.004})

    def schedule(lab: SimLab) -> list[tuple[float, Callable[[], None]]]:
        return [(12.0, fault(lab, lambda s: s.magnet.quench()))]

    with sim(3, schedule) as (lab, station, clock, stop, _):
        result, points = run(plan, station, stop, Suspenders(station, {"quench": {"every": 0}}, clock))
        assert_gate_parked(lab)
    assert result.status == "aborted" and result.interruptions[0]["policy"] == "abort"
    assert "the supply reports QUENCH" in result.interruptions[0]["reason"]
    assert "field now 0 T" in result.interruptions[0]["reason"]
    assert all(v[T] < 12.0 for _, _, v in points)


def test_leakage_spike_aborts() -> None:
    def schedule(lab: SimLab) -> list[tuple[float, Callable[[], None]]]:
        return [(QUENCH_AT, fault(lab, lambda s: setattr(s.gate, "leak_spike", 50e-9)))]

    with sim(4, schedule) as (lab, station, clock, stop, _):
        sus = Suspenders(station, {"leakage": {"every": 0}}, clock)  # after every point
        result, points = run(field_sweep(), station, stop, sus)
        assert_gate_parked(lab)

    assert result.status == "aborted"
    (entry,) = result.interruptions
    assert entry["policy"] == "abort"
    # "gate leakage 5e-08 A above the limit 1e-09 A at 15 V"
    assert entry["reason"].startswith("gate leakage 5e-08 A above the limit 1e-09 A at 15 V")
    assert 0 < len(points) < 11
    assert all(abs(v[I_LEAK]) < LIMIT for _, _, v in points)  # no stored point saw the spike


def test_leakage_error_from_a_ramp_goes_to_its_policy() -> None:
    """The gate role's own LeakageError (the gate moving when it happens) trips the same condition."""
    plan = Plan("gate_sweep", axes=(Axis("V_g", (2.0, 4.0, 6.0, 8.0)),))

    def schedule(lab: SimLab) -> list[tuple[float, Callable[[], None]]]:
        return [(LEAK_IN_RAMP, fault(lab, lambda s: setattr(s.gate, "leak_spike", 50e-9)))]

    with sim(4, schedule) as (lab, station, clock, stop, _):
        result, points = run(plan, station, stop, Suspenders(station, {"leakage": "stop"}, clock))
        assert_gate_parked(lab)
    assert len(points) == 1 and points[0][2][T] < LEAK_IN_RAMP
    assert result.status == "aborted" and result.stop_queue
    (entry,) = result.interruptions
    assert entry["policy"] == "stop" and entry["point"] == 1
    # the role's own message: where the ramp stopped, and that it went back to the safe value
    assert entry["reason"].startswith("gate leakage 5e-08 A above the limit 1e-09 A at 3 V")
    assert entry["reason"].endswith("ramp stopped, gate back at 0.0 V")


# -- (d) lock-in overload: pause until clean, redo the line ---------------------------------------------
OVERLOAD = (200.0, 220.0)  # s, during the first isotherm


def test_lockin_overload_pauses_and_redoes_the_line() -> None:
    def schedule(lab: SimLab) -> list[tuple[float, Callable[[], None]]]:
        return [
            (OVERLOAD[0], fault(lab, lambda s: setattr(s.lockin, "force_overload", True))),
            (OVERLOAD[1], fault(lab, lambda s: setattr(s.lockin, "force_overload", False))),
        ]

    with sim(5, schedule) as (_, station, clock, stop, _):
        sus = Suspenders(station, {"lockin": {"policy": "pause", "hold": 10, "poll": 2}}, clock)
        result, points = run(isotherms(), station, stop, sus)

    assert result.status == "completed" and result.done == 12
    (entry,) = result.interruptions
    assert entry["reason"].startswith("lock-in input overload at sensitivity")
    assert entry["outcome"] == "recovered" and entry["redo_from"] == 0
    assert OVERLOAD[0] <= entry["t"] < OVERLOAD[0] + 15
    # clean for 10 s after the overload ended (read every 2 s)
    assert OVERLOAD[1] + 10 <= entry["t"] + entry["waited_s"] <= OVERLOAD[1] + 10 + 2 + 0.5
    ks = [k for k, _, _ in points]
    assert ks[-12:] == list(range(12)) and len(ks) == 12 + entry["point"]
    stored = {i: v for _, i, v in points}  # the last value handed over for each grid point
    assert len(stored) == 12
    assert not any(OVERLOAD[0] <= v[T] <= OVERLOAD[1] for v in stored.values())


# -- an instrument that does not answer: io ---------------------------------------------------------------
class InstrumentNotAnswering(RoleError):
    """Stands in for the I/O retry proxy's error (recognized by its name)."""

    def __init__(self, message: str, instrument: str) -> None:
        super().__init__(message)
        self.instrument = instrument


def test_io_pause_reads_the_role_until_it_answers_then_redoes_the_line() -> None:
    calls = {"n": 0}

    def flaky() -> float:
        calls["n"] += 1
        if calls["n"] == 5:
            raise InstrumentNotAnswering("no reply after 3 tries", instrument="magnet")
        return float(calls["n"])

    plan = Plan(
        "custom",
        axes=(
            Axis("a", (0.0, 1.0), setter=lambda v: None),
            Axis("b", (0.0, 1.0, 2.0), setter=lambda v: None),
        ),
        measurements=(Measurement("y", flaky),),
        park=False,
    )
    with sim(6, lambda lab: []) as (lab, station, clock, stop, _):
        sus = Suspenders(station, {"io": {"policy": "pause", "poll": 5}}, clock)
        n_magnet = len(lab.command_log("magnet"))
        result, points = run(plan, station, stop, sus)
        magnet_reads = len(lab.command_log("magnet")) - n_magnet
    assert result.status == "completed" and result.done == 6
    (entry,) = result.interruptions
    assert entry["reason"] == "magnet not answering (InstrumentNotAnswering: no reply after 3 tries)"
    assert entry["point"] == 4 and entry["redo_from"] == 3 and entry["outcome"] == "recovered"
    assert magnet_reads >= 1  # the cheap read went to the magnet named by the error
    assert [k for k, _, _ in points] == [0, 1, 2, 3, 3, 4, 5]


def test_io_default_aborts_and_errors_are_classified() -> None:
    import pyvisa.errors

    assert not_answering(TimeoutError("read timed out"))
    assert not_answering(ConnectionResetError())
    assert not_answering(pyvisa.errors.VisaIOError(-1073807339))
    assert not_answering(InstrumentNotAnswering("x", "lockin"))
    try:
        try:
            raise TimeoutError("socket")
        except TimeoutError as inner:
            raise RuntimeError("asking 'STATE?'") from inner
    except RuntimeError as wrapped:
        assert not_answering(wrapped)
    assert not not_answering(ValueError("could not convert"))

    sus = Suspenders(FakeStation(), None, VirtualClock())
    trip = sus.on_error(TimeoutError("timed out"))
    assert trip is not None and trip.policy == "abort"
    assert trip.reason == "an instrument not answering (TimeoutError: timed out)"
    # QCoDeS adds its context to the args; the proxy's own sentence is kept as it is
    err = TimeoutError("timed out", "getting fridge_ch06_temperature")
    err.instrument = "fridge"  # type: ignore[attr-defined]
    trip = sus.on_error(err)
    assert trip is not None
    assert (
        trip.reason == "thermometry not answering (TimeoutError: timed out; getting fridge_ch06_temperature)"
    )
    trip = sus.on_error(InstrumentNotAnswering("instrument 'gate' is not answering: gave up", "gate"))
    assert trip is not None and trip.reason == "instrument 'gate' is not answering: gave up"
    assert sus.on_error(ValueError("bad reply")) is None  # not its business: the run aborts as usual
    quench = sus.on_error(QuenchError("the magnet quenched"))
    assert quench is not None and quench.policy == "abort" and "quench" in quench.reason
    leak = sus.on_error(LeakageError("gate leakage 2e-08 A above the limit 1e-09 A", 3.0, 2e-8, 1e-9))
    assert leak is not None and leak.policy == "abort"


# -- polling cost, no spinning, escalation (a fake station: counts the reads) ----------------------------
class _Role:
    def __init__(self, **values: Any) -> None:
        self.values, self.reads = values, 0

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__["values"]
        if name not in values:
            raise AttributeError(name)

        def read() -> Any:
            self.reads += 1
            value = values[name]
            return value() if callable(value) else value

        return read


class FakeStation:
    def __init__(self) -> None:
        self.config = CONFIG
        self.T = 0.1
        self.thermometry = _Role(temperature_mc=lambda: self.T)
        self.thermometry.adapter = _Role(heater_range=1e-3, setpoint=0.1)
        self.magnet = _Role(status=MagnetStatus.HOLDING, field=0.0)
        self.gate = _Role(leakage=1e-12, voltage=0.0)
        self.lockin = _Role(status=LockinStatus(), sensitivity=1e-3, time_constant=0.3)
        self.rf = None


def test_every_spaces_the_polls_and_a_pause_does_not_spin() -> None:
    st, clock = FakeStation(), VirtualClock()
    section = {
        "quench": {"every": 30},
        "mixing_chamber": {"ceiling": 0.5, "band": 0.1, "every": 10, "poll": 20, "timeout": 600, "hold": 60},
    }
    sus = Suspenders(st, section, clock)
    for _ in range(100):  # a point a second for 100 s
        assert sus.check() is None
        clock.sleep(1.0)
    assert st.magnet.reads == 4  # at 0, 30, 60, 90 s
    assert st.thermometry.reads == 10  # every 10 s
    assert st.gate.reads == 100  # leakage: every point (the default)
    assert st.lockin.reads == 0  # lockin: off unless named
    st.T = 0.8
    trip = sus.check()
    assert trip is not None and trip.policy == "pause"
    assert trip.reason == "mixing chamber at 800 mK, above the ceiling 500 mK"
    before, t0 = st.thermometry.reads, clock.now()
    assert trip.wait_for_recovery() is False  # never comes back
    assert clock.now() - t0 == pytest.approx(600.0)
    assert st.thermometry.reads - before == 600 / 20 + 1  # one read per poll, no spinning
    # 9.5 % from the setpoint: inside the band (10 %), so no trip, but not yet recovered (hysteresis 0.1:
    # back within 9 %); at 8 % a pause ends after the hold
    st.T = 0.1095
    assert sus.check() is None
    trip = sus._trip(sus.conditions["mixing_chamber"], "test")
    assert trip.wait_for_recovery() is False
    st.T = 0.108
    t0 = clock.now()
    assert trip.wait_for_recovery() is True
    assert clock.now() - t0 == pytest.approx(60.0)


def test_a_condition_that_keeps_pausing_gives_up() -> None:
    st, clock = FakeStation(), VirtualClock()
    sus = Suspenders(st, {"lockin": {"max_pauses": 2}}, clock)
    st.lockin.values["status"] = LockinStatus(unlocked=True)
    policies = [sus.check().policy for _ in range(3)]  # type: ignore[union-attr]
    assert policies == ["pause", "pause", "abort"]
    last = sus.check()
    assert last is not None and "paused this run 4 times (max_pauses 2): giving up" in last.reason
    # an output overload trips only when it persists (the meter autoranges it away)
    sus = Suspenders(st, {"lockin": {"persist": 3}}, clock)
    st.lockin.values["status"] = LockinStatus(output_overload=True)
    assert [sus.check() is None for _ in range(3)] == [True, True, False]


# -- (e) validation -----------------------------------------------------------------------------------------
EXAMPLE = """
suspenders:
  mixing_chamber:
    {policy: pause, ceiling: 0.8, band: 0.1, hysteresis: 0.2, hold: 120, timeout: 3600, poll: 10}
  quench: stop
  leakage: {policy: abort}
  lockin: {policy: pause, hold: 10, timeout: 600, poll: 2, persist: 2}
  io: {policy: pause, timeout: 900, poll: 30}
notify:
  command: 'logger -t qbs-lab "$QBS_EVENT $QBS_RUN_ID: $QBS_MESSAGE"'
  webhook: https://chat.example.org/hooks/fridge
  events: [item_failed, suspended, resumed, queue_done]
"""


def test_validate_suspenders_one_line_per_problem() -> None:
    doc = yaml.safe_load(EXAMPLE)
    assert validate_suspenders(doc["suspenders"]) == [] and validate_notify(doc["notify"]) == []
    assert validate_suspenders(None) == [] and validate_suspenders({}) == []
    bad = yaml.safe_load(
        """
        mixing_chamber: {ceilng: 0.5, band: 1.5, policy: wait}
        quench: sometimes
        leakge: {policy: abort}
        lockin: {persist: 0, hold: -1, poll: 0}
        io: {timeout: soon, every: 3}
        leakage: {hold: 700, policy: pause}
        """
    )
    assert validate_suspenders(bad) == [
        "suspenders.mixing_chamber.ceilng: unknown key (did you mean ceiling?)",
        "suspenders.mixing_chamber.band: must be a fraction of the setpoint between 0 and 1, not 1.5",
        "suspenders.mixing_chamber.policy: must be one of pause, abort, stop, off, not 'wait'",
        "suspenders.quench.policy: must be one of pause, abort, stop, off, not 'sometimes'",
        "suspenders.leakge: unknown condition (did you mean leakage?)",
        "suspenders.lockin.persist: must be a whole number >= 1, not 0",
        "suspenders.lockin.hold: must be >= 0, not -1",
        "suspenders.lockin.poll: must be > 0, not 0",
        "suspenders.io.timeout: must be a number, not 'soon'",
        "suspenders.io.every: unknown key (allowed: hold, max_pauses, policy, poll, timeout)",
        "suspenders.leakage.hold: 700 s is not shorter than the timeout 600 s: a pause could never recover",
    ]
    assert validate_suspenders({"mixing_chamber": {"policy": "pause"}}) == [
        "suspenders.mixing_chamber: needs a ceiling [K] or a band (fraction of the setpoint), or policy: off"
    ]
    assert validate_suspenders([1]) == [
        "suspenders: must be a mapping of conditions (quench, leakage, mixing_chamber, lockin, io), not [1]"
    ]
    assert validate_notify({"command": 3, "webhook": "ftp://x", "events": ["done"], "retries": 2}) == [
        "notify.retries: unknown key (allowed: command, webhook, events)",
        "notify.command: must be a shell command (text), not 3",
        "notify.webhook: must be an http:// or https:// URL, not 'ftp://x'",
        "notify.events: unknown event 'done' (events: item_done, item_failed, suspended, resumed,"
        " queue_done, run_done)",
    ]


def test_defaults() -> None:
    """No section: quench, leakage (at the station's limit) and io abort; mixing chamber and lock-in off."""
    c = conditions(None, LIMIT)
    assert {n: k.policy for n, k in c.items()} == {
        "quench": "abort",
        "leakage": "abort",
        "mixing_chamber": "off",
        "lockin": "off",
        "io": "abort",
    }
    # a quench is probed every 10 s of fridge time by default (the magnet role watches it in every
    # ramp); a leak after every point (it decides whether the point may be stored)
    assert c["leakage"].limit == LIMIT and c["quench"].every == 10.0
    assert c["leakage"].every == c["lockin"].every == c["mixing_chamber"].every == 0.0
    # YAML's bare off, a policy on its own, a named condition's defaults
    c = conditions(
        yaml.safe_load("{quench: off, leakage: stop, mixing_chamber: {ceiling: 0.5}, lockin:}"), LIMIT
    )
    assert (c["quench"].policy, c["leakage"].policy, c["lockin"].policy) == ("off", "stop", "pause")
    mc = c["mixing_chamber"]
    assert (mc.policy, mc.ceiling, mc.band, mc.hold, mc.timeout, mc.poll) == (
        "pause",
        0.5,
        None,
        60,
        3600,
        10,
    )
    assert c["lockin"].persist == 2
    sus = Suspenders(FakeStation(), yaml.safe_load(EXAMPLE)["suspenders"], VirtualClock())
    assert sus.summary() == [
        "quench: magnet quench: stop",
        "leakage: gate leakage above 1e-09 A: abort",
        "mixing_chamber: T_mc above 800 mK or T_mc outside 10 % of its setpoint: pause (hold 120 s,"
        " timeout 3600 s)",
        "lockin: lock-in input overload or unlock: pause (hold 10 s, timeout 600 s)",
        "io: an instrument not answering: pause (hold 0 s, timeout 900 s)",
    ]


# -- (f) notifications ----------------------------------------------------------------------------------
@contextmanager
def webhook_server(status: int = 200) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"type": self.headers["Content-Type"], "body": json.loads(body)})
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def test_notifier_command_and_webhook(tmp_path: Path) -> None:
    out = tmp_path / "events.txt"
    command = f'printf "%s|%s|%s|%s\\n" "$QBS_EVENT" "$QBS_RUN_ID" "$QBS_PROCEDURE" "$QBS_MESSAGE" >> {out}'
    with webhook_server() as (url, received):
        n = Notifier({"command": command, "webhook": url}, station="fridge-2")
        deliveries = n.send("item_failed", run_id="r0007", procedure="field_sweep", message="quench at 12 mT")
        assert [(d.channel, d.ok) for d in deliveries] == [("command", True), ("webhook", True)]
        n.send("queue_done")
    assert out.read_text().splitlines() == [
        "item_failed|r0007|field_sweep|quench at 12 mT",
        "queue_done|||qbs-lab: queue done",
    ]
    first = received[0]
    assert first["type"] == "application/json"
    body = first["body"]
    assert (body["event"], body["run_id"], body["procedure"], body["message"], body["station"]) == (
        "item_failed",
        "r0007",
        "field_sweep",
        "quench at 12 mT",
        "fridge-2",
    )
    assert body["time"] and body["host"]
    assert received[1]["body"]["event"] == "queue_done"


def test_notifier_filters_events_and_never_raises(tmp_path: Path) -> None:
    logged: list[str] = []
    out = tmp_path / "env.json"
    n = Notifier({"command": f'printf "%s" "$QBS_JSON" > {out}', "events": ["suspended"]})
    assert n.send("item_done", run_id="r1") == []  # filtered out: nothing runs
    assert not out.exists()
    (d,) = n.send("suspended", condition="lockin", waited_s=1.5, extra={"a": 1})
    assert d.ok and json.loads(out.read_text())["extra"] == {"a": 1}

    failing = Notifier({"command": "echo broken >&2; exit 3"}, log=logged.append)
    (d,) = failing.send("item_done")
    assert (d.ok, d.detail) == (False, "exit status 3: broken")
    assert logged == ["notification item_done by command failed: exit status 3: broken"]

    slow = Notifier({"command": "sleep 20; sleep 20"}, command_timeout=0.3)
    (d,) = slow.send("item_done")
    assert (d.ok, d.detail) == (False, "did not finish within 0.3 s")

    with webhook_server(status=500) as (url, received):
        (d,) = Notifier({"webhook": url}).send("run_done")
        assert not d.ok and d.detail.startswith("HTTP 500") and len(received) == 1
    (d,) = Notifier({"webhook": url}, webhook_timeout=1.0).send("run_done")  # the server is gone
    assert not d.ok and d.detail.startswith(f"cannot reach {url}")
    assert Notifier(None).send("item_done") == [] and not Notifier({}).active
    with pytest.raises(ValueError, match=r"notify\.webhook"):
        Notifier({"webhook": "not a url"})
