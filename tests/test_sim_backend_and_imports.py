"""QCoDeS takes our in-process VISA backend for a real one, silently; the sim modules import one way."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest
from qcodes.instrument_drivers.american_magnetics import AMIModel430

from qbs_lab.sim import SimLab
from qbs_lab.sim.visa_backend import QbsLabVisaLibrary

SIM = Path(__file__).resolve().parent.parent / "qbs_lab" / "sim"


def test_qcodes_knows_the_backend_without_logging(caplog: pytest.LogCaptureFixture) -> None:
    station = {"magnet": {"type": "AMIModel430", "address": "TCPIP0::127.0.0.1::7180::SOCKET"}}
    with SimLab(station) as lab:
        magnet = AMIModel430("ami_backend_test", lab.address("magnet"), visalib=lab.visalib)
        try:
            with caplog.at_level(logging.DEBUG):
                for _ in range(5):  # the driver looks the backend up on every ramp poll
                    assert magnet.visabackend == "ivi"  # the real-instrument path, not pyvisa-sim's
                    magnet.field()
            assert not [r for r in caplog.records if "Could not determine VISA backend" in r.getMessage()]
        finally:
            magnet.close()
    assert repr(QbsLabVisaLibrary).endswith("QbsLabVisaLibrary'>")  # still ours in tracebacks


def _sim_imports() -> dict[str, set[str]]:
    """Module -> the qbs_lab.sim modules it imports (anywhere in the file, type-only ones too)."""
    graph: dict[str, set[str]] = {}
    for path in SIM.glob("*.py"):
        name = f"qbs_lab.sim.{path.stem}"
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("qbs_lab.sim."):
                found.add(".".join(node.module.split(".")[:3]))
        graph[name] = found - {name}
    return graph


def test_the_sim_modules_do_not_import_each_other_in_a_circle() -> None:
    graph = _sim_imports()

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    circles = sorted(m for m in graph if reaches(m, m, {m}))
    assert circles == []
    assert "qbs_lab.sim.faults" in graph["qbs_lab.sim.lab"]  # the lab uses faults, not the reverse
