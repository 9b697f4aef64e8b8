"""Adapters: one module per concrete driver, binding it to a role's protocol (:mod:`..protocols`).

:data:`ADAPTERS` maps a driver class name (the end of a station file's ``type:``) to the role it can
play and the adapter class, as ``"module:Class"`` (imported on use, so an adapter's driver is only
imported when a station names it).
"""

from __future__ import annotations

import importlib

__all__ = ["ADAPTERS", "adapter_for"]

#: driver class name -> (role, "module:AdapterClass")
ADAPTERS: dict[str, tuple[str, str]] = {
    "SR830": ("lockin", "qbs_lab.drivers.adapters.qcodes_sr830:QcodesSR830"),
    "Keithley2450": ("gate", "qbs_lab.drivers.adapters.qcodes_keithley2450:QcodesKeithley2450"),
    "AMIModel430": ("magnet", "qbs_lab.drivers.adapters.qcodes_ami430:QcodesAMI430"),
    "LakeshoreModel372": ("thermometry", "qbs_lab.drivers.adapters.qcodes_lakeshore372:QcodesLakeshore372"),
    "RohdeSchwarzSGS100A": ("rf", "qbs_lab.drivers.adapters.qcodes_sgs100a:QcodesSGS100A"),
}


def adapter_for(driver_type: str) -> tuple[str, type] | None:
    """(role, adapter class) for a driver path such as ``qcodes.instrument_drivers...SR830``."""
    entry = ADAPTERS.get(driver_type.rsplit(".", 1)[-1])
    if entry is None:
        return None
    role, target = entry
    module, cls = target.split(":")
    return role, getattr(importlib.import_module(module), cls)
