"""The Keithley 2400 emulator against its manual's command tables (2400S-900-01, section 18).

Each row of :data:`RESET` is a command summary table's "Default parameter" column (*RST); each row of
:data:`SETTINGS` a value the manual allows and what the query answers for it; the errors are appendix
B's. The QCoDeS and PyMeasure drivers on this emulator are tested in test_adapter_keithley2400.py and by
benchmarks/conformance.py (PyMeasure's own with-device test).
"""

from __future__ import annotations

import numpy as np
import pytest

from qbs_lab.clock import VirtualClock
from qbs_lab.sim.emulators.keithley2400 import Keithley2400Emulator
from qbs_lab.sim.lab_state import LabState
from qbs_lab.sim.sample import scenario_params


@pytest.fixture
def emu() -> Keithley2400Emulator:
    state = LabState(VirtualClock(), scenario_params("clean"))
    return Keithley2400Emulator("gate", state, np.random.default_rng(3))


def errors(emu: Keithley2400Emulator) -> list[int]:
    out = []
    while (reply := emu.handle(":SYST:ERR?")) != '0,"No error"':
        out.append(int(reply.split(",")[0]))
    return out


def num(text: str | None) -> float:
    assert text is not None
    return float(text)


#: (query, *RST answer) from the manual's tables 18-4 to 18-11
RESET = [
    (":OUTP?", "0"),  # 18-4
    (":OUTP:SMOD?", "NORM"),
    (":ROUT:TERM?", "FRON"),  # 18-5
    (":SENS:CURR:RANG?", "+1.050000E-04"),  # 18-6
    (":SENS:CURR:RANG:AUTO?", "1"),
    (":SENS:CURR:NPLC?", "+1.000000E+00"),
    (":SENS:CURR:PROT?", "+1.050000E-04"),
    (":SENS:VOLT:RANG?", "+2.100000E+01"),
    (":SENS:VOLT:RANG:AUTO?", "1"),
    (":SENS:VOLT:PROT?", "+2.100000E+01"),
    (":SENS:RES:MODE?", "AUTO"),
    (":SENS:RES:OCOM?", "0"),
    (":SENS:RES:RANG?", "+2.100000E+05"),
    (":SENS:RES:RANG:AUTO?", "1"),
    (":SENS:RES:NPLC?", "+1.000000E+00"),
    (":SENS:AVER?", "0"),
    (":SENS:AVER:TCON?", "REP"),
    (":SENS:AVER:COUN?", "10"),
    (":SOUR:CLE:AUTO?", "0"),  # 18-7
    (":SOUR:CLE:AUTO:MODE?", "ALW"),
    (":SOUR:FUNC?", "VOLT"),
    (":SOUR:DEL:AUTO?", "1"),
    (":SOUR:CURR?", "+0.000000E+00"),
    (":SOUR:CURR:RANG?", "+1.050000E-04"),
    (":SOUR:CURR:RANG:AUTO?", "1"),
    (":SOUR:VOLT?", "+0.000000E+00"),
    (":SOUR:VOLT:RANG?", "+2.100000E+01"),
    (":SOUR:VOLT:RANG:AUTO?", "1"),
    (":SYST:AZER:STAT?", "1"),  # 18-9
    (":SYST:RSEN?", "0"),
    (":ARM:COUN?", "1"),  # 18-11
    (":ARM:SOUR?", "IMM"),
    (":ARM:TIM?", "+1.000000E-01"),
    (":ARM:ILIN?", "1"),
    (":ARM:OLIN?", "2"),
    (":ARM:OUTP?", "NONE"),
    (":ARM:DIR?", "ACC"),
    (":TRIG:COUN?", "1"),
    (":TRIG:DEL?", "+0.000000E+00"),
    (":TRIG:SOUR?", "IMM"),
    (":TRIG:ILIN?", "1"),
    (":TRIG:OLIN?", "2"),
    (":TRIG:OUTP?", "NONE"),
    (":TRIG:INP?", "NONE"),
    (":FORM:DATA?", "ASC"),
]


@pytest.mark.parametrize(("query", "answer"), RESET)
def test_reset_values_from_the_manual(emu: Keithley2400Emulator, query: str, answer: str) -> None:
    setter = query[:-1].replace("?", "")
    changed = {  # move every setting off its default first, so *RST has to put it back
        ":SOUR:FUNC": "CURR", ":OUTP:SMOD": "GUAR", ":ROUT:TERM": "REAR", ":SENS:AVER:COUN": "3",
        ":SENS:RES:MODE": "MAN", ":ARM:SOUR": "BUS", ":TRIG:OLIN": "4", ":SOUR:DEL:AUTO": "0",
    }  # fmt: skip
    for command, value in changed.items():
        emu.handle(f"{command} {value}")
    emu.handle(":SOUR:VOLT 1.5;:SENS:CURR:RANG 1e-6;:SENS:CURR:PROT 1e-6;:SYST:AZER OFF;:OUTP ON")
    emu.handle("*RST")
    assert emu.handle(query) == answer, setter
    assert errors(emu) == []


#: (command, value, what the query answers): values the manual allows
SETTINGS = [
    (":OUTP:SMOD", "HIMP", "HIMP"),
    (":OUTP:SMOD", "zero", "ZERO"),
    (":OUTP:SMOD", "GUARD", "GUAR"),
    (":ROUT:TERM", "REAR", "REAR"),
    (":SENS:AVER", "ON", "1"),
    (":SENS:AVER:STAT", "1", "1"),
    (":SENS:AVER:TCON", "MOVing", "MOV"),
    (":SENS:AVER:COUN", "100", "100"),
    (":SENS:RES:MODE", "MAN", "MAN"),
    (":SENS:RES:OCOM", "ON", "1"),
    (":SENS:RES:RANG", "2000", "+2.100000E+03"),  # the range that holds 2 kOhm
    (":SENS:RES:RANG:AUTO", "OFF", "0"),
    (":SOUR:CLE:AUTO", "ON", "1"),
    (":SOUR:CLE:AUTO:MODE", "TCO", "TCO"),
    (":SOUR:DEL", "0.1", "+1.000000E-01"),
    (":SOUR:DEL:AUTO", "OFF", "0"),
    (":SYST:AZER", "OFF", "0"),
    (":SYST:LFR", "50", "50"),
    (":SYST:LFR:AUTO", "OFF", "0"),
    (":SYST:RSEN", "ON", "1"),
    (":DISP:ENAB", "OFF", "0"),
    (":ARM:COUN", "10", "10"),
    (":ARM:SOUR", "TIMer", "TIM"),
    (":ARM:SOUR", "BUS", "BUS"),
    (":ARM:TIM", "1", "+1.000000E+00"),
    (":ARM:ILIN", "3", "3"),
    (":ARM:OLIN", "1", "1"),
    (":ARM:OUTP", "TEX", "TEX"),
    (":ARM:OUTP", "TENT,TEX", "TENT,TEX"),  # an event list
    (":TRIG:DEL", "0.5", "+5.000000E-01"),
    (":TRIG:SOUR", "TLIN", "TLIN"),
    (":TRIG:ILIN", "2", "2"),
    (":TRIG:OLIN", "4", "4"),
    (":TRIG:OUTP", "SENS", "SENS"),
    (":TRIG:OUTP", "SOUR,DEL", "SOUR,DEL"),
    (":TRIGGER:SEQUENCE1:DELAY", "2.5", "+2.500000E+00"),
]


@pytest.mark.parametrize(("command", "value", "answer"), SETTINGS)
def test_settings_take_the_manuals_values(
    emu: Keithley2400Emulator, command: str, value: str, answer: str
) -> None:
    emu.handle(f"{command} {value}")
    assert emu.handle(f"{command}?") == answer
    assert errors(emu) == []


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (":SENS:AVER:COUN 101", -222),  # 1 to 100
        (":SENS:AVER:COUN 0", -222),
        (":SENS:AVER:TCON MEDIAN", -224),
        (":SYST:LFR 55", -222),  # 50 or 60
        (":TRIG:ILIN 5", -222),  # lines 1 to 4
        (":ARM:OLIN 0", -222),
        (":ARM:TIM 0.0001", -222),  # 0.001 to 99999.99 s
        (":TRIG:DEL 1000", -222),  # 0 to 999.9999 s
        (":TRIG:SOUR BUS", -224),  # the trigger layer has IMMediate and TLINk only
        (":SOUR:DEL -1", -222),
        (":OUTP:SMOD OPEN", -224),
        (":SENS:VOLT:RANG 2", 823),  # sourcing voltage: the measure range is the source range
        (":SENS:CURR:RANG 1e-3", 824),  # above the 105 uA compliance range
        (":SENS:CURR:RANG 1e-4;:SENS:CURR:PROT 1e-8", 822),  # below 0.1 % of the fixed 105 uA range
        (":READ?", 803),  # output off
        (":SYST:BEEP 10,1", -222),  # 65 Hz to 2 MHz
    ],
)
def test_errors_from_appendix_b(emu: Keithley2400Emulator, command: str, code: int) -> None:
    assert emu.handle(command) is None
    assert errors(emu) == [code]


def test_device_errors_are_execution_errors_in_the_status_byte(emu: Keithley2400Emulator) -> None:
    emu.handle(":SENS:VOLT:RANG 2")
    assert emu.handle("*ESR?") == str(1 << 4)
    assert emu.handle(":SYST:ERR?") == '823,"Invalid with source read-back on"'


def test_source_readback_measure_range_follows_the_source(emu: Keithley2400Emulator) -> None:
    emu.handle(":SENS:VOLT:RANG:AUTO 0")  # accepted while sourcing voltage, as on the instrument
    assert emu.handle(":SENS:VOLT:RANG:AUTO?") == "0" and errors(emu) == []
    emu.handle(":SOUR:VOLT 1.5")  # autorange picks the 2.1 V source range; the measure range follows
    assert emu.handle(":SOUR:VOLT:RANG?") == emu.handle(":SENS:VOLT:RANG?") == "+2.100000E+00"
    emu.handle(":SOUR:FUNC CURR;:SENS:VOLT:RANG 2")  # sourcing current, voltage can be ranged
    assert emu.handle(":SENS:VOLT:RANG?") == "+2.100000E+00" and errors(emu) == []
    emu.handle(":SENS:CURR:RANG 1e-3")
    assert errors(emu) == [823]


def test_arm_times_trigger_count_is_at_most_2500(emu: Keithley2400Emulator) -> None:
    emu.handle(":TRIG:COUN 100;:ARM:COUN 25")
    assert errors(emu) == []
    emu.handle(":ARM:COUN 26")
    assert errors(emu) == [-222] and emu.handle(":ARM:COUN?") == "25"
    emu.handle(":OUTP ON;:FORM:ELEM CURR")
    assert len(emu.handle(":READ?").split(",")) == 2500  # arm count x trigger count readings


def test_auto_delay_is_what_the_delay_query_answers(emu: Keithley2400Emulator) -> None:
    assert num(emu.handle(":SOUR:DEL?")) == 1e-3  # auto delay on the 105 uA range (table 3-4)
    emu.handle(":SENS:CURR:PROT 1e-6;:SENS:CURR:RANG 1e-6")
    assert num(emu.handle(":SOUR:DEL?")) == 3e-3  # the 1 uA range settles slower
    emu.handle(":SOUR:DEL 0.25")  # a manual delay turns auto delay off
    assert emu.handle(":SOUR:DEL:AUTO?") == "0" and num(emu.handle(":SOUR:DEL?")) == 0.25
    assert num(emu.handle(":SOUR:DEL? MAX")) == 999.9999


def test_limit_queries_min_max_default(emu: Keithley2400Emulator) -> None:
    assert emu.handle(":ARM:TIM? MIN") == "+1.000000E-03"
    assert emu.handle(":ARM:TIM? MAX") == "+9.999999E+04"
    assert emu.handle(":ARM:TIM? DEF") == "+1.000000E-01"
    assert emu.handle(":SENS:AVER:COUN? MAX") == "100"
    emu.handle(":SENS:AVER:COUN MIN")
    assert emu.handle(":SENS:AVER:COUN?") == "1"


def test_auto_output_off_reads_with_the_output_off(emu: Keithley2400Emulator) -> None:
    gate = emu.lab.gate
    emu.handle(":SOUR:VOLT 2;:SOUR:CLE:AUTO ON;:FORM:ELEM VOLT")
    assert num(emu.handle(":READ?")) == 2.0  # no +803: the output turned on for the reading
    assert emu.handle(":OUTP?") == "0" and not gate.output_on  # and off again
    assert errors(emu) == []


def test_measure_turns_the_output_on_and_measures_one_function(emu: Keithley2400Emulator) -> None:
    gate = emu.lab.gate
    emu.handle(":SOUR:VOLT 3;:FORM:ELEM VOLT,CURR,RES")
    volts, amps, ohms = (num(x) for x in emu.handle(":MEAS:CURR?").split(","))
    assert gate.output_on and emu.handle(":OUTP?") == "1"  # stays on (auto output-off disabled)
    assert volts == 3.0 and amps == pytest.approx(gate.leakage(3.0), abs=5 * gate.noise)
    assert ohms == 9.91e37  # resistance not measured
    assert emu.handle(":CONF?") == '"CURR:DC"' and emu.handle(":SENS:FUNC:CONC?") == "0"
    volts = num(emu.handle(":MEAS:VOLT?").split(",")[0])
    assert volts != 3.0 and volts == pytest.approx(3.0, abs=1e-3)  # measured now, with its noise
    emu.handle(":SENS:FUNC:ALL")
    assert emu.handle(":SENS:FUNC?") == '"VOLT:DC","CURR:DC","RES"'
    v, i, r = (num(x) for x in emu.handle(":READ?").split(","))
    assert r == pytest.approx(v / i, rel=1e-6)
    assert errors(emu) == []


def test_line_frequency_survives_reset(emu: Keithley2400Emulator) -> None:
    emu.handle(":SYST:LFR 50;:SYST:RSEN ON;*RST")
    assert emu.handle(":SYST:LFR?") == "50"  # a power-on setting
    assert emu.handle(":SYST:RSEN?") == "0"  # *RST: 2-wire


def test_autozero_once_keeps_the_state(emu: Keithley2400Emulator) -> None:
    emu.handle(":SYST:AZER OFF;:SYST:AZER ONCE")
    assert emu.handle(":SYST:AZER?") == "0" and errors(emu) == []


@pytest.mark.parametrize(
    ("command", "answer"),
    [("*OPT?", "0"), ("*OPC?", "1"), ("*TST?", "0"), ("*STB?", "0"), ("*ESR?", "0"), ("*SRE?", "0")],
)
def test_common_commands(emu: Keithley2400Emulator, command: str, answer: str) -> None:
    assert emu.handle(command) == answer
    for write in ("*TRG", "*WAI", "*OPC", ":ABOR", ":TRIG:CLE", "*CLS"):
        assert emu.handle(write) is None
    assert errors(emu) == []


def test_resistance_measure_system_preset_and_time(emu: Keithley2400Emulator) -> None:
    gate = emu.lab.gate
    emu.handle(":SOUR:VOLT 4;:FORM:ELEM VOLT,CURR,RES")
    v, i, r = (num(x) for x in emu.handle(":MEAS:RES?").split(","))
    assert emu.handle(":CONF?") == '"RES"' and gate.output_on
    assert v == 4.0 and i == 9.91e37  # the programmed level; current not measured: NAN
    assert v / r == pytest.approx(gate.leakage(4.0), abs=5 * gate.noise)  # ohms: V over the leakage
    emu.handle(":CONF:VOLT")
    assert emu.handle(":CONF?") == '"VOLT:DC"'
    emu.handle(":SYST:TIME:RES")
    emu.lab.clock.sleep(12.5)
    assert num(emu.handle(":SYST:TIME?")) == pytest.approx(12.5, abs=0.01)
    emu.handle(":DISP:DIG 7;:SYST:BEEP 1000,0.5;:SYST:PRES")  # preset: the *RST state
    assert emu.handle(":OUTP?") == "0" and emu.handle(":DISP:DIG?") == "6"
    assert errors(emu) == []
