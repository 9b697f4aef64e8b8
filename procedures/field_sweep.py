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
    sweep: str = param("stepped", "", "stepped (settle and read at each field) or continuous")
    sweep_rate: float = param(2e-4, "T/s", "continuous: the field's rate while the lock-in is read")
    interval: float = param(0.2, "s", "continuous: time between lock-in readings")
    lag_correction: bool = param(True, "", "continuous: correct the lock-in filter's delay (n tau)")


def plan(p: Parameters) -> Plan:
    fixed = {"V_g": p.V_g} | ({"T": p.T} if p.T is not None else {})
    return Plan(
        "field_sweep",
        axes=(Axis("B", linspace(p.B_start, p.B_stop, p.num)),),
        fixed=fixed,
        field_policy=FieldPolicy(p.rate, p.sweep, p.sweep_rate, p.interval, p.lag_correction),
    )
