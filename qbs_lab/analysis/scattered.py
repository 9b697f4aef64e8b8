"""The scaling form fitted to scattered readings: R at any (B, T), not isotherms on a grid.

An adaptive search (:mod:`qbs_lab.crossing_search`) reads R while the field sweeps and the fridge
warms, so every reading has its own field and temperature. Near the critical point all of them lie
on one curve,

    ln R = ln R_c + g(u),   u = (B - B_c (1 + d T)) / B_c * (T / T_ref)^(-1/(z nu)),

with g a polynomial (g(0) = 0) of order ``order``, ``d`` the drift of the crossing with T (B_c is the
T -> 0 value) and ``T_ref`` the geometric mean of the readings' temperatures (so that the scale of g
and z nu are nearly uncorrelated). Only readings inside the window |g'(0) u| <= ``y_max`` are used:
the polynomial holds there whatever the true scaling function is.

Readings that misfit the rest at the low end (excitation heating, corrections to scaling) are left
out first (``T_cut``). Errors: the fit's covariance, scaled by the residuals' variance and by their
correlation along the readings' time order (a lock-in's filter makes neighbouring readings alike),
widened by how much the result moves when the polynomial's order and the window change, when the
lowest temperatures are left out, without the drift term (z·ν), between two halves of the readings
(the caller's ``split``, e.g. sweeps up and down; low and high T for z·ν), and with each reading at its
``T_other`` (e.g. the temperature read at the reading's time rather than a filter's lag before).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> T = rng.uniform(0.06, 0.24, 3000); B = rng.uniform(0.010, 0.0135, 3000)
>>> u = (B - 0.0117) / 0.0117 * T ** (-1 / 1.3)
>>> R = 6450 * np.exp(np.tanh(2 * u)) * (1 + 0.01 * rng.standard_normal(3000))
>>> fit = fit_scattered(B, T, R, B_c0=0.0115)
>>> round(fit.B_c * 1e3, 1), round(fit.z_nu, 1)
(11.7, 1.3)
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import least_squares

__all__ = ["ScatteredFit", "fit_scattered"]


@dataclass(frozen=True)
class ScatteredFit:
    """The critical point from scattered readings; errors are 1 sigma, SI units (B in T, R in Ohm).

    ``status``: "ok", or "failed" with ``reason``. ``used``: readings inside the window. ``window``:
    the half-width of the window in the scaling variable times g'(0). ``T_range``: the temperatures
    [K] of the readings used.
    """

    B_c: float
    B_c_err: float
    R_c: float
    R_c_err: float
    z_nu: float
    z_nu_err: float
    drift: float
    drift_err: float
    slope: float  # g'(0): d ln R / du at the crossing
    T_ref: float
    used: int
    noise: float  # rms of ln R about the fit (~ relative noise of R)
    T_range: tuple[float, float]
    status: str = "ok"
    reason: str = ""
    coeffs: tuple[float, ...] = ()  # g's coefficients a_1..a_order
    #: readings below this temperature [K] were left out: they misfit the rest (excitation heating,
    #: corrections to scaling); NaN when none were
    T_cut: float = math.nan

    def ln_R(self, B: np.ndarray, T: np.ndarray) -> np.ndarray:
        """The fitted ln R [ln Ohm] at fields B [T] and temperatures T [K]."""
        u = (
            (np.asarray(B) - self.center(np.asarray(T)))
            / self.B_c
            * (np.asarray(T) / self.T_ref) ** (-1 / self.z_nu)
        )
        return math.log(self.R_c) + sum(a * u ** (k + 1) for k, a in enumerate(self.coeffs))

    def half_width(self, T: float, y_max: float) -> float:
        """The field half-width [T] of the window |g'(0) u| <= y_max at temperature T [K]."""
        return y_max / abs(self.slope) * self.B_c * (T / self.T_ref) ** (1.0 / self.z_nu)

    def center(self, T: float) -> float:
        """Where the isotherm at T [K] crosses R_c [T]: B_c (1 + d T)."""
        return self.B_c * (1.0 + self.drift * T)

    def to_dict(self) -> dict[str, float | str | int | list[float]]:
        out = asdict(self)
        out["T_range"] = list(self.T_range)
        out["coeffs"] = list(self.coeffs)
        return out


def _failed(reason: str, n: int = 0) -> ScatteredFit:
    nan = math.nan
    return ScatteredFit(
        nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, n, nan, (nan, nan), "failed", reason
    )


def fit_scattered(
    B: np.ndarray,
    T: np.ndarray,
    R: np.ndarray,
    *,
    B_c0: float,
    z_nu0: float = 1.0,
    drift: bool = True,
    order: int = 5,
    y_max: float = 1.5,
    t: np.ndarray | None = None,
    systematics: bool = True,
    trim_low_T: bool = True,
    split: np.ndarray | None = None,
    T_other: np.ndarray | None = None,
) -> ScatteredFit:
    """Fit the scaling form (module docstring) to readings R [Ohm] at fields B [T] and temperatures
    T [K]; ``B_c0`` [T] and ``z_nu0`` start the search; ``t`` orders the readings in time (for their
    correlation; default: as given). ``drift=False`` fixes d = 0."""
    B, T, R = (np.asarray(a, dtype=float) for a in (B, T, R))
    order_t = np.argsort(t, kind="stable") if t is not None else np.arange(len(B))
    half = np.asarray(split, dtype=bool)[order_t] if split is not None else np.zeros(len(B), dtype=bool)
    T2 = np.asarray(T_other, dtype=float)[order_t] if T_other is not None else T[order_t]
    B, T, R = B[order_t], T[order_t], R[order_t]
    good = np.isfinite(B) & np.isfinite(T) & np.isfinite(R) & (R > 0) & (T > 0) & np.isfinite(T2) & (T2 > 0)
    B, T, R, half, T2 = B[good], T[good], R[good], half[good], T2[good]
    if len(B) < order + 6:
        return _failed(f"{len(B)} readings: too few to fit", len(B))
    T_cut = _misfit_below(B, T, R, B_c0, z_nu0, order, y_max) if trim_low_T else math.nan
    if math.isfinite(T_cut):
        keep = T >= T_cut
        B, T, R, half, T2 = B[keep], T[keep], R[keep], half[keep], T2[keep]
    base = _fit(B, T, R, B_c0, z_nu0, drift, order, y_max)
    base = ScatteredFit(**{**asdict(base), "T_range": base.T_range, "coeffs": base.coeffs, "T_cut": T_cut})
    if base.status != "ok" or not systematics:
        return base
    # the model's own uncertainty: a lower order, a narrower and a wider window
    shifts = {"B_c": [0.0], "R_c": [0.0], "z_nu": [0.0], "drift": [0.0]}
    for o, y in ((order - 1, y_max), (order, 0.7 * y_max), (order, 1.3 * y_max)):
        alt = _fit(B, T, R, base.B_c, base.z_nu, drift, o, y)
        if alt.status == "ok":
            for k, v in shifts.items():
                v.append(getattr(alt, k) - getattr(base, k))
    # how far two halves of the readings disagree: the caller's split (e.g. sweeps up and down: a
    # lag left uncorrected) in everything, the low-T and high-T halves (corrections to scaling) in z nu
    low = T < np.median(T)
    for mask, keys in ((half, ("B_c", "R_c", "z_nu", "drift")), (low, ("z_nu",))):
        if split is None and mask is half:
            continue
        both = drift and mask is half
        a = _fit(B[mask], T[mask], R[mask], base.B_c, base.z_nu, both, order, y_max)
        b = _fit(B[~mask], T[~mask], R[~mask], base.B_c, base.z_nu, both, order, y_max)
        if a.status == "ok" and b.status == "ok":
            for k in keys:
                shifts[k].append(0.5 * (getattr(a, k) - getattr(b, k)))
    # each reading at its other temperature (the caller's other assumption of when R saw which T)
    # in z nu (B_c's T -> 0 value moves with it only through the drift's trade-off with R_c)
    if T_other is not None:
        alt = _fit(B, T2, R, base.B_c, base.z_nu, drift, order, y_max)
        if alt.status == "ok":
            shifts["z_nu"].append(alt.z_nu - base.z_nu)
    # z nu with and without the drift term (the two trade off against R_c and each other)
    if drift:
        alt = _fit(B, T, R, base.B_c, base.z_nu, False, order, y_max)
        if alt.status == "ok":
            shifts["z_nu"].append(alt.z_nu - base.z_nu)
    # and how far it moves when the lowest temperatures are left out too (what heating or corrections
    # to scaling still do just above the cut)
    warm = T >= 1.2 * T.min()
    alt = _fit(B[warm], T[warm], R[warm], base.B_c, base.z_nu, drift, order, y_max)
    if alt.status == "ok":
        for k, v in shifts.items():
            v.append(getattr(alt, k) - getattr(base, k))
    widened = {
        f"{k}_err": math.hypot(getattr(base, f"{k}_err"), max(abs(s) for s in v)) for k, v in shifts.items()
    }
    return ScatteredFit(**{**asdict(base), **widened, "T_range": base.T_range, "coeffs": base.coeffs})


def _misfit_below(
    B: np.ndarray,
    T: np.ndarray,
    R: np.ndarray,
    B_c0: float,
    z_nu0: float,
    order: int,
    y_max: float,
) -> float:
    """The temperature [K] below which the readings misfit the rest (NaN: none do).

    A fit without drift to every reading; its residuals' rms in eight bands of ln T; the lowest bands
    whose rms is more than 1.5x the median band's are cut (at most half of them, and only a run from
    the bottom: excitation heating and corrections to scaling grow as T falls)."""
    pre = _fit(B, T, R, B_c0, z_nu0, False, order, y_max)
    if pre.status != "ok":
        return math.nan
    res = np.log(R) - pre.ln_R(B, T)
    inside = np.abs(pre.slope * (B - pre.B_c) / pre.B_c * (T / pre.T_ref) ** (-1 / pre.z_nu)) <= y_max
    edges = np.geomspace(T.min(), T.max() * (1 + 1e-12), 9)
    rms = []
    for lo, hi in itertools.pairwise(edges):
        m = inside & (T >= lo) & (T < hi)
        rms.append(float(np.sqrt(np.mean(res[m] ** 2))) if m.sum() >= 20 else math.nan)
    rms_a = np.asarray(rms)
    if np.isfinite(rms_a).sum() < 4:
        return math.nan
    median = float(np.nanmedian(rms_a))
    k = 0
    while k < 4 and (not np.isfinite(rms_a[k]) or rms_a[k] > 1.5 * median):
        k += 1
    return float(edges[k]) if 0 < k < 4 or (k == 4 and np.isfinite(rms_a[:4]).any()) else math.nan


def _fit(
    B: np.ndarray,
    T: np.ndarray,
    R: np.ndarray,
    B_c0: float,
    z_nu0: float,
    drift: bool,
    order: int,
    y_max: float,
) -> ScatteredFit:
    lnR = np.log(R)
    T_ref = float(np.exp(np.mean(np.log(T))))
    tau = T / T_ref
    # start: ln R_c and the slope from a straight line in u near B_c0 with the starting z nu
    kappa0 = 1.0 / z_nu0
    u0 = (B - B_c0) / B_c0 * tau ** (-kappa0)
    near = np.abs(u0) <= np.quantile(np.abs(u0), 0.5)
    if near.sum() < 4:
        return _failed("too few readings near the starting field", len(B))
    slope0, lnRc0 = np.polyfit(u0[near], lnR[near], 1)
    coeffs0 = [slope0] + [0.0] * (order - 1)
    p0 = np.array([B_c0, 0.0, math.log(kappa0), lnRc0, *coeffs0])
    if not drift:
        p0 = np.delete(p0, 1)

    def unpack(p: np.ndarray) -> tuple[float, float, float, float, np.ndarray]:
        # exp of a clipped log: a trial step far off must not overflow
        if drift:
            return p[0], p[1], math.exp(min(p[2], 10.0)), p[3], p[4:]
        return p[0], 0.0, math.exp(min(p[1], 10.0)), p[2], p[3:]

    def u_of(p: np.ndarray) -> np.ndarray:
        Bc, d, kappa, _, _ = unpack(p)
        return (B - Bc * (1.0 + d * T)) / Bc * tau ** (-kappa)

    def model(p: np.ndarray, u: np.ndarray) -> np.ndarray:
        _, _, _, lnRc, a = unpack(p)
        return lnRc + sum(a[k] * u ** (k + 1) for k in range(len(a)))

    p = p0
    mask = np.ones(len(B), dtype=bool)
    for _ in range(4):  # the window follows the fit until it stops moving
        y = unpack(p)[4][0] * u_of(p)
        new = np.abs(y) <= y_max
        if new.sum() < len(p) + 5:
            return _failed(f"{int(new.sum())} readings inside the window: too few", int(new.sum()))
        if (new == mask).all() and _ > 0:
            break
        mask = new
        Bm, Tm, taum, lm = B[mask], T[mask], tau[mask], lnR[mask]

        def residuals(q: np.ndarray, Bm=Bm, Tm=Tm, taum=taum, lm=lm) -> np.ndarray:
            Bc, d, kappa, _, _ = unpack(q)
            u = (Bm - Bc * (1.0 + d * Tm)) / Bc * taum ** (-kappa)
            return model(q, u) - lm

        try:
            with np.errstate(over="ignore", invalid="ignore"):  # a trial step may run far off
                sol = least_squares(residuals, p, x_scale="jac", method="lm")
        except (ValueError, OverflowError, np.linalg.LinAlgError) as err:
            return _failed(f"the fit did not converge ({err})", int(mask.sum()))
        p = sol.x
    r = sol.fun
    n, k = len(r), len(p)
    if n <= k:
        return _failed("no degrees of freedom left", n)
    s2 = float(r @ r) / (n - k)
    J = sol.jac
    try:
        cov = np.linalg.inv(J.T @ J) * s2 * _correlation_factor(r)
    except np.linalg.LinAlgError:
        return _failed("the fit's parameters are not determined by these readings", n)
    err = np.sqrt(np.clip(np.diag(cov), 0, None))
    Bc, d, kappa, lnRc, a = unpack(p)
    if drift:
        e_Bc, e_d, e_lk, e_lnRc = err[0], err[1], err[2], err[3]
    else:
        e_Bc, e_d, e_lk, e_lnRc = err[0], 0.0, err[1], err[2]
    z_nu = 1.0 / kappa
    if not (math.isfinite(Bc) and Bc > 0 and 0.1 < z_nu < 20 and abs(lnRc) < 100):
        return _failed(f"the fit ran away (B_c {Bc:.3g} T, z·ν {z_nu:.3g})", n)
    Tu = T[mask]
    return ScatteredFit(
        coeffs=tuple(float(v) for v in a),
        B_c=float(Bc),
        B_c_err=float(e_Bc),
        R_c=float(math.exp(lnRc)),
        R_c_err=float(math.exp(lnRc) * e_lnRc),
        z_nu=float(z_nu),
        z_nu_err=float(z_nu * e_lk),  # d(1/kappa) = (1/kappa) d ln kappa
        drift=float(d),
        drift_err=float(e_d),
        slope=float(a[0]),
        T_ref=T_ref,
        used=n,
        noise=math.sqrt(s2),
        T_range=(float(Tu.min()), float(Tu.max())),
    )


def _correlation_factor(r: np.ndarray, max_lag: int = 50) -> float:
    """How much neighbouring residuals' correlation inflates a variance: 1 + 2 sum of the
    autocorrelation over lags until it first drops below 0.05 (at least 1)."""
    r = r - r.mean()
    var = float(r @ r)
    if var <= 0 or len(r) < 10:
        return 1.0
    total = 1.0
    for lag in range(1, min(max_lag, len(r) // 4)):
        rho = float(r[:-lag] @ r[lag:]) / var
        if rho < 0.05:
            break
        total += 2.0 * rho
    return total
