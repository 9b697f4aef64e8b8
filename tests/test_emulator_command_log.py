"""The bounded command log: counts, limit extremes and the recent commands, in flat memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qbs_lab.clock import VirtualClock
from qbs_lab.sim import SimLab
from qbs_lab.sim.emulators.command_log import CommandLog, LoggedCommand, LogTruncatedError
from qbs_lab.sim.emulators.keithley2400 import Keithley2400Emulator
from qbs_lab.sim.lab_state import LabState
from qbs_lab.sim.sample import scenario_params

LEVEL = ":SOURce#:VOLTage[:LEVel][:IMMediate][:AMPLitude]"


def entry(i: int, command: str = "X", reply: str | None = None) -> LoggedCommand:
    return LoggedCommand(float(i), command, reply)


def small_emulator(keep: int) -> Keithley2400Emulator:
    state = LabState(VirtualClock(), scenario_params("clean"))
    emu = Keithley2400Emulator("gate", state, np.random.default_rng(0))
    emu.log = CommandLog(keep)
    return emu


def test_a_ring_of_recent_commands_with_absolute_indices() -> None:
    log = CommandLog(keep=5)
    for i in range(12):
        log.append(entry(i, f"CMD {i}"))
    assert len(log) == 12 and log.count == 12  # every command counted
    assert [e.command for e in log.recent] == [f"CMD {i}" for i in range(7, 12)]
    assert log[-1].command == "CMD 11" and log[7].command == "CMD 7"  # absolute positions
    assert [e.command for e in log[9:]] == ["CMD 9", "CMD 10", "CMD 11"]
    assert log[12:] == []
    with pytest.raises(LogTruncatedError):
        log[3]  # dropped: an error, never a wrong entry
    with pytest.raises(LogTruncatedError):
        list(log)  # no silent proof from part of the run
    with pytest.raises(IndexError):
        log[12]


def test_counts_and_extremes_cover_the_whole_run() -> None:
    emu = small_emulator(keep=10)
    for v in (-3.0, 2.5, 7.0, 1.0):
        emu.handle(f":SOUR:VOLT {v}")
    emu.handle(":SOUR:VOLT 300")  # refused (-222): it reached the instrument all the same
    for _ in range(50):
        emu.handle(":SOUR:VOLT 0;:SOUR:VOLT?")  # pushes the extremes out of the ring
    log = emu.log
    assert len(log) == 105 and len(log.recent) == 10
    assert log.extremes[LEVEL] == (-3.0, 300.0)  # any spelling of the command: one key
    assert log.counts[LEVEL] == 55 and log.counts[LEVEL + "?"] == 50
    assert log.error_count == 1
    emu.handle(":source:voltage:level -4")
    assert log.extremes[LEVEL] == (-4.0, 300.0)


def test_spill_file_keeps_the_whole_history(tmp_path: Path) -> None:
    path = tmp_path / "gate.log.jsonl"
    log = CommandLog(keep=3, spill=path)
    for i in range(10):
        log.append(entry(i, f"V {i}", reply=None if i % 2 else "1"))
    assert [e.command for e in log] == [f"V {i}" for i in range(10)]  # streamed from the file
    assert log[2] == entry(2, "V 2", "1") and [e.command for e in log[1:4]] == ["V 1", "V 2", "V 3"]
    assert len(log.recent) == 3


def test_a_snapshot_does_not_move() -> None:
    log = CommandLog(keep=100)
    for i in range(5):
        log.append(entry(i))
    snap = log.snapshot()
    log.append(entry(5))
    assert len(snap) == 5 and len(log) == 6


def test_memory_is_bounded_by_keep() -> None:
    emu = small_emulator(keep=1000)
    for i in range(20_000):
        emu.handle(f":SOUR:VOLT {i % 7}")
    assert len(emu.log) == 20_000 and len(emu.log.recent) == 1000
    assert emu.log.extremes[LEVEL] == (0.0, 6.0)


def test_simlab_command_log_keeps_its_api() -> None:
    with SimLab({"gate": {"type": "Keithley2400", "address": "GPIB0::24::INSTR"}}) as lab:
        emu = lab.emulator("gate")
        n = len(lab.command_log("gate"))
        emu.handle(":SOUR:VOLT 1;:OUTP ON")
        log = lab.command_log("gate")
        assert [c.command for c in log[n:]] == [":SOUR:VOLT 1", ":OUTP ON"]
        assert [c for c in log if c.error] == [] and log[-1].header == ":OUTP"
