"""Does the sample's resistance respond to RF power? R at fixed operating points, RF off then stepped on.

At each operating point (a field B, with the gate voltage and the bath temperature fixed) the RF source
is stepped through its levels, output off first, and the whole off-then-on sequence is repeated: the
power axis is innermost, so each repeat measures "off" and every level back to back and a slow drift of
the fridge cannot pose as an RF effect. :func:`analyze` compares R with the RF on at each level against
R with it off (mean over the repeats, error from their scatter), gives the change's significance and
d log R / d log P, and a verdict, RF-sensitive or RF-insensitive (see
:func:`qbs_lab.analysis.environment.rf_sensitivity`).

The defaults run on the simulated lab: V_g = 15 V puts the field-tuned critical point at B_c ~ 11.7 mT;
the operating points sit below it (8 mT, R ~ 1.2 kOhm at 60 mK, where R rises steeply with the electron
temperature), near it (11 mT) and above it (15 mT). The levels stay below the station's RF cap
(-10 dBm). The RF frequency is set first (``frequency``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import xarray as xr

from qbs_lab.analysis.environment import rf_sensitivity
from qbs_lab.plan import RF_OFF, Axis, FieldPolicy, Plan, TemperaturePolicy
from qbs_lab.procedure import param


@dataclass(frozen=True)
class Parameters:
    V_g: float = param(15.0, "V", "gate voltage")
    T: float = param(0.06, "K", "bath temperature setpoint")
    fields: tuple[float, ...] = param((0.008, 0.011, 0.015), "T", "operating points: fields B")
    powers: tuple[float, ...] = param((-40.0, -30.0, -20.0), "dBm", "RF levels at the source, after RF off")
    frequency: float = param(1e9, "Hz", "RF frequency")
    repeats: int = param(3, "", "times each operating point's off-then-levels sequence is measured")
    hold: float = param(60.0, "s", "temperature stable for this long before the first point")
    significance: float = param(5.0, "sigma", "a change counts when it exceeds this many standard errors")
    min_relative_change: float = param(0.01, "", "... and when |dR/R| exceeds this fraction")


def _no_op(_: float) -> None:
    """The repeat axis only counts: nothing to set."""


def plan(p: Parameters) -> Plan:
    if p.repeats < 2:
        raise ValueError("repeats must be at least 2: the error bars come from the repeats' scatter")
    if any(v <= RF_OFF for v in p.powers):
        raise ValueError(f"powers are RF levels in dBm; RF off ({RF_OFF:g}) is measured anyway")
    return Plan(
        "rf_sensitivity",
        axes=(
            Axis("B", p.fields),
            Axis("repeat", tuple(range(p.repeats)), setter=_no_op, long_name="repeat number"),
            Axis("P_rf", (RF_OFF, *p.powers)),
        ),
        fixed={"f_rf": p.frequency, "V_g": p.V_g, "T": p.T},
        field_policy=FieldPolicy(None),
        temperature_policy=TemperaturePolicy(hold=p.hold),
    )


def analyze(ds: xr.Dataset) -> dict[str, Any]:
    """The RF check on a completed run (thresholds from the run's parameters when it has them)."""
    import json

    params = json.loads(ds.attrs.get("parameters", "{}") or "{}")
    return rf_sensitivity(
        ds,
        n_sigma=float(params.get("significance", 5.0)),
        min_relative_change=float(params.get("min_relative_change", 0.01)),
    )
