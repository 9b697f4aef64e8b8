"""Shared fixtures: a simulated lab from the reference station, reached through either transport."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

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
