"""The AMI Model 430 emulator: its command language, units, limits, errors and effect on the magnet.

Unit tests talk to the emulator through ``handle()``; the driver tests run the unmodified QCoDeS and
PyMeasure drivers through the in-process VISA backend (a one-instrument lab registered here) and
through the TCP server; the last tests use the full ``SimLab``.
"""

from __future__ import annotations

import logging
import socket
import time

import numpy as np
import pytest
from conftest import STATION, pyvisa_sim_queries

from qbs_lab.clock import VirtualClock, patch_driver_time
from qbs_lab.sim.emulators.ami430 import AMI430Emulator
from qbs_lab.sim.lab_state import LabState
from qbs_lab.sim.magnet import MagnetState
from qbs_lab.sim.visa_backend import canonical, register_lab, unregister_lab

ADDRESS = "TCPIP0::192.168.10.30::7180::SOCKET"
GREETING = "American Magnetics Model 430 IP Interface\r\nHello.\r\n"


def make() -> tuple[AMI430Emulator, LabState, VirtualClock]:
    clock = VirtualClock()
    lab = LabState.create(clock=clock, scenario="clean", seed=0)
    return AMI430Emulator("magnet", lab, np.random.default_rng(0)), lab, clock


def errors(emu: AMI430Emulator) -> list[str]:
    """Drain the error buffer."""
    out = []
    while (reply := emu.handle("SYST:ERR?")) != '0,"No errors"':
        assert reply is not None
        out.append(reply)
    return out


# -- identity and framing ---------------------------------------------------------------------
def test_greeting_and_termination_are_the_real_instruments() -> None:
    emu, _, _ = make()
    assert emu.on_connect() == GREETING
    assert emu.reply_termination == "\r\n"
    assert emu.handle("*IDN?") == "AMERICAN MAGNETICS INC.,MODEL 430,2.01"


def test_defaults_read_back_in_si_from_the_lab() -> None:
    emu, lab, _ = make()
    m = lab.magnet
    assert float(emu.handle("COIL?")) == pytest.approx(m.coil_constant)
    assert float(emu.handle("CURR:LIMIT?")) == pytest.approx(m.current_limit)
    rate, upper = map(float, emu.handle("RAMP:RATE:FIELD:1?").split(","))
    assert (rate, upper) == pytest.approx(m.segments[0])
    assert emu.handle("STATE?") == str(int(MagnetState.AT_ZERO))
    assert emu.handle("FIELD:UNITS?") == "1"
    assert emu.handle("RAMP:RATE:UNITS?") == "0"


def test_long_short_case_and_chained_forms() -> None:
    emu, lab, _ = make()
    emu.handle("configure:field:target 0.25")
    assert lab.magnet.target == pytest.approx(0.25)
    assert emu.handle("FIELD:TARGET?") == emu.handle("field:targ?") == "0.2500000000"
    assert emu.handle("PSWITCH:INSTALLED?;ps:inst?;PSwitch:HeatTIME?") == "0;0;20"
    assert emu.handle("CONF:FIELD:TARG 0.1;RAMP;STATE?") == "1"
    assert lab.magnet.target == pytest.approx(0.1)
    assert errors(emu) == []


# -- units ----------------------------------------------------------------------------------
def test_kilogauss_units_convert_every_field_value() -> None:
    emu, lab, _ = make()
    emu.handle("CONF:FIELD:UNITS 0")
    assert emu.handle("FIELD:UNITS?") == "0"
    assert float(emu.handle("COIL?")) == pytest.approx(10 * lab.magnet.coil_constant)
    emu.handle("CONF:FIELD:TARG 12.5")  # kG
    assert lab.magnet.target == pytest.approx(1.25)
    assert float(emu.handle("FIELD:TARG?")) == pytest.approx(12.5)
    emu.handle("CONF:RAMP:RATE:FIELD 1,0.02,0")  # kG/s
    assert lab.magnet.segments[0][0] == pytest.approx(0.002)
    assert emu.handle("RAMP:RATE:FIELD:1?") == "0.0200000000,0.0000000000"
    emu.handle("CONF:COIL 2")  # kG/A
    assert lab.magnet.coil_constant == pytest.approx(0.2)
    assert errors(emu) == []


def test_per_minute_rates_and_current_rates_share_the_si_segments() -> None:
    emu, lab, _ = make()
    emu.handle("CONF:RAMP:RATE:UNITS 1")
    emu.handle("CONF:RAMP:RATE:FIELD 1,0.12,0")  # T/min
    assert lab.magnet.segments[0][0] == pytest.approx(0.002)  # T/s
    assert float(emu.handle("RAMP:RATE:FIELD:1?").split(",")[0]) == pytest.approx(0.12)
    # the same segment in A/min: 0.12 T/min / 0.1 T/A
    assert float(emu.handle("RAMP:RATE:CURR:1?").split(",")[0]) == pytest.approx(1.2)
    emu.handle("CONF:RAMP:RATE:UNITS 0")
    emu.handle("CONF:RAMP:RATE:CURR 1,0.05,20")  # A/s, A
    assert lab.magnet.segments[0] == pytest.approx((0.005, 2.0))
    assert emu.handle("RAMP:RATE:CURRENT:1?") == "0.0500000000,20.0000000000"
    assert errors(emu) == []


# -- limits ---------------------------------------------------------------------------------
def test_targets_beyond_the_current_limit_are_refused() -> None:
    emu, lab, _ = make()
    limit = lab.magnet.coil_constant * lab.magnet.current_limit  # 5 T
    emu.handle(f"CONF:FIELD:TARG {limit}")
    assert lab.magnet.target == pytest.approx(limit)
    emu.handle(f"CONF:FIELD:TARG {limit * 1.01}")
    emu.handle(f"CONF:FIELD:TARG {-limit * 1.01}")
    emu.handle(f"CONF:CURR:TARG {lab.magnet.current_limit + 1}")
    assert lab.magnet.target == pytest.approx(limit)
    assert errors(emu) == ['-105,"Out of range"'] * 3
    emu.handle("CONF:FIELD:UNITS 0")
    emu.handle(f"CONF:FIELD:TARG {10 * limit + 0.5}")  # kG
    assert errors(emu) == ['-105,"Out of range"']
    emu.handle("CONF:CURR:LIMIT 10")  # lowering the limit lowers the allowed field
    emu.handle("CONF:FIELD:UNITS 1;CONF:FIELD:TARG 1.5")
    assert errors(emu) == ['-105,"Out of range"']
    emu.handle("CONF:CURR:LIMIT 200")  # beyond the 125 A supply
    assert lab.magnet.current_limit == pytest.approx(10)
    assert errors(emu) == ['-105,"Out of range"']


def test_ramp_rates_outside_the_supply_range_are_refused() -> None:
    emu, lab, _ = make()
    before = list(lab.magnet.segments)
    for bad in ("1.5,0", "0,0", "-0.01,0", "0.0001,6"):  # 15 A/s, zero, negative, upper > limit
        emu.handle(f"CONF:RAMP:RATE:FIELD 1,{bad}")
    emu.handle("CONF:RAMP:RATE:CURR 1,11,0")
    emu.handle("CONF:RAMP:RATE:UNITS 1;CONF:RAMP:RATE:CURR 1,601,0")  # 10.02 A/s
    assert lab.magnet.segments == before
    assert errors(emu) == ['-105,"Out of range"'] * 6
    emu.handle("CONF:RAMP:RATE:CURR 1,600,0")  # exactly 10 A/s is allowed
    assert lab.magnet.segments[0][0] == pytest.approx(10 * lab.magnet.coil_constant)
    assert errors(emu) == []


def test_malformed_arguments_report_the_manuals_errors() -> None:
    emu, lab, _ = make()
    emu.handle("CONF:RAMP:RATE:FIELD 1,0.001")  # no upper bound
    emu.handle("CONF:FIELD:TARG abc")
    emu.handle("CONF:FIELD:TARG")
    emu.handle("QU 2")
    emu.handle("CONF:FIELD:UNITS 2")
    emu.handle("CONF:RAMP:RATE:FIELD 2,0.001,1")  # only one segment defined
    emu.handle("RAMP:RATE:FIELD:3?")
    assert errors(emu) == [
        '-104,"Missing parameter"',
        '-102,"Invalid argument"',
        '-104,"Missing parameter"',
        '-103,"Non-boolean argument"',
        '-105,"Out of range"',
        '-105,"Out of range"',
        '-105,"Out of range"',
    ]
    assert lab.magnet.target == 0.0


def test_unknown_commands_and_queries_and_the_error_buffer() -> None:
    emu, _, _ = make()
    assert emu.handle("FIELD:BOGUS?") is None
    assert emu.handle("FROBNICATE 3") is None
    assert emu.log[-1].error is not None and emu.log[-1].error.startswith("-101,")
    assert emu.handle("*ESR?") == str((1 << 5) | (1 << 2))  # command error + query error
    assert errors(emu) == ['-201,"Unrecognized query"', '-101,"Unrecognized command"']
    for _ in range(12):
        emu.handle("BOGUS")
    drained = errors(emu)
    assert len(drained) == 10
    assert drained[-1] == '-304,"Error buffer overflow"'
    emu.handle("BOGUS;*CLS")
    assert errors(emu) == []


# -- ramping and physics ----------------------------------------------------------------------
def test_segments_configure_and_the_ramp_reaches_holding() -> None:
    emu, lab, clock = make()
    emu.handle("CONF:RAMP:RATE:SEG 2")
    assert emu.handle("RAMP:RATE:SEG?") == "2"
    emu.handle("CONF:RAMP:RATE:FIELD 1,0.002,1;CONF:RAMP:RATE:FIELD 2,0.001,5")
    emu.handle("CONF:RAMP:RATE:FIELD 2,0.001,0.5")  # upper bounds must increase
    emu.handle("CONF:RAMP:RATE:SEG 11")
    assert errors(emu) == ['-105,"Out of range"'] * 2
    assert np.allclose(lab.magnet.segments, [(0.002, 1.0), (0.001, 5.0)])
    assert emu.handle("RAMP:RATE:FIELD:2?") == "0.0010000000,5.0000000000"
    emu.handle("CONF:FIELD:TARG 2;RAMP")
    clock.sleep(250)
    assert float(emu.handle("FIELD:MAG?")) == pytest.approx(0.5)
    assert float(emu.handle("CURR:SUPP?")) == pytest.approx(5.0)
    # supply voltage L dI/dt while ramping
    assert float(emu.handle("VOLT:SUPP?")) == pytest.approx(lab.magnet.inductance * 0.02)
    clock.sleep(2000)
    assert emu.handle("STATE?") == "2"
    assert float(emu.handle("FIELD:MAG?")) == pytest.approx(2.0)
    assert float(emu.handle("CURR:MAG?")) == pytest.approx(20.0)
    emu.handle("CONF:RAMP:RATE:SEG 1")
    assert lab.magnet.segments == [(0.002, 1.0)]


def test_second_segment_ramps_at_its_own_rate() -> None:
    emu, _, clock = make()
    emu.handle("CONF:RAMP:RATE:SEG 2")
    emu.handle("CONF:RAMP:RATE:FIELD 1,0.002,1;CONF:RAMP:RATE:FIELD 2,0.001,5")
    emu.handle("CONF:FIELD:TARG 2;RAMP")
    clock.sleep(1499)  # 500 s for the first tesla, 1000 s for the second
    assert emu.handle("STATE?") == "1"
    clock.sleep(2)
    assert emu.handle("STATE?") == "2"


def test_pause_zero_and_rst_stop_or_reverse_the_ramp() -> None:
    emu, lab, clock = make()
    emu.handle("CONF:FIELD:TARG 1;RAMP")
    clock.sleep(100)
    emu.handle("PAUSE")
    assert emu.handle("STATE?") == "3"
    clock.sleep(100)
    assert float(emu.handle("FIELD:MAG?")) == pytest.approx(0.1)
    emu.handle("ZERO")
    assert emu.handle("STATE?") == "6"
    clock.sleep(101)
    assert emu.handle("STATE?") == "8"
    assert float(emu.handle("FIELD:MAG?")) == 0.0
    emu.handle("RAMP;BOGUS")
    clock.sleep(10)
    emu.handle("*RST")
    assert lab.magnet.state == MagnetState.PAUSED
    assert errors(emu) == []  # *RST clears the buffer, like a power cycle
    assert emu.handle("FIELD:UNITS?") == "1"  # settings survive


def test_quench_latches_and_blocks_ramping_until_reset() -> None:
    emu, lab, clock = make()
    emu.handle("CONF:FIELD:TARG 0.2;RAMP")
    clock.sleep(100)
    emu.handle("QU 1")
    assert emu.handle("QU?;STATE?;FIELD:MAG?") == "1;7;0.0000000000"
    emu.handle("RAMP")
    clock.sleep(10)
    assert lab.magnet.state == MagnetState.QUENCH
    assert errors(emu) == ['-301,"Quench condition"']
    assert emu.handle("*ESR?") == str(1 << 4)  # execution error
    emu.handle("QU 0")
    assert emu.handle("QU?;STATE?") == "0;3"
    emu.handle("RAMP")
    assert emu.handle("STATE?") == "1"


def test_persistent_switch_freezes_the_magnet_field() -> None:
    emu, lab, clock = make()
    emu.handle("PS 1")
    assert errors(emu) == ['-107,"No switch installed"']
    emu.handle("CONF:PS 1;CONF:PS:HTIME 10;CONF:PS:CTIME 30;CONF:PS:CURR 41.5")
    assert emu.handle("PS:INST?;PS?;PS:HTIME?;PS:CTIME?;PS:CURR?") == "1;0;10;30;41.5"
    assert lab.magnet.switch_current == pytest.approx(0.0415)
    emu.handle("PS 1")
    assert emu.handle("STATE?") == "9"
    emu.handle("RAMP")  # refused while the switch heats
    assert errors(emu) == ['-301,"Switch heating or cooling"']
    clock.sleep(11)
    assert emu.handle("PS?;STATE?") == "1;8"
    emu.handle("CONF:FIELD:TARG 0.1;RAMP")
    clock.sleep(200)
    assert emu.handle("STATE?;PERS?") == "2;0"
    emu.handle("PS 0")
    assert emu.handle("STATE?") == "10"
    clock.sleep(31)
    assert emu.handle("PERS?") == "1"
    emu.handle("ZERO")
    clock.sleep(200)
    assert emu.handle("STATE?") == "8"
    assert float(emu.handle("CURR:SUPP?")) == 0.0
    assert float(emu.handle("FIELD:MAG?")) == pytest.approx(0.1)  # the persistent field
    assert float(emu.handle("CURR:MAG?")) == pytest.approx(1.0)
    assert float(emu.handle("VOLT:SUPP?")) == 0.0
    emu.handle("CONF:PS:HTIME 200;CONF:PS:CTIME 1;CONF:PS:CURR 130;CONF:PS:HTIME 7.5")
    assert errors(emu) == ['-105,"Out of range"'] * 3 + ['-102,"Invalid argument"']


# -- the QCoDeS pyvisa-sim file: every query answers in the same shape ---------------------------
def _shape(reply: str) -> list[str]:
    """Kinds of the comma-separated fields: number or text."""

    def kind(field: str) -> str:
        try:
            float(field)
        except ValueError:
            return "text"
        return "number"

    return [kind(f.strip().strip('"')) for f in reply.split(",")]


@pytest.mark.parametrize(("query", "example"), [(q, str(r)) for q, r in pyvisa_sim_queries("AMI430.yaml")])
def test_every_yaml_query_is_answered_like_the_yaml(query: str, example: str) -> None:
    emu, _, _ = make()
    reply = emu.handle(query)
    assert reply is not None and emu.log[-1].error is None
    if query.startswith(("RAMP:RATE:FIELD", "RAMP:RATE:CURR")):
        assert _shape(reply) == ["number", "number"]  # rate,upper (the yaml's third value is fake)
    elif query == "SYST:ERR?":
        assert _shape(reply)[0] == "number"
    elif query == "*IDN?":  # vendor,model,firmware
        assert reply.count(",") >= 2
    else:
        assert _shape(reply) == _shape(example)


# -- drivers ----------------------------------------------------------------------------------
class OneInstrumentLab:
    """The least a lab must offer the ``@qbslab`` backend: one AMI 430 at the station's address."""

    def __init__(self) -> None:
        self.emulator, self.state, self.clock = make()

    def emulator_at(self, resource_name: str) -> AMI430Emulator | None:
        return self.emulator if resource_name == canonical(ADDRESS) else None

    def resource_names(self) -> list[str]:
        return [canonical(ADDRESS)]

    def io_tick(self) -> None:
        self.clock.tick()

    def wait(self, seconds: float) -> None:
        self.clock.sleep(seconds)


@pytest.fixture
def mini_lab():
    lab = OneInstrumentLab()
    lab_id = register_lab(lab)
    lab.visalib = f"{lab_id}@qbslab"
    yield lab
    unregister_lab(lab_id)


def test_qcodes_driver_init_snapshot_and_ramp(mini_lab, caplog) -> None:
    from qcodes.instrument_drivers.american_magnetics import AMIModel430

    drv = AMIModel430("magnet_qc", ADDRESS, visalib=mini_lab.visalib)
    try:
        with caplog.at_level(logging.WARNING):
            snap = drv.snapshot(update=True)
        assert "Could not update" not in caplog.text
        params = snap["parameters"]
        assert params["field_units"]["value"] == "tesla"
        assert params["coil_constant"]["value"] == pytest.approx(0.1)
        assert params["ramping_state"]["value"] == "at zero current"
        assert drv.field_limit() == pytest.approx(5.0)
        drv.ramp_rate(0.005)
        assert drv.ramp_rate() == pytest.approx(0.005)
        assert mini_lab.state.magnet.segments[0][0] == pytest.approx(0.005)
        with patch_driver_time(mini_lab.clock):
            drv.set_field(0.05)  # blocking: the driver's sleeps run on the virtual clock
        assert drv.ramping_state() == "holding"
        assert drv.field() == pytest.approx(0.05)
        assert mini_lab.state.magnet.magnet_field() == pytest.approx(0.05)
        with pytest.raises(ValueError):
            drv.set_field(6.0)  # the driver's own check against COIL? x CURR:LIMIT?
        drv.field_units("kilogauss")
        assert drv.field() == pytest.approx(0.5)
        assert drv.coil_constant() == pytest.approx(1.0)
        drv.ramp_rate_units("minutes")
        assert drv.ramp_rate() == pytest.approx(0.005 * 10 * 60)
        drv.zero()
        assert drv.ramping_state() == "zeroing current"
        assert drv.get_error() == '0,"No errors"'
    finally:
        drv.close()
    assert all(c.error is None for c in mini_lab.emulator.log)


def test_qcodes_switch_heater_and_persistent_mode(mini_lab, caplog) -> None:
    from qcodes.instrument_drivers.american_magnetics import AMIModel430

    drv = AMIModel430("magnet_qc2", ADDRESS, visalib=mini_lab.visalib)
    try:
        drv.switch_heater.enabled(True)
        drv.switch_heater.heat_time(10)
        drv.switch_heater.cool_time(20)
        drv.switch_heater.current(30)
        with caplog.at_level(logging.WARNING):
            snap = drv.switch_heater.snapshot(update=True)
        assert "Could not update" not in caplog.text
        assert snap["parameters"]["current"]["value"] == pytest.approx(30.0)
        with patch_driver_time(mini_lab.clock):
            drv.switch_heater.state(True)  # waits out the heating
            drv.set_field(0.02)
            drv.switch_heater.state(False)  # waits out the cooling
        assert drv.switch_heater.in_persistent_mode() is True
        drv.zero()
        mini_lab.clock.sleep(100)
        assert drv.ramping_state() == "at zero current"
        assert drv.field() == pytest.approx(0.02)  # persistent field
        assert mini_lab.state.magnet.current() == 0.0
    finally:
        drv.close()


def test_qcodes_driver_over_tcp_reads_the_greeting(mini_lab) -> None:
    from qcodes.instrument_drivers.american_magnetics import AMIModel430

    from qbs_lab.sim.tcp_server import InstrumentServer

    server = InstrumentServer({"magnet": mini_lab.emulator}, mini_lab.clock.tick)
    try:
        with socket.create_connection(("127.0.0.1", server.port("magnet")), timeout=5) as s:
            data = b""
            deadline = time.monotonic() + 5
            while data.count(b"\r\n") < 2 and time.monotonic() < deadline:
                data += s.recv(1024)
            assert data.decode() == GREETING
            s.sendall(b"STATE?\r\n")
            assert s.recv(1024) == b"8\r\n"
        drv = AMIModel430("magnet_tcp", server.address("magnet"), visalib="@py")
        try:
            assert drv.ramping_state() == "at zero current"
            assert drv.coil_constant() == pytest.approx(0.1)
        finally:
            drv.close()
    finally:
        server.close()


def test_pymeasure_driver(mini_lab) -> None:
    from pymeasure.instruments.ami import AMI430

    drv = AMI430(ADDRESS, visa_library=mini_lab.visalib)  # reads the two greeting lines itself
    try:
        assert drv.id == "AMERICAN MAGNETICS INC.,MODEL 430,2.01"
        assert drv.coilconst == pytest.approx(0.1)
        assert drv.magnet_status == "AT ZERO CURRENT"
        drv.target_field = 0.03
        drv.ramp_rate_field = 0.004  # sends "1,0.004,1.00": upper bound 1 T
        assert drv.ramp_rate_field == pytest.approx([0.004, 1.0])
        assert drv.ramp_rate_current == pytest.approx([0.04, 10.0])
        drv.ramp()
        assert drv.magnet_status == "RAMPING"
        mini_lab.clock.sleep(10)
        assert drv.field == pytest.approx(0.03)
        assert drv.magnet_status == "HOLDING"
        assert drv.magnet_current == pytest.approx(0.3)
        assert drv.supply_current == pytest.approx(0.3)
        drv.voltage_limit = 1.5
        assert drv.voltage_limit == pytest.approx(1.5)
        drv.target_current = 0.5
        assert drv.target_field == pytest.approx(0.05)
        drv.pause()
        assert drv.magnet_status == "PAUSED"
        drv.zero()
        assert drv.magnet_status == "ZEROING CURRENT in progress"
        assert drv.check_errors() == []
        # PyMeasure's ramp_rate_current setter omits the upper bound the 430 requires
        drv.ramp_rate_current = 0.01
        assert drv.next_error[0] == -104
    finally:
        drv.adapter.close()


def test_simlab_station_magnet() -> None:
    from qcodes.instrument_drivers.american_magnetics import AMIModel430

    from qbs_lab.sim import SimLab

    with SimLab.from_station(STATION, seed=0) as lab:
        drv = AMIModel430("magnet_sim", lab.address("magnet"), visalib=lab.visalib)
        try:
            drv.snapshot(update=True)
            drv.ramp_rate(0.002)
            drv.set_field(0.01, block=False)
            assert drv.ramping_state() == "ramping"
        finally:
            drv.close()
        log = lab.command_log("magnet")
    assert any(c.command.startswith("CONF:FIELD:TARG") for c in log)
    assert all(c.error is None for c in log)
