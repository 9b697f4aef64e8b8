"""Is R ohmic? R against the excitation current, at two lock-in frequencies and several temperatures.

At fixed gate voltage and field, for each bath temperature and each lock-in frequency, the excitation
current is swept through its values, up at one frequency and back down at the next (snake), so the
lock-in never steps from the largest current straight to the smallest: a reading is settled to a
fraction of the step before it, and a 16x step down would leave the smallest current's reading off by
more than the ohmic tolerance. :func:`analyze` tests |R(I)/R(I_min) - 1| against a tolerance, the
out-of-phase ratio |Y/X|, and the agreement of the two frequencies; where R changes with I, it reads an
electron temperature T_e(I) off R(T) measured at the smallest current over the bath temperatures and
tests whether T_e^4 - T^4 grows as I^2 R, as self-heating does; the slope gives the electrons' cooling
Sigma*A [W/K^4] (see :func:`qbs_lab.analysis.environment.excitation_check`).

The defaults run on the simulated lab: V_g = 15 V and B = 8 mT sit below the critical field (11.7 mT),
where R (1.2 kOhm at 60 mK, 3.8 kOhm at 240 mK) rises steeply with temperature, so both the heating and
the thermometer R(T) are visible. The temperatures are dense near the bottom, where the heated
electrons' T_e is read; each is held within 1 % for 4 minutes, since at 60-80 mK a 1 mK error of the
bath moves R by ~3 %. The SR830's sine output goes from 4 mV to 5 V in 2 mV steps, i.e. 0.4 to 500 nA
in 0.2 nA steps through the 10 MOhm bias resistor, so the currents are multiples of 0.2 nA. The time
constant is 1 s (a quieter reading than the default 0.3 s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import xarray as xr

from qbs_lab.analysis.environment import excitation_check
from qbs_lab.plan import Axis, Plan, SettlePolicy, TemperaturePolicy
from qbs_lab.procedure import param


@dataclass(frozen=True)
class Parameters:
    V_g: float = param(15.0, "V", "gate voltage")
    B: float = param(0.008, "T", "field")
    temperatures: tuple[float, ...] = param(
        (0.06, 0.07, 0.08, 0.1, 0.12, 0.16, 0.24), "K", "bath temperature setpoints"
    )
    frequencies: tuple[float, ...] = param((13.7, 77.7), "Hz", "lock-in reference frequencies")
    currents: tuple[float, ...] = param(
        (0.6e-9, 1e-9, 2e-9, 3e-9, 5e-9, 7e-9, 10e-9), "A", "excitation currents, smallest first"
    )
    time_constant: float = param(1.0, "s", "lock-in time constant")
    hold: float = param(240.0, "s", "temperature stable for this long before each temperature's sweeps")
    band: float = param(0.01, "", "... within this fraction of the setpoint")
    tolerance: float = param(0.01, "", "ohmic when |R(I)/R(I_min) - 1| stays within this fraction")


def plan(p: Parameters) -> Plan:
    return Plan(
        "excitation_check",
        axes=(Axis("T", p.temperatures), Axis("f_exc", p.frequencies), Axis("I_exc", p.currents, snake=True)),
        fixed={"V_g": p.V_g, "B": p.B},
        temperature_policy=TemperaturePolicy(tolerance=p.band, hold=p.hold),
        settle=SettlePolicy(time_constant=p.time_constant),
    )


def analyze(ds: xr.Dataset) -> dict[str, Any]:
    """The excitation check on a completed run (tolerance from the run's parameters when it has it)."""
    import json

    params = json.loads(ds.attrs.get("parameters", "{}") or "{}")
    return excitation_check(ds, tolerance=float(params.get("tolerance", 0.01)))
