"""Shared fixtures: a simulated lab from the reference station, reached through either transport."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from qbs_lab.sim import SimLab

STATION = Path(__file__).resolve().parent.parent / "station.yaml"


@dataclass
class Connection:
    """How a driver reaches the lab: its address for an instrument and the PyVISA library string."""

    lab: SimLab
    transport: str

    def address(self, name: str) -> str:
        return self.lab.tcp_address(name) if self.transport == "tcp" else self.lab.address(name)

    @property
    def visalib(self) -> str:
        return "@py" if self.transport == "tcp" else self.lab.visalib

    def kwargs(self, name: str) -> dict[str, str]:
        """Driver keyword arguments for instrument ``name``: address and visalib."""
        return {"address": self.address(name), "visalib": self.visalib}


def pyvisa_sim_queries(filename: str, device_name: str | None = None) -> list[tuple[str, Any]]:
    """Every query of one of QCoDeS's pyvisa-sim files (its first device, or ``device_name``), with
    the yaml's reply or the property's default."""
    import qcodes

    path = Path(qcodes.__file__).parent / "instrument" / "sims" / filename
    devices = yaml.safe_load(path.read_text())["devices"]
    device = devices[device_name] if device_name else next(iter(devices.values()))
    out = [(d["q"], d["r"]) for d in device.get("dialogues", []) if "?" in str(d["q"])]
    for prop in device.get("properties", {}).values():
        if "getter" in prop:
            out.append((prop["getter"]["q"], prop.get("default", "0")))
    return out


def scpi_error_codes(emu: Any) -> list[int]:
    """Drain an SCPI emulator's error queue (``SYST:ERR?``): the codes, oldest first."""
    out = []
    while (code := int(emu.handle("SYST:ERR?").split(",")[0])) != 0:
        out.append(code)
    return out


def check_resistance_meter(lab: SimLab, lockin: Any, V_g: float, excitation: float) -> None:
    """A lock-in adapter under the ResistanceMeter reads the model's R: settled, autoranged, in noise.

    The lab needs no gate instrument: the sample's gate voltage is set on the lab state directly.
    """
    from qbs_lab.drivers.resistance import ResistanceMeter

    lockin.set_amplitude(excitation)
    lab.state.gate.output_on = True
    lab.state.gate.voltage_setpoint = V_g
    meter = ResistanceMeter(lockin, lab.state.bias_resistor, lab.clock)
    t0 = lab.clock.now()
    first = meter.measure()  # right after the change: settled to the meter's residual of the step
    assert lab.clock.now() - t0 >= meter.settle_time()  # the settle wait ran on the lab's clock
    reading = meter.measure()  # no change since: within the noise
    lab.state.sync()
    op = lab.state.operating_point()
    noise_R = lab.state.lockin.noise_rms() / reading.I  # one reading's noise [Ohm]
    assert first.R == pytest.approx(op["R"], abs=5 * noise_R + meter.residual * op["R"])
    assert reading.status.ok
    assert reading.I == pytest.approx(op["I"], rel=1e-3)
    assert reading.R == pytest.approx(op["R"], abs=5 * noise_R + 1e-4 * op["R"])
    assert 0.05 * reading.sensitivity <= abs(reading.X) <= 0.95 * reading.sensitivity  # autoranged
    assert [c for c in lab.command_log("lockin") if c.error] == []


@pytest.fixture
def lab() -> Iterator[SimLab]:
    with SimLab.from_station(STATION, seed=1) as sim:
        yield sim


@pytest.fixture(params=["inproc", "tcp"])
def conn(request: pytest.FixtureRequest, lab: SimLab) -> Connection:
    if request.param == "tcp":
        lab.serve_tcp()
    return Connection(lab, request.param)


@pytest.fixture(autouse=True)
def _close_qcodes_instruments() -> Iterator[None]:
    yield
    from qcodes.instrument import Instrument

    Instrument.close_all()
