"""Synthetic isotherm sets with a known answer, made by the tests themselves (not by the simulator).

R(B, T) = R_c F(u), u = U_EDGE (B - B_c(T)) / (HALF B_c) (T / T_LOW)^(-1/(z nu)): the lowest isotherm spans
the whole scaling function over the range B_c (1 +- HALF), the hottest only a sliver of it. Three
families of F (ln R polynomial near the crossing, tanh, logistic saturating), multiplicative noise (lock-in
noise is a fraction of the signal), each isotherm on its own grid (uniform, non-uniform, dense, sparse),
points missing at random, and optionally the two lowest isotherms heated: their electrons follow
T_e = (T^4 + T_sat^4)^(1/4), not the bath.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

B_C = 0.0123  # T
R_C = 5200.0  # Ohm
HALF = 0.07  # the field range is B_c (1 +- HALF)
U_EDGE = 3.0  # |u| of the lowest isotherm at the ends of the range
T_LOW, T_HIGH = 0.05, 1.0  # K
FAMILIES = ("logpoly", "tanh", "logistic")
GRIDS = ("uniform", "nonuniform", "dense", "sparse")


def scaling_function(family: str, u: np.ndarray) -> np.ndarray:
    """F(u) with F(0) = 1, rising with u."""
    if family == "logpoly":
        return np.exp(1.2 * u + 0.15 * u**2 / (1.0 + 0.1 * u**2))  # quadratic near 0, monotonic
    if family == "tanh":
        return 1.0 + 0.9 * np.tanh(0.8 * u)
    if family == "logistic":  # saturates at R_N = 2.5 R_c
        return 2.5 / (1.0 + 1.5 * np.exp(-1.3 * u))
    raise ValueError(family)


@dataclass(frozen=True)
class SetSpec:
    family: str = "logistic"
    znu: float = 1.2
    noise: float = 0.01  # relative, one sigma
    n_iso: int = 6
    grid: str = "uniform"
    missing: float = 0.0  # fraction of points dropped
    heated: bool = False
    drift: float = 0.0  # relative shift of B_c per kelvin
    T_sat: float = 0.15  # K, the heated isotherms' electron temperature floor
    offset: float = 0.0  # the range's centre is B_c (1 + offset): |offset| > HALF, no crossing in range


def temperatures(n: int) -> np.ndarray:
    return np.geomspace(T_LOW, T_HIGH, n)


def _grid(kind: str, rng: np.random.Generator, offset: float = 0.0) -> np.ndarray:
    lo = B_C * (1 + offset - HALF * rng.uniform(0.97, 1.0))
    hi = B_C * (1 + offset + HALF * rng.uniform(0.97, 1.0))
    if kind == "uniform":
        return np.linspace(lo, hi, int(rng.integers(120, 152)))
    if kind == "nonuniform":
        return np.sort(rng.uniform(lo, hi, int(rng.integers(60, 150))))
    if kind == "dense":
        return np.linspace(lo, hi, int(rng.integers(1000, 1601)))
    if kind == "sparse":
        return np.linspace(lo, hi, 15) + rng.uniform(-0.2, 0.2, 15) * (hi - lo) / 14
    raise ValueError(kind)


def make_set(spec: SetSpec, seed: int) -> tuple[dict[float, tuple[np.ndarray, np.ndarray]], dict]:
    """({T: (B [T], R [Ohm])}, truth) with truth {"B_c", "R_c", "znu", "heated": [T...], "drift"}."""
    rng = np.random.default_rng(seed)
    data = {}
    temps = temperatures(spec.n_iso)
    heated = list(temps[:2]) if spec.heated else []
    for T in temps:
        B = np.sort(_grid(spec.grid, rng, spec.offset))
        T_e = (T**4 + spec.T_sat**4) ** 0.25 if T in heated else T
        B_cT = B_C * (1 + spec.drift * T_e)
        u = U_EDGE * (B - B_cT) / (HALF * B_C) * (T_e / T_LOW) ** (-1.0 / spec.znu)
        R = R_C * scaling_function(spec.family, u) * (1 + spec.noise * rng.standard_normal(B.size))
        if spec.missing:
            keep = rng.uniform(size=B.size) >= spec.missing
            B, R = B[keep], R[keep]
        data[float(T)] = (B, R)
    truth = {
        "B_c": B_C,
        "R_c": R_C,
        "znu": spec.znu,
        "heated": [float(t) for t in heated],
        "drift": spec.drift * B_C,
    }
    return data, truth
