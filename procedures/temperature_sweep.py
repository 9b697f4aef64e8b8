"""R(T): temperature setpoints one after another (each stabilized) at a fixed gate voltage and field."""

from __future__ import annotations

from dataclasses import dataclass

from qbs_lab.plan import Axis, Plan, TemperaturePolicy
from qbs_lab.procedure import param


@dataclass(frozen=True)
class Parameters:
    temperatures: tuple[float, ...] = param(
        (0.03, 0.05, 0.08, 0.12, 0.18, 0.25, 0.35, 0.5, 0.7), "K", "setpoints, in this order"
    )
    V_g: float = param(15.0, "V", "gate voltage")
    B: float = param(0.0, "T", "field")
    tolerance: float = param(0.02, "", "stable within this fraction of the setpoint")
    hold: float = param(60.0, "s", "stable for this long before measuring")
    timeout: float = param(1800.0, "s", "give up on a setpoint after this long")


def plan(p: Parameters) -> Plan:
    return Plan(
        "temperature_sweep",
        axes=(Axis("T", p.temperatures),),
        fixed={"V_g": p.V_g, "B": p.B},
        temperature_policy=TemperaturePolicy(tolerance=p.tolerance, hold=p.hold, timeout=p.timeout),
    )
