"""Adapters: one module per concrete driver, binding it to a role's protocol (:mod:`..protocols`).

:data:`ADAPTERS` maps a driver class name (the end of a station file's ``type:``) to the role it can
play and the adapter class, as ``"module:Class"`` (imported on use, so an adapter's driver is only
imported when a station names it).
"""

from __future__ import annotations

import importlib

__all__ = ["ADAPTERS", "adapter_for", "role_of"]

#: driver class path (or, for QCoDeS drivers, its class name alone) -> (role, "module:AdapterClass")
ADAPTERS: dict[str, tuple[str, str]] = {
    # lock-ins
    "SR830": ("lockin", "qbs_lab.drivers.adapters.qcodes_sr830:QcodesSR830"),
    "SR860": ("lockin", "qbs_lab.drivers.adapters.qcodes_sr860:QcodesSR860"),
    "pymeasure.instruments.srs.SR830": ("lockin", "qbs_lab.drivers.adapters.pymeasure_sr830:PymeasureSR830"),
    # gate sources
    "Keithley2450": ("gate", "qbs_lab.drivers.adapters.qcodes_keithley2450:QcodesKeithley2450"),
    "Keithley2400": ("gate", "qbs_lab.drivers.adapters.qcodes_keithley2400:QcodesKeithley2400"),
    "YokogawaGS200": ("gate", "qbs_lab.drivers.adapters.qcodes_gs200:QcodesGS200"),
    # magnet supplies
    "AMIModel430": ("magnet", "qbs_lab.drivers.adapters.qcodes_ami430:QcodesAMI430"),
    "OxfordMercuryiPS": ("magnet", "qbs_lab.drivers.adapters.qcodes_mercuryips:QcodesMercuryiPS"),
    # thermometry
    "LakeshoreModel372": ("thermometry", "qbs_lab.drivers.adapters.qcodes_lakeshore372:QcodesLakeshore372"),
    "OxfordTriton": ("thermometry", "qbs_lab.drivers.adapters.qcodes_triton:QcodesTriton"),
    # RF sources
    "RohdeSchwarzSGS100A": ("rf", "qbs_lab.drivers.adapters.qcodes_sgs100a:QcodesSGS100A"),
}


def _entry(driver_type: str) -> tuple[str, str] | None:
    # a full path first (PyMeasure and QCoDeS both have an SR830), then a QCoDeS class name
    if driver_type in ADAPTERS:
        return ADAPTERS[driver_type]
    if driver_type.startswith("pymeasure."):
        return None
    return ADAPTERS.get(driver_type.rsplit(".", 1)[-1])


def adapter_for(driver_type: str) -> tuple[str, type] | None:
    """(role, adapter class) for a driver path such as ``qcodes.instrument_drivers...SR830``."""
    entry = _entry(driver_type)
    if entry is None:
        return None
    role, target = entry
    module, cls = target.split(":")
    return role, getattr(importlib.import_module(module), cls)


def role_of(driver_type: str) -> str | None:
    """The role a driver can play, without importing its adapter."""
    entry = _entry(driver_type)
    return entry[0] if entry else None
