"""The simulated lab: a physics model of the sample and the cryostat behind emulated instruments.

Layers, bottom up:

- :mod:`~qbs_lab.sim.sample` (the device's R(V_g, B, T_e) and its ground truth, named scenarios),
- :mod:`~qbs_lab.sim.cryostat`, :mod:`~qbs_lab.sim.magnet`, :mod:`~qbs_lab.sim.gate`,
  :mod:`~qbs_lab.sim.lockin` (instruments' physical state and dynamics), wired by
  :mod:`~qbs_lab.sim.lab_state`,
- :mod:`~qbs_lab.sim.emulators` (the instruments' command languages),
- transports: :mod:`~qbs_lab.sim.visa_backend` (in-process PyVISA) and :mod:`~qbs_lab.sim.tcp_server`,
- :class:`SimLab`, the entry point.
"""

from qbs_lab.sim.lab import SimLab, SimLabError
from qbs_lab.sim.sample import SCENARIOS

__all__ = ["SCENARIOS", "SimLab", "SimLabError"]
