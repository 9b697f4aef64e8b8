"""IEEE-488.2 common commands on every emulator: present where the instrument's manual has them, an
unknown command (as that instrument reports one) where it has not."""

from __future__ import annotations

import numpy as np
import pytest

from qbs_lab.clock import VirtualClock
from qbs_lab.sim.emulators import emulator_for_driver
from qbs_lab.sim.emulators.base import Emulator
from qbs_lab.sim.lab_state import LabState
from qbs_lab.sim.sample import scenario_params

QUERIES = ("*IDN?", "*OPC?", "*ESR?", "*ESE?", "*SRE?", "*STB?", "*TST?", "*OPT?")
WRITES = ("*CLS", "*RST", "*OPC", "*WAI", "*TRG", "*ESE 0", "*SRE 0")
#: driver -> the common commands its manual lacks (``*OPT?`` answers for the others)
LACKS = {
    "SR830": {"*OPC?", "*TST?", "*OPT?", "*OPC", "*WAI", "*TRG"},  # status commands only; TRIG
    "SR860": {"*OPT?"},
    "Keithley2450": set(),
    "Keithley2400": set(),
    "AMIModel430": {"*OPT?"},
    "LakeshoreModel372": {"*OPT?", "*TRG"},
    "RohdeSchwarzSGS100A": set(),
}
OPTIONS = {"Keithley2400": "0", "Keithley2450": "0", "RohdeSchwarzSGS100A": "SGS-B106V"}


def make(driver: str) -> Emulator:
    cls = emulator_for_driver(driver)
    assert cls is not None
    return cls("dut", LabState(VirtualClock(), scenario_params("clean")), np.random.default_rng(0))


def refused(emu: Emulator, command: str) -> bool:
    n = len(emu.log)
    reply = emu.handle(command)
    error = emu.log[n].error
    if error is not None:
        assert reply is None  # a refused query sends nothing back
    return error is not None


@pytest.mark.parametrize("driver", sorted(LACKS))
def test_common_commands_as_the_manual_has_them(driver: str) -> None:
    emu = make(driver)
    for command in QUERIES + WRITES:
        lacking = command.split()[0] in LACKS[driver]
        assert refused(emu, command) == lacking, command
    emu.handle("*CLS")
    if "*OPT?" not in LACKS[driver]:
        assert emu.handle("*OPT?") == OPTIONS[driver]
    if "*OPC?" not in LACKS[driver]:
        assert emu.handle("*OPC?") == "1"
        emu.handle("*OPC")
        assert int(emu.handle("*ESR?") or "") & 1  # operation complete
        assert emu.handle("*ESR?") == "0"  # read and cleared


@pytest.mark.parametrize("driver", sorted(d for d, lacks in LACKS.items() if lacks))
def test_a_lacking_command_is_an_unknown_command(driver: str) -> None:
    emu = make(driver)
    emu.handle("*CLS")
    lacking = sorted(LACKS[driver])[0]
    emu.handle(lacking)
    esr = int(emu.handle("*ESR?") or "")
    assert esr & ((1 << 5) | (1 << 2)), f"{lacking}: no command or query error bit"
