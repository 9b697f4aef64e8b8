"""The critical point (B_c, R_c, z·ν) at a fixed gate voltage in as little fridge time as it takes.

An adaptive search (:mod:`qbs_lab.crossing_search`): the fridge warms through the temperature range
on a setpoint ramp while the field sweeps back and forth across the crossing, in a window that
follows the running estimate; after every sweep the scaling form is fitted to every reading, and the
search stops when B_c and z·ν are known to the targets, or at the top of the range, or at the budget.
Same gate voltage, temperatures and field range as field_isotherms' defaults, so the two compare.

Its dataset is a T x B grid like field_isotherms': each temperature is a band between two of the
given temperatures (readings taken while the sample was in it, at the band's geometric middle), on
the field cells its readings fell in, so ``qbs-lab analyze
crossing`` reads it; the search's own estimate and every decision are in the run's ``search``
attribute and its log.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from qbs_lab.crossing_search import CrossingSearch
from qbs_lab.plan import Axis, FieldPolicy, Plan, SettlePolicy, TemperaturePolicy, linspace
from qbs_lab.procedure import param


@dataclass(frozen=True)
class Parameters:
    V_g: float = param(15.0, "V", "gate voltage")
    temperatures: tuple[float, ...] = param(
        (0.06, 0.09, 0.12, 0.18, 0.24), "K", "the range covered; between each two, one stored isotherm"
    )
    B_start: float = param(0.006, "T", "lowest field")
    B_stop: float = param(0.018, "T", "highest field")
    target: float = param(0.01, "", "stop when B_c is known to this fraction (2 sigma)")
    target_z_nu: float = param(0.10, "", "and z*nu to this fraction (2 sigma)")
    budget: float = param(900.0, "s", "fridge time at most (the search stops before overrunning it)")
    T_rate: float = param(1e-3, "K/s", "rate of the heater's setpoint ramp")
    sweep_rate: float = param(2e-4, "T/s", "field rate while the lock-in is read")
    scan_rate: float = param(1e-3, "T/s", "field rate of the first sweeps that locate the transition")
    interval: float = param(0.2, "s", "time between lock-in readings")
    fields: int = param(241, "", "field cells of the stored grid")


def plan(p: Parameters) -> Plan:
    if len(p.temperatures) < 2:
        raise ValueError("temperatures: give at least the lowest and the highest")
    lo, hi = min(p.temperatures), max(p.temperatures)
    if not hi >= 1.5 * lo:
        raise ValueError(f"temperatures: the range {lo:g}-{hi:g} K is too narrow for z*nu (at least 1.5x)")
    if not p.B_stop > p.B_start:
        raise ValueError("B_stop must be above B_start")
    if not (0 < p.target < 1 and 0 < p.target_z_nu < 1):
        raise ValueError("target and target_z_nu are fractions between 0 and 1")
    if p.fields < 10:
        raise ValueError("fields must be >= 10")
    # the stored isotherms: the readings between each two temperatures, at their geometric middle
    edges = sorted(set(p.temperatures))
    bands = tuple(math.sqrt(a * b) for a, b in itertools.pairwise(edges))
    grid = linspace(p.B_start, p.B_stop, p.fields)
    policy = TemperaturePolicy()
    # the sample lags the setpoint by about the fridge's response time: the ramp may lead by that much
    T_set_max = min(hi + 60.0 * p.T_rate, 1.25 * hi)
    search = CrossingSearch(
        bands=bands,
        edges=tuple(edges),
        grid=grid,
        T_range=(lo, hi),
        target=p.target,
        target_z_nu=p.target_z_nu,
        budget=p.budget,
        T_rate=p.T_rate,
        T_set_max=T_set_max,
        heater_range=policy.heater_range(T_set_max),
        sweep_rate=p.sweep_rate,
        scan_rate=p.scan_rate,
        interval=p.interval,
    )
    if not math.isfinite(p.budget) or p.budget <= 0:
        raise ValueError("budget must be a positive number of seconds")
    return Plan(
        "find_crossing",
        axes=(Axis("T", bands), Axis("B", grid)),
        fixed={"V_g": p.V_g},
        field_policy=FieldPolicy(None),
        temperature_policy=policy,
        settle=SettlePolicy(time_constant=0.3),
        search=search,
    )
