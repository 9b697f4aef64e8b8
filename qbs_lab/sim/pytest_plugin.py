"""A pytest plugin that runs a peer's hardware tests against one of our emulators.

PyMeasure's "with device" tests take the instrument's address from ``--device-address`` (their
``connected_device_address`` fixture) and open it through PyVISA's default library. Loaded with ``-p``,
this plugin builds a :class:`~qbs_lab.sim.SimLab` holding one emulator of the driver named by
``--sim-instrument``, makes that lab PyVISA's default library (``PYVISA_LIBRARY``, the in-process
backend) and passes the emulator's address as ``--device-address``::

    pytest -p qbs_lab.sim.pytest_plugin --sim-instrument Keithley2400 \\
        tests/instruments/keithley/test_keithley2400_with_device.py

With ``--sim-transport tcp`` the emulator is served on 127.0.0.1 instead, over HiSLIP
(``TCPIP0::127.0.0.1::hislip0,PORT::INSTR``, reached through pyvisa-py): each reply carries END as on
GPIB, so a test that sets no read termination reads whole replies, as from the instrument on its bus.
``--sim-address`` sets the VISA address the emulator answers at in-process (default
``GPIB0::24::INSTR``).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

DEFAULT_ADDRESS = "GPIB0::24::INSTR"
NAME = "dut"  # the emulated instrument's name in the lab
_labs: list[Any] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("qbs_lab", "qbs_lab simulated instrument")
    group.addoption(
        "--sim-instrument",
        default=None,
        help="driver class name whose emulator answers at --device-address (e.g. Keithley2400, SR830)",
    )
    group.addoption(
        "--sim-transport",
        default="visa",
        choices=("visa", "tcp"),
        help="visa: the in-process PyVISA backend (default); tcp: HiSLIP on 127.0.0.1 via pyvisa-py",
    )
    group.addoption("--sim-address", default=DEFAULT_ADDRESS, help="the emulator's VISA address (visa)")


def build_lab(driver: str, address: str = DEFAULT_ADDRESS, transport: str = "visa") -> tuple[Any, str]:
    """A SimLab with one emulator of ``driver``; returns (lab, the address a test should open)."""
    from qbs_lab.sim.emulators import emulator_for_driver
    from qbs_lab.sim.lab import SimLab

    if emulator_for_driver(driver) is None:
        raise pytest.UsageError(f"--sim-instrument {driver}: no emulator answers that driver")
    lab = SimLab({NAME: {"type": driver, "address": address}})
    if transport == "tcp":
        lab.serve_tcp()
        return lab, lab.tcp_address(NAME, "hislip")
    return lab, lab.address(NAME)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    ns = early_config.known_args_namespace
    driver = getattr(ns, "sim_instrument", None)
    if not driver:
        return
    lab, address = build_lab(driver, ns.sim_address, ns.sim_transport)
    _labs.append(lab)
    if ns.sim_transport == "visa":
        os.environ["PYVISA_LIBRARY"] = lab.visalib  # PyVISA's default library: this lab
    if not any(a == "--device-address" or a.startswith("--device-address=") for a in args):
        args.append(f"--device-address={address}")


def pytest_report_header(config: pytest.Config) -> str | None:
    if not _labs:
        return None
    lab = _labs[0]
    emu = lab.emulator(NAME)
    return f"qbs_lab: {emu.model} emulator at {config.getoption('--device-address', None)} ({lab.visalib})"


def pytest_unconfigure(config: pytest.Config) -> None:
    while _labs:
        _labs.pop().close()
