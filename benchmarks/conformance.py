"""Conformance: PyMeasure's own hardware tests, run against our emulators. Anyone can rerun it.

PyMeasure ships tests meant for a real instrument ("with device" tests, given ``--device-address``).
This script takes PyMeasure's source distribution of the installed version from the package index at
run time (``pip download --no-binary :all: --no-deps``), unpacks it in a temporary folder, and runs

- ``tests/instruments/keithley/test_keithley2400_with_device.py`` against the Keithley 2400 emulator,
- ``tests/instruments/test_scpi_mixin_with_device.py`` (the generic SCPI test) against every emulator,

each with pytest and the plugin :mod:`qbs_lab.sim.pytest_plugin`, which answers the device address
with a simulated lab. It prints pass/fail per test file and emulator, each failure with its message,
and the totals. docs/conformance.md explains every remaining failure. Run:

    python benchmarks/conformance.py [--keep DIR] [--sdist PATH]

``--sdist`` uses an already downloaded ``pymeasure-<version>.tar.gz`` (no index access); ``--keep``
unpacks into DIR and leaves it there.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np

from qbs_lab.clock import VirtualClock
from qbs_lab.sim.emulators import EMULATORS, emulator_for_driver
from qbs_lab.sim.lab_state import LabState
from qbs_lab.sim.sample import scenario_params

K2400_TEST = "tests/instruments/keithley/test_keithley2400_with_device.py"
SCPI_TEST = "tests/instruments/test_scpi_mixin_with_device.py"
#: what PyMeasure's SCPIMixin sends in that test (clear, complete, status, options, id, next_error, reset)
SCPI_COMMANDS = ("*CLS", "*OPC?", "*STB?", "*OPT?", "*IDN?", "SYST:ERR?", "*RST")
#: one driver name per emulator (the station names it); its SCPI-mixin run
DRIVERS = (
    "Keithley2400",
    "Keithley2450",
    "RohdeSchwarzSGS100A",
    "AMIModel430",
    "LakeshoreModel372",
    "SR830",
    "SR860",
    "OxfordTriton",
)


@dataclass
class Outcome:
    test: str
    passed: bool
    message: str = ""


def fetch_sdist(dest: Path) -> Path:
    """PyMeasure's source distribution of the installed version, from the package index."""
    v = version("pymeasure")
    print(f"pip download --no-binary :all: --no-deps pymeasure=={v} ...", flush=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps",
         f"pymeasure=={v}", "-d", str(dest)],
        check=True,
    )  # fmt: skip
    return next(dest.glob("pymeasure-*.tar.gz"))


def unpack(sdist: Path, dest: Path) -> Path:
    with tarfile.open(sdist) as tar:
        tar.extractall(dest, filter="data")
    return next(p for p in dest.iterdir() if p.is_dir() and p.name.startswith("pymeasure-"))


def run_tests(src: Path, test_file: str, driver: str, out: Path) -> list[Outcome]:
    """One pytest run of ``test_file`` against ``driver``'s emulator; the outcome of each test."""
    xml = out / f"{driver}-{Path(test_file).stem}.xml"
    cmd = [
        sys.executable, "-m", "pytest", test_file, "-q", "-p", "qbs_lab.sim.pytest_plugin",
        "--sim-instrument", driver, "-p", "no:cacheprovider", "-o", "addopts=", "--rootdir", str(src),
        f"--junitxml={xml}", "--timeout=120",
    ]  # fmt: skip
    subprocess.run(cmd, cwd=src, capture_output=True, text=True, check=False)
    outcomes: dict[str, Outcome] = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        name = case.get("name", "?")
        bad = next((c for c in case if c.tag in ("failure", "error")), None)
        message = (bad.get("message") or "").splitlines()[0][:150] if bad is not None else ""
        if bad is not None and bad.tag == "error" and name in outcomes:  # a fixture teardown error
            outcomes[name] = Outcome(name, False, "teardown: " + message)
        elif bad is not None or name not in outcomes:
            outcomes[name] = Outcome(name, bad is None and case.find("skipped") is None, message)
    return list(outcomes.values())


def lacking(driver: str) -> list[str]:
    """The commands of the SCPI-mixin test that the emulated instrument does not have (its manual)."""
    cls = emulator_for_driver(driver)
    assert cls is not None
    emu = cls("probe", LabState(VirtualClock(), scenario_params("clean")), np.random.default_rng(0))
    missing = []
    for command in SCPI_COMMANDS:
        n = len(emu.log)
        emu.handle(command)
        if emu.log[n].error is not None:
            missing.append(command)
    if cls.greeting:
        missing.append("(greets on connect)")
    return missing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sdist", type=Path, help="a downloaded pymeasure-<version>.tar.gz")
    ap.add_argument("--keep", type=Path, help="unpack here and keep it")
    a = ap.parse_args()
    assert set(DRIVERS) <= set(EMULATORS)
    with tempfile.TemporaryDirectory(prefix="qbslab-conformance-") as tmp:
        work = a.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        sdist = a.sdist or fetch_sdist(work)
        src = unpack(sdist, work)
        print(f"PyMeasure {version('pymeasure')} source: {src}\n")
        runs = [(K2400_TEST, "Keithley2400")] + [(SCPI_TEST, d) for d in DRIVERS]
        total_pass = total = 0
        summary = []
        for test_file, driver in runs:
            outcomes = run_tests(src, test_file, driver, work)
            n_pass = sum(o.passed for o in outcomes)
            total_pass, total = total_pass + n_pass, total + len(outcomes)
            note = ""
            if test_file == SCPI_TEST:
                missing = lacking(driver)
                has = f"lacks {', '.join(missing)}" if missing else "has every command used"
                note = f"  (instrument {has})"
            line = f"{Path(test_file).name:<40} {driver:<20} {n_pass:>3} / {len(outcomes):<3} passed{note}"
            print(line, flush=True)
            summary.append(line)
            for o in outcomes:
                if not o.passed:
                    print(f"    FAIL {o.test}: {o.message}")
        print(f"\ntotal: {total_pass} passed, {total - total_pass} failed")


if __name__ == "__main__":
    main()
