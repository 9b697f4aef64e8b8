"""R over temperature x gate voltage x field: the phase diagram, T outermost (slowest), B innermost.

Gate and field both run snake-wise, so neither ramps back across its range between lines.
"""

from __future__ import annotations

from dataclasses import dataclass

from qbs_lab.plan import Axis, FieldPolicy, Plan, TemperaturePolicy, linspace
from qbs_lab.procedure import param


@dataclass(frozen=True)
class Parameters:
    temperatures: tuple[float, ...] = param((0.06, 0.12, 0.24), "K", "setpoints")
    V_start: float = param(5.0, "V", "first gate voltage")
    V_stop: float = param(25.0, "V", "last gate voltage")
    V_num: int = param(5, "", "gate voltages")
    B_start: float = param(0.0, "T", "first field")
    B_stop: float = param(0.03, "T", "last field")
    B_num: int = param(16, "", "fields")
    snake: bool = param(True, "", "alternate the gate's and field's directions between lines")
    rate: float | None = param(None, "T/s", "field ramp rate (none: the station's limit)")
    hold: float = param(60.0, "s", "temperature stable for this long before its first line")


def plan(p: Parameters) -> Plan:
    return Plan(
        "phase_diagram",
        axes=(
            Axis("T", p.temperatures),
            Axis("V_g", linspace(p.V_start, p.V_stop, p.V_num), snake=p.snake),
            Axis("B", linspace(p.B_start, p.B_stop, p.B_num), snake=p.snake),
        ),
        field_policy=FieldPolicy(p.rate),
        temperature_policy=TemperaturePolicy(hold=p.hold),
    )
