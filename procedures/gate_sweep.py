"""R(V_g): the gate swept at a fixed field, and at a fixed temperature if one is given."""

from __future__ import annotations

from dataclasses import dataclass

from qbs_lab.plan import Axis, Plan, linspace
from qbs_lab.procedure import param


@dataclass(frozen=True)
class Parameters:
    V_start: float = param(0.0, "V", "first gate voltage")
    V_stop: float = param(30.0, "V", "last gate voltage")
    num: int = param(61, "", "number of gate voltages")
    B: float = param(0.0, "T", "field, held during the sweep")
    T: float | None = param(None, "K", "temperature setpoint (none: leave the fridge as it is)")


def plan(p: Parameters) -> Plan:
    fixed = {"B": p.B} | ({"T": p.T} if p.T is not None else {})
    return Plan("gate_sweep", axes=(Axis("V_g", linspace(p.V_start, p.V_stop, p.num)),), fixed=fixed)
