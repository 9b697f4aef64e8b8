"""The R&S SGS100A emulator: SCPI forms, ranges and error queue, and its effect on the RF line."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import pyvisa_sim_queries, scpi_error_codes
from hypothesis import given, settings
from hypothesis import strategies as st

from qbs_lab.clock import VirtualClock
from qbs_lab.sim.emulators.sgs100a import SGS100AEmulator
from qbs_lab.sim.lab_state import LabState

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def lab() -> LabState:
    return LabState.create(clock=VirtualClock(), scenario="clean", seed=0)


@pytest.fixture
def emu(lab: LabState) -> SGS100AEmulator:
    return SGS100AEmulator("rf", lab, np.random.default_rng(0))


def test_identity(emu: SGS100AEmulator) -> None:
    vendor, model, *_ = emu.handle("*IDN?").split(",")
    assert (vendor, model) == ("Rohde&Schwarz", "SGS100A")
    assert emu.reply_termination == "\n"


def test_frequency_forms_units_and_lab(emu: SGS100AEmulator, lab: LabState) -> None:
    emu.handle("SOUR:FREQ 2500000000.00")
    assert lab.rf.frequency == 2.5e9
    assert emu.handle("SOUR:FREQ?") == "2500000000"
    emu.handle("source:frequency:cw 5.5 GHz")
    assert lab.rf.frequency == 5.5e9
    emu.handle(":FREQ:FIX 300MHz")
    assert emu.handle("freq?") == "300000000"
    emu.handle("FREQ 12.5e3kHz")
    assert lab.rf.frequency == 12.5e6
    assert scpi_error_codes(emu) == []


def test_power_phase_output(emu: SGS100AEmulator, lab: LabState) -> None:
    emu.handle("SOUR:POW -42.25")
    assert lab.rf.power == -42.25 and emu.handle("POW?") == "-42.25"
    emu.handle("SOURce:POWer:LEVel:IMMediate:AMPLitude 3 dBm")
    assert emu.handle("SOUR:POW?") == "3"
    emu.handle(":OUTP:STAT ON")
    assert lab.rf.output_on and emu.handle(":OUTP:STAT?") == "1"
    emu.handle("outp 0")
    assert not lab.rf.output_on and emu.handle("OUTPut?") == "0"
    emu.handle("SOUR:PHAS 45.5")
    assert float(emu.handle("SOUR:PHAS?")) == 45.5
    assert scpi_error_codes(emu) == []


@pytest.mark.parametrize(
    "command",
    ["SOUR:FREQ 13 GHz", "SOUR:FREQ 0.5e6", "SOUR:POW 26", "SOUR:POW -121", "SOUR:PHAS 721"],
)
def test_out_of_range_is_rejected(emu: SGS100AEmulator, lab: LabState, command: str) -> None:
    before = (lab.rf.frequency, lab.rf.power, emu.phase)
    assert emu.handle(command) is None
    assert (lab.rf.frequency, lab.rf.power, emu.phase) == before
    assert scpi_error_codes(emu) == [-222]
    assert emu.handle("*ESR?") == "16"  # execution error


@pytest.mark.parametrize(
    ("command", "code"),
    [
        ("SOUR:FREQ", -109),
        ("SOUR:FREQ 1 GHz, 2 GHz", -108),
        ("SOUR:FREQ 1 kV", -131),
        ("SOUR:FREQ abc", -104),
        ("OUTP MAYBE", -224),
        ("SOUR:PULM:SOUR SIDEWAYS", -224),
        ("SOUR:FREQUE 1e9", -113),
        ("BOGUS?", -113),
    ],
)
def test_errors(emu: SGS100AEmulator, lab: LabState, command: str, code: int) -> None:
    assert emu.handle(command) is None
    assert scpi_error_codes(emu) == [code]
    assert lab.rf.frequency == 1e9 and not lab.rf.output_on


def test_min_max(emu: SGS100AEmulator, lab: LabState) -> None:
    assert float(emu.handle("FREQ? MAX")) == 12.75e9
    assert float(emu.handle("POW? MIN")) == -120
    emu.handle("SOUR:FREQ MIN")
    assert lab.rf.frequency == 1e6


def test_chained_commands(emu: SGS100AEmulator, lab: LabState) -> None:
    reply = emu.handle("FREQ 2GHZ;:POW -20;:OUTP ON;:FREQ?;:POW?;:OUTP?")
    assert reply == "2000000000;-20;1"
    assert (lab.rf.frequency, lab.rf.power, lab.rf.output_on) == (2e9, -20.0, True)


def test_choices_short_long_and_reply_short(emu: SGS100AEmulator) -> None:
    for command, query, answer in [
        ("SOUR:PULM:SOUR external", "SOUR:PULM:SOUR?", "EXT"),
        ("SOUR:PULM:MODE doub", "SOUR:PULM:MODE?", "DOUB"),
        ("SOUR:PULM:TRIG:MODE EGATe", "SOUR:PULM:TRIG:MODE?", "EGAT"),
        ("SOUR:PULM:TRIG:EXT:SLOP negative", "SOUR:PULM:TRIG:EXT:SLOP?", "NEG"),
        ("SOUR:ROSC:OUTP:FREQ 1000MHz", "SOUR:ROSC:OUTP:FREQ?", "1000MHZ"),
        ("CONN:REFL:OUTP lo", "CONN:REFL:OUTP?", "LO"),
        ("CONN:TRIG:OMOD SNVAL", "CONN:TRIG:OMOD?", "SNVA"),
        (":SOUR:OPMode BBBYpass", ":SOUR:OPM?", "BBBY"),
    ]:
        emu.handle(command)
        assert emu.handle(query) == answer, command
    assert scpi_error_codes(emu) == []


def test_pulse_times_with_units(emu: SGS100AEmulator) -> None:
    emu.handle("SOUR:PULM:WIDT 500 ns;PER 20us")  # the second is relative to SOUR:PULM
    assert float(emu.handle("SOUR:PULM:WIDT?")) == pytest.approx(500e-9)
    assert float(emu.handle("SOUR:PULM:PER?")) == pytest.approx(20e-6)
    emu.handle("SOUR:PULM:WIDT 10 ns")
    assert scpi_error_codes(emu) == [-222]
    assert float(emu.handle("SOUR:PULM:WIDT?")) == pytest.approx(500e-9)


def test_rst_restores_defaults(emu: SGS100AEmulator, lab: LabState) -> None:
    emu.handle("FREQ 3GHZ;:POW 10;:OUTP ON;:SOUR:PULM:STAT ON")
    emu.handle("*RST")
    assert (lab.rf.frequency, lab.rf.power, lab.rf.output_on) == (1e9, -30.0, False)
    assert emu.handle("SOUR:PULM:STAT?") == "0"


@settings(max_examples=100, deadline=None)
@given(f=st.floats(-1e10, 3e10, allow_nan=False))
def test_frequency_applied_iff_in_range(f: float) -> None:
    lab = LabState.create(clock=VirtualClock(), scenario="clean", seed=0)
    emu = SGS100AEmulator("rf", lab, np.random.default_rng(0))
    emu.handle(f"SOUR:FREQ {f!r}")
    if 1e6 <= f <= 12.75e9:
        assert lab.rf.frequency == pytest.approx(f, abs=1e-3)
        assert scpi_error_codes(emu) == []
    else:
        assert lab.rf.frequency == 1e9
        assert scpi_error_codes(emu) == [-222]


# -- every query of QCoDeS's pyvisa-sim file answers in the same shape -----------------------------
@pytest.mark.parametrize(("query", "default"), pyvisa_sim_queries("RSSGS100A.yaml"))
def test_sim_yaml_queries(emu: SGS100AEmulator, query: str, default: object) -> None:
    reply = emu.handle(query)
    assert reply is not None, query
    assert len(reply.split(",")) == len(str(default).split(","))
    try:
        float(str(default))
    except ValueError:
        assert reply and reply[0].isalnum()
    else:
        float(reply)
    assert scpi_error_codes(emu) == []


# -- the unmodified QCoDeS driver ------------------------------------------------------------------
@pytest.fixture
def driver() -> Iterator[tuple[object, object]]:
    from qcodes.instrument_drivers.rohde_schwarz import RohdeSchwarzSGS100A

    from qbs_lab.sim import SimLab

    doc = yaml.safe_load((ROOT / "station.yaml").read_text())
    sim = SimLab({"rf": doc["instruments"]["rf"]}, seed=0)
    drv = RohdeSchwarzSGS100A("rf", sim.address("rf"), visalib=sim.visalib)
    try:
        yield drv, sim
    finally:
        drv.close()
        sim.close()


def test_driver_snapshot_and_settings(driver: tuple, caplog: pytest.LogCaptureFixture) -> None:
    drv, sim = driver
    with caplog.at_level(logging.WARNING):
        snap = drv.snapshot(update=True)
    assert "Could not update" not in caplog.text
    params = snap["parameters"]
    assert params["frequency"]["value"] == 1e9 and params["status"]["value"] is False

    drv.frequency(6.1e9)
    drv.power(-35.5)
    drv.on()
    assert (sim.state.rf.frequency, sim.state.rf.power, sim.state.rf.output_on) == (
        6.1e9,
        -35.5,
        True,
    )
    assert (drv.frequency(), drv.power(), drv.status()) == (6.1e9, -35.5, True)
    for name, value, answer in [
        ("pulsemod_mode", "double", "DOUB"),
        ("pulsemod_trig_mode", "egate", "EGAT"),
        ("trigger_connector_mode", "PVO", "PVO"),
        ("operation_mode", "BBBYpass", "BBBY"),
        ("ref_osc_external_freq", "100MHz", "100MHZ"),
        ("pulsemod_width", 1e-6, 1e-6),
        ("IQ_angle", -2.5, -2.5),
    ]:
        getattr(drv, name)(value)
        assert getattr(drv, name)() == answer, name
    assert all(c.error is None for c in sim.command_log("rf"))

    drv.frequency(15e9)  # inside the driver's validator, beyond the instrument's range
    assert drv.frequency() == 6.1e9
    assert drv.ask("SYST:ERR?").startswith("-222,")
