"""R(V_g) at several temperatures at zero field: the gate-tuned superconductor-metal transition."""

from __future__ import annotations

from dataclasses import dataclass

from qbs_lab.plan import Axis, Plan, TemperaturePolicy, linspace
from qbs_lab.procedure import param


@dataclass(frozen=True)
class Parameters:
    temperatures: tuple[float, ...] = param((0.06, 0.12, 0.24), "K", "isotherms' setpoints")
    V_start: float = param(5.0, "V", "first gate voltage")
    V_stop: float = param(25.0, "V", "last gate voltage")
    num: int = param(41, "", "gate voltages per isotherm")
    snake: bool = param(True, "", "alternate the gate's direction between isotherms")
    hold: float = param(60.0, "s", "temperature stable for this long before an isotherm")


def plan(p: Parameters) -> Plan:
    return Plan(
        "gate_isotherms",
        axes=(Axis("T", p.temperatures), Axis("V_g", linspace(p.V_start, p.V_stop, p.num), snake=p.snake)),
        fixed={"B": 0.0},
        temperature_policy=TemperaturePolicy(hold=p.hold),
    )
