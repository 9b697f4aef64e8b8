"""The SR830 lock-in emulator: its command language, status bytes, physics, and the real drivers."""

from __future__ import annotations

import logging
import math
import struct

import numpy as np
import pytest

from qbs_lab.clock import VirtualClock
from qbs_lab.sim.emulators.sr830 import SENSITIVITIES, TIME_CONSTANTS, SR830Emulator
from qbs_lab.sim.lab_state import LabState

CMD, EXE = 32, 16  # ESR bits


@pytest.fixture
def lab() -> LabState:
    return LabState.create(clock=VirtualClock(), scenario="clean", seed=0)


@pytest.fixture
def emu(lab: LabState) -> SR830Emulator:
    return SR830Emulator("lockin", lab, np.random.default_rng(0))


def esr(emu: SR830Emulator) -> int:
    return int(emu.handle("*ESR?") or "-1")


# -- language ------------------------------------------------------------------------------------
def test_identity_and_termination(emu: SR830Emulator) -> None:
    assert emu.handle("*IDN?") == "Stanford_Research_Systems,SR830,s/n00111,ver1.07"
    assert emu.reply_termination == "\n"


@pytest.mark.parametrize("form", ["OUTP? 3", "OUTP?3", "outp ? 3", "OuTp?  3", " OUTP ?3 "])
def test_spaces_and_case_are_ignored(emu: SR830Emulator, form: str) -> None:
    assert float(emu.handle(form) or "nan") == pytest.approx(abs(emu.lab.lockin.output()), rel=0.05)
    assert esr(emu) == 0


def test_mnemonic_glued_to_its_argument(emu: SR830Emulator, lab: LabState) -> None:
    # PyMeasure writes "SLVL0.050", "SENS19", "SRAT4.000000", "AUXV1,1.000000;"
    emu.handle("SLVL0.050;SENS19;SRAT4.000000;AUXV1,1.000000;")
    assert lab.lockin.amplitude == pytest.approx(0.05)
    assert lab.lockin.sensitivity == pytest.approx(5e-3)
    assert emu.handle("SRAT?") == "4"
    assert lab.lockin.aux_out[0] == pytest.approx(1.0)
    assert esr(emu) == 0


def test_chained_queries_answer_separately(emu: SR830Emulator) -> None:
    reply = emu.handle("SENS?;OFLT? ; harm?")
    assert reply == "17\n9\n1"


def test_readings_use_three_digit_exponents(emu: SR830Emulator, lab: LabState) -> None:
    x = emu.handle("OUTP? 1") or ""
    assert float(x) == pytest.approx(lab.lockin.output().real, rel=0.05)
    assert "e-00" in x  # ~1e-5 V: "1.20785e-005", as the instrument writes it


def test_snap_reads_one_instant(emu: SR830Emulator, lab: LabState) -> None:
    calls = 0
    read_xy = lab.lockin.read_xy

    def counting(rng: np.random.Generator) -> tuple[float, float]:
        nonlocal calls
        calls += 1
        return read_xy(rng)

    lab.lockin.read_xy = counting  # type: ignore[method-assign]
    values = [float(v) for v in (emu.handle("SNAP? 1,2,3,4,9,10") or "").split(",")]
    assert calls == 1
    x, y, r, theta, f, ch1 = values
    assert r == pytest.approx(math.hypot(x, y), rel=1e-4)
    assert theta == pytest.approx(math.degrees(math.atan2(y, x)), abs=1e-3)
    assert f == pytest.approx(lab.lockin.frequency)
    assert ch1 == x  # CH1 shows X by default


def test_snap_needs_two_to_six_parameters(emu: SR830Emulator) -> None:
    assert emu.handle("SNAP? 1") is None
    assert esr(emu) == CMD
    assert emu.handle("SNAP? 1,2,3,4,5,6,7") is None
    assert esr(emu) == CMD
    assert emu.handle("SNAP? 1,12") is None
    assert esr(emu) == EXE


# -- errors --------------------------------------------------------------------------------------
def test_unknown_command_sets_cmd_bit_and_esr_clears(emu: SR830Emulator) -> None:
    assert emu.handle("FOOB 1") is None
    assert esr(emu) == CMD
    assert esr(emu) == 0


@pytest.mark.parametrize("message", ["SYST:ERR?", "*OPC?", "*TST?", "OUTP 1", "SENS", "SENS abc"])
def test_not_scpi_and_malformed(emu: SR830Emulator, message: str) -> None:
    assert emu.handle(message) is None
    assert esr(emu) == CMD


@pytest.mark.parametrize(
    "message",
    ["SENS 27", "OFLT 20", "OFSL 4", "SLVL 5.1", "SLVL 0.003", "FREQ 0.0005", "FREQ 103000",
     "PHAS 730", "PHAS -361", "HARM 0", "HARM 20000", "AUXV 1,10.6", "AUXV 5,0", "ISRC 4",
     "OUTP? 5", "DDEF 1,5,0", "OEXP 1,106,0", "SRAT 15", "RSET 1"],
)  # fmt: skip
def test_out_of_range_sets_exe_bit_and_changes_nothing(
    emu: SR830Emulator, lab: LabState, message: str
) -> None:
    before = vars(lab.lockin).copy()
    assert emu.handle(message) is None
    assert esr(emu) == EXE
    assert vars(lab.lockin) == before


def test_esr_bit_query_clears_only_that_bit(emu: SR830Emulator) -> None:
    emu.handle("FOOB;SENS 99")
    assert emu.handle("*ESR? 4") == "1"
    assert emu.handle("*ESR? 4") == "0"
    assert emu.handle("*ESR?") == str(CMD)


def test_frequency_only_with_internal_reference(emu: SR830Emulator, lab: LabState) -> None:
    emu.handle("FMOD 0")
    emu.handle("FREQ 20")
    assert esr(emu) == EXE
    assert lab.lockin.frequency == pytest.approx(13.777)


def test_harmonic_times_frequency_limit(emu: SR830Emulator, lab: LabState) -> None:
    emu.handle("FREQ 60000")
    emu.handle("HARM 2")
    assert esr(emu) == EXE
    assert lab.lockin.harmonic == 1


# -- settings <-> lab state ---------------------------------------------------------------------
def test_index_tables(emu: SR830Emulator, lab: LabState) -> None:
    assert len(SENSITIVITIES) == 27 and SENSITIVITIES[0] == 2e-9 and SENSITIVITIES[-1] == 1.0
    assert len(TIME_CONSTANTS) == 20 and TIME_CONSTANTS[0] == 10e-6 and TIME_CONSTANTS[-1] == 30e3
    for i, s in enumerate(SENSITIVITIES):
        emu.handle(f"SENS {i}")
        assert lab.lockin.sensitivity == s
        assert emu.handle("SENS?") == str(i)
    for i, tau in enumerate(TIME_CONSTANTS):
        emu.handle(f"OFLT {i}")
        assert lab.lockin.time_constant == tau
        assert emu.handle("OFLT?") == str(i)
    for i, slope in enumerate((6, 12, 18, 24)):
        emu.handle(f"OFSL {i}")
        assert lab.lockin.slope == slope
        assert emu.handle("OFSL?") == str(i)
    assert esr(emu) == 0


def test_reference_settings_write_through(emu: SR830Emulator, lab: LabState) -> None:
    emu.handle("SLVL 0.0113;FREQ 17.123456;PHAS 541;HARM 3;SYNC 1")
    assert lab.lockin.amplitude == pytest.approx(0.012)  # 2 mV steps
    assert emu.handle("SLVL?") == "0.012"
    assert lab.lockin.frequency == pytest.approx(17.123)  # 5 digits
    assert lab.lockin.phase == pytest.approx(-179.0)  # wrapped to +-180
    assert float(emu.handle("PHAS?") or "nan") == pytest.approx(-179.0)
    assert lab.lockin.harmonic == 3
    assert lab.lockin.sync_filter is True
    assert emu.handle("SYNC?") == "1"


def test_readings_follow_the_lab(emu: SR830Emulator, lab: LabState) -> None:
    x0 = float(emu.handle("OUTP? 1") or "nan")
    emu.handle("SLVL 0.02")  # double the excitation: the filtered X follows after a few tau
    assert float(emu.handle("OUTP? 1") or "nan") == pytest.approx(x0, rel=0.02)
    lab.clock.sleep(30 * lab.lockin.time_constant)
    x2 = float(emu.handle("OUTP? 1") or "nan")
    assert x2 == pytest.approx(lab.lockin_input().real, rel=0.02)
    assert x2 > 1.5 * x0


def test_range_crossing_limits_time_constant(emu: SR830Emulator, lab: LabState) -> None:
    emu.handle("OFLT 15")  # 300 s, allowed at 13.777 Hz
    assert lab.lockin.time_constant == 300.0
    emu.handle("FREQ 1000")
    assert lab.lockin.time_constant == 30.0
    assert int(emu.handle("LIAS?") or "0") & (16 | 32) == 16 | 32
    emu.handle("OFLT 14")
    assert esr(emu) == EXE


def test_current_input_scales_readings(emu: SR830Emulator) -> None:
    v = float(emu.handle("OUTP? 3") or "nan")
    emu.handle("ISRC 2")
    i = float(emu.handle("OUTP? 3") or "nan")
    assert i == pytest.approx(v / 1e6, rel=0.05)


def test_reset_applies_factory_defaults(emu: SR830Emulator, lab: LabState) -> None:
    emu.handle("FMOD 0;ISRC 1;DDEF 1,1,0")
    emu.handle("*RST")
    assert (lab.lockin.amplitude, lab.lockin.frequency, lab.lockin.phase) == (1.0, 1000.0, 0.0)
    assert (lab.lockin.sensitivity, lab.lockin.time_constant, lab.lockin.slope) == (1.0, 0.1, 12)
    assert emu.handle("FMOD?;ISRC?;DDEF? 1") == "1\n0\n0,0"


# -- status --------------------------------------------------------------------------------------
def test_overloads_latch_in_lias(emu: SR830Emulator, lab: LabState) -> None:
    lab.clock.sleep(0.01)
    assert emu.handle("LIAS?") == "0"
    # at 2 nV full scale the ~12 uV signal overloads output and input; back at 1 mV it does not
    emu.handle("SENS 0;SENS 17")
    assert emu.handle("LIAS? 2") == "1"
    assert emu.handle("LIAS? 2") == "0"  # reading a bit clears just that bit...
    assert emu.handle("LIAS? 0") == "1"  # ...the input overload stayed latched
    assert emu.handle("LIAS?") == "0"
    emu.handle("SENS 0")
    assert int(emu.handle("LIAS?") or "0") == 1 | 4  # a lasting overload sets the bits again
    emu.handle("SENS 17;*CLS")
    assert emu.handle("LIAS?") == "0"


def test_input_overload_and_unlock(emu: SR830Emulator, lab: LabState) -> None:
    lab.lockin.force_overload = True
    assert int(emu.handle("LIAS?") or "0") & 1
    lab.lockin.force_overload = False
    emu.handle("FMOD 0")
    assert int(emu.handle("LIAS?") or "0") & 8


def test_serial_poll_status(emu: SR830Emulator) -> None:
    assert emu.handle("*STB?") == "3"  # no scan, no command in progress
    emu.handle("*ESE 32;FOOB")
    assert int(emu.handle("*STB?") or "0") & 32
    emu.handle("LIAE 2,1;SENS 0")
    assert emu.handle("LIAE?") == "4"
    assert emu.handle("*STB? 3") == "1"
    emu.handle("*PSC 0")
    assert emu.handle("*PSC?") == "0"
    assert emu.handle("ERRS?") == "0"


# -- display, offsets, aux ----------------------------------------------------------------------
def test_offsets_and_displays(emu: SR830Emulator, lab: LabState) -> None:
    emu.handle("SENS 17;AOFF 1")  # X offset so that X reads ~0
    offset, _ = (emu.handle("OEXP? 1") or "").split(",")
    assert float(offset) == pytest.approx(lab.lockin.output().real / 1e-3 * 100, rel=0.02)
    assert abs(float(emu.handle("OUTP? 1") or "nan")) < 0.05 * lab.lockin.output().real
    emu.handle("OEXP 1,0,0;DDEF 1,1,0;DDEF 2,1,0")
    assert emu.handle("DDEF? 1") == "1,0"
    r, ch1, theta, ch2 = map(float, (emu.handle("SNAP? 3,10,4,11") or "").split(","))
    assert (ch1, ch2) == (r, theta)
    emu.handle("OEXP 3,0,1")
    r, ch1 = map(float, (emu.handle("SNAP? 3,10") or "").split(","))
    assert ch1 == pytest.approx(10 * r, rel=1e-4)


def test_aux_outputs_and_inputs(emu: SR830Emulator, lab: LabState) -> None:
    emu.handle("AUXV 3, -2.5")
    assert lab.lockin.aux_out[2] == -2.5
    assert emu.handle("AUXV? 3") == "-2.500"
    lab.lockin.aux_in_values[1] = 1.2345
    assert float(emu.handle("OAUX? 2") or "nan") == pytest.approx(1.2345, abs=2e-4)


def test_auto_phase_zeroes_theta(emu: SR830Emulator, lab: LabState) -> None:
    emu.handle("PHAS 40")
    emu.handle("APHS")
    assert abs(float(emu.handle("OUTP? 4") or "nan")) < 1.0


def test_auto_gain_picks_a_range_that_fits(emu: SR830Emulator, lab: LabState) -> None:
    emu.handle("SENS 26;AGAN")
    r = abs(lab.lockin.output())
    assert 0.8 * lab.lockin.sensitivity > r > 0.8 * lab.lockin.sensitivity / 2.5


def test_setups_save_and_recall(emu: SR830Emulator, lab: LabState) -> None:
    emu.handle("SLVL 0.1;DDEF 1,1,0;SSET 2;*RST")
    assert lab.lockin.amplitude == 1.0
    emu.handle("RSET 2")
    assert lab.lockin.amplitude == pytest.approx(0.1)
    assert emu.handle("DDEF? 1") == "1,0"


# -- data storage -------------------------------------------------------------------------------
def test_buffer_fills_at_the_sample_rate(emu: SR830Emulator, lab: LabState) -> None:
    emu.handle("SRAT 8;REST;STRT")  # 16 Hz
    lab.clock.sleep(2.0)
    emu.handle("PAUS")
    n = int(emu.handle("SPTS?") or "0")
    assert n in (32, 33)
    assert int(emu.handle("*STB?") or "0") & 1  # scan stopped
    text = emu.handle(f"TRCA? 1,0,{n}") or ""
    points = text.split(",")
    assert points[-1] == "" and len(points) == n + 1
    values = np.array([float(p) for p in points[:-1]])
    assert values.mean() == pytest.approx(lab.lockin.output().real, rel=0.05)
    assert "e-00" in points[0] and points[0][0] in "+-"
    binary = (emu.handle(f"TRCB? 1,0,{n}") or "").encode("latin-1")
    assert emu.last_reply_binary
    assert np.allclose(np.frombuffer(binary, "<f4"), values, rtol=1e-5)
    raw = np.frombuffer((emu.handle(f"TRCL? 1,0,{n}") or "").encode("latin-1"), "<i2")
    assert np.allclose(raw[::2] * 2.0 ** (raw[1::2] - 124), values, rtol=1e-3)
    emu.handle(f"TRCA? 1,0,{n + 1}")
    assert esr(emu) == EXE


def test_single_shot_stops_when_full_and_trigger_mode(emu: SR830Emulator, lab: LabState) -> None:
    emu.handle("SRAT 13;SEND 0;STRT")  # 512 Hz
    lab.clock.sleep(60.0)
    assert emu.handle("SPTS?") == "16383"
    assert int(emu.handle("*STB?") or "0") & 1
    emu.handle("REST;SRAT 14;STRT;TRIG;TRIG;TRIG")
    assert emu.handle("SPTS?") == "3"
    assert int(emu.handle("LIAS? 6") or "0") == 1


def test_binary_point_format() -> None:
    from qbs_lab.sim.emulators.sr830 import _lia_float

    for value in (1.234e-6, -3.3e-9, 0.5, 0.0):
        m, e = struct.unpack("<hh", _lia_float(value))
        assert m * 2.0 ** (e - 124) == pytest.approx(value, rel=1e-4, abs=1e-30)


# -- the unmodified drivers ---------------------------------------------------------------------
@pytest.fixture
def simlab():  # type: ignore[no-untyped-def]
    from pathlib import Path

    from qbs_lab.sim import SimLab

    station = Path(__file__).resolve().parents[1] / "station.yaml"
    with SimLab.from_station(station, seed=0) as lab:
        yield lab


def test_qcodes_driver(simlab, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    from qcodes.instrument_drivers.stanford_research import SR830

    drv = SR830("lockin_test", simlab.address("lockin"), visalib=simlab.visalib)
    try:
        with caplog.at_level(logging.WARNING):
            snap = drv.snapshot(update=True)
        assert not [r for r in caplog.records if "Could not update" in r.getMessage()]
        params = snap["parameters"]
        assert params["reference_source"]["value"] == "internal"
        assert params["output_interface"]["value"] == "GPIB"
        assert params["sensitivity"]["value"] == 1e-3
        drv.time_constant(0.1)
        drv.sensitivity(1e-4)
        drv.amplitude(0.02)
        drv.frequency(17.0)
        drv.phase(10.0)
        drv.filter_slope(12)
        state = simlab.state.lockin
        assert (state.time_constant, state.sensitivity, state.amplitude) == (0.1, 1e-4, 0.02)
        assert (state.frequency, state.phase, state.slope) == (17.0, 10.0, 12)
        assert (drv.time_constant(), drv.sensitivity(), drv.filter_slope()) == (0.1, 1e-4, 12)
        x, _ = drv.snap("x", "y")
        assert x == pytest.approx(abs(state.output()), rel=0.1)
        drv.input_config("I 1M")
        assert drv.sensitivity() == pytest.approx(1e-10)
        drv.input_config("a")
        drv.ch1_display("R")
        assert drv.ch1_display() == "R"
        drv.aux_out2(1.5)
        assert state.aux_out[1] == 1.5
        drv.auto_phase()
        drv.reset()
        assert state.amplitude == 1.0
        errors = [c for c in simlab.command_log("lockin") if c.error]
        assert errors == []
    finally:
        drv.close()


def test_pymeasure_driver(simlab) -> None:  # type: ignore[no-untyped-def]
    from pymeasure.instruments.srs import SR830

    drv = SR830(simlab.address("lockin"), visa_library=simlab.visalib)
    state = simlab.state.lockin
    drv.sine_voltage = 0.05
    drv.frequency = 23.0
    drv.phase = 45.0
    drv.harmonic = 1
    drv.sensitivity = 2e-5
    drv.time_constant = 1.0
    drv.filter_slope = 12
    drv.filter_synchronous = True
    drv.input_config = "A - B"
    drv.reserve = "Low Noise"
    drv.aux_out_2 = 2.5
    assert (state.amplitude, state.frequency, state.phase) == (0.05, 23.0, 45.0)
    assert (state.sensitivity, state.time_constant, state.slope) == (2e-5, 1.0, 12)
    assert drv.sine_voltage == 0.05 and drv.frequency == 23.0 and drv.phase == 45.0
    assert drv.sensitivity == 2e-5 and drv.time_constant == 1 and drv.filter_slope == 12
    assert drv.filter_synchronous is True and drv.input_config == "A - B"
    assert drv.reserve == "Low Noise" and drv.aux_out_2 == 2.5 and drv.aux_in_1 == 0.0
    x, y = drv.xy
    assert math.hypot(x, y) == pytest.approx(drv.magnitude, rel=0.1)
    assert drv.theta == pytest.approx(-45.0, abs=2.0)
    assert len(drv.snap("x", "y", "r", "theta", "frequency", "ch1")) == 6
    assert int(drv.lia_status) == 0 and int(drv.err_status) == 0
    assert drv.is_out_of_range() is False
    drv.sensitivity = 2e-9
    assert drv.is_out_of_range() is True
    drv.sample_frequency = 16
    drv.reset_buffer()
    drv.start_scan()
    simlab.clock.sleep(2.0)
    drv.pause_scan()
    assert drv.buffer_count in (32, 33)
    errors = [c for c in simlab.command_log("lockin") if c.error]
    assert errors == []
    drv.adapter.close()
