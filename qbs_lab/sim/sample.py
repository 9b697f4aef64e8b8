"""The device: a gated graphene sheet decorated with a triangular array of tin disks.

:class:`SampleModel` gives the array's four-probe resistance R(V_g, B, T_e) and the electron temperature
T_e from the bath temperature and the power dissipated in the electrons. It has an exactly known ground
truth (:meth:`SampleModel.truth`): the isotherms of R(B) at fixed V_g cross exactly at (B_c(V_g), R_c(V_g))
and collapse exactly with the exponent product z*nu, and the gate-tuned isotherms at B = 0 cross at V_gc.

The model (SI units; every number is a field of :class:`SampleParams`)
-------------------------------------------------------------------------
- Carrier density n = alpha*(V_g - V_D), with alpha = eps0*eps_r/(e*t_ox) for 285 nm SiO2;
  puddles give n_eff = sqrt(n^2 + n_star^2).
- Sheet resistance R_sq = 1/(e*mu*n_eff) + R_s; normal-state array resistance
  R_N = R_sq * squares * (1 - phi)/(1 + phi) (tin disks of area fraction phi shunt the sheet).
- Critical field B_c(V_g) = B_c0 * (1 - R_sq/R_SM) where R_sq < R_SM, else 0 (no superconductivity);
  its zero, V_gc, is the gate-tuned critical point at B = 0. ``bc_exponent`` = 0.5 gives the
  square-root form; 1 (default) keeps the gate-tuned transition linear near V_gc, as scaling needs.
- Distance to criticality delta = (B - B_c(V_g, T))/B_c0 and scaling variable x = delta * T^(-1/(z*nu)).
  R_crit = R_N / (1 + (R_N/R_c - 1) * exp(-a*x)) with R_c = c_R * R_N: exactly R_c at delta = 0 for every
  T, R -> 0 below B_c and R -> R_N above as T -> 0, and R/R_N depends on x alone (exact collapse).
- Above T_window the array crosses over smoothly to R_N (reached at the tin's T_sn ~ 3.5 K); above
  T_sn the disks are normal and R = R_sq * squares. The critical window T <= T_window stays exact.
- ``anomalous_metal``: below B_c, R never falls below the intrinsic floor
  R_AM(B) = R_c * exp(-(B_c - B)/B_AM); it is a property of the sample, not of heating.
- ``bc_drift``: B_c(V_g, T) = B_c(V_g) * (1 + bc_drift * T / 1 K): the crossing wanders with T.
- Electron temperature T_e^4 = T^4 + (I^2 R + P_rf + P_env)/(Sigma*A): the excitation current I and the
  RF power reaching the sample, P_rf = kappa * 10^((P_dBm - 30)/10), heat the electrons; P_env is a
  hidden environmental power (0 in a well-filtered fridge). The default Sigma*A = 1e-8 W/K^4 is far above
  the 1e-12..1e-11 W/K^4 of electron-phonon coupling alone (shared/PHYSICS.md): it stands for the
  array's total cooling, the leads' electronic conduction included. With the bare e-ph value, 1 nA
  through 6 kOhm would hold the electrons near 150 mK and no isotherm below that could be taken; with
  this one, 1 nA heats them by ~2 % at 50 mK and 10 nA clearly (to ~90 mK), as the excitation check needs.

Examples
--------
>>> model = SampleModel()
>>> truth = model.truth(V_g=15.0)
>>> round(truth["B_c"], 4), round(truth["R_c"])
(0.0117, 5878)
>>> abs(model.resistance(15.0, truth["B_c"], 0.05) - truth["R_c"]) < 1e-9
True
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["H_OVER_4E2", "SCENARIOS", "SampleModel", "SampleParams", "scenario_params"]

E_CHARGE = 1.602176634e-19  # C
EPS0 = 8.8541878128e-12  # F/m
H_PLANCK = 6.62607015e-34  # J s
K_B = 1.380649e-23  # J/K
#: The superconducting pair resistance quantum h/4e^2 [Ohm].
H_OVER_4E2 = H_PLANCK / (4 * E_CHARGE**2)


@dataclass(frozen=True)
class SampleParams:
    """Parameters of the simulated device (defaults: a Han et al.-like graphene-tin array)."""

    # gate and graphene
    eps_r: float = 3.9  # SiO2 relative permittivity
    t_ox: float = 285e-9  # m, oxide thickness
    V_D: float = 5.0  # V, Dirac point
    n_star: float = 3e15  # m^-2, residual (puddle) density
    mu: float = 0.2  # m^2/(V s), mobility
    R_s: float = 100.0  # Ohm, contact/series part of the sheet resistance
    squares: float = 4.0  # length/width of the measured array
    phi: float = 0.145  # area fraction of the tin disks
    # superconductivity
    T_sn: float = 3.5  # K, tin's critical temperature
    T_window: float = 1.0  # K, top of the critical scaling window
    R_SM: float = H_OVER_4E2  # Ohm, sheet resistance at which B_c reaches 0
    B_c0: float = 0.030  # T, critical field at high density
    bc_exponent: float = 1.0  # B_c = B_c0 * (1 - R_sq/R_SM)**bc_exponent
    c_R: float = 0.5  # R_c = c_R * R_N
    a: float = 2.0  # steepness of the scaling function
    znu: float = 1.3  # z*nu
    bc_drift: float = 0.0  # relative drift of B_c per kelvin
    anomalous_metal: bool = False
    B_AM: float = 0.004  # T, decay field of the anomalous-metal floor
    # heating
    sigma_A: float = 1e-8  # W/K^4, electron cooling (electron-phonon and leads), Sigma*A
    kappa_rf: float = 1e-12  # fraction of the RF source's power reaching the electrons
    P_env: float = 0.0  # W, hidden environmental power on the electrons

    @property
    def alpha(self) -> float:
        """Gate capacitance per unit charge [m^-2/V]: eps0*eps_r/(e*t_ox)."""
        return EPS0 * self.eps_r / (E_CHARGE * self.t_ox)


SCENARIOS: dict[str, dict[str, Any]] = {
    "clean": {},
    "anomalous_metal": {"anomalous_metal": True},
    # poor filtering: RF couples to the electrons and the environment heats them (extrinsic plateau)
    "rf_leak": {"kappa_rf": 1e-7, "P_env": 1e-13},
    "drifting": {"bc_drift": 0.3},
}
"""Named scenarios: overrides of :class:`SampleParams` defaults."""


def scenario_params(name: str, **overrides: Any) -> SampleParams:
    """The :class:`SampleParams` of a named scenario, with any field overridden."""
    if name not in SCENARIOS:
        raise KeyError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}")
    return dataclasses.replace(SampleParams(), **{**SCENARIOS[name], **overrides})


@dataclass
class SampleModel:
    """R(V_g, B, T_e) and T_e for the array; see the module docstring for the equations."""

    params: SampleParams = field(default_factory=SampleParams)

    # -- normal state -------------------------------------------------------------------------
    def sheet_resistance(self, V_g: float) -> float:
        """R_sq [Ohm] of the graphene at gate voltage V_g [V]."""
        p = self.params
        n = p.alpha * (V_g - p.V_D)
        n_eff = math.sqrt(n * n + p.n_star * p.n_star)
        return 1.0 / (E_CHARGE * p.mu * n_eff) + p.R_s

    def normal_resistance(self, V_g: float) -> float:
        """R_N [Ohm]: the array's resistance with the disks superconducting but uncoupled."""
        p = self.params
        return self.sheet_resistance(V_g) * p.squares * (1 - p.phi) / (1 + p.phi)

    def critical_field(self, V_g: float, T: float = 0.0) -> float:
        """B_c [T] at V_g [V] (and T [K], which matters only with ``bc_drift``); 0 where R_sq >= R_SM."""
        return max(self._signed_critical_field(V_g, T), 0.0)

    def _signed_critical_field(self, V_g: float, T: float) -> float:
        # negative past the gate-tuned critical point, so that delta grows on the metallic side
        p = self.params
        u = 1.0 - self.sheet_resistance(V_g) / p.R_SM
        return p.B_c0 * math.copysign(abs(u) ** p.bc_exponent, u) * (1.0 + p.bc_drift * T)

    def critical_resistance(self, V_g: float) -> float:
        """R_c [Ohm] at V_g [V]."""
        return self.params.c_R * self.normal_resistance(V_g)

    def gate_critical_voltage(self) -> float:
        """V_gc [V] on the electron side: where B_c falls to 0 (R_sq = R_SM)."""
        p = self.params
        inv = p.R_SM - p.R_s
        n_eff = 1.0 / (E_CHARGE * p.mu * inv)
        n = math.sqrt(max(n_eff * n_eff - p.n_star * p.n_star, 0.0))
        return p.V_D + n / p.alpha

    # -- the array ------------------------------------------------------------------------------
    def resistance(self, V_g: float, B: float, T_e: float) -> float:
        """Four-probe resistance R [Ohm] at gate voltage [V], field [T] and electron temperature [K]."""
        p = self.params
        R_N = self.normal_resistance(V_g)
        if T_e >= p.T_sn:
            return self.sheet_resistance(V_g) * p.squares
        T = max(T_e, 1e-4)
        B_c = self._signed_critical_field(V_g, T)
        delta = (abs(B) - B_c) / p.B_c0
        x = delta * T ** (-1.0 / p.znu)
        R_c = p.c_R * R_N
        expo = -p.a * x
        R = 0.0 if expo > 700 else R_N / (1.0 + (R_N / R_c - 1.0) * math.exp(expo))
        if p.anomalous_metal and abs(B) < B_c:
            R = max(R, R_c * math.exp(-(B_c - abs(B)) / p.B_AM))
        if p.T_window < T:
            # smooth crossover to the normal state between the window's top and T_sn
            s = (T - p.T_window) / (p.T_sn - p.T_window)
            w = s * s * (3 - 2 * s)
            R = (1 - w) * R + w * R_N
        return R

    def electron_temperature(self, T_bath: float, joule_power: float, rf_dbm: float | None) -> float:
        """T_e [K] from the bath temperature [K], Joule power I^2 R [W] and RF source power [dBm or None]."""
        p = self.params
        power = max(joule_power, 0.0) + p.P_env
        if rf_dbm is not None:
            power += p.kappa_rf * 10 ** ((rf_dbm - 30.0) / 10.0)
        return (T_bath**4 + power / p.sigma_A) ** 0.25

    def truth(self, V_g: float | None = None) -> dict[str, Any]:
        """The ground truth a measurement should find: critical points and exponents.

        With ``V_g``: the field-tuned critical point there, ``B_c`` [T] and ``R_c`` [Ohm]. Always:
        ``znu``, the gate-tuned critical point at B = 0 (``V_gc`` [V], ``R_c_gate`` [Ohm]), and the
        parameters.
        """
        p = self.params
        V_gc = self.gate_critical_voltage()
        out: dict[str, Any] = {
            "znu": p.znu,
            "V_gc": V_gc,
            "R_c_gate": self.critical_resistance(V_gc),
            "h_over_4e2": H_OVER_4E2,
            "params": dataclasses.asdict(p),
        }
        if V_g is not None:
            out["V_g"] = V_g
            out["B_c"] = self.critical_field(V_g, 0.0)
            out["R_c"] = self.critical_resistance(V_g)
        return out
