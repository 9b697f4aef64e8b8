"""Crossing point of isotherms R(x) taken at several temperatures, with bootstrap error bars.

Near a quantum critical point the isotherms R_T(x) (x = B or V_g) all cross at one point (x_c, R_c):
on one side R falls on cooling, on the other it rises or saturates. :func:`find_crossing` finds

- every pairwise crossing of two isotherms (T1, T2): where R_T1(x) - R_T2(x) changes sign, located by a
  local cubic fit to each isotherm around the sign change (each isotherm on its own, possibly
  non-uniform grid), kept only where the two slopes differ significantly compared with the noise;
- the noise of each isotherm, from its residuals to a smooth local-cubic (LOESS-like) fit;
- error bars by a residual bootstrap: each isotherm is rebuilt as its smooth fit plus standardized
  residuals drawn with replacement from its own residuals, and the local fits, the crossings, the best
  estimate and the drift are all recomputed for every resample;
- the best estimate (x_c, R_c): the inverse-variance weighted mean of the pairwise crossings;
- the drift of the crossings with temperature: the weighted slope of crossing x against the pair's
  mean temperature, and a verdict: ``"single crossing"``, ``"drifting crossing"`` (drift significant
  against its error and crossings spread beyond their errors) or ``"no crossing in range"``.

The analysis does not depend on the simulator: the pair quantum h/4e^2 is defined here.

Examples
--------
>>> import numpy as np
>>> x = np.linspace(-1.0, 1.0, 21)
>>> data = {T: (x, 1000.0 * (1.0 + np.tanh(x / T))) for T in (0.1, 0.2, 0.4)}
>>> result = find_crossing(data, n_boot=20)
>>> result.verdict, abs(result.x_c) < 1e-9, round(result.R_c, 3)
('single crossing', True, 1000.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr
from scipy.stats import chi2 as chi2_dist

__all__ = [
    "H_OVER_4E2",
    "VERDICT_DRIFTING",
    "VERDICT_NONE",
    "VERDICT_SINGLE",
    "Crossing",
    "CrossingResult",
    "find_crossing",
]

#: The superconducting pair resistance quantum h/(4e^2) [Ohm] (exact SI values of h and e).
H_OVER_4E2 = 6.62607015e-34 / (4 * 1.602176634e-19**2)

VERDICT_SINGLE = "single crossing"
VERDICT_DRIFTING = "drifting crossing"
VERDICT_NONE = "no crossing in range"

#: Keys of :meth:`CrossingResult.to_dict`, in order.
JSON_KEYS = ("x_c", "x_c_err", "R_c", "R_c_err", "znu", "znu_err", "quality", "verdict", "crossings")

_DEGREE = 3  # local polynomial degree (cubic: no bias at the inflection of a steep isotherm)
_MAX_DEGREE = 3
_ROOT_GRID = 49  # points of the root search in a window
_MIN_POINTS = 4  # an isotherm with fewer valid points is not used
_ROOT_RANGE = 1.5  # a crossing must lie within this many window half-widths of the sign change


@dataclass(frozen=True)
class Crossing:
    """One crossing of the isotherms at temperatures T1 < T2 [K].

    Attributes
    ----------
    T1, T2 : float
        The two temperatures [K].
    x : float
        Where the isotherms cross [unit of x: T for B, V for V_g].
    R : float
        The resistance there [Ohm].
    x_err : float
        Standard error of ``x`` from the noise (bootstrap) [unit of x].
    """

    T1: float
    T2: float
    x: float
    R: float
    x_err: float

    def to_dict(self) -> dict[str, float | None]:
        """``{T1, T2, x, R, x_err}`` with NaN as None (JSON-safe)."""
        return {k: _json_float(getattr(self, k)) for k in ("T1", "T2", "x", "R", "x_err")}


@dataclass
class CrossingResult:
    """The crossing analysis of a set of isotherms.

    Attributes
    ----------
    x_c, x_c_err : float
        Best estimate of the critical point and its standard error [unit of x]; NaN without crossings.
    R_c, R_c_err : float
        Critical resistance and its standard error [Ohm]; NaN without crossings.
    R_c_over_RQ : float
        R_c in units of the pair quantum h/4e^2 (6453.2 Ohm).
    drift, drift_err : float
        Slope of the pairwise crossing x against the pair's mean temperature, and its standard error
        [unit of x per K]; NaN with fewer than two crossings at different mean temperatures.
    verdict : str
        ``"single crossing"``, ``"drifting crossing"`` or ``"no crossing in range"``.
    crossings : list of Crossing
        The significant pairwise crossings, sorted by (T1, T2).
    x_name, over_name : str
        Names of the swept variable and of the isotherm parameter (e.g. "B" and "T").
    spread_chi2 : float
        Reduced chi^2 of the pairwise crossings about x_c (1 when they agree within their errors).
    """

    x_c: float
    x_c_err: float
    R_c: float
    R_c_err: float
    R_c_over_RQ: float
    drift: float
    drift_err: float
    verdict: str
    crossings: list[Crossing] = field(default_factory=list)
    x_name: str = "B"
    over_name: str = "T"
    spread_chi2: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the crossing analysis, with exactly the keys of :data:`JSON_KEYS`.

        ``znu``, ``znu_err`` and ``quality`` belong to the scaling collapse and are None here; NaN
        numbers become None.
        """
        return {
            "x_c": _json_float(self.x_c),
            "x_c_err": _json_float(self.x_c_err),
            "R_c": _json_float(self.R_c),
            "R_c_err": _json_float(self.R_c_err),
            "znu": None,
            "znu_err": None,
            "quality": None,
            "verdict": self.verdict,
            "crossings": [c.to_dict() for c in self.crossings],
        }


def _json_float(value: float) -> float | None:
    value = float(value)
    return None if not math.isfinite(value) else value


# -- input --------------------------------------------------------------------------------------


@dataclass
class _Isotherm:
    T: float
    x: np.ndarray  # sorted, finite
    R: np.ndarray
    smooth: np.ndarray  # LOESS fit at x
    resid: np.ndarray  # standardized residuals (unit-variance under homoscedastic noise)
    sigma: float  # noise estimate [Ohm]


def _as_isotherms(
    data: xr.Dataset | xr.DataArray | Mapping[float, tuple[Sequence[float], Sequence[float]]],
    x: str,
    over: str,
) -> list[tuple[float, np.ndarray, np.ndarray]]:
    out: list[tuple[float, np.ndarray, np.ndarray]] = []
    if isinstance(data, xr.Dataset | xr.DataArray):
        da = data["R"] if isinstance(data, xr.Dataset) else data
        if set(da.dims) != {x, over}:
            raise ValueError(f"R must have exactly the dimensions ({x!r}, {over!r}); it has {da.dims}")
        da = da.transpose(over, x)
        xs = np.asarray(da[x].values, dtype=float)
        temps = np.asarray(da[over].values, dtype=float)
        for T, row in zip(temps, np.asarray(da.values, dtype=float), strict=True):
            out.append((float(T), xs, row))
    elif isinstance(data, Mapping):
        for T, (xs, Rs) in data.items():
            xa, Ra = np.asarray(xs, dtype=float).ravel(), np.asarray(Rs, dtype=float).ravel()
            if xa.shape != Ra.shape:
                raise ValueError(f"isotherm at {over}={T}: x and R differ in length")
            out.append((float(T), xa, Ra))
    else:
        raise TypeError("data must be an xarray Dataset with a variable 'R' or a mapping {T: (x, R)}")
    clean = []
    for T, xa, Ra in out:
        ok = np.isfinite(xa) & np.isfinite(Ra)
        xa, Ra = xa[ok], Ra[ok]
        order = np.argsort(xa, kind="stable")
        clean.append((T, xa[order], Ra[order]))
    return sorted(clean, key=lambda t: t[0])


# -- local polynomial fits ----------------------------------------------------------------------


def _nearest(xs: np.ndarray, x0: float, k: int) -> np.ndarray:
    """Indices of the k points of xs nearest x0 (sorted)."""
    k = min(k, xs.size)
    return np.sort(np.argsort(np.abs(xs - x0), kind="stable")[:k])


def _fit_operator(xw: np.ndarray, x0: float, h: float, degree: int = _DEGREE) -> np.ndarray:
    """Matrix A with coef = A @ y for a polynomial in t = (x - x0)/h (lowest power first).

    The degree is lowered where the window has too few points; A always has _MAX_DEGREE + 1 rows.
    """
    deg = max(1, min(degree, xw.size - 2))
    V = np.vander((xw - x0) / h, deg + 1, increasing=True)
    A = np.linalg.pinv(V)
    return np.vstack([A, np.zeros((_MAX_DEGREE - deg, A.shape[1]))])


def _smooth(xs: np.ndarray, Rs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float]:
    """LOESS-like local polynomial smooth; returns (smooth, standardized residuals, sigma [Ohm])."""
    n = xs.size
    S = np.zeros((n, n))
    for i in range(n):
        idx = _nearest(xs, xs[i], k)
        h = max(np.ptp(xs[idx]) / 2, 1e-300)
        S[i, idx] = _fit_operator(xs[idx], xs[i], h)[0]
    smooth = S @ Rs
    M = np.eye(n) - S
    scale = np.sqrt(np.maximum(np.einsum("ij,ij->i", M, M), 1e-12))
    resid = (Rs - smooth) / scale
    # robust noise level (the smooth's bias at sharp features gives a few large residuals)
    sigma = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
    return smooth, resid, sigma


@dataclass
class _Candidate:
    i: int
    j: int
    x0: float
    h: float
    idx_i: np.ndarray
    idx_j: np.ndarray
    A_i: np.ndarray
    A_j: np.ndarray
    lo: float
    hi: float
    t: float = math.nan  # root in window units
    R: float = math.nan
    z: float = 0.0  # significance of the slope difference


def _poly(c: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """Polynomial with coefficients c[..., k] (lowest power first) at t (Horner)."""
    out = np.zeros(np.broadcast_shapes(c.shape[:-1], np.shape(t)))
    for k in range(c.shape[-1] - 1, -1, -1):
        out = out * t + c[..., k]
    return out


def _dpoly(c: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """Derivative of :func:`_poly` in t."""
    k = np.arange(1, c.shape[-1])
    return _poly(c[..., 1:] * k, t)


def _root(d: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Root of the polynomial d[..., :] in t nearest t = 0 within [lo, hi] (NaN if none), vectorized."""
    grid = np.linspace(lo, hi, _ROOT_GRID)
    vals = _poly(d[..., None, :], grid)  # (..., G)
    change = np.signbit(vals[..., :-1]) != np.signbit(vals[..., 1:])
    mid = 0.5 * (grid[:-1] + grid[1:])
    dist = np.where(change, np.abs(mid), np.inf)
    k = np.argmin(dist, axis=-1)
    found = np.isfinite(np.take_along_axis(dist, k[..., None], axis=-1)[..., 0])
    a, b = grid[k], grid[k + 1]
    fa = np.take_along_axis(vals, k[..., None], axis=-1)[..., 0]
    fb = np.take_along_axis(vals, k[..., None] + 1, axis=-1)[..., 0]
    with np.errstate(all="ignore"):
        t = np.where(fb != fa, a - fa * (b - a) / (fb - fa), a)
        for _ in range(3):  # Newton, kept inside the bracketing cell
            step = _poly(d, t) / _dpoly(d, t)
            t = np.clip(np.where(np.isfinite(step), t - step, t), a, b)
    return np.where(found, t, np.nan)


def _candidates(iso: list[_Isotherm], i: int, j: int, window: int, degree: int) -> list[_Candidate]:
    a, b = iso[i], iso[j]
    lo, hi = max(a.x[0], b.x[0]), min(a.x[-1], b.x[-1])
    if hi <= lo:
        return []
    grid = np.union1d(a.x, b.x)
    grid = grid[(grid >= lo) & (grid <= hi)]
    if grid.size < 2:
        return []
    d = np.interp(grid, a.x, a.smooth) - np.interp(grid, b.x, b.smooth)
    s = np.sign(d)
    out = []
    for k in np.flatnonzero((s[:-1] * s[1:] < 0) | ((s[:-1] == 0) & (s[1:] != 0))):
        x0 = grid[k] if s[k] == 0 else grid[k] - d[k] * (grid[k + 1] - grid[k]) / (d[k + 1] - d[k])
        idx_i, idx_j = _nearest(a.x, x0, window), _nearest(b.x, x0, window)
        h = max(np.max(np.abs(a.x[idx_i] - x0)), np.max(np.abs(b.x[idx_j] - x0)), 1e-300)
        t_lo = max((lo - x0) / h, -_ROOT_RANGE)
        t_hi = min((hi - x0) / h, _ROOT_RANGE)
        A_i = _fit_operator(a.x[idx_i], x0, h, degree)
        A_j = _fit_operator(b.x[idx_j], x0, h, degree)
        out.append(_Candidate(i, j, x0, h, idx_i, idx_j, A_i, A_j, t_lo, t_hi))
    return out


def _evaluate(c: _Candidate, Ri: np.ndarray, Rj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crossing (t, R) of a candidate for R arrays (..., n_i), (..., n_j) of the two isotherms."""
    ci = Ri[..., c.idx_i] @ c.A_i.T
    cj = Rj[..., c.idx_j] @ c.A_j.T
    t = _root(ci - cj, c.lo, c.hi)
    return t, 0.5 * (_poly(ci, t) + _poly(cj, t))


def _significance(c: _Candidate, iso: list[_Isotherm]) -> float:
    """|d'(t)| over its standard error from the noise: how clearly the two isotherms cross."""
    if not math.isfinite(c.t):
        return 0.0
    g = np.array([k * c.t ** (k - 1) if k else 0.0 for k in range(_MAX_DEGREE + 1)])
    var = (iso[c.i].sigma ** 2) * float(np.sum((g @ c.A_i) ** 2))
    var += (iso[c.j].sigma ** 2) * float(np.sum((g @ c.A_j) ** 2))
    ci = iso[c.i].R[c.idx_i] @ c.A_i.T
    cj = iso[c.j].R[c.idx_j] @ c.A_j.T
    slope = float(g @ (ci - cj))
    return abs(slope) / math.sqrt(var) if var > 0 else math.inf


# -- estimators ---------------------------------------------------------------------------------


def _wmean(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted mean along the last axis, ignoring NaN entries."""
    ok = np.isfinite(v)
    ww = np.where(ok, w, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(np.where(ok, v, 0.0) * ww, axis=-1) / np.sum(ww, axis=-1)


def _wslope(tm: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least-squares slope of v against tm along the last axis, ignoring NaN entries."""
    ok = np.isfinite(v)
    ww = np.where(ok, w, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        sw = np.sum(ww, axis=-1)
        mt = np.sum(ww * tm, axis=-1) / sw
        mv = np.sum(ww * np.where(ok, v, 0.0), axis=-1) / sw
        dt = tm - mt[..., None]
        num = np.sum(ww * dt * (np.where(ok, v, 0.0) - mv[..., None]), axis=-1)
        den = np.sum(ww * dt * dt, axis=-1)
        return np.where(den > 0, num / den, np.nan)


def _std(v: np.ndarray) -> np.ndarray:
    """Sample standard deviation along axis 0, ignoring NaN (a resample in which a crossing vanished)."""
    with np.errstate(all="ignore"):
        return np.nanstd(v, axis=0, ddof=1)


def find_crossing(
    data: xr.Dataset | xr.DataArray | Mapping[float, tuple[Sequence[float], Sequence[float]]],
    x: str = "B",
    over: str = "T",
    n_boot: int = 200,
    seed: int = 0,
    *,
    window: int = 9,
    degree: int = _DEGREE,
    min_significance: float = 4.0,
    drift_sigmas: float = 3.0,
    spread_p: float = 0.01,
) -> CrossingResult:
    """Pairwise crossings of isotherms, the best crossing point (x_c, R_c), its drift, and a verdict.

    Parameters
    ----------
    data : xarray.Dataset, xarray.DataArray or mapping
        A Dataset with a variable ``"R"`` [Ohm] over exactly the two dimensions ``x`` and ``over``
        (or that DataArray), or a mapping ``{T: (x_values, R_values)}`` in which each isotherm has its
        own, possibly non-uniform grid. NaN points are ignored (a run in progress); isotherms with fewer
        than 4 valid points are not used.
    x : str
        The swept variable: ``"B"`` [T] or ``"V_g"`` [V].
    over : str
        The isotherm parameter, normally ``"T"`` [K].
    n_boot : int
        Bootstrap resamples for the error bars (0: no error bars, NaN).
    seed : int
        Seed of the bootstrap's random numbers.
    window : int
        Points of each isotherm used by the local polynomial fits (smooth and crossing).
    degree : int
        Degree of the local polynomials (1 to 3); the cubic default has no bias at the inflection
        point of a steep, sparsely sampled isotherm, where a quadratic has.
    min_significance : float
        A sign change counts as a crossing only where the slopes of the two isotherms differ by at
        least this many standard errors (rejects noise flips where the isotherms run together).
    drift_sigmas : float
        The drift is significant when |drift| exceeds this many drift_err.
    spread_p : float
        The crossings spread beyond their errors when the chi^2 of their scatter about x_c has a
        p-value below this.

    Returns
    -------
    CrossingResult
        x_c [unit of x], R_c [Ohm], their standard errors, R_c / (h/4e^2), the drift [unit of x per K]
        and the pairwise crossings.

    Notes
    -----
    Each isotherm's noise is estimated from its residuals to a local polynomial smooth (residuals
    standardized by the smoother's own leverage). The residual bootstrap rebuilds every isotherm as
    smooth + residuals drawn with replacement from that isotherm's residuals (homoscedastic within an
    isotherm: the noise level is estimated from all of its points, not from the few near a crossing),
    refits the local polynomials at the crossings found in the data, and recomputes every crossing, x_c,
    R_c and the drift; the errors are the standard deviations of the resamples. x_c and R_c are
    inverse-variance weighted means of the pairwise crossings (weights from each crossing's own
    bootstrap error); the correlations between pairs that share an isotherm are carried by the
    bootstrap of the whole estimate. Which sign changes count as crossings, and their fit windows, are
    decided once, on the data.
    """
    raw = [t for t in _as_isotherms(data, x, over) if t[1].size >= _MIN_POINTS]
    degree = min(max(int(degree), 1), _MAX_DEGREE)
    window = max(int(window), degree + 3)
    iso = []
    for T, xs, Rs in raw:
        sm, res, sig = _smooth(xs, Rs, window)
        iso.append(_Isotherm(T, xs, Rs, sm, res, sig))

    # candidates: sign changes of each pair's smooth difference; keep the most significant per pair
    chosen: list[_Candidate] = []
    for i in range(len(iso)):
        for j in range(i + 1, len(iso)):
            if iso[i].T == iso[j].T:
                continue
            best: _Candidate | None = None
            for c in _candidates(iso, i, j, window, degree):
                t, R = _evaluate(c, iso[i].R, iso[j].R)
                c.t, c.R = float(t), float(R)
                c.z = _significance(c, iso)
                if c.z >= min_significance and (best is None or c.z > best.z):
                    best = c
            if best is not None:
                chosen.append(best)

    def nothing() -> CrossingResult:
        nan = math.nan
        return CrossingResult(nan, nan, nan, nan, nan, nan, nan, VERDICT_NONE, [], x, over)

    if not chosen:
        return nothing()

    xs0 = np.array([c.x0 + c.t * c.h for c in chosen])
    Rs0 = np.array([c.R for c in chosen])
    tm = np.array([0.5 * (iso[c.i].T + iso[c.j].T) for c in chosen])

    # bootstrap: every isotherm = smooth + standardized residual * random sign
    rng = np.random.default_rng(seed)
    n_boot = max(int(n_boot), 0)
    boot_R = []
    for it in iso:
        pool = it.resid - np.mean(it.resid)
        boot_R.append(it.smooth + rng.choice(pool, size=(n_boot, it.x.size), replace=True))
    bx = np.empty((n_boot, len(chosen)))
    bR = np.empty((n_boot, len(chosen)))
    for k, c in enumerate(chosen):
        t, R = _evaluate(c, boot_R[c.i], boot_R[c.j])
        bx[:, k] = c.x0 + t * c.h
        bR[:, k] = R
    if n_boot >= 2:
        x_err = _std(bx)
        R_err = _std(bR)
    else:
        x_err = np.full(len(chosen), np.nan)
        R_err = np.full(len(chosen), np.nan)

    # weights: inverse variance; fall back to equal weights without usable errors
    def weights(err: np.ndarray) -> np.ndarray:
        good = np.isfinite(err) & (err > 0)
        if not good.any():
            return np.ones_like(err)
        floor = np.min(err[good])
        e = np.where(good, err, floor)
        return 1.0 / e**2

    wx, wR = weights(x_err), weights(R_err)
    x_c = float(_wmean(xs0, wx))
    R_c = float(_wmean(Rs0, wR))
    drift = float(_wslope(tm, xs0, wx)) if len(chosen) >= 2 else math.nan
    if n_boot >= 2:
        x_c_err = float(_std(_wmean(bx, wx)))
        R_c_err = float(_std(_wmean(bR, wR)))
        drift_err = float(_std(_wslope(tm, bx, wx))) if len(chosen) >= 2 else math.nan
    else:
        x_c_err = R_c_err = drift_err = math.nan

    # scatter of the crossings about x_c, against their errors
    ok = np.isfinite(x_err) & (x_err > 0)
    dof = int(ok.sum()) - 1
    chi2 = float(np.sum(((xs0[ok] - x_c) / x_err[ok]) ** 2)) if dof >= 1 else math.nan
    spread_chi2 = chi2 / dof if dof >= 1 else math.nan
    spread = dof >= 1 and _chi2_sf(chi2, dof) < spread_p
    drifts = (
        math.isfinite(drift) and math.isfinite(drift_err) and abs(drift) > drift_sigmas * drift_err and spread
    )
    verdict = VERDICT_DRIFTING if drifts else VERDICT_SINGLE

    crossings = [
        Crossing(iso[c.i].T, iso[c.j].T, float(xs0[k]), float(Rs0[k]), float(x_err[k]))
        for k, c in enumerate(chosen)
    ]
    crossings.sort(key=lambda c: (c.T1, c.T2))
    return CrossingResult(
        x_c=x_c,
        x_c_err=x_c_err,
        R_c=R_c,
        R_c_err=R_c_err,
        R_c_over_RQ=R_c / H_OVER_4E2,
        drift=drift,
        drift_err=drift_err,
        verdict=verdict,
        crossings=crossings,
        x_name=x,
        over_name=over,
        spread_chi2=spread_chi2,
    )


def _chi2_sf(chi2: float, dof: int) -> float:
    """Survival function of the chi^2 distribution."""
    return float(chi2_dist.sf(chi2, dof))
