"""The pytest plugin answers a peer's hardware test (PyMeasure's --device-address) with a SimLab.

The peer's test folder is written here as PyMeasure lays it out (its conftest's option and fixture,
a with-device test that opens the address with PyVISA's default library), then run in a subprocess:
benchmarks/conformance.py runs PyMeasure's own files the same way.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = """
import pytest

def pytest_addoption(parser):
    parser.addoption("--device-address", action="store", default=None, dest="adapter")

@pytest.fixture(scope="session")
def connected_device_address(pytestconfig):
    return pytestconfig.getoption("--device-address", skip=True)
"""

TEST = """
from pymeasure.instruments.keithley.keithley2400 import Keithley2400

def test_a_2400_answers(connected_device_address):
    smu = Keithley2400(connected_device_address)
    smu.reset()
    smu.source_voltage = 1.5
    assert smu.source_voltage == 1.5
    assert smu.id.startswith("KEITHLEY INSTRUMENTS INC.,MODEL 2400")
    assert smu.options == "0"
    assert smu.check_errors() == []
"""


def run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", *args]
    return subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=240, check=False)


@pytest.fixture
def peer_tests(tmp_path: Path) -> Path:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_with_device.py").write_text(TEST)
    return tmp_path


@pytest.mark.parametrize("transport", ["visa", "tcp"])
def test_the_device_address_is_an_emulator(peer_tests: Path, transport: str) -> None:
    plugin = ["-p", "qbs_lab.sim.pytest_plugin", "--sim-instrument", "Keithley2400"]
    result = run(peer_tests, *plugin, "--sim-transport", transport)
    assert "1 passed" in result.stdout, result.stdout + result.stderr
    assert "qbs_lab: Keithley 2400 emulator at" in result.stdout


def test_without_the_plugin_the_test_is_skipped(peer_tests: Path) -> None:
    result = run(peer_tests)
    assert "1 skipped" in result.stdout, result.stdout + result.stderr


def test_an_unknown_instrument_is_a_usage_error(peer_tests: Path) -> None:
    result = run(peer_tests, "-p", "qbs_lab.sim.pytest_plugin", "--sim-instrument", "NoSuchDriver")
    assert result.returncode != 0 and "no emulator answers that driver" in result.stderr + result.stdout
