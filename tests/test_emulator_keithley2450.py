"""The Keithley 2450 emulator: SCPI forms, ranges, limits, buffers and its effect on the back gate."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import pyvisa_sim_queries, scpi_error_codes
from hypothesis import given, settings
from hypothesis import strategies as st

from qbs_lab.clock import VirtualClock
from qbs_lab.sim.emulators.keithley2450 import Keithley2450Emulator
from qbs_lab.sim.lab_state import LabState

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"-?\d\.\d{6}E[+-]\d{2}\Z")  # the 2450's reply format, 7 significant digits


@pytest.fixture
def lab() -> LabState:
    return LabState.create(clock=VirtualClock(), scenario="clean", seed=0)


@pytest.fixture
def emu(lab: LabState) -> Keithley2450Emulator:
    return Keithley2450Emulator("gate", lab, np.random.default_rng(0))


def num(reply: str | None) -> float:
    assert reply is not None and NUMBER.match(reply), reply
    return float(reply)


# -- identity, defaults, formats -------------------------------------------------------------------
def test_identity_and_language(emu: Keithley2450Emulator) -> None:
    vendor, model, _serial, _firmware = emu.handle("*IDN?").split(",")
    assert (vendor, model) == ("KEITHLEY INSTRUMENTS", "MODEL 2450")
    assert emu.handle("*LANG?") == "SCPI"
    assert emu.reply_termination == "\n"
    emu.handle("*LANG TSP")  # takes effect at the next power cycle
    assert emu.handle("*LANG?") == "SCPI"
    assert scpi_error_codes(emu) == []


def test_reset_defaults(emu: Keithley2450Emulator, lab: LabState) -> None:
    emu.handle(":SOUR:VOLT 3;:OUTP ON;:SENS:FUNC 'VOLT';:ROUT:TERM REAR")
    emu.handle("*RST")
    assert emu.handle(":SOUR:FUNC?") == "VOLT"
    assert emu.handle(":SENS:FUNC?") == '"CURR:DC"'
    assert emu.handle(":OUTP?") == "0" and not lab.gate.output_on
    assert emu.handle(":SOUR:VOLT?") == "0.000000E+00" and lab.gate.voltage_setpoint == 0.0
    assert emu.handle(":SOUR:VOLT:ILIM?") == "1.050000E-04" and lab.gate.current_limit == 105e-6
    assert emu.handle(":SOUR:CURR:VLIM?") == "2.100000E+01"
    assert emu.handle(":SOUR:VOLT:RANG:AUTO?") == "1"
    assert emu.handle("ROUT:TERM?") == "FRON"
    assert emu.handle(":SYST:LFR?") == "50"
    assert emu.handle(":SYST:ERR?") == '0,"No error;0;0 0"'


def test_number_format_and_precision(emu: Keithley2450Emulator) -> None:
    emu.handle(":SOUR:VOLT -1.5")
    assert emu.handle(":SOUR:VOLT?") == "-1.500000E+00"
    emu.handle(":FORM:ASC:PREC 10")
    assert emu.handle(":SOUR:VOLT?") == "-1.500000000E+00"
    assert emu.handle(":FORM:ASC:PREC?") == "10"
    emu.handle(":FORM:ASC:PREC 0")
    num(emu.handle(":SOUR:VOLT?"))


# -- forms, chaining, errors -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "command",
    [
        ":SOURce:VOLTage:LEVel:IMMediate:AMPLitude 1.25",
        "sour:volt 1.25",
        "SOUR1:VOLT:LEV 1.25",
        ":source1:voltage:level:immediate 1.25",
        "SOUR:VOLT 125e-2",
    ],
)
def test_source_level_forms(emu: Keithley2450Emulator, lab: LabState, command: str) -> None:
    emu.handle(command)
    assert lab.gate.voltage_setpoint == 1.25
    assert emu.handle("SOUR:VOLT?") == "1.250000E+00"
    assert scpi_error_codes(emu) == []


def test_chaining_and_relative_paths(emu: Keithley2450Emulator, lab: LabState) -> None:
    reply = emu.handle(":SOUR:VOLT:RANG 20;ILIM 2e-6;:SOUR:VOLT 4;:OUTP ON;:OUTP?;:SOUR:VOLT?")
    assert reply == "1;4.000000E+00"
    assert emu.handle(":SOUR:VOLT:RANG?;RANG:AUTO?") == "2.000000E+01;0"
    assert (lab.gate.voltage_setpoint, lab.gate.current_limit, lab.gate.output_on) == (
        4.0,
        2e-6,
        True,
    )
    assert scpi_error_codes(emu) == []


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (":SOUR:VOLT", -109),
        (":SOUR:VOLT 1, 2", -108),
        (":SOUR:VOLT abc", -104),
        (":SOUR:VOLT 300", -222),
        (":SOUR:VOLT:ILIM 2", -222),
        (":SOUR:VOLT:ILIM 0", -222),
        (":SOUR:CURR:VLIM 500", -222),
        (":OUTP MAYBE", -224),
        (":SOUR:FUNC RES", -224),
        (":SENS:FUNC 'TEMP'", -224),
        (":SENS:CURR:NPLC 20", -222),
        (":SOUR:VOLT:VLIM 1", -113),  # VLIMit belongs to the current source
        (":SOUR:VOLTS 1", -113),
        (":BOGUS?", -113),
        (":READ? 'nobuffer'", -224),
    ],
)
def test_errors(emu: Keithley2450Emulator, lab: LabState, command: str, code: int) -> None:
    assert emu.handle(command) is None
    assert scpi_error_codes(emu) == [code]
    assert (lab.gate.voltage_setpoint, lab.gate.output_on, lab.gate.current_limit) == (
        0.0,
        False,
        105e-6,
    )


def test_error_reply_and_status(emu: Keithley2450Emulator) -> None:
    emu.handle(":BOGUS 1")
    assert emu.handle(":SYST:ERR:COUN?") == "1"
    reply = emu.handle(":SYST:ERR?")
    assert re.match(r'-113,"Undefined header;1;\d+ \d+"\Z', reply), reply
    emu.handle(":SOUR:VOLT 1000")
    assert emu.handle("*ESR?") == str(1 << 5 | 1 << 4)  # command error and execution error
    emu.handle("*CLS")
    assert emu.handle(":SYST:ERR?") == '0,"No error;0;0 0"'


# -- the source: ranges, limits, compliance, the gate ----------------------------------------------
def test_level_beyond_fixed_range_refused(emu: Keithley2450Emulator, lab: LabState) -> None:
    emu.handle(":SOUR:VOLT:RANG 2;:SOUR:VOLT 1;:OUTP ON")
    emu.handle(":SOUR:VOLT 2.1")  # 105 % of the range is allowed
    assert lab.gate.voltage_setpoint == 2.1
    emu.handle(":SOUR:VOLT 2.2")
    assert scpi_error_codes(emu) == [-222]
    assert lab.gate.voltage_setpoint == 2.1 and emu.handle(":SOUR:VOLT?") == "2.100000E+00"
    emu.handle(":SOUR:VOLT:RANG 0.2")  # the level does not fit the smaller range: ignored
    assert scpi_error_codes(emu) == [-221]
    assert emu.handle(":SOUR:VOLT:RANG?") == "2.000000E+00"


def test_autorange_picks_the_range(emu: Keithley2450Emulator, lab: LabState) -> None:
    for level, expected in [(0.0, 0.02), (0.15, 0.2), (3.0, 20.0), (-150.0, 200.0), (210.0, 200.0)]:
        emu.handle(f":SOUR:VOLT {level}")
        assert float(emu.handle(":SOUR:VOLT:RANG?")) == expected
        assert lab.gate.voltage_range == expected
    emu.handle(":SOUR:VOLT 210.5")
    assert scpi_error_codes(emu) == [-222] and lab.gate.voltage_setpoint == 210.0
    emu.handle(":SOUR:VOLT:RANG 3")  # the 20 V range holds 3 V; 210 V does not fit it
    assert scpi_error_codes(emu) == [-221]
    emu.handle(":SOUR:VOLT 1;:SOUR:VOLT:RANG 3")
    assert emu.handle(":SOUR:VOLT:RANG?;RANG:AUTO?") == "2.000000E+01;0"


def test_limit_magnitude_and_min_max_def(emu: Keithley2450Emulator, lab: LabState) -> None:
    emu.handle(":SOUR:VOLT:ILIM -1e-6")
    assert lab.gate.current_limit == 1e-6 and emu.handle(":SOUR:VOLT:ILIM?") == "1.000000E-06"
    emu.handle(":SOUR:VOLT:ILIM MAX")
    assert lab.gate.current_limit == 1.05
    emu.handle(":SOUR:VOLT:ILIM DEF")
    assert lab.gate.current_limit == 105e-6
    assert emu.handle(":SOUR:VOLT:ILIM? MIN") == "1.000000E-09"
    assert emu.handle(":SOUR:VOLT? MAX") == "2.100000E+02"
    assert scpi_error_codes(emu) == []


def test_output_drives_the_gate(emu: Keithley2450Emulator, lab: LabState) -> None:
    emu.handle(":SOUR:VOLT 5")
    assert lab.gate.voltage_setpoint == 5.0 and lab.gate.output_voltage() == 0.0
    assert abs(num(emu.handle(":MEAS:VOLT?"))) < 1e-3  # output off: nothing at the terminals
    emu.handle("OUTPUT ON")
    assert lab.gate.output_on and lab.gate.output_voltage() == 5.0
    assert num(emu.handle(":MEAS:VOLT?")) == pytest.approx(5.0, abs=1e-3)
    assert emu.handle(":SENS:FUNC?") == '"VOLT:DC"'  # :MEASure:<function>? selects the function
    current = num(emu.handle(":MEAS:CURR?"))
    assert current == pytest.approx(lab.gate.leakage(5.0), abs=5 * lab.gate.noise)
    emu.handle(":OUTP OFF")
    assert not lab.gate.output_on and lab.gate.output_voltage() == 0.0


def test_compliance_trips_and_clips(emu: Keithley2450Emulator, lab: LabState) -> None:
    emu.handle(":SOUR:VOLT:ILIM 1e-9;:SOUR:VOLT 70;:OUTP ON")  # past the gate's breakdown
    assert lab.gate.in_compliance()
    assert emu.handle(":SOUR:VOLT:ILIM:TRIP?") == "1"
    assert num(emu.handle(":READ?")) == pytest.approx(1e-9, abs=5 * lab.gate.noise)
    readback = num(emu.handle(":FETC? 'defbuffer1', SOUR"))
    assert readback == pytest.approx(lab.gate.output_voltage(), abs=1e-3) and readback < 70
    emu.handle(":SOUR:VOLT 1")
    assert emu.handle(":SOUR:VOLT:ILIM:TRIP?") == "0" and not lab.gate.in_compliance()


def test_overvoltage_protection(emu: Keithley2450Emulator, lab: LabState) -> None:
    emu.handle(":SOUR:VOLT:PROT PROT20;:SOUR:VOLT 50;:OUTP ON")
    assert emu.handle(":SOUR:VOLT:PROT?") == "PROT20"
    assert lab.gate.output_voltage() == 20.0 and emu.handle(":SOUR:VOLT:PROT:TRIP?") == "1"
    emu.handle(":SOUR:VOLT:PROT NONE")
    assert lab.gate.output_voltage() == 50.0


def test_current_source_mode(emu: Keithley2450Emulator, lab: LabState) -> None:
    emu.handle(":SOUR:FUNC CURR;:SOUR:CURR 1e-12;:SOUR:CURR:VLIM 21;:OUTP ON")
    expected = 1e-12 * lab.gate.R_leak  # 10 V through the oxide
    assert lab.gate.output_voltage() == pytest.approx(expected, rel=1e-6)
    assert num(emu.handle(":MEAS:VOLT?")) == pytest.approx(expected, abs=1e-3)
    assert emu.handle(":SOUR:CURR:VLIM:TRIP?") == "0"
    emu.handle(":SOUR:CURR 1e-11")  # would need 100 V: held at VLIMit
    assert lab.gate.output_voltage() == pytest.approx(21.0)
    assert emu.handle(":SOUR:CURR:VLIM:TRIP?") == "1"
    assert emu.handle(":SOUR:VOLT:ILIM:TRIP?") == "0"


@pytest.mark.parametrize("command", [":SOUR:FUNC CURR", ":ROUT:TERM REAR", ":SENS:CURR:RSEN ON"])
def test_changes_that_turn_the_output_off(emu: Keithley2450Emulator, lab: LabState, command: str) -> None:
    emu.handle(":SOUR:VOLT 2;:OUTP ON")
    emu.handle(command)
    assert emu.handle(":OUTP?") == "0" and lab.gate.output_voltage() == 0.0


@settings(max_examples=80, deadline=None)
@given(level=st.floats(-30.0, 30.0, allow_nan=False), fixed=st.booleans())
def test_level_applied_iff_in_range(level: float, fixed: bool) -> None:
    lab = LabState.create(clock=VirtualClock(), scenario="clean", seed=0)
    emu = Keithley2450Emulator("gate", lab, np.random.default_rng(0))
    if fixed:
        emu.handle(":SOUR:VOLT:RANG 20")
    emu.handle(f":SOUR:VOLT {level!r}")
    if abs(level) <= (21.0 if fixed else 210.0):
        assert lab.gate.voltage_setpoint == level and scpi_error_codes(emu) == []
    else:
        assert lab.gate.voltage_setpoint == 0.0 and scpi_error_codes(emu) == [-222]


# -- measuring: functions, ranges, overflow --------------------------------------------------------
def test_sense_settings(emu: Keithley2450Emulator) -> None:
    emu.handle(":SENS:CURR:RANG 5e-8")
    assert emu.handle(":SENS:CURR:RANG?") == "1.000000E-07"
    assert emu.handle(":SENS:CURR:RANG:AUTO?") == "0"
    emu.handle("CURR:NPLC 0.5;:SENS:CURR:AZER OFF;:SENS:CURR:AVER:TCON MOV;:SENS:COUN 3")
    assert emu.handle(":SENS:CURR:NPLC?") == "5.000000E-01"
    assert emu.handle(":SENSe:CURRent:DC:AZERo:STATe?") == "0"
    assert emu.handle(":SENS:CURR:AVER:TCON?") == "MOV"
    assert emu.handle(":SENS:COUN?") == "3"
    emu.handle(':SENS:FUNC "RES";:SENS:RES:RANG 3e3')
    assert emu.handle(":SENS:FUNC?;:SENS:RES:RANG?") == '"RES";2.000000E+04'
    emu.handle(":SENS:VOLT:DEL:USER2 0.5")
    assert emu.handle(":SENS:VOLT:DEL:USER2?") == "5.000000E-01"
    assert scpi_error_codes(emu) == []
    emu.handle(":SENS:VOLT:DEL:USER7 0.5")
    assert scpi_error_codes(emu) == [-114]


def test_autorange_and_overflow(emu: Keithley2450Emulator, lab: LabState) -> None:
    emu.handle(":SOUR:VOLT:ILIM 1e-6;:SOUR:VOLT 70;:OUTP ON")  # in compliance: 1 uA flows
    assert num(emu.handle(":READ?")) == pytest.approx(1e-6, rel=1e-3)
    assert emu.handle(":SENS:CURR:RANG?") == "1.000000E-06"
    emu.handle(":SENS:CURR:RANG 10e-9")
    assert emu.handle(":READ?") == "9.900000E+37"
    emu.handle(":SOUR:VOLT 1;:SENS:FUNC 'RES'")  # 1e13 Ohm of oxide is beyond 200 MOhm
    assert emu.handle(":READ?") == "9.900000E+37"


def test_measuring_what_is_sourced_uses_the_source_range(emu: Keithley2450Emulator) -> None:
    emu.handle(":SOUR:VOLT:RANG 2;:SENS:VOLT:RANG 200;:SENS:FUNC 'VOLT'")
    assert emu.handle(":SENS:VOLT:RANG?") == "2.000000E+00"
    emu.handle(":SOUR:FUNC CURR")
    assert emu.handle(":SENS:VOLT:RANG?") == "2.000000E+02"


# -- reading buffers and sweeps --------------------------------------------------------------------
def test_buffers(emu: Keithley2450Emulator, lab: LabState) -> None:
    assert emu.handle(":FETC?") is None and scpi_error_codes(emu) == [-230]
    emu.handle(":TRAC:MAKE 'gatebuf', 100;:SOUR:VOLT 2;:OUTP ON;:SENS:COUN 4")
    num(emu.handle(":READ? 'gatebuf'"))
    assert emu.handle(":TRAC:ACT? 'gatebuf'") == "4"
    assert emu.handle(":TRAC:POIN? 'gatebuf'") == "100"
    assert emu.handle(":TRAC:ACT?") == "0"  # defbuffer1 untouched
    reading, source, unit, source_unit = emu.handle(":FETC? 'gatebuf', READ, SOUR, UNIT, SOURUNIT").split(",")
    num(reading)
    assert num(source) == pytest.approx(2.0, abs=1e-3)
    assert (unit, source_unit) == ("Amp DC", "Volt DC")
    data = emu.handle(":TRAC:DATA? 1, 4, 'gatebuf'").split(",")
    assert len(data) == 4 and all(NUMBER.match(x) for x in data)
    mean = num(emu.handle(":TRAC:STAT:AVER? 'gatebuf'"))
    assert mean == pytest.approx(np.mean([float(x) for x in data]), rel=1e-5)
    assert emu.handle(":TRAC:DATA? 1, 5, 'gatebuf'") is None and scpi_error_codes(emu) == [-222]
    emu.handle(":TRAC:CLE 'gatebuf'")
    assert emu.handle(":TRAC:ACT? 'gatebuf'") == "0"
    emu.handle(":TRAC:DEL 'gatebuf'")
    assert emu.handle(":TRAC:ACT? 'gatebuf'") is None and scpi_error_codes(emu) == [-224]
    emu.handle(":TRAC:DEL 'defbuffer1'")
    assert scpi_error_codes(emu) == [-224]


def test_linear_sweep_fills_the_buffer_and_leaves_the_gate_at_the_end(
    emu: Keithley2450Emulator, lab: LabState
) -> None:
    emu.handle(":READ?")  # an old reading, cleared when the sweep starts
    emu.handle(":SOURce:SWEep:voltage:LINear 0,1,10,0,1,AUTO,ON,OFF,'defbuffer1'")
    emu.handle(":INITiate")
    emu.handle("*WAI")
    assert emu.handle(":TRAC:ACT? 'defbuffer1'") == "10"
    sources = emu.handle(":TRAC:DATA? 1, 10, 'defbuffer1', SOUR").split(",")
    assert [float(s) for s in sources] == pytest.approx(np.linspace(0, 1, 10), abs=1e-3)
    assert lab.gate.output_on and lab.gate.voltage_setpoint == pytest.approx(1.0)
    emu.handle("TRACe:CLEar")
    assert emu.handle(":TRAC:ACT?") == "0"
    emu.handle(":SOUR:SWE:VOLT:LIN 0, 300, 5")
    assert scpi_error_codes(emu) == [-222]


# -- every query of QCoDeS's pyvisa-sim file answers in the same shape -----------------------------
@pytest.mark.parametrize(("query", "example"), pyvisa_sim_queries("Keithley_2450.yaml", "device 1"))
def test_sim_yaml_queries(emu: Keithley2450Emulator, query: str, example: Any) -> None:
    # the yaml's sweep scenario first: set up, run, then read the ten points back
    emu.handle(":SOURce:SWEep:voltage:LINear 0,1,10,0,1,AUTO,ON,OFF,'defbuffer1'")
    emu.handle(":INITiate")
    emu.handle("*WAI")
    reply = emu.handle(query)
    assert reply is not None, query
    assert len(reply.split(",")) == len(str(example).split(","))
    if query.startswith(":TRACe:DATA?"):
        assert all(NUMBER.match(x) for x in reply.split(","))
    elif query == ":SENS:FUNC?":
        assert reply.startswith('"') and reply.endswith('"')
    assert scpi_error_codes(emu) == []


# -- the unmodified QCoDeS driver, through the simulated lab's VISA backend ------------------------
@pytest.fixture
def sim() -> Iterator[Any]:
    from qbs_lab.sim import SimLab

    doc = yaml.safe_load((ROOT / "station.yaml").read_text())
    lab = SimLab({"gate": doc["instruments"]["gate"]}, seed=0)
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def qdrv(sim: Any) -> Iterator[Any]:
    from qcodes.instrument_drivers.Keithley import Keithley2450

    drv = Keithley2450("gate", sim.address("gate"), visalib=sim.visalib)
    try:
        yield drv
    finally:
        drv.close()


#: parameters the QCoDeS driver cannot read on any 2450 until the user has set something up:
#: sweep_axis raises before sweep_setup(); user_delay sends ":...:DELay:USERNone?" (a header the
#: instrument rejects, -113) until user_number is set.
DRIVER_PRECONDITIONS = {"sweep_axis", "user_delay"}


def _could_not_update(caplog: pytest.LogCaptureFixture) -> set[str]:
    return {
        r.getMessage().rsplit(": ", 1)[-1] for r in caplog.records if "Could not update" in r.getMessage()
    }


def test_qcodes_init_and_snapshot(qdrv: Any, sim: Any, caplog: pytest.LogCaptureFixture) -> None:
    log = sim.command_log("gate")
    assert log[0].command == "*LANG?" and log[0].reply == "SCPI"
    with caplog.at_level(logging.WARNING):
        qdrv.snapshot(update=True)
    assert _could_not_update(caplog) <= DRIVER_PRECONDITIONS
    bad = [c for c in sim.command_log("gate") if c.error]
    assert all("USERNone" in c.command for c in bad), bad
    # with the driver's preconditions met, the snapshot updates every parameter
    for module in qdrv.submodules.values():
        if "user_number" in module.parameters:
            module.user_number(1)
        if "sweep_axis" in module.parameters:
            module.sweep_setup(0.0, 1.0, 5)
    caplog.clear()
    n = len(sim.command_log("gate"))
    with caplog.at_level(logging.WARNING):
        snap = qdrv.snapshot(update=True)
    assert _could_not_update(caplog) == set()
    assert [c for c in sim.command_log("gate")[n:] if c.error] == []
    assert snap["parameters"]["source_function"]["value"] == "voltage"
    assert snap["parameters"]["sense_function"]["value"] == "current"


def test_qcodes_parameters(qdrv: Any, sim: Any) -> None:
    gate = sim.state.gate
    qdrv.source_function("voltage")
    qdrv.sense_function("current")
    qdrv.terminals("rear")
    assert qdrv.terminals() == "REAR"
    qdrv.source.range(20)
    qdrv.source.limit(1e-6)
    qdrv.source.voltage(3.5)
    qdrv.output_enabled(True)
    assert (gate.voltage_setpoint, gate.current_limit, gate.output_on) == (3.5, 1e-6, True)
    assert qdrv.source.voltage() == 3.5 and qdrv.source.range() == 20.0
    assert qdrv.source.limit_tripped() is False
    assert qdrv.sense.current() == pytest.approx(gate.leakage(3.5), abs=5 * gate.noise)
    qdrv.source.auto_range(True)
    assert qdrv.source.auto_range() is True
    qdrv.sense.auto_range(False)
    qdrv.sense.range(1e-8)
    qdrv.sense.nplc(0.1)
    qdrv.sense.auto_zero_enabled(False)
    qdrv.sense.count(2)
    assert (qdrv.sense.range(), qdrv.sense.nplc(), qdrv.sense.count()) == (1e-8, "1.000000E-01", "2")
    qdrv.source.delay(0.01)
    assert qdrv.source.auto_delay() is False
    qdrv.source.read_back_enabled(False)
    assert qdrv.source.read_back_enabled() is False
    qdrv.source.voltage(25.0)  # beyond the 20 V range... now in autorange: accepted
    assert gate.voltage_setpoint == 25.0
    qdrv.source.range(20)
    assert gate.voltage_setpoint == 25.0 and qdrv.source.range() == 200.0  # refused: -221
    qdrv.source.voltage(1.0)
    qdrv.source.range(20)
    qdrv.source.voltage(22.0)  # beyond 105 % of the 20 V range: refused, the gate keeps 1 V
    assert gate.voltage_setpoint == 1.0 and qdrv.source.voltage() == 1.0
    errs = [c.error.split(",")[0] for c in sim.command_log("gate") if c.error]
    assert errs == ["-221", "-222"]


def test_qcodes_sweep_and_buffer(qdrv: Any, sim: Any) -> None:
    qdrv.sense_function("current")  # the driver attaches the sweep's setpoints here
    qdrv.source.sweep_setup(0.0, 2.0, 11)
    data = qdrv.sense.sweep()
    assert data.shape == (11,)
    assert sim.state.gate.voltage_setpoint == pytest.approx(2.0)
    with qdrv.buffer("gatebuf", 50) as buf:
        qdrv.output_enabled(True)
        qdrv.sense.current()
        buf.elements(["measurement", "source_value", "measurement_unit", "timestamp"])
        _reading, source, unit, _stamp = buf.get_last_reading().split(",")
        assert (float(source), unit) == (pytest.approx(2.0, abs=1e-3), "Amp DC")
        assert buf.number_of_readings() == 1 and buf.size() == 50
    assert [c for c in sim.command_log("gate") if c.error] == []


# -- the unmodified PyMeasure driver ---------------------------------------------------------------
def test_pymeasure_driver(sim: Any) -> None:
    from pymeasure.instruments.keithley import Keithley2450

    gate = sim.state.gate
    k = Keithley2450(sim.address("gate"), visa_library=sim.visalib)
    try:
        k.reset()
        assert "MODEL 2450" in k.id
        k.apply_voltage(compliance_current=1e-6)
        k.measure_current()
        k.enable_source()
        k.source_voltage = 4.0
        assert (gate.voltage_setpoint, gate.current_limit, gate.output_on) == (4.0, 1e-6, True)
        assert k.source_voltage == 4.0 and k.compliance_current == 1e-6 and k.source_enabled
        assert k.current == pytest.approx(gate.leakage(4.0), abs=5 * gate.noise)
        k.apply_voltage(voltage_range=20, compliance_current=0.01)
        assert k.source_voltage_range == 20 and k.compliance_current == 0.01
        k.current_range = 1e-6
        k.current_nplc = 0.5
        assert (k.current_range, k.current_nplc) == (1e-6, 0.5)
        k.measure_voltage()
        assert k.voltage == pytest.approx(4.0, abs=1e-3)
        k.use_rear_terminals()
        k.use_front_terminals()
        k.shutdown()  # ramps to 0 V and turns the output off
        assert gate.voltage_setpoint == 0.0 and not gate.output_on
        assert k.check_errors() == []
    finally:
        k.adapter.close()
    assert [c for c in sim.command_log("gate") if c.error] == []


def test_qcodes_over_tcp(sim: Any) -> None:
    """The same driver through pyvisa-py and a socket: replies end in "\\n" as the driver expects."""
    from qcodes.instrument_drivers.Keithley import Keithley2450

    address = sim.serve_tcp()["gate"]
    drv = Keithley2450("gate_tcp", address, visalib="@py")
    try:
        drv.source.voltage(1.5)
        drv.output_enabled(True)
        assert drv.source.voltage() == 1.5 and drv.output_enabled() is True
        assert sim.state.gate.output_voltage() == 1.5
        assert abs(drv.sense.current()) < 1e-9
    finally:
        drv.close()
