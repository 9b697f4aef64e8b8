"""The SR860: its emulator (language, status, physics, capture), the unmodified QCoDeS driver on it, the
lock-in adapter, and the resistance meter on that adapter against the model."""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Iterator

import numpy as np
import pytest
from conftest import check_resistance_meter
from qbs_lab.drivers.adapters import adapter_for
from qbs_lab.drivers.adapters.qcodes_sr860 import QcodesSR860
from qbs_lab.drivers.protocols import LockinAdapter
from qcodes.instrument_drivers.stanford_research import SR860

from qbs_lab.clock import VirtualClock
from qbs_lab.sim import SimLab
from qbs_lab.sim.emulators.sr860 import SENSITIVITIES, TIME_CONSTANTS, SR860Emulator
from qbs_lab.sim.lab_state import LabState

SR860_TYPE = "qcodes.instrument_drivers.stanford_research.SR860"
INSTRUMENTS = {"lockin": {"type": SR860_TYPE, "address": "GPIB0::4::INSTR"}}
CMD, EXE = 32, 16  # ESR bits


# -- the emulator alone ----------------------------------------------------------------------------
@pytest.fixture
def state() -> LabState:
    return LabState.create(clock=VirtualClock(), scenario="clean", seed=0)


@pytest.fixture
def emu(state: LabState) -> SR860Emulator:
    return SR860Emulator("lockin", state, np.random.default_rng(0))


def esr(emu: SR860Emulator) -> int:
    return int(emu.handle("*ESR?") or "-1")


def test_identity_termination_and_chained_replies(emu: SR860Emulator) -> None:
    assert emu.handle("*IDN?") == "Stanford_Research_Systems,SR860,003217,v1.51"
    assert emu.reply_termination == "\n"
    emu.handle("scal 9;OFLT 12; ofsl 1")
    assert emu.handle("SCAL?;oflt?;OFSL?") == "9;12;1"  # chained queries: one line, ';' between
    assert esr(emu) == 0


def test_settings_go_to_the_lab_in_si_units(emu: SR860Emulator, state: LabState) -> None:
    emu.handle("SCAL 12;OFLT 13;OFSL 3;SLVL 0.0125;FREQ 1234.5678;HARM 2;PHAS 370;AUXV 1, 2.5;SYNC ON")
    li = state.lockin
    assert (li.sensitivity, li.time_constant, li.slope) == (100e-6, 3.0, 24)
    assert li.amplitude == 0.0125 and li.harmonic == 2 and li.phase == pytest.approx(10.0)
    assert li.frequency == 1234.57  # six digits
    assert li.aux_out[1] == 2.5 and li.sync_filter is True
    assert float(emu.handle("FREQDET?") or "nan") == pytest.approx(2469.14)
    assert SENSITIVITIES[0] == 1.0 and SENSITIVITIES[27] == 1e-9 and len(TIME_CONSTANTS) == 22
    assert esr(emu) == 0


def test_bad_commands_set_cmd_and_bad_values_exe_without_effect(emu: SR860Emulator, state: LabState) -> None:
    before = state.lockin.sensitivity
    assert emu.handle("SCAL9") is None  # the SR860 needs a space before the argument
    assert esr(emu) == CMD
    assert emu.handle("FOO?") is None
    assert esr(emu) == CMD
    for bad in ("SCAL 28", "OFLT -1", "FREQ 600e3", "SLVL 2.5", "HARM 100", "CAPTURELEN 5000", "IRNG 9"):
        emu.handle(bad)
        assert esr(emu) == EXE, bad
    emu.handle("FREQ 20000")
    emu.handle("HARM 30")  # 600 kHz detection frequency
    assert esr(emu) == EXE and state.lockin.harmonic == 1
    assert state.lockin.sensitivity == before


def test_outputs_and_snap_come_from_one_instant(emu: SR860Emulator, state: LabState) -> None:
    z = state.lockin.output()
    noise = state.lockin.noise_rms()
    x, y, r = (float(v) for v in (emu.handle("SNAP? 0,1,2") or "").split(","))
    assert r == pytest.approx(math.hypot(x, y), rel=1e-9)  # same X, Y behind R
    assert x == pytest.approx(z.real, abs=6 * noise) and y == pytest.approx(z.imag, abs=6 * noise)
    assert float(emu.handle("OUTP? X") or "nan") == pytest.approx(z.real, abs=6 * noise)
    assert float(emu.handle("OUTP? 2") or "nan") == pytest.approx(abs(z), abs=6 * noise)
    amp, freq = (float(v) for v in (emu.handle("SNAP? SAMp,FInt") or "").split(","))
    assert (amp, freq) == (state.lockin.amplitude, state.lockin.frequency)
    emu.handle("SNAP? 0")
    assert esr(emu) == CMD  # two or three parameters
    emu.handle("COFP 0, 50")  # offset X by half of full scale
    fs = SENSITIVITIES[int(emu.handle("SCAL?") or "0")]
    assert float(emu.handle("OUTP? 0") or "nan") == pytest.approx(z.real - 0.5 * fs, abs=6 * noise)


def test_lia_status_bits_latch_and_clear_on_reading(emu: SR860Emulator, state: LabState) -> None:
    assert emu.handle("LIAS?") == "0"
    emu.handle("SCAL 27")  # 1 nV full scale under ~12 uV of signal: output overload
    assert emu.handle("LIAS? 2") == "1"
    emu.handle("SCAL 8")  # 2 mV: no overload any more
    assert emu.handle("LIAS?") == "4"  # latched until read: it lasted until SCAL 8 arrived
    assert emu.handle("LIAS?") == "0"
    emu.handle("RSRC EXT")  # nothing drives Ref In
    assert int(emu.handle("LIAS?") or "0") & 8
    emu.handle("RSRC INT")
    state.lockin.force_overload = True
    assert int(emu.handle("LIAS?") or "0") & 1
    assert emu.handle("ILVL?") == "4"
    state.lockin.force_overload = False
    emu.handle("LIAS?")
    assert emu.handle("LIAS?") == "0" and emu.handle("ILVL?") == "0"  # ~17 uV peak on the 1 V range


def test_capture_buffer_fills_at_its_rate_and_reads_back_as_float32(
    emu: SR860Emulator, state: LabState
) -> None:
    emu.handle("CAPTURELEN 3;CAPTURECFG XY;CAPTURERATE 2")
    assert emu.handle("CAPTURELEN?") == "4"  # rounded up to whole 2 kB blocks
    rate_max = float(emu.handle("CAPTURERATEMAX?") or "nan")
    rate = float(emu.handle("CAPTURERATE?") or "nan")
    assert rate == pytest.approx(rate_max / 4, rel=1e-9) and rate_max <= 16 / state.lockin.time_constant
    emu.handle("CAPTURESTART ONE, IMM")
    assert int(emu.handle("CAPTURESTAT?") or "0") & 2  # acquiring
    state.clock.sleep(10.5 / rate)
    n_bytes = int(emu.handle("CAPTUREBYTES?") or "0")
    assert n_bytes == 8 * (10 + 1)  # X and Y float32 per sample, one at the start
    block = emu.respond("CAPTUREGET? 0, 2") or b""
    assert emu.last_reply_binary and block[:6] == b"#42048"
    values = struct.unpack("<512f", block[6:])
    x = np.array(values[0 : n_bytes // 4 : 2])
    assert x.mean() == pytest.approx(state.lockin.output().real, abs=3 * state.lockin.noise_rms())
    assert not any(values[n_bytes // 4 :])  # the rest of the buffer is empty
    state.clock.sleep(1e6)  # one shot: stops when full
    assert int(emu.handle("CAPTUREBYTES?") or "0") == 4 * 1024
    assert int(emu.handle("CAPTURESTAT?") or "0") == 4  # done
    assert esr(emu) == 0


def test_continuous_capture_wraps_and_tokens_name_settings(emu: SR860Emulator, state: LabState) -> None:
    emu.handle("CAPTURELEN 2;CAPTURECFG X;CAPTURESTART CONT, IMM")
    state.clock.sleep(3600.0)
    assert int(emu.handle("CAPTURESTAT?") or "0") == 1 | 2 | 8  # still acquiring, wrapped
    assert emu.handle("CAPTUREBYTES?") == "2048"
    emu.handle("CAPTURELEN 4")
    assert esr(emu) == EXE  # not while capturing
    emu.handle("CAPTURESTOP;CAPTURELEN 4")
    emu.handle("REFZ 1MEG;IRNG 10mV;ISRC A-B;IVMD curr;OFSL 6dB;CDSP DAT2, XNOise")
    assert emu.handle("REFZ?;IRNG?;ISRC?;IVMD?;OFSL?;CDSP? 1") == "1;4;1;1;0;8"
    assert esr(emu) == 0


# -- the unmodified QCoDeS driver -------------------------------------------------------------------
@pytest.fixture
def rig() -> Iterator[tuple[SimLab, SR860]]:
    with SimLab(INSTRUMENTS, seed=0) as lab:
        drv = SR860("sr860", lab.address("lockin"), visalib=lab.visalib)
        try:
            yield lab, drv
        finally:
            drv.close()


@pytest.mark.parametrize("transport", ["inproc", "tcp"])
def test_qcodes_driver_connects_and_snapshots_cleanly(
    transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    with SimLab(INSTRUMENTS, seed=0) as lab:
        if transport == "tcp":
            lab.serve_tcp()
            drv = SR860("sr860", lab.tcp_address("lockin"), visalib="@py")
        else:
            drv = SR860("sr860", lab.address("lockin"), visalib=lab.visalib)
        try:
            with caplog.at_level(logging.WARNING):
                snap = drv.snapshot(update=True)
            assert "Could not update" not in caplog.text
            params = snap["parameters"]
            li = lab.state.lockin
            assert params["amplitude"]["value"] == li.amplitude
            assert params["frequency"]["value"] == li.frequency
            assert params["sensitivity"]["value"] == li.sensitivity
            assert params["time_constant"]["value"] == li.time_constant
            assert params["filter_slope"]["value"] == li.slope
            assert params["X"]["value"] == pytest.approx(li.output().real, abs=6 * li.noise_rms())
            buffer = snap["submodules"]["buffer"]["parameters"]
            assert buffer["capture_config"]["value"] == "X,Y"
            assert snap["submodules"]["data_channel_1"]["parameters"]["assigned_parameter"]["value"] == "X"
            assert [c for c in lab.command_log("lockin") if c.error] == []
        finally:
            drv.close()


def test_qcodes_driver_captures_the_buffer(rig: tuple[SimLab, SR860]) -> None:
    lab, drv = rig
    drv.buffer.capture_config("X,Y")
    drv.buffer.set_capture_rate_to_maximum()
    data = drv.buffer.capture_samples(200)
    li = lab.state.lockin
    assert data["X"].shape == (200,) and data["Y"].shape == (200,)
    assert data["X"].mean() == pytest.approx(li.output().real, abs=3 * li.noise_rms())
    assert data["X"].std() == pytest.approx(li.noise_rms(), rel=0.3)
    assert [c for c in lab.command_log("lockin") if c.error] == []


# -- the adapter -----------------------------------------------------------------------------------
def test_the_registry_names_this_adapter() -> None:
    assert adapter_for(SR860_TYPE) == ("lockin", QcodesSR860)


def test_every_adapter_method_reaches_the_instrument(rig: tuple[SimLab, SR860]) -> None:
    lab, drv = rig
    li = lab.state.lockin
    lockin = QcodesSR860(drv)
    assert isinstance(lockin, LockinAdapter)
    assert lockin.sensitivities == tuple(sorted(SENSITIVITIES))
    lockin.set_time_constant(1.0)
    lockin.set_sensitivity(50e-6)
    lockin.set_amplitude(0.02)
    lockin.set_frequency(17.5)
    assert (li.time_constant, li.sensitivity, li.amplitude, li.frequency) == (1.0, 50e-6, 0.02, 17.5)
    drv.filter_slope(18)
    assert lockin.time_constant() == 1.0 and lockin.filter_slope() == 18
    assert lockin.sensitivity() == 50e-6 and lockin.amplitude() == 0.02 and lockin.frequency() == 17.5
    lab.clock.sleep(30.0)  # settle on the new excitation
    x, y = lockin.read_xy()
    z = li.output()
    assert x == pytest.approx(z.real, abs=6 * li.noise_rms()) and y == pytest.approx(
        z.imag, abs=6 * li.noise_rms()
    )
    assert lockin.status().ok
    lockin.set_sensitivity(1e-9)
    assert lockin.status().output_overload
    lockin.set_sensitivity(50e-6)
    assert lockin.status().output_overload  # latched until read
    assert lockin.status().ok
    drv.reference_source("EXT")
    assert lockin.status().unlocked
    drv.reference_source("INT")
    lockin.status()
    li.force_overload = True
    status = lockin.status()
    assert status.input_overload and not status.ok
    li.force_overload = False
    snaps = [c for c in lab.command_log("lockin") if c.header.upper() == "SNAP?"]
    assert snaps and all(c.args == ["0", "1"] for c in snaps)  # X and Y read at one instant
    assert [c for c in lab.command_log("lockin") if c.error] == []


@pytest.mark.parametrize(("V_g", "excitation"), [(0.0, 0.01), (5.0, 0.01), (8.0, 0.05)])
def test_resistance_meter_on_the_sr860_matches_the_model(
    rig: tuple[SimLab, SR860], V_g: float, excitation: float
) -> None:
    lab, drv = rig
    check_resistance_meter(lab, QcodesSR860(drv), V_g, excitation)
