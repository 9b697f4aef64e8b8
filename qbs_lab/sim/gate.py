"""The back gate: a voltage source on doped Si, leaking through the oxide and breaking down above V_bd.

Leakage I = V/R_leak + I_bd * (exp((|V| - V_bd)/V_w) - 1) * sign(V) beyond the breakdown voltage V_bd
(steep growth). The source has a current limit (compliance): when the load would draw more, the output
voltage drops to the value at which the current equals the limit, as a real source-measure unit does.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq

__all__ = ["Gate"]


class Gate:
    """Gate source output and the gate's leakage (SI: V, A, Ohm)."""

    def __init__(
        self,
        R_leak: float = 1e13,
        V_bd: float = 60.0,
        V_w: float = 1.0,
        I_bd: float = 1e-9,
        noise: float = 2e-13,
    ) -> None:
        self.R_leak = R_leak
        self.V_bd = V_bd  # V, breakdown onset (beyond any sane station limit)
        self.V_w = V_w  # V, steepness of breakdown
        self.I_bd = I_bd  # A, breakdown current scale
        self.noise = noise  # A rms, current measurement noise
        self.output_on = False
        self.voltage_setpoint = 0.0
        self.current_limit = 1.05e-4  # A
        self.voltage_range = 20.0  # V
        self.leak_spike = 0.0  # A, extra leakage (fault injection)

    def leakage(self, V: float) -> float:
        """Current [A] the gate draws at voltage V [V] (no noise)."""
        I = V / self.R_leak
        over = abs(V) - self.V_bd
        if over > 0:
            I += math.copysign(self.I_bd * math.expm1(min(over / self.V_w, 700.0)), V)
        return I + math.copysign(self.leak_spike, V if V else 1.0)

    def in_compliance(self) -> bool:
        """True when the load would draw more than the current limit at the setpoint."""
        return self.output_on and abs(self.leakage(self.voltage_setpoint)) > self.current_limit

    def output_voltage(self) -> float:
        """Voltage at the terminals [V]: the setpoint, 0 when off, limited by compliance."""
        if not self.output_on:
            return 0.0
        V = self.voltage_setpoint
        if not self.in_compliance() or V == 0:
            return V
        limit = self.current_limit
        # largest |V| on the way to the setpoint whose leakage stays within the limit
        return (
            brentq(lambda v: abs(self.leakage(v)) - limit, 0.0, V, xtol=1e-9)
            if abs(self.leakage(0.0)) < limit
            else 0.0
        )

    def measured_current(self, rng: np.random.Generator) -> float:
        """Measured source current [A] including the meter's noise."""
        if not self.output_on:
            return float(rng.normal(0.0, self.noise))
        I = self.leakage(self.output_voltage())
        if abs(I) > self.current_limit:
            I = math.copysign(self.current_limit, I)
        return I + float(rng.normal(0.0, self.noise))
