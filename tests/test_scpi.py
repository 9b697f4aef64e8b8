"""Command-header parsing shared by the emulators."""

import pytest

from qbs_lab.sim.scpi import Pattern, parse_arguments, split_header, split_message


@pytest.mark.parametrize(
    "header",
    ["SOUR:VOLT:LEV?", ":source:voltage:level?", "VOLT?", "volt:lev?", "Sour:Volt?", ":VOLTAGE?"],
)
def test_long_short_optional_and_case(header: str) -> None:
    assert Pattern("[:SOURce]:VOLTage[:LEVel]?").match(header) == ()


@pytest.mark.parametrize("header", ["SOURC:VOLT?", "VOLT", "VOLTS?", "SOUR:VOLT:LEV:X?", "CURR?"])
def test_rejects_partial_forms_and_other_headers(header: str) -> None:
    assert Pattern("[:SOURce]:VOLTage[:LEVel]?").match(header) is None


def test_numeric_suffixes_and_number_nodes() -> None:
    assert Pattern("OUTPut#[:STATe]?").match("OUTP2?") == (2,)
    assert Pattern("OUTPut#[:STATe]?").match("OUTP?") == (1,)
    assert Pattern("RAMP:RATE:FIELD:#?").match("ramp:rate:field:3?") == (3,)


def test_message_splitting_respects_quotes() -> None:
    assert split_message('A 1;B "x;y";C?') == ["A 1", 'B "x;y"', "C?"]
    assert split_header("OUTP? 1") == ("OUTP?", "1")
    assert split_header("RDGK?6") == ("RDGK?", "6")
    assert parse_arguments(' 1, "a,b" ,3') == ["1", "a,b", "3"]


def test_chained_commands_continue_the_previous_path_first() -> None:
    import numpy as np

    from qbs_lab.clock import VirtualClock
    from qbs_lab.sim.emulators.keithley2450 import Keithley2450Emulator
    from qbs_lab.sim.lab_state import LabState

    emu = Keithley2450Emulator("gate", LabState.create(clock=VirtualClock()), np.random.default_rng(0))
    emu.handle(":SENS:FUNC 'CURR'")
    assert emu.handle(":SOUR:FUNC VOLT;FUNC?") == "VOLT"  # SOUR:FUNC?, not the root SENS:FUNC?
    assert emu.handle(":SOUR:FUNC VOLT;:FUNC?") == '"CURR:DC"'  # a leading colon: from the root
