"""R(B) at several temperatures at a fixed gate voltage: the crossing-point experiment.

The field runs snake-wise (up at one temperature, down at the next), so the magnet never ramps back
across the range between isotherms.
"""

from __future__ import annotations

from dataclasses import dataclass

from qbs_lab.plan import Axis, FieldPolicy, Plan, TemperaturePolicy, linspace
from qbs_lab.procedure import param


@dataclass(frozen=True)
class Parameters:
    V_g: float = param(15.0, "V", "gate voltage")
    temperatures: tuple[float, ...] = param((0.06, 0.09, 0.12, 0.18, 0.24), "K", "isotherms' setpoints")
    B_start: float = param(0.006, "T", "first field")
    B_stop: float = param(0.018, "T", "last field")
    num: int = param(25, "", "fields per isotherm")
    snake: bool = param(True, "", "alternate the field's direction between isotherms")
    rate: float | None = param(None, "T/s", "field ramp rate (none: the station's limit)")
    sweep: str = param("stepped", "", "stepped (settle and read at each field) or continuous")
    sweep_rate: float = param(2e-4, "T/s", "continuous: the field's rate while the lock-in is read")
    interval: float = param(0.2, "s", "continuous: time between lock-in readings")
    lag_correction: bool = param(True, "", "continuous: correct the lock-in filter's delay (n tau)")
    hold: float = param(60.0, "s", "temperature stable for this long before an isotherm")


def plan(p: Parameters) -> Plan:
    return Plan(
        "field_isotherms",
        axes=(Axis("T", p.temperatures), Axis("B", linspace(p.B_start, p.B_stop, p.num), snake=p.snake)),
        fixed={"V_g": p.V_g},
        field_policy=FieldPolicy(p.rate, p.sweep, p.sweep_rate, p.interval, p.lag_correction),
        temperature_policy=TemperaturePolicy(hold=p.hold),
    )
