"""R(B): the field swept at a fixed gate voltage, and at a fixed temperature if one is given."""

from __future__ import annotations

from dataclasses import dataclass

from qbs_lab.plan import Axis, FieldPolicy, Plan, linspace
from qbs_lab.procedure import param


@dataclass(frozen=True)
class Parameters:
    B_start: float = param(0.0, "T", "first field")
    B_stop: float = param(0.03, "T", "last field")
    num: int = param(61, "", "number of fields")
    V_g: float = param(15.0, "V", "gate voltage, held during the sweep")
    T: float | None = param(None, "K", "temperature setpoint (none: leave the fridge as it is)")
    rate: float | None = param(None, "T/s", "field ramp rate (none: the station's limit)")


def plan(p: Parameters) -> Plan:
    fixed = {"V_g": p.V_g} | ({"T": p.T} if p.T is not None else {})
    return Plan(
        "field_sweep",
        axes=(Axis("B", linspace(p.B_start, p.B_stop, p.num)),),
        fixed=fixed,
        field_policy=FieldPolicy(p.rate),
    )
