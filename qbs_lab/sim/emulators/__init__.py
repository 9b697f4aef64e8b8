"""Emulators of the reference station's instruments, speaking their real command languages.

:data:`EMULATORS` maps the driver classes the simulator can stand in for (QCoDeS and PyMeasure class
names, as they appear at the end of a station file's ``type:``) to the emulator that answers them.
"""

from __future__ import annotations

import importlib

from qbs_lab.sim.emulators.base import Emulator

__all__ = ["EMULATORS", "emulator_for_driver"]

#: driver class name -> "module:EmulatorClass"
EMULATORS: dict[str, str] = {
    # lock-ins
    "SR830": "qbs_lab.sim.emulators.sr830:SR830Emulator",
    "SR860": "qbs_lab.sim.emulators.sr860:SR860Emulator",
    # gate sources
    "Keithley2450": "qbs_lab.sim.emulators.keithley2450:Keithley2450Emulator",
    "Keithley2400": "qbs_lab.sim.emulators.keithley2400:Keithley2400Emulator",
    # magnet supply
    "AMIModel430": "qbs_lab.sim.emulators.ami430:AMI430Emulator",
    "AMI430": "qbs_lab.sim.emulators.ami430:AMI430Emulator",
    # thermometry and heater
    "LakeshoreModel372": "qbs_lab.sim.emulators.lakeshore372:Lakeshore372Emulator",
    "Model372": "qbs_lab.sim.emulators.lakeshore372:Lakeshore372Emulator",
    "OxfordTriton": "qbs_lab.sim.emulators.triton:TritonEmulator",
    # RF source
    "RohdeSchwarzSGS100A": "qbs_lab.sim.emulators.sgs100a:SGS100AEmulator",
    "RohdeSchwarz_SGS100A": "qbs_lab.sim.emulators.sgs100a:SGS100AEmulator",
}


def emulator_for_driver(driver: str) -> type[Emulator] | None:
    """The emulator class for a driver path such as ``qcodes.instrument_drivers...SR830``, or None."""
    target = EMULATORS.get(driver.rsplit(".", 1)[-1])
    if target is None:
        return None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)
