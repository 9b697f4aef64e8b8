"""PyVISA backend ``@qbslab``: the in-process transport to qbs_lab's simulated lab.

PyVISA looks backends up as top-level modules named ``pyvisa_<name>``; the code lives in
:mod:`qbs_lab.sim.visa_backend`.
"""

from qbs_lab.sim.visa_backend import QbsLabVisaLibrary

WRAPPER_CLASS = QbsLabVisaLibrary
