"""The experiments, one module each (installed as ``qbs_lab.procedures``).

Each module has a ``Parameters`` dataclass (typed, with defaults that run as-is on the simulated lab)
and ``plan(p) -> Plan``; see :mod:`qbs_lab.procedure` for the contract and ``qbs-lab run NAME``.

- ``gate_sweep``: R(V_g) at a fixed field (and temperature, if given)
- ``field_sweep``: R(B) at a fixed gate voltage (and temperature, if given)
- ``temperature_sweep``: R(T) at a fixed gate voltage and field
- ``field_isotherms``: R(B) at several temperatures at a fixed V_g, the crossing-point experiment
- ``gate_isotherms``: R(V_g) at several temperatures at B = 0
- ``phase_diagram``: R over T x V_g x B
"""
