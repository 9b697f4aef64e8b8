"""The Lakeshore 372 emulator: command language, error bits, and its effect on the fridge."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import pyvisa_sim_queries
from hypothesis import given, settings
from hypothesis import strategies as st

from qbs_lab.clock import VirtualClock
from qbs_lab.sim.emulators.lakeshore372 import Lakeshore372Emulator
from qbs_lab.sim.lab_state import LabState

ROOT = Path(__file__).resolve().parents[1]
CME, EXE = 32, 16  # *ESR? bits: command error, execution error


@pytest.fixture
def lab() -> LabState:
    return LabState.create(clock=VirtualClock(), scenario="clean", seed=0)


@pytest.fixture
def emu(lab: LabState) -> Lakeshore372Emulator:
    return Lakeshore372Emulator("fridge", lab, np.random.default_rng(0))


def esr(emu: Lakeshore372Emulator) -> int:
    return int(emu.handle("*ESR?") or "-1")


# -- identity and format ---------------------------------------------------------------------------
def test_identity_and_termination(emu: Lakeshore372Emulator) -> None:
    assert emu.handle("*IDN?").startswith("LSCI,MODEL372,")
    assert emu.reply_termination == "\r\n"


def test_temperature_reading_follows_fridge_with_small_noise(
    emu: Lakeshore372Emulator, lab: LabState
) -> None:
    true = lab.fridge.temperature(6)
    readings = np.array([float(emu.handle("RDGK? 6")) for _ in range(400)])
    assert abs(readings.mean() / true - 1) < 5e-4
    assert 0.001 < readings.std() / true < 0.004  # ~0.2 % thermometer noise
    reply = emu.handle("KRDG? 6")
    assert reply[0] == "+" and "E" in reply  # +n.nnnnnE-nn


def test_resistance_reading(emu: Lakeshore372Emulator, lab: LabState) -> None:
    R = lab.fridge.resistance(6)
    assert float(emu.handle("RDGR? 6")) == pytest.approx(R, rel=0.02)
    assert float(emu.handle("SRDG? 6")) == pytest.approx(R, rel=0.02)


def test_case_spacing_and_chaining(emu: Lakeshore372Emulator) -> None:
    assert float(emu.handle("krdg?6")) > 0
    replies = emu.handle("KRDG? 6;RANGE? 0;rdgst? 6").split(";")
    assert len(replies) == 3 and replies[1:] == ["0", "000"]


def test_missing_sensor_reads_zero_and_overrange(emu: Lakeshore372Emulator, lab: LabState) -> None:
    assert 3 not in lab.fridge.channels
    assert float(emu.handle("KRDG? 3")) == 0.0
    assert float(emu.handle("RDGR? 3")) == 0.0
    assert int(emu.handle("RDGST? 3")) == 16 + 128  # R. OVER, T. UNDER
    assert emu.handle("RDGST? 6") == "000"


def test_no_curve_gives_zero_kelvin_but_resistance(emu: Lakeshore372Emulator) -> None:
    emu.handle("INSET 6,1,10,3,0,1")
    assert emu.handle("INSET? 6") == "1,10,3,0,1"
    assert float(emu.handle("KRDG? 6")) == 0.0
    assert float(emu.handle("RDGR? 6")) > 0


def test_fixed_range_too_small_overloads(emu: Lakeshore372Emulator, lab: LabState) -> None:
    assert lab.fridge.resistance(6) > 2e3
    emu.handle("INTYPE 6,0,3,0,13,0,1")  # 2 kOhm range, autorange off
    assert emu.handle("INTYPE? 6") == "0,3,0,13,0,1"
    assert int(emu.handle("RDGST? 6")) & 16
    assert float(emu.handle("RDGR? 6")) == 0.0
    emu.handle("INTYPE 6,0,3,1,13,0,1")  # autorange picks a range that fits
    assert int(emu.handle("INTYPE? 6").split(",")[3]) > 13
    assert emu.handle("RDGST? 6") == "000"


def test_input_names_and_limits(emu: Lakeshore372Emulator) -> None:
    emu.handle('INNAME 6,"MXC"')
    assert emu.handle("INNAME? 6") == "MXC"
    emu.handle("TLIMIT 6,1.5")
    assert float(emu.handle("TLIMIT? 6")) == 1.5
    emu.handle('INNAME 6,"sixteen chars!!!"')
    assert esr(emu) & EXE and emu.handle("INNAME? 6") == "MXC"


# -- heater: the sample heater drives lab.fridge ---------------------------------------------------
def test_closed_loop_settings_reach_the_fridge(emu: Lakeshore372Emulator, lab: LabState) -> None:
    emu.handle("OUTMODE 0,5,8,0,0,0,1;RANGE 0,4;SETP 0,0.1;PID 0,20,30,0")
    f = lab.fridge
    assert (f.heater_mode, f.control_channel, f.heater_range) == ("closed_loop", 8, 4)
    assert f.setpoint == 0.1 and f.pid == (20.0, 30.0, 0.0)
    assert emu.handle("OUTMODE? 0") == "5,8,0,0,0,1"
    assert float(emu.handle("SETP? 0")) == 0.1
    assert [float(x) for x in emu.handle("PID? 0").split(",")] == [20.0, 30.0, 0.0]
    assert esr(emu) == 0


@pytest.mark.parametrize(("mode", "lab_mode"), [(0, "off"), (2, "open_loop"), (3, "closed_loop")])
def test_mode_numbering(emu: Lakeshore372Emulator, lab: LabState, mode: int, lab_mode: str) -> None:
    emu.handle(f"OUTMODE 0,{mode},6,0,0,0,1")
    assert lab.fridge.heater_mode == lab_mode
    assert emu.handle("OUTMODE? 0").split(",")[0] == str(mode)


def test_open_loop_heater_output(emu: Lakeshore372Emulator, lab: LabState) -> None:
    emu.handle("OUTMODE 0,2,6,0,0,0,1;RANGE 0,3;MOUT 0,42.5")
    assert lab.fridge.manual_output == 42.5
    assert float(emu.handle("MOUT? 0")) == 42.5
    assert float(emu.handle("HTR? 0")) == pytest.approx(lab.fridge.heater_output())
    assert float(emu.handle("HTR?")) == 42.5
    assert float(emu.handle("HTR? 0")) == 42.5


def test_mode_changed_behind_its_back_is_reported(emu: Lakeshore372Emulator, lab: LabState) -> None:
    emu.handle("OUTMODE 0,5,6,0,0,0,1")
    lab.fridge.heater_mode = "off"  # e.g. a safety interlock
    assert emu.handle("OUTMODE? 0").startswith("0,")


def test_invalid_values_set_exe_and_are_not_applied(emu: Lakeshore372Emulator, lab: LabState) -> None:
    emu.handle("RANGE 0,9")
    assert esr(emu) == EXE and lab.fridge.heater_range == 0
    emu.handle("RANGE 1,2")  # warm-up heater is off/on only
    assert esr(emu) == EXE and emu.handle("RANGE? 1") == "0"
    emu.handle("OUTMODE 0,6,6,0,0,0,1")  # warm-up mode is not a sample heater mode
    assert esr(emu) == EXE and lab.fridge.heater_mode == "off"
    emu.handle("PID 0,2000,1,1")
    assert esr(emu) == EXE and lab.fridge.pid == (10.0, 20.0, 0.0)
    emu.handle("KRDG? 17")
    assert esr(emu) == EXE
    assert esr(emu) == 0  # *ESR? clears


def test_malformed_and_unknown_set_cme(emu: Lakeshore372Emulator, lab: LabState) -> None:
    assert emu.handle("FOO 1") is None
    assert esr(emu) == CME
    emu.handle("RANGE 0,abc")
    assert esr(emu) == CME and lab.fridge.heater_range == 0
    emu.handle("RANGE 0")
    assert esr(emu) == CME
    emu.handle("SETP 0,1,2")
    assert esr(emu) == CME
    assert emu.handle("SYST:ERR?") is None  # not SCPI: no error queue
    assert esr(emu) == CME


def test_other_outputs_are_front_panel_only(emu: Lakeshore372Emulator, lab: LabState) -> None:
    emu.handle("OUTMODE 2,4,6,0,0,0,1;RANGE 2,1;MOUT 2,30;SETP 2,1.5;PID 2,1,2,3")
    assert emu.handle("OUTMODE? 2") == "4,6,0,0,0,1"
    assert float(emu.handle("HTR? 2")) == 30.0
    assert float(emu.handle("AOUT? 2")) == 30.0
    assert float(emu.handle("SETP? 2")) == 1.5
    assert lab.fridge.heater_mode == "off" and lab.fridge.setpoint == 0.0


def test_htrset_both_forms(emu: Lakeshore372Emulator) -> None:
    emu.handle("HTRSET 0,120,0,0,2")  # the manual's form: 120 Ohm, power display
    assert emu.handle("HTRSET? 0") == "0,2,0,+0.000,2"
    emu.handle("HTRSET 1,1,1,1,0.5,1")  # the QCoDeS driver's form: voltage, 25 Ohm
    assert emu.handle("HTRSET? 1") == "1,1,1,+0.500,1"
    emu.handle("HTRSET 0,1,1,0,0,1")  # voltage type only on output 1
    assert esr(emu) == EXE


def test_setpoint_ramp(emu: Lakeshore372Emulator, lab: LabState) -> None:
    emu.handle("RAMP 0,1,1.0")  # 1 K/min
    assert emu.handle("RAMP? 0") == "1,1.000"
    emu.handle("SETP 0,0.5")
    assert emu.handle("RAMPST? 0") == "1"
    assert float(emu.handle("SETP? 0")) == 0.5  # the target
    lab.clock.sleep(6.0)
    emu.handle("RAMPST? 0")
    assert lab.fridge.setpoint == pytest.approx(0.1, rel=0.05)
    lab.clock.sleep(60.0)
    assert emu.handle("RAMPST? 0") == "0"
    assert lab.fridge.setpoint == 0.5


def test_temperature_limit_switches_heaters_off(emu: Lakeshore372Emulator, lab: LabState) -> None:
    emu.handle("OUTMODE 0,2,6,0,0,0,1;RANGE 0,5;RANGE 1,1")
    emu.handle("TLIMIT 1,40")  # channel 1 sits at 45 K
    lab.clock.sleep(1.0)  # the controller checks its limits as it reads, not only when addressed
    assert emu.handle("RANGE? 0") == "0" and lab.fridge.heater_range == 0
    assert emu.handle("RANGE? 1") == "0"


def test_rst_turns_the_heater_off(emu: Lakeshore372Emulator, lab: LabState) -> None:
    emu.handle('OUTMODE 0,2,6,0,0,0,1;RANGE 0,5;MOUT 0,10;INNAME 6,"x"')
    emu.handle("*RST")
    assert (lab.fridge.heater_mode, lab.fridge.heater_range) == ("off", 0)
    assert emu.handle("INNAME? 6") == "Channel 6"


@settings(max_examples=50, deadline=None)
@given(rng=st.integers(-3, 12))
def test_range_accepts_exactly_0_to_8(rng: int) -> None:
    lab = LabState.create(clock=VirtualClock(), scenario="clean", seed=0)
    emu = Lakeshore372Emulator("fridge", lab, np.random.default_rng(0))
    emu.handle(f"RANGE 0,{rng}")
    ok = 0 <= rng <= 8
    assert lab.fridge.heater_range == (rng if ok else 0)
    assert esr(emu) == (0 if ok else EXE)


# -- every query of QCoDeS's pyvisa-sim file answers in the same shape -----------------------------
def _same_shape(default: object, reply: str) -> bool:
    """Same number of comma fields as the yaml's answer; numbers where it has numbers."""
    fields, got = str(default).split(","), reply.split(",")
    if len(fields) != len(got):
        return False
    for field, value in zip(fields, got, strict=True):
        try:
            float(field)
        except ValueError:
            if not value:
                return False
        else:
            float(value)
    return True


@pytest.mark.parametrize(("query", "default"), pyvisa_sim_queries("lakeshore_model372.yaml"))
def test_sim_yaml_queries(emu: Lakeshore372Emulator, query: str, default: object) -> None:
    reply = emu.handle(query)
    assert reply is not None, query
    if query == "*IDN?":  # vendor, model, serial, firmware
        assert len(reply.split(",")) == 4
    else:
        assert _same_shape(default, reply), (query, reply)
    assert esr(emu) == 0


# -- the unmodified QCoDeS driver ------------------------------------------------------------------
@pytest.fixture
def driver() -> Iterator[tuple[object, object]]:
    from qcodes.instrument_drivers.Lakeshore import LakeshoreModel372

    from qbs_lab.sim import SimLab

    doc = yaml.safe_load((ROOT / "station.yaml").read_text())
    sim = SimLab(
        {"fridge": doc["instruments"]["fridge"]},
        seed=0,
        thermometry=doc["roles"]["thermometry"],
    )
    drv = LakeshoreModel372("fridge", sim.address("fridge"), visalib=sim.visalib)
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
    heater = snap["submodules"]["sample_heater"]["parameters"]
    assert heater["mode"]["value"] == "off" and heater["output_range"]["value"] == "off"
    assert drv.ch06.temperature() == pytest.approx(sim.state.fridge.temperature(6), rel=0.02)
    assert drv.ch03.sensor_status() == "T. UNDER, R. OVER"

    h = drv.sample_heater
    h.mode("closed_loop")
    h.input_channel(8)
    h.output_range("1mA")
    h.setpoint(0.05)
    h.P(5)
    f = sim.state.fridge
    assert (f.heater_mode, f.control_channel, f.heater_range, f.setpoint) == (
        "closed_loop",
        8,
        4,
        0.05,
    )
    assert f.pid[0] == 5.0
    assert (h.mode(), h.input_channel(), h.output_range(), h.setpoint()) == (
        "closed_loop",
        8,
        "1mA",
        0.05,
    )
    drv.ch06.auto_range("off")
    drv.ch06.range("200 kOhm")
    assert drv.ch06.range() == "200 kOhm"
    assert all(c.error is None for c in sim.command_log("fridge"))
