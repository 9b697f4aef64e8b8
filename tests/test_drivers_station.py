"""The unmodified QCoDeS and PyMeasure drivers against the emulated reference station, both transports."""

from __future__ import annotations

import logging

import pytest
from conftest import Connection
from qcodes.instrument_drivers.american_magnetics import AMIModel430
from qcodes.instrument_drivers.Keithley import Keithley2450
from qcodes.instrument_drivers.Lakeshore import LakeshoreModel372
from qcodes.instrument_drivers.rohde_schwarz import RohdeSchwarzSGS100A
from qcodes.instrument_drivers.stanford_research import SR830

QCODES = {
    "lockin": SR830,
    "gate": Keithley2450,
    "magnet": AMIModel430,
    "fridge": LakeshoreModel372,
    "rf": RohdeSchwarzSGS100A,
}


def _count_parameters(snap: dict) -> int:
    return len(snap.get("parameters", {})) + sum(
        _count_parameters(sub) for sub in snap.get("submodules", {}).values()
    )


@pytest.mark.parametrize("name", list(QCODES))
def test_qcodes_driver_connects_and_snapshots_cleanly(
    conn: Connection, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    driver = QCODES[name](f"{name}_{conn.transport}", conn.address(name), visalib=conn.visalib)
    if name == "gate":
        # the QCoDeS Keithley 2450 driver cannot read these until the user sets them up: it sends
        # ":DEL:USERNone?" while user_number is unset, and raises on sweep_axis before sweep_setup()
        for sub in driver.submodules.values():
            if "user_number" in sub.parameters:
                sub.user_number(1)
            if hasattr(sub, "sweep_setup"):
                sub.sweep_setup(0.0, 1.0, 5)
    snap = driver.snapshot(update=True)
    problems = [r.getMessage() for r in caplog.records if "Could not update" in r.getMessage()]
    assert problems == []
    assert _count_parameters(snap) > 10
    assert driver.IDN()["model"]  # *IDN? parsed into a model name
    # the instrument really was asked: its log holds the queries the snapshot made
    assert any(c.reply is not None for c in conn.lab.command_log(name))
    driver.close()


def test_ami430_ramps_at_the_set_rate_on_the_lab_clock_and_ends_holding(conn: Connection) -> None:
    magnet = AMIModel430("magnet", conn.address("magnet"), visalib=conn.visalib, current_ramp_limit=0.06)
    magnet.ramping_state_check_interval(0.5)
    magnet.ramp_rate(0.0025)  # T/s; the supply's own default is 0.001 T/s
    clock = conn.lab.clock
    t0 = clock.now()
    magnet.set_field(0.02)  # blocks, polling STATE? with sleeps on the virtual clock
    elapsed = clock.now() - t0
    assert magnet.ramping_state() == "holding"
    assert magnet.field() == pytest.approx(0.02, abs=1e-9)
    assert 8.0 <= elapsed < 8.7  # 20 mT at 2.5 mT/s, plus at most one poll interval and I/O
    # the rate was set on the instrument itself, not only paced from Python
    rate_cmds = [c for c in conn.lab.command_log("magnet") if c.header.upper() == "CONF:RAMP:RATE:FIELD"]
    assert rate_cmds and float(rate_cmds[-1].args[1]) == pytest.approx(0.0025)
    assert conn.lab.state.magnet.segments[0][0] == pytest.approx(0.0025)


def test_lakeshore_setpoint_brings_the_mixing_chamber_there(conn: Connection) -> None:
    fridge = LakeshoreModel372("fridge", conn.address("fridge"), visalib=conn.visalib)
    heater = fridge.sample_heater
    heater.mode("closed_loop")
    heater.input_channel(6)
    heater.P(25)  # not the controller's defaults, so a dropped PID command shows
    heater.I(35)
    heater.D(0)
    heater.output_range("316μA")
    heater.setpoint(0.1)
    assert heater.setpoint() == pytest.approx(0.1)  # a query: over TCP the writes have landed
    assert conn.lab.state.fridge.pid == pytest.approx((25, 35, 0))
    conn.lab.clock.sleep(900)
    readings = []
    for _ in range(10):
        readings.append(fridge.ch06.temperature())
        conn.lab.clock.sleep(5)
    mean = sum(readings) / len(readings)
    assert mean == pytest.approx(0.1, rel=0.005)
    assert 0 < heater.output() < 100  # regulating, not pinned at a rail
    assert fridge.ch08.temperature() == pytest.approx(0.1, rel=0.02)  # the sample stage followed


def test_pymeasure_drivers_read_and_set(conn: Connection) -> None:
    from pymeasure.instruments.ami import AMI430
    from pymeasure.instruments.keithley import Keithley2450 as PmKeithley2450
    from pymeasure.instruments.srs import SR830 as PmSR830

    lab = conn.lab
    lockin = PmSR830(conn.address("lockin"), visa_library=conn.visalib)
    lockin.sine_voltage = 0.02
    assert lockin.sine_voltage == pytest.approx(0.02)
    assert lab.state.lockin.amplitude == pytest.approx(0.02)
    lockin.time_constant = 0.1
    assert lockin.time_constant == pytest.approx(0.1)  # a query: over TCP it follows the write
    assert lab.state.lockin.time_constant == pytest.approx(0.1)
    x, y = lockin.snap("X", "Y")
    assert abs(x) < 1e-3 and abs(y) < 1e-3

    # on a raw socket the user names the termination (GPIB and HiSLIP carry an END mark instead)
    socket_kw = {"read_termination": "\n"} if conn.transport == "tcp" else {}
    gate = PmKeithley2450(conn.address("gate"), visa_library=conn.visalib, **socket_kw)
    gate.apply_voltage(voltage_range=20, compliance_current=1e-7)
    gate.source_voltage = 2.5
    gate.enable_source()
    gate.measure_current()
    assert abs(gate.current) < 1e-9  # 2.5 V across 10 TOhm plus meter noise
    assert lab.state.gate.output_voltage() == pytest.approx(2.5)

    magnet = AMI430(conn.address("magnet"), visa_library=conn.visalib)
    assert magnet.coilconst == pytest.approx(lab.state.magnet.coil_constant, rel=1e-6)  # T/A
    magnet.ramp_rate_field = 0.002  # T/s (the supply's field unit is tesla), segment 1 up to 1 T
    magnet.target_field = 0.01
    magnet.ramp()
    assert magnet.magnet_status == "RAMPING"  # a query: the RAMP has reached the supply
    lab.clock.sleep(3)
    assert magnet.field == pytest.approx(0.006, abs=2e-5)  # 3 s at 2 mT/s (the default is 1 mT/s)
    assert magnet.magnet_status == "RAMPING"
    lab.clock.sleep(3)
    assert magnet.field == pytest.approx(0.01, abs=1e-6)
    assert magnet.magnet_status == "HOLDING"  # text of STATE? 2, as PyMeasure maps it
    for drv in (lockin, gate, magnet):
        drv.adapter.close()
