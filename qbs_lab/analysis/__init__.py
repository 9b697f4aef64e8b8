"""qbs_lab.analysis: the analysis of isotherms for the quantum breakdown of superconductivity.

Works on plain data (xarray Datasets with a variable R [Ohm] over a swept variable, B [T] or V_g [V],
and the temperature T [K], or a mapping {T: (x, R)} of isotherms on their own grids); it needs neither
the instruments nor the simulator.

- :mod:`qbs_lab.analysis.estimate`: :func:`analyze_isotherms`, the one code path behind the online update,
  ``qbs-lab analyze crossing`` and its plots: the joint crossing, the collapse, the excluded isotherms.
- :mod:`qbs_lab.analysis.crossing`: the crossing point (x_c, R_c) of all isotherms jointly, with bootstrap
  error bars, R_c in units of h/4e^2, pairwise crossings, the drift and a verdict
  (:func:`find_crossing`, :class:`CrossingResult`, :class:`Crossing`).
- :mod:`qbs_lab.analysis.scaling`: the scaling collapse R = R_c F((x - x_c) T^(-1/(z*nu))) giving z*nu,
  fast enough for online use; :mod:`qbs_lab.analysis.collapse`: the Houdayer-Hartmann collapse.
- :mod:`qbs_lab.analysis.smoothing`: isotherms prepared for analysis (noise per point, local fits).
- :mod:`qbs_lab.analysis.online`: the analysis updated after every completed isotherm while a run goes.
- :mod:`qbs_lab.analysis.environment`: the RF-sensitivity and excitation (ohmic, self-heating) checks.
- :mod:`qbs_lab.analysis.report`: ``qbs-lab analyze crossing``: report, JSON and plots.
"""

from qbs_lab.analysis.crossing import Crossing, CrossingResult, find_crossing

__all__ = ["Crossing", "CrossingResult", "find_crossing"]
