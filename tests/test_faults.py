"""Fault injection (qbs_lab.sim.faults) and the bounded retry of transient I/O errors (drivers/retry.py).

Every fault kind fires at its scheduled time and at its scheduled command count, on the virtual clock,
and ends; short I/O faults are bridged by the retries of a role call, long ones end in
InstrumentNotAnswering; schedule files report each problem on its own line; random schedules hit
every kind and repeat for a seed.
"""

from __future__ import annotations

import errno
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pyvisa
from conftest import STATION
from pyvisa.constants import StatusCode
from qbs_lab.drivers.errors import InstrumentNotAnswering, RoleError
from qbs_lab.drivers.protocols import LockinAdapter
from qbs_lab.drivers.retry import RetryingAdapter, transient

from qbs_lab.clock import VirtualClock
from qbs_lab.sim import SimLab
from qbs_lab.sim.faults import KINDS, Fault, FaultError, FaultSchedule
from qbs_lab.station import Station, load_station

TIMEOUT = 1.0  # s, the raw sessions' timeout (on the lab's clock)


# -- helpers ------------------------------------------------------------------------------------------
@pytest.fixture
def rm(lab: SimLab) -> Iterator[pyvisa.ResourceManager]:
    manager = pyvisa.ResourceManager(lab.visalib)
    yield manager
    manager.close()


def open_raw(lab: SimLab, rm: pyvisa.ResourceManager, name: str) -> Any:
    """A bare pyvisa session to instrument ``name`` (the AMI 430's greeting read away)."""
    res = rm.open_resource(lab.address(name), timeout=TIMEOUT * 1000)
    if name == "magnet":
        res.read_termination = "\r\n"
        assert "American Magnetics" in res.read() and res.read() == "Hello."
    return res


def ask(res: Any, command: str) -> str:
    return res.query(command).strip()


def visa_code(info: pytest.ExceptionInfo[Any]) -> int:
    return int(info.value.error_code)


def arm(lab: SimLab, res: Any, kind: str, name: str, trigger: str, probe: str, **kw: Any) -> float | None:
    """Schedule a fault ``trigger`` "time" (10 s ahead) or "command" (after two more commands), show
    that ``probe`` is unaffected before it, and bring the lab to it. Returns the scheduled time (None
    for a command-count trigger)."""
    if trigger == "time":
        at = lab.clock.now() + 10.0
        lab.faults.add(kind, name, at_time=at, **kw)
        ask(res, probe)  # before its time: nothing happens
        assert lab.fault_log == []
        lab.clock.sleep(at - lab.clock.now())
        return at
    n = len(lab.command_log(name)) + 2
    lab.faults.add(kind, name, at_command=n, **kw)
    ask(res, probe)
    ask(res, probe)
    assert len(lab.command_log(name)) == n and lab.fault_log == []
    return None


def events(lab: SimLab) -> list[tuple[str, str]]:
    return [(e.event, e.kind) for e in lab.fault_log]


# -- I/O faults at the transport ----------------------------------------------------------------------
@pytest.mark.parametrize("trigger", ["time", "command"])
def test_disconnect_kills_open_sessions_refuses_new_ones_and_ends(
    lab: SimLab, rm: pyvisa.ResourceManager, trigger: str
) -> None:
    res = open_raw(lab, rm, "gate")
    at = arm(lab, res, "disconnect", "gate", trigger, "*IDN?", duration=3.0)
    n = len(lab.command_log("gate"))
    with pytest.raises(pyvisa.errors.VisaIOError) as info:
        res.query(":SOUR:VOLT?")
    assert visa_code(info) == StatusCode.error_connection_lost
    assert len(lab.command_log("gate")) == n  # the command never arrived
    fired = lab.fault_log[0]
    assert (fired.event, fired.kind, fired.instrument) == ("fired", "disconnect", "gate")
    assert fired.time == (at if at is not None else lab.clock.now())
    with pytest.raises(pyvisa.errors.VisaIOError) as info:
        rm.open_resource(lab.address("gate"))
    assert visa_code(info) == StatusCode.error_resource_not_found
    with pytest.raises(pyvisa.errors.VisaIOError):
        res.clear()  # a device clear does not revive a dead session either
    lab.clock.sleep(3.0)
    with pytest.raises(pyvisa.errors.VisaIOError) as info:
        res.query("*IDN?")  # over, but this session died with the connection
    assert visa_code(info) == StatusCode.error_connection_lost
    assert events(lab) == [("fired", "disconnect"), ("ended", "disconnect")]
    assert lab.fault_log[1].time == pytest.approx(fired.time + 3.0)
    again = open_raw(lab, rm, "gate")
    assert "2450" in ask(again, "*IDN?")
    assert lab.command_log("gate")[-1].command == "*IDN?"


@pytest.mark.parametrize("trigger", ["time", "command"])
def test_no_reply_times_out_on_the_lab_clock_and_ends(
    lab: SimLab, rm: pyvisa.ResourceManager, trigger: str
) -> None:
    res = open_raw(lab, rm, "lockin")
    # by time: every query for 2.5 s; by count: the next two queries
    kw: dict[str, Any] = {"duration": 2.5} if trigger == "time" else {"count": 2}
    at = arm(lab, res, "no_reply", "lockin", trigger, "OUTP? 3", **kw)
    n = len(lab.command_log("lockin"))
    for k in range(2):
        t0 = lab.clock.now()
        with pytest.raises(pyvisa.errors.VisaIOError) as info:
            res.query("SLVL?")
        assert visa_code(info) == StatusCode.error_timeout
        assert lab.clock.now() - t0 == pytest.approx(TIMEOUT, abs=0.01)  # the session's timeout
        # the instrument got the command and answered; the answer was lost
        assert lab.command_log("lockin")[n + k].command == "SLVL?"
    fired = lab.fault_log[0]
    assert fired.time == (at if at is not None else lab.command_log("lockin")[n].time)
    if trigger == "time":
        assert events(lab) == [("fired", "no_reply")]  # still on: 2.0 s of 2.5 s gone
        lab.clock.sleep(0.5)
    assert float(ask(res, "SLVL?")) == pytest.approx(0.01)
    assert events(lab) == [("fired", "no_reply"), ("ended", "no_reply")]
    if trigger == "time":
        assert lab.fault_log[1].time == pytest.approx(fired.time + 2.5)
    else:
        assert lab.fault_log[1].detail == "after 2 replies"


@pytest.mark.parametrize("trigger", ["time", "command"])
def test_garbage_replies_cannot_be_decoded_and_end(
    lab: SimLab, rm: pyvisa.ResourceManager, trigger: str
) -> None:
    res = open_raw(lab, rm, "fridge")
    kw: dict[str, Any] = {"duration": 0.5} if trigger == "time" else {}  # by count: one reply
    at = arm(lab, res, "garbage", "fridge", trigger, "*IDN?", **kw)
    res.write("KRDG? 6")
    raw = res.read_raw()
    assert raw.startswith(b"\xff\xfe") and raw.endswith(b"\r\n")  # terminated: the read ends
    assert all(b >= 0x80 for b in raw[:-2])
    assert lab.command_log("fridge")[-1].command == "KRDG? 6"  # the instrument did answer
    if trigger == "time":
        with pytest.raises(UnicodeDecodeError):
            res.query("KRDG? 6")  # pyvisa's ASCII decoding chokes
        assert lab.fault_log[0].time == at
        lab.clock.sleep(0.5)
    assert float(ask(res, "KRDG? 6")) == pytest.approx(lab.state.fridge.T_mc, rel=1e-2)
    assert events(lab) == [("fired", "garbage"), ("ended", "garbage")]


def test_faults_over_the_raw_tcp_socket(lab: SimLab) -> None:
    address = lab.serve_tcp()["fridge"]
    rm = pyvisa.ResourceManager("@py")
    res = rm.open_resource(address, read_termination="\r\n", timeout=300)
    try:
        lab.faults.add("garbage", "fridge", at_command=len(lab.command_log("fridge")))
        res.write("KRDG? 6")
        assert res.read_raw().startswith(b"\xff\xfe")
        lab.faults.add("disconnect", "fridge", at_command=len(lab.command_log("fridge")), duration=1.0)
        with pytest.raises((pyvisa.errors.VisaIOError, OSError)):
            res.query("*IDN?")  # the server cut the connection
        assert events(lab) == [("fired", "garbage"), ("ended", "garbage"), ("fired", "disconnect")]
    finally:
        res.close()
        rm.close()


def test_an_ip_instrument_reconnects_its_socket_after_a_disconnect() -> None:
    """QCoDeS's raw-socket OxfordTriton (no VISA): garbage and a cut connection, bridged by the retries
    with a new socket."""
    from qbs_lab.drivers.adapters.qcodes_triton import QcodesTriton
    from qcodes.instrument_drivers.oxford import OxfordTriton

    spec = {
        "type": "qcodes.instrument_drivers.oxford.OxfordTriton",
        "address": "TCPIP0::127.0.0.1::1::SOCKET",
    }
    with SimLab({"fridge": spec}, seed=1) as lab:
        lab.serve_tcp()
        driver = OxfordTriton("fridge", address="127.0.0.1", port=lab.tcp_port("fridge"), timeout=1)
        fridge = RetryingAdapter(QcodesTriton(driver), lab.clock, name="fridge")
        T = lab.state.fridge.T_mc
        lab.faults.add("garbage", "fridge", at_command=len(lab.command_log("fridge")))
        assert fridge.temperature(6) == pytest.approx(T, rel=1e-2)
        lab.faults.add("disconnect", "fridge", at_command=len(lab.command_log("fridge")), duration=1.0)
        assert fridge.temperature(6) == pytest.approx(T, rel=1e-2)
        assert [r.error.split(":")[0] for r in fridge.retries] == [
            "UnicodeDecodeError",
            "ValueError",
            "ValueError",
        ]
        assert {r.reconnect for r in fridge.retries} == {"socket re-connected"}
        assert events(lab) == [
            ("fired", "garbage"),
            ("ended", "garbage"),
            ("fired", "disconnect"),
            ("ended", "disconnect"),
        ]
        driver.close()


# -- physical faults ----------------------------------------------------------------------------------
@pytest.mark.parametrize("trigger", ["time", "command"])
def test_quench_latches_the_magnet_supply(lab: SimLab, rm: pyvisa.ResourceManager, trigger: str) -> None:
    res = open_raw(lab, rm, "magnet")
    at = arm(lab, res, "quench", "magnet", trigger, "STATE?")
    assert ask(res, "STATE?") == "7"  # QUENCH
    assert ask(res, "QU?") == "1"
    fired = lab.fault_log[0]
    assert fired.time == (at if at is not None else lab.command_log("magnet")[-2].time)
    lab.clock.sleep(600.0)
    assert ask(res, "STATE?") == "7"  # latched: a quench has no end
    assert events(lab) == [("fired", "quench")]


@pytest.mark.parametrize("trigger", ["time", "command"])
def test_leak_spike_adds_gate_leakage_for_its_duration(
    lab: SimLab, rm: pyvisa.ResourceManager, trigger: str
) -> None:
    res = open_raw(lab, rm, "gate")
    res.write(":OUTP ON")
    before = float(ask(res, ":MEAS:CURR?"))
    assert abs(before) < 1e-11
    at = arm(lab, res, "leak_spike", "gate", trigger, ":SOUR:VOLT?", duration=20.0, current=5e-9)
    assert float(ask(res, ":MEAS:CURR?")) == pytest.approx(5e-9, abs=1e-11)
    fired = lab.fault_log[0]
    if at is not None:
        assert fired.time == at
    lab.clock.sleep(20.0)
    assert abs(float(ask(res, ":MEAS:CURR?"))) < 1e-11
    assert events(lab) == [("fired", "leak_spike"), ("ended", "leak_spike")]
    assert lab.fault_log[1].time == pytest.approx(fired.time + 20.0)
    assert lab.state.gate.leak_spike == 0.0


@pytest.mark.parametrize("trigger", ["time", "command"])
def test_overload_sets_the_lockins_input_overload_bit(
    lab: SimLab, rm: pyvisa.ResourceManager, trigger: str
) -> None:
    res = open_raw(lab, rm, "lockin")
    assert int(ask(res, "LIAS? 0")) == 0
    at = arm(lab, res, "overload", "lockin", trigger, "SLVL?", duration=30.0)
    assert int(ask(res, "LIAS? 0")) == 1  # input overload
    if at is not None:
        assert lab.fault_log[0].time == at
    lab.clock.sleep(30.0)
    ask(res, "LIAS?")  # read and clear what latched during the fault
    assert int(ask(res, "LIAS? 0")) == 0
    assert events(lab) == [("fired", "overload"), ("ended", "overload")]


@pytest.mark.parametrize("trigger", ["time", "command"])
def test_runaway_heats_the_mixing_chamber_while_it_lasts(
    lab: SimLab, rm: pyvisa.ResourceManager, trigger: str
) -> None:
    res = open_raw(lab, rm, "fridge")
    base = float(ask(res, "KRDG? 6"))
    at = arm(lab, res, "runaway", "fridge", trigger, "HTR?", duration=60.0)
    assert float(ask(res, "HTR?")) == pytest.approx(100.0)  # stuck at full output
    lab.clock.sleep(60.0)
    hot = float(ask(res, "KRDG? 6"))
    assert float(ask(res, "HTR?")) == 0.0
    assert hot > 10 * base
    assert events(lab) == [("fired", "runaway"), ("ended", "runaway")]
    if at is not None:
        assert [e.time for e in lab.fault_log] == [at, at + 60.0]


def test_physical_faults_act_at_their_own_time_between_messages() -> None:
    """No message during the fault: its effect still spans exactly its own window (the state is brought
    up to the fault's instants), so a longer runaway leaves the fridge hotter."""
    clock = VirtualClock()
    labs = [SimLab.from_station(STATION, seed=1, clock=clock) for _ in range(3)]
    try:
        labs[1].faults.add("runaway", at_time=100.0, duration=50.0)
        labs[2].faults.add("runaway", at_time=100.0, duration=100.0)
        clock.sleep(400.0)
        temperatures = []
        for lab in labs:
            rm = pyvisa.ResourceManager(lab.visalib)
            res = rm.open_resource(lab.address("fridge"))
            float(res.query("KRDG? 6"))  # the first message since t = 0
            res.close()
            temperatures.append(lab.state.fridge.T_mc)
        assert [(e.time, e.event) for e in labs[1].fault_log] == [(100.0, "fired"), (150.0, "ended")]
        assert [(e.time, e.event) for e in labs[2].fault_log] == [(100.0, "fired"), (200.0, "ended")]
        assert temperatures[0] < temperatures[1] < temperatures[2]
        assert labs[1].fault_log[0].instrument == "fridge"  # the thermometry instrument, by its role
    finally:
        for lab in labs:
            lab.close()


def test_faults_the_lab_cannot_have_are_refused(lab: SimLab) -> None:
    with pytest.raises(FaultError, match="no emulated instrument 'cryostat'"):
        lab.faults.add("no_reply", "cryostat", at_time=1.0)
    with pytest.raises(FaultError, match="'lockin' is not the magnet instrument"):
        lab.faults.add("quench", "lockin", at_time=1.0)
    schedule = FaultSchedule(
        [Fault("disconnect", "rf2", at_time=1.0), Fault("overload", "gate", at_time=2.0)]
    )
    with pytest.raises(FaultError) as info:
        lab.load_faults(schedule)
    assert len(info.value.problems) == 2 and lab.faults.faults == []  # none added
    with pytest.raises(FaultError, match="a quench has no duration"):
        Fault("quench", "magnet", at_time=1.0, duration=5.0)


# -- retries through the station's roles --------------------------------------------------------------
@pytest.fixture
def station(lab: SimLab) -> Iterator[Station]:
    st = load_station(STATION).connect(lab=lab)
    yield st
    st.close()


def test_a_lost_reply_is_retried_and_the_role_gets_its_value(lab: SimLab, station: Station) -> None:
    station.gate.ramp_to(0.5)
    n = len(lab.command_log("gate"))
    lab.faults.add("no_reply", "gate", at_command=n)  # the next query's reply is lost
    t0 = lab.clock.now()
    assert station.gate.voltage() == pytest.approx(0.5)
    [retry] = station.io_retries
    assert (retry.instrument, retry.call, retry.attempt, retry.wait) == ("gate", "voltage", 1, 0.5)
    assert "VI_ERROR_TMO" in retry.error and retry.reconnect == "device clear"
    first, again = lab.command_log("gate")[n], lab.command_log("gate")[-1]
    assert again.command == first.command and again.reply == first.reply  # the query, sent again
    # the driver's 5 s timeout, then the 0.5 s back-off, on the lab's clock
    assert again.time - t0 == pytest.approx(5.5, abs=0.02)


def test_a_garbled_reply_is_retried(lab: SimLab, station: Station) -> None:
    n = len(lab.command_log("lockin"))
    lab.faults.add("garbage", "lockin", at_command=n)
    assert station.lockin.amplitude() == pytest.approx(0.01)  # the station's excitation
    [retry] = station.io_retries
    assert retry.instrument == "lockin" and retry.error.startswith("UnicodeDecodeError")
    assert [c.command for c in lab.command_log("lockin")[n:]] == ["SLVL?", "SLVL?"]


@pytest.mark.parametrize("name", ["gate", "magnet", "fridge"])
def test_a_short_disconnect_is_bridged_by_reopening_the_session(
    lab: SimLab, station: Station, name: str
) -> None:
    """GPIB (gate), a raw socket with a greeting (the AMI 430) and one without (the 372).

    The AMI 430's QCoDeS driver first retries once by itself, 5 s later, with a device clear, which a
    dead session refuses: by the proxy's first retry the instrument is back, and one re-open does.
    """
    read = {
        "gate": station.gate.voltage,
        "magnet": station.magnet.field,
        "fridge": station.thermometry.temperature_mc,
    }[name]
    expected = read()
    handle = station.drivers[name].visa_handle
    settings = (handle.timeout, handle.read_termination, handle.write_termination)
    t_fault = lab.clock.now() + 1.0
    lab.faults.add("disconnect", name, at_time=t_fault, duration=1.5)
    lab.clock.sleep(1.0)
    assert read() == pytest.approx(expected, rel=1e-2)
    records = station.io_retries
    assert "VI_ERROR_CONN_LOST" in records[0].error
    if name == "magnet":
        assert [(r.attempt, r.reconnect) for r in records] == [(1, "re-opened")]
    else:
        assert [r.attempt for r in records] == [1, 2]
        assert records[0].reconnect.startswith("failed (VisaIOError: VI_ERROR_RSRC_NFOUND")  # still down
        assert records[1].reconnect == "re-opened"
    t_end = t_fault + 1.5
    assert [(e.event, e.time) for e in lab.fault_log] == [("fired", t_fault), ("ended", t_end)]
    log = lab.command_log(name)
    assert all(not (t_fault <= c.time < t_end) for c in log)  # nothing arrived while it was down
    assert log[-1].time > t_end  # the call, sent again on the new session
    # the re-opened session works as the first one did: termination, timeout, no greeting left over
    assert station.drivers[name].visa_handle is handle and handle.session is not None
    assert (handle.timeout, handle.read_termination, handle.write_termination) == settings
    assert read() == pytest.approx(expected, rel=1e-2)
    assert len(station.io_retries) == len(records)
    if name == "gate":
        station.gate.ramp_to(1.0)
        assert station.gate.voltage() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kind", "name", "error"),
    [
        ("disconnect", "gate", "VI_ERROR_RSRC_NFOUND"),
        ("no_reply", "lockin", "VI_ERROR_TMO"),
        ("garbage", "fridge", "UnicodeDecodeError"),
    ],
)
def test_a_long_fault_ends_in_instrument_not_answering(
    lab: SimLab, station: Station, kind: str, name: str, error: str
) -> None:
    read = {
        "gate": station.gate.voltage,
        "lockin": station.lockin.amplitude,
        "fridge": station.thermometry.temperature_mc,
    }[name]
    lab.faults.add(kind, name, at_time=lab.clock.now(), duration=300.0)
    t0 = lab.clock.now()
    with pytest.raises(InstrumentNotAnswering) as info:
        read()
    err = info.value
    assert isinstance(err, RoleError)
    assert err.instrument == name and err.attempts == 4 and name in str(err) and error in str(err)
    assert [r.wait for r in station.io_retries] == [0.5, 2.0, 8.0]
    spent = lab.clock.now() - t0
    timeouts = 4 * 5.0 if kind == "no_reply" else 0.0  # the driver's timeout on each attempt
    assert spent == pytest.approx(10.5 + timeouts, abs=0.1)
    lab.clock.sleep(300.0)  # over: the same station answers again (a dead handle is re-opened)
    assert math.isfinite(read())


def test_refused_values_are_not_retried(lab: SimLab, station: Station) -> None:
    t0 = lab.clock.now()
    with pytest.raises(ValueError, match=r"must be between 0\.004 and 5\.0"):
        station.lockin.set_amplitude(10.0)  # the driver's validator: nothing sent
    assert station.io_retries == [] and lab.clock.now() == t0
    assert not any(c.header == "SLVL" and c.args == ["10.0"] for c in lab.command_log("lockin"))


# -- the proxy itself ---------------------------------------------------------------------------------
class _Flaky:
    """A fake lock-in whose read_xy fails ``failures`` times with a timeout."""

    sensitivities = (1e-3, 1e-2)

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def read_xy(self) -> tuple[float, float]:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return 1.0, 2.0

    def __getattr__(self, name: str) -> Any:  # the rest of the protocol
        if name in LockinAdapter.__dict__:
            return lambda *a: None
        raise AttributeError(name)


def test_retrying_adapter_backs_off_reconnects_and_records() -> None:
    clock = VirtualClock()
    timeout = pyvisa.errors.VisaIOError(StatusCode.error_timeout)
    seen: list[Any] = []
    reconnects: list[float] = []

    def reconnect() -> str:
        reconnects.append(clock.now())
        return "cleared"

    proxy = RetryingAdapter(_Flaky(2, timeout), clock, name="li", reconnect=reconnect, on_retry=seen.append)
    assert proxy.read_xy() == (1.0, 2.0)
    assert reconnects == [0.5, 2.5] and [r.attempt for r in proxy.retries] == [1, 2] and seen == proxy.retries
    assert proxy.sensitivities == (1e-3, 1e-2) and isinstance(proxy, LockinAdapter)
    proxy.sensitivities = (1.0,)  # attributes belong to the adapter
    assert proxy.adapter.sensitivities == (1.0,)
    never = RetryingAdapter(_Flaky(99, timeout), clock, name="li", reconnect=lambda: "x", retries=5)
    with pytest.raises(InstrumentNotAnswering) as info:
        never.read_xy()
    assert [r.wait for r in never.retries] == [0.5, 2.0, 8.0, 8.0, 8.0] and info.value.__cause__ is timeout
    bug = RetryingAdapter(_Flaky(1, RuntimeError("bug")), clock, reconnect=lambda: "x")
    with pytest.raises(RuntimeError, match="bug"):
        bug.read_xy()
    assert bug.retries == []


def test_which_errors_are_transient() -> None:
    visa = pyvisa.errors.VisaIOError
    assert transient(visa(StatusCode.error_timeout), "read_xy")
    assert transient(visa(StatusCode.error_connection_lost), "set_voltage")
    assert not transient(visa(StatusCode.error_invalid_resource_name), "read_xy")
    assert transient(ConnectionResetError(), "field") and transient(TimeoutError(), "field")
    assert transient(OSError(errno.EHOSTUNREACH, "unreachable"), "field")
    assert not transient(OSError(errno.ENOENT, "no such file"), "field")
    assert transient(ValueError("could not convert string to float: '#?'"), "temperature")
    assert transient(KeyError("x"), "status")
    refused = ValueError("1000000.0 is invalid", "setting gate_source_voltage to 1000000.0")
    assert not transient(refused, "set_voltage")
    assert transient(ValueError("bad float", "getting gate_compliance"), "set_current_limit")
    assert not transient(RuntimeError("bug"), "read_xy")


# -- schedules ----------------------------------------------------------------------------------------
BAD_SCHEDULE = """\
faults:
  - kind: disconect
    instrument: lockin
    at_time: 10
  - kind: no_reply
    at_time: 5
    at_command: 3
    count: 0
  - kind: quench
    at_time: -1
    duration: 5
    colour: red
  - just text
  - {kind: leak_spike, instrument: gate, at_time: 1, curent: 1e-9}
"""


def test_schedule_file_errors_are_one_line_each_with_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "faults.yaml"
    path.write_text(BAD_SCHEDULE)
    with pytest.raises(FaultError) as info:
        FaultSchedule.from_yaml(path)
    p = str(path)
    assert info.value.problems == [
        f"{p}:2: faults[0].kind: unknown fault kind 'disconect': did you mean disconnect?",
        f"{p}:5: faults[1].instrument: is missing: a no_reply fault needs the instrument's name",
        f"{p}:7: faults[1].at_command: give at_time or at_command, not both",
        f"{p}:8: faults[1].count: must be a whole number >= 1, not 0",
        f"{p}:12: faults[2].colour: unknown key for a quench fault (allowed: kind, instrument, at_time,"
        " at_command, duration)",
        f"{p}:10: faults[2].at_time: must be a time >= 0 s, not -1",
        f"{p}:11: faults[2].duration: a quench has no duration: the supply latches until it is reset",
        f"{p}:13: faults[3]: must be a mapping (kind:, instrument:, at_time: ...)",
        f"{p}:14: faults[4].curent: unknown key for a leak_spike fault (did you mean current?)",
    ]
    assert str(info.value).count("\n") == len(info.value.problems) - 1
    path.write_text("fault:\n  - {kind: quench, at_time: 1}\n")
    with pytest.raises(FaultError, match=r":1: fault: unknown key \(the file has one key, faults:\)"):
        FaultSchedule.from_yaml(path)
    path.write_text("faults: [kind: quench\n")
    with pytest.raises(FaultError, match="not valid YAML"):
        FaultSchedule.from_yaml(path)
    with pytest.raises(FaultError, match="cannot read the fault schedule"):
        FaultSchedule.from_yaml(tmp_path / "missing.yaml")


def test_a_schedule_file_loads_into_the_lab(lab: SimLab, tmp_path: Path) -> None:
    path = tmp_path / "faults.yaml"
    path.write_text(
        "faults:\n"
        "  - {kind: disconnect, instrument: lockin, at_time: 3600, duration: 5}\n"
        "  - {kind: no_reply, instrument: gate, at_command: 200, count: 2}\n"
        "  - {kind: leak_spike, at_time: 7200, duration: 60, current: 5e-9}\n"  # 5e-9: text to PyYAML
        "  - {kind: quench, at_time: 9000}\n"
    )
    loaded = lab.load_faults(path)
    assert [f.instrument for f in loaded] == ["lockin", "gate", "gate", "magnet"]
    assert loaded[1].count == 2 and loaded[2].current == 5e-9
    lab.clock.sleep(9000.0)
    assert [(e.time, e.event, e.kind) for e in lab.fault_log] == [
        (3600.0, "fired", "disconnect"),
        (3605.0, "ended", "disconnect"),
        (7200.0, "fired", "leak_spike"),
        (7260.0, "ended", "leak_spike"),
        (9000.0, "fired", "quench"),
    ]
    assert lab.faults.pending == [loaded[1]]  # the gate has had no 200 commands


def test_random_schedules_hit_every_kind_and_repeat_for_a_seed(lab: SimLab) -> None:
    night = 10 * 3600.0
    for seed in range(25):
        schedule = FaultSchedule.random(seed, night)
        assert schedule.kinds() == set(KINDS)
        assert all(0 <= f.at_time <= night for f in schedule)  # type: ignore[operator]
    a, b = FaultSchedule.random(3, night), FaultSchedule.random(3, night)
    assert a.to_json() == b.to_json() != FaultSchedule.random(4, night).to_json()
    assert FaultSchedule.from_json(a.to_json()).faults == a.faults
    assert json.loads(a.to_json())["faults"][0]["kind"] in KINDS
    some = FaultSchedule.random(5, 600.0, kinds=["garbage", "quench"], instruments=["lockin"])
    assert some.kinds() == {"garbage", "quench"} and {f.instrument for f in some} <= {"lockin", None}
    lab.load_faults(a)
    lab.clock.sleep(night)
    fired = [e for e in lab.fault_log if e.event == "fired"]
    assert len(fired) == len(a) and {e.kind for e in fired} == set(KINDS)
