"""The Keithley 2400: its emulator, the unmodified QCoDeS driver on it, the adapter and the gate role."""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import scpi_error_codes
from qbs_lab.drivers.adapters import adapter_for
from qbs_lab.drivers.adapters.qcodes_keithley2400 import QcodesKeithley2400
from qbs_lab.drivers.errors import LeakageError, LimitError, SafetyError
from qbs_lab.drivers.protocols import GateSourceAdapter
from qbs_lab.drivers.roles import GateLimits, GateRole
from qcodes.instrument_drivers.Keithley import Keithley2400

from qbs_lab.clock import VirtualClock
from qbs_lab.sim import SimLab
from qbs_lab.sim.emulators.keithley2400 import Keithley2400Emulator
from qbs_lab.sim.lab_state import LabState

NUMBER = re.compile(r"[+-]\d\.\d{6}E[+-]\d{2}\Z")  # the 2400's number format
DRIVER = "qcodes.instrument_drivers.Keithley.Keithley2400"


@pytest.fixture
def state() -> LabState:
    return LabState.create(clock=VirtualClock(), scenario="clean", seed=0)


@pytest.fixture
def emu(state: LabState) -> Keithley2400Emulator:
    return Keithley2400Emulator("gate", state, np.random.default_rng(0))


def num(reply: str | None) -> float:
    assert reply is not None and NUMBER.match(reply), reply
    return float(reply)


# -- the emulator ----------------------------------------------------------------------------------
def test_identity_and_reset_defaults(emu: Keithley2400Emulator, state: LabState) -> None:
    vendor, model, *_ = emu.handle("*IDN?").split(",")
    assert (vendor, model) == ("KEITHLEY INSTRUMENTS INC.", "MODEL 2400")
    emu.handle(":SOUR:VOLT 3;:SENS:CURR:PROT 1e-6;:OUTP ON;:SENS:FUNC 'VOLT';:FORM:ELEM CURR")
    emu.handle(":*RST")  # what the QCoDeS driver's reset() sends
    assert emu.handle(":SOUR:FUNC?") == "VOLT"
    assert emu.handle(":SENS:FUNC?") == '"CURR:DC"'
    assert emu.handle(":OUTP?") == "0" and not state.gate.output_on
    assert emu.handle(":SOUR:VOLT?") == "+0.000000E+00" and state.gate.voltage_setpoint == 0.0
    assert emu.handle(":SENS:CURR:PROT?") == "+1.050000E-04" and state.gate.current_limit == 105e-6
    assert emu.handle(":SENS:VOLT:PROT?") == "+2.100000E+01"
    assert emu.handle(":FORM:ELEM?") == "VOLT,CURR,RES,TIME,STAT"
    assert emu.handle(":SOUR:VOLT:RANG:AUTO?;:SENS:CURR:RANG:AUTO?") == "1;1"
    assert emu.handle(":SYST:ERR?") == '0,"No error"'


@pytest.mark.parametrize(
    "command",
    [
        ":SOURce:VOLTage:LEVel:IMMediate:AMPLitude 1.25",
        "sour:volt 1.25",
        "SOUR1:VOLT:LEV 125e-2",
        ":source1:voltage:level:immediate 1.25",
    ],
)
def test_source_level_forms(emu: Keithley2400Emulator, state: LabState, command: str) -> None:
    emu.handle(command)
    assert state.gate.voltage_setpoint == 1.25
    assert emu.handle("SOUR:VOLT:LEV?") == "+1.250000E+00"
    assert scpi_error_codes(emu) == []


def test_chaining_and_relative_paths(emu: Keithley2400Emulator, state: LabState) -> None:
    reply = emu.handle(":SENS:CURR:PROT 2e-6;NPLC 0.1;:SOUR:VOLT 4;:OUTP ON;:OUTP?;:SOUR:VOLT?")
    assert reply == "1;+4.000000E+00"
    assert num(emu.handle(":SENS:CURR:NPLC?")) == 0.1
    assert num(emu.handle("SENS:VOLT:NPLC?")) == 0.1  # the integration rate is global
    assert (state.gate.voltage_setpoint, state.gate.current_limit, state.gate.output_on) == (4.0, 2e-6, True)
    assert scpi_error_codes(emu) == []


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (":SOUR:VOLT", -109),
        (":SOUR:VOLT abc", -104),
        (":SOUR:VOLT 300", -222),
        (":SENS:CURR:PROT 2", -222),
        (":SENS:CURR:PROT 0.000000", 822),  # what the driver's compliancei sends for 1e-7 A
        (":SENS:CURR:RANG 1e-3", 824),  # above the 105 uA compliance range
        (":SENS:VOLT:RANG 2", 823),  # sourcing voltage: the source range sets it (source read-back)
        (":OUTP MAYBE", -224),
        (":SOUR:FUNC RES", -224),
        (":SENS:FUNC 'TEMP'", -224),
        (":SENS:CURR:NPLC 20", -222),
        (":TRIG:COUN 0", -222),
        (":READ?", 803),  # output off
        (":FETC?", -230),
        (":SOUR:VOLTS 1", -113),
        (":BOGUS?", -113),
    ],
)
def test_errors(emu: Keithley2400Emulator, state: LabState, command: str, code: int) -> None:
    assert emu.handle(command) is None  # a refused query sends nothing back
    assert scpi_error_codes(emu) == [code]
    gate = state.gate
    assert (gate.voltage_setpoint, gate.output_on, gate.current_limit) == (0.0, False, 105e-6)


def test_error_reporting_and_status(emu: Keithley2400Emulator) -> None:
    emu.handle(":READ?")
    assert emu.handle("*ESR?") == str(1 << 4)  # +803 is an execution error
    assert emu.handle(":SYST:ERR?") == '803,"Not permitted with OUTPUT off"'
    emu.handle(":BOGUS")
    assert emu.handle("*ESR?") == str(1 << 5)  # command error
    assert emu.handle(":SYST:ERR?") == '-113,"Undefined header"'


def test_readings_follow_the_data_elements(emu: Keithley2400Emulator, state: LabState) -> None:
    gate = state.gate
    emu.handle(":SOUR:VOLT 5;:SENS:CURR:PROT 1e-6;:OUTP ON")
    assert (gate.voltage_setpoint, gate.current_limit, gate.output_on) == (5.0, 1e-6, True)
    emu.handle(":FORM:ELEM CURR,VOLT")  # the elements always come in the manual's order
    assert emu.handle(":FORM:ELEM?") == "VOLT,CURR"
    volts, amps = emu.handle(":READ?").split(",")
    assert volts == "+5.000000E+00"  # sourcing V, measuring I: the programmed level
    assert float(amps) == pytest.approx(gate.leakage(5.0), abs=5 * gate.noise)
    emu.handle(":FORM:ELEM VOLT,CURR,RES,TIME,STAT")
    values = emu.handle(":READ?").split(",")
    assert float(values[2]) == 9.91e37  # resistance is not measured: NAN
    assert int(values[4]) == (1 << 2) | (1 << 12) | (1 << 14)  # front, I measured, V sourced
    emu.handle(":SENS:FUNC 'VOLT'")  # concurrent: current stays on, voltage is measured too
    assert emu.handle(":SENS:FUNC?") == '"VOLT:DC","CURR:DC"'
    volts = float(emu.handle(":READ?").split(",")[0])
    assert volts != 5.0 and volts == pytest.approx(5.0, abs=1e-3)
    assert scpi_error_codes(emu) == []


def test_trigger_count_fetch_and_timestamp(emu: Keithley2400Emulator, state: LabState) -> None:
    emu.handle(":OUTP ON;:TRIG:COUN 3;:FORM:ELEM CURR,TIME")
    first = emu.handle(":READ?").split(",")
    assert len(first) == 6 and emu.handle(":FETC?").split(",") == first
    state.clock.sleep(10.0)
    later = float(emu.handle(":READ?").split(",")[1])
    assert later == pytest.approx(float(first[1]) + 10.0, abs=0.1)
    emu.handle(":SYST:TIME:RES")
    assert float(emu.handle(":READ?").split(",")[1]) < 0.1
    assert scpi_error_codes(emu) == []


def test_compliance_floor_is_a_thousandth_of_the_measure_range(
    emu: Keithley2400Emulator, state: LabState
) -> None:
    emu.handle(":SENS:CURR:PROT 1.000000E-07")  # autorange: the measure range follows the compliance
    assert scpi_error_codes(emu) == [] and state.gate.current_limit == 1e-7
    emu.handle(":SENS:CURR:PROT 1e-3;:SENS:CURR:RANG 1e-3")  # fixed 1.05 mA measure range
    assert num(emu.handle(":SENS:CURR:RANG?")) == 1.05e-3
    emu.handle(":SENS:CURR:PROT 1e-7")
    assert scpi_error_codes(emu) == [822] and state.gate.current_limit == 1e-3
    emu.handle(":SENS:CURR:PROT 2e-6")  # the fixed range comes down to the compliance range
    assert state.gate.current_limit == 2e-6 and num(emu.handle(":SENS:CURR:RANG?")) == 10.5e-6


def test_compliance_holds_the_gate_below_breakdown(emu: Keithley2400Emulator, state: LabState) -> None:
    gate = state.gate
    emu.handle(":SENS:CURR:PROT 1e-6;:SOUR:VOLT 70;:OUTP ON")  # past the oxide's breakdown
    assert emu.handle(":SOUR:VOLT:RANG?") == "+2.100000E+02"  # autorange
    assert emu.handle(":SENS:CURR:PROT:TRIP?") == "1"
    assert gate.V_bd < gate.output_voltage() < 70.0
    emu.handle(":FORM:ELEM CURR,STAT")
    amps, status = emu.handle(":READ?").split(",")
    assert float(amps) == pytest.approx(1e-6, abs=5 * gate.noise) and int(status) & (1 << 3)
    emu.handle(":SOUR:VOLT 1")
    assert emu.handle(":SENS:CURR:PROT:TRIP?") == "0"


def test_a_fixed_measure_range_below_the_compliance_limits_the_source(
    emu: Keithley2400Emulator, state: LabState
) -> None:
    emu.handle(":SENS:CURR:RANG 1e-6")  # 1.05 uA range under the 105 uA compliance
    assert state.gate.current_limit == 1.05e-6  # range compliance
    emu.handle(":SOUR:VOLT 70;:OUTP ON;:FORM:ELEM STAT")
    assert int(emu.handle(":READ?")) & (1 << 16)


def test_fixed_source_range(emu: Keithley2400Emulator, state: LabState) -> None:
    emu.handle(":SOUR:VOLT:RANG 2")
    assert emu.handle(":SOUR:VOLT:RANG?;RANG:AUTO?") == "+2.100000E+00;0"
    emu.handle(":SOUR:VOLT 3")  # beyond the 2.1 V range: refused
    assert scpi_error_codes(emu) == [-222] and state.gate.voltage_setpoint == 0.0
    emu.handle(":SOUR:VOLT 2;:SOUR:VOLT:RANG 0.2")  # the level would not fit the new range
    assert scpi_error_codes(emu) == [-221] and emu.handle(":SOUR:VOLT:RANG?") == "+2.100000E+00"
    assert state.gate.voltage_setpoint == 2.0


def test_current_source_mode(emu: Keithley2400Emulator, state: LabState) -> None:
    gate = state.gate
    emu.handle(":SOUR:FUNC CURR;:SENS:FUNC:OFF:ALL;:SENS:FUNC 'VOLT';:SENS:VOLT:PROT 10")
    emu.handle(":SOUR:CURR 5e-13;:OUTP ON;:FORM:ELEM VOLT,CURR")
    assert gate.voltage_setpoint == pytest.approx(5e-13 * gate.R_leak, rel=1e-6)
    volts, amps = (float(x) for x in emu.handle(":READ?").split(","))
    assert volts == pytest.approx(5.0, abs=1e-3) and amps == 5e-13  # the programmed current
    emu.handle(":SOUR:CURR 1e-9")  # would need 1 kV: held at the 10 V compliance
    assert gate.voltage_setpoint == 10.0 and emu.handle(":SENS:VOLT:PROT:TRIP?") == "1"
    assert scpi_error_codes(emu) == []


# -- the unmodified QCoDeS driver on the simulated lab ---------------------------------------------
@pytest.fixture
def sim() -> Iterator[SimLab]:
    with SimLab({"gate": {"type": DRIVER, "address": "GPIB0::24::INSTR"}}, seed=0) as lab:
        yield lab


@pytest.fixture
def drv(sim: SimLab) -> Iterator[Any]:
    driver = Keithley2400("k2400", sim.address("gate"), visalib=sim.visalib)
    try:
        yield driver
    finally:
        driver.close()


def _could_not_update(caplog: pytest.LogCaptureFixture) -> set[str]:
    return {
        r.getMessage().rsplit(": ", 1)[-1] for r in caplog.records if "Could not update" in r.getMessage()
    }


def test_qcodes_init_and_snapshot(drv: Any, sim: SimLab, caplog: pytest.LogCaptureFixture) -> None:
    assert [c.command for c in sim.command_log("gate")[:3]] == [
        ":TRIG:COUN 1",
        ":FORM:ELEM VOLT,CURR",
        "*IDN?",
    ]
    with caplog.at_level(logging.WARNING):
        drv.snapshot(update=True)
    # the driver itself refuses to read through :READ? with the output off (its documented precondition)
    assert _could_not_update(caplog) == {"volt", "curr", "resistance"}
    drv.output(True)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        snap = drv.snapshot(update=True)
    assert _could_not_update(caplog) == set()
    assert [c for c in sim.command_log("gate") if c.error] == []
    values = {k: v["value"] for k, v in snap["parameters"].items()}
    assert (values["mode"], values["sense"], values["output"]) == ("VOLT", '"CURR:DC"', True)
    assert (values["compliancei"], values["compliancev"], values["nplci"]) == (105e-6, 21.0, 1.0)


def test_qcodes_parameters(drv: Any, sim: SimLab) -> None:
    gate = sim.state.gate
    drv.rangev(20)  # "SOUR:VOLT:RANG 20.000000": the 21 V range
    assert drv.rangev() == 21.0
    drv.rangei(1e-3)  # the driver sets the current *source* range ("SOUR:CURR:RANG 0.001000") ...
    assert drv.rangei() == 105e-6  # ... and reads the current *measure* range: unchanged
    assert drv.ask(":SOUR:CURR:RANG?") == "+1.050000E-03"
    drv.compliancei(1e-3)
    drv.write(":SENS:CURR:RANG 1e-6")  # a fixed measure range below the compliance: range compliance
    assert drv.rangei() == 1.05e-6 and gate.current_limit == 1.05e-6
    drv.nplci(0.5)
    assert drv.nplcv() == 0.5
    drv.volt(3.5)
    drv.output(True)
    assert (gate.voltage_setpoint, gate.output_on) == (3.5, True)
    assert drv.volt() == 3.5
    assert drv.curr() == pytest.approx(gate.leakage(3.5), abs=5 * gate.noise)
    assert drv.resistance() == pytest.approx(gate.R_leak, rel=0.5)
    drv.output(False)
    drv.mode("CURR")  # the driver turns the voltage measurement on with it
    assert drv.mode() == "CURR" and "VOLT" in drv.sense()
    drv.compliancev(10)
    drv.curr(2e-8)  # sent as "0.00000002" (the driver's 10 nA resolution): 200 kV through 1e13 Ohm
    assert gate.voltage_setpoint == 10.0  # held at the voltage compliance
    drv.reset()
    assert (drv.mode(), drv.compliancei(), gate.voltage_setpoint) == ("VOLT", 105e-6, 0.0)
    assert [c for c in sim.command_log("gate") if c.error] == []


def test_the_drivers_compliancei_cannot_set_a_sub_microamp_limit(drv: Any, sim: SimLab) -> None:
    drv.compliancei(1e-7)  # formatted "{:f}": sent as 0.000000, refused by the instrument
    assert sim.command_log("gate")[-1].command == "SENS:CURR:PROT 0.000000"
    assert drv.compliancei() == 105e-6 and sim.state.gate.current_limit == 105e-6


# -- the adapter -----------------------------------------------------------------------------------
def test_adapter_is_registered_and_implements_the_protocol(drv: Any) -> None:
    role, cls = adapter_for(DRIVER)  # type: ignore[misc]
    assert (role, cls) == ("gate", QcodesKeithley2400)
    assert isinstance(QcodesKeithley2400(drv), GateSourceAdapter)


def test_adapter_methods(drv: Any, sim: SimLab) -> None:
    gate = sim.state.gate
    adapter = QcodesKeithley2400(drv)
    adapter.set_current_limit(1e-7)
    assert gate.current_limit == 1e-7
    assert sim.command_log("gate")[-2].command == ":SENS:CURR:PROT 1.000000E-07"
    adapter.set_voltage(2.5)
    assert gate.voltage_setpoint == 2.5 and adapter.voltage() == 2.5  # readable with the output off
    assert adapter.output() is False and adapter.leakage_current() == 0.0
    adapter.set_output(True)
    assert adapter.output() is True and gate.output_on
    assert adapter.leakage_current() == pytest.approx(gate.leakage(2.5), abs=5 * gate.noise)
    adapter.set_voltage(-1.25)
    assert adapter.voltage() == -1.25 and gate.output_voltage() == -1.25
    adapter.set_output(False)
    assert not gate.output_on and adapter.output() is False
    assert [c for c in sim.command_log("gate") if c.error] == []


def test_adapter_makes_the_2400_source_voltage_and_measure_current(drv: Any, sim: SimLab) -> None:
    drv.mode("CURR")
    drv.write(":SENS:FUNC:OFF:ALL;:SENS:FUNC 'VOLT'")
    QcodesKeithley2400(drv)
    assert drv.mode() == "VOLT" and "CURR" in drv.sense()
    drv.write(":SENS:FUNC:OFF 'CURR'")  # sourcing voltage already, but not measuring current
    QcodesKeithley2400(drv)
    assert "CURR" in drv.sense()


def test_adapter_raises_when_the_2400_refuses_the_limit(drv: Any, sim: SimLab) -> None:
    drv.compliancei(1e-3)
    drv.write(":SENS:CURR:RANG 1e-3")  # fixed 1.05 mA measure range: no compliance below 1.05 uA
    adapter = QcodesKeithley2400(drv)
    with pytest.raises(SafetyError, match="did not take the current compliance"):
        adapter.set_current_limit(1e-7)
    assert sim.state.gate.current_limit == 1e-3


# -- through the gate role: the limits hold at the instrument --------------------------------------
LIMITS = GateLimits(min=-10.0, max=10.0, max_step=0.5, max_rate=1.0, leakage_limit=1e-9, current_limit=1e-7)


def _levels(sim: SimLab) -> list[tuple[float, float]]:
    """(time, level) of every source level the 2400 received."""
    return [
        (c.time, float(c.args[0]))
        for c in sim.command_log("gate")
        if c.reply is None and c.header.upper().lstrip(":").startswith("SOUR:VOLT") and c.args
    ]


def test_role_ramps_within_the_limits(drv: Any, sim: SimLab) -> None:
    gate = sim.state.gate
    role = GateRole(QcodesKeithley2400(drv), LIMITS, sim.clock)
    assert gate.current_limit == 1e-7  # set when the role starts
    role.ramp_to(5.0)
    role.ramp_to(-3.2)
    role.to_safe_value()
    n = len(sim.command_log("gate"))
    with pytest.raises(LimitError):
        role.ramp_to(10.5)
    assert len(sim.command_log("gate")) == n  # refused before anything was sent
    levels = _levels(sim)
    assert [v for _, v in levels][-1] == 0.0 and gate.output_voltage() == 0.0
    assert all(LIMITS.min <= v <= LIMITS.max for _, v in levels)
    rounding = 1e-8  # the driver sends ":SOUR:VOLT:LEV {:.8f}"
    for (t0, v0), (t1, v1) in itertools.pairwise(levels):
        assert abs(v1 - v0) <= LIMITS.max_step + rounding
        assert t1 - t0 >= (abs(v1 - v0) - rounding) / LIMITS.max_rate - 1e-12
    assert min(v for _, v in levels) == -3.2 and max(v for _, v in levels) == 5.0
    assert [c for c in sim.command_log("gate") if c.error] == []


def test_role_stops_a_breakdown_and_leaves_the_gate_safe(drv: Any, sim: SimLab) -> None:
    gate = sim.state.gate
    limits = GateLimits(
        min=-80.0, max=80.0, max_step=0.5, max_rate=1.0, leakage_limit=1e-9, current_limit=1e-6
    )
    role = GateRole(QcodesKeithley2400(drv), limits, sim.clock)
    with pytest.raises(LeakageError) as err:
        role.ramp_to(75.0)  # the oxide breaks down near 60 V
    assert gate.V_bd < err.value.voltage <= gate.V_bd + 2.5
    assert abs(err.value.current) > limits.leakage_limit
    levels = [v for _, v in _levels(sim)]
    assert max(levels) == err.value.voltage and levels[-1] == limits.safe_value
    sim.state.sync()
    assert gate.output_voltage() == 0.0 and abs(role.leakage()) < limits.leakage_limit


def test_the_driver_over_tcp() -> None:
    with SimLab({"gate": {"type": DRIVER, "address": "GPIB0::24::INSTR"}}, seed=0) as lab:
        lab.serve_tcp()
        drv = Keithley2400("k2400tcp", lab.tcp_address("gate"), visalib="@py")
        try:
            adapter = QcodesKeithley2400(drv)
            adapter.set_current_limit(1e-7)
            adapter.set_voltage(2.0)
            adapter.set_output(True)
            assert adapter.voltage() == 2.0 and lab.state.gate.current_limit == 1e-7
            assert adapter.leakage_current() == pytest.approx(2.0 / lab.state.gate.R_leak, abs=1e-12)
        finally:
            drv.close()


def test_nplc_is_shared_by_every_measure_function(emu: Keithley2400Emulator) -> None:
    emu.handle(":SENS:RES:NPLC 2.5")  # the resistance form goes through the function-parametrised handler
    assert num(emu.handle(":SENS:VOLT:NPLC?")) == 2.5
    assert num(emu.handle(":SENS:RES:NPLC?")) == 2.5
    assert scpi_error_codes(emu) == []
