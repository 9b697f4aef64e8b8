"""Instrument roles (small Protocols) and the adapters that bind them to concrete drivers.

Installed as ``qbs_lab.drivers``. The roles arrive with the "Station and roles" work; until then
the simulated lab (:mod:`qbs_lab.sim`) is reached through the unmodified QCoDeS/PyMeasure drivers.
"""
