"""The PyMeasure SR830 driver on the SR830 emulator as a lock-in role: every adapter method, its status
bits, and the resistance meter on it against the model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import check_resistance_meter
from pymeasure.instruments.srs import SR830
from qbs_lab.drivers.adapters import adapter_for
from qbs_lab.drivers.adapters.pymeasure_sr830 import PymeasureSR830
from qbs_lab.drivers.adapters.qcodes_sr830 import QcodesSR830
from qbs_lab.drivers.protocols import LockinAdapter

from qbs_lab.sim import SimLab
from qbs_lab.sim.emulators.sr830 import SENSITIVITIES, SR830Emulator

PM_TYPE = "pymeasure.instruments.srs.SR830"
INSTRUMENTS = {"lockin": {"type": PM_TYPE, "address": "GPIB0::8::INSTR"}}


def _connect(lab: SimLab, transport: str) -> SR830:
    if transport == "tcp":
        lab.serve_tcp()
        return SR830(lab.tcp_address("lockin"), visa_library="@py")
    return SR830(lab.address("lockin"), visa_library=lab.visalib)


@pytest.fixture
def rig() -> Iterator[tuple[SimLab, SR830]]:
    with SimLab(INSTRUMENTS, seed=0) as lab:
        drv = _connect(lab, "inproc")
        try:
            yield lab, drv
        finally:
            drv.adapter.close()


def test_the_registry_names_this_adapter_and_the_lab_the_sr830_emulator() -> None:
    assert adapter_for(PM_TYPE) == ("lockin", PymeasureSR830)
    assert adapter_for("qcodes.instrument_drivers.stanford_research.SR830") == ("lockin", QcodesSR830)
    with SimLab(INSTRUMENTS, seed=0) as lab:
        assert isinstance(lab.emulator("lockin"), SR830Emulator)


@pytest.mark.parametrize("transport", ["inproc", "tcp"])
def test_every_adapter_method_reaches_the_instrument(transport: str) -> None:
    with SimLab(INSTRUMENTS, seed=0) as lab:
        drv = _connect(lab, transport)
        try:
            li = lab.state.lockin
            lockin = PymeasureSR830(drv)
            assert isinstance(lockin, LockinAdapter)
            assert lockin.sensitivities == SENSITIVITIES  # 2 nV .. 1 V, ascending
            lockin.set_time_constant(1.0)
            lockin.set_sensitivity(50e-6)
            lockin.set_amplitude(0.02)
            lockin.set_frequency(17.5)
            drv.filter_slope = 18
            assert lockin.time_constant() == 1.0 and lockin.filter_slope() == 18
            assert lockin.sensitivity() == 50e-6 and lockin.amplitude() == 0.02 and lockin.frequency() == 17.5
            assert (li.time_constant, li.sensitivity, li.amplitude, li.frequency) == (1.0, 50e-6, 0.02, 17.5)
            lab.clock.sleep(30.0)  # settle on the new excitation
            x, y = lockin.read_xy()
            z, noise = li.output(), li.noise_rms()
            assert x == pytest.approx(z.real, abs=6 * noise) and y == pytest.approx(z.imag, abs=6 * noise)
            assert lockin.status().ok
            lockin.set_sensitivity(2e-9)
            assert lockin.status().output_overload
            lockin.set_sensitivity(50e-6)
            assert lockin.status().output_overload  # latched until read
            assert lockin.status().ok
            drv.reference_source = "External"  # FMOD 0: nothing drives Ref In
            assert lockin.status().unlocked
            drv.reference_source = "Internal"
            lockin.status()
            li.force_overload = True
            status = lockin.status()
            assert status.input_overload and not status.ok
            li.force_overload = False
            log = lab.command_log("lockin")
            snaps = [c for c in log if c.header.upper() == "SNAP?"]
            assert snaps and all(c.args == ["1", "2"] for c in snaps)  # X and Y read at one instant
            assert [c for c in log if c.error] == []
        finally:
            drv.adapter.close()


@pytest.mark.parametrize(("V_g", "excitation"), [(0.0, 0.01), (5.0, 0.01), (8.0, 0.05)])
def test_resistance_meter_on_the_pymeasure_sr830_matches_the_model(
    rig: tuple[SimLab, SR830], V_g: float, excitation: float
) -> None:
    lab, drv = rig
    check_resistance_meter(lab, PymeasureSR830(drv), V_g, excitation)
