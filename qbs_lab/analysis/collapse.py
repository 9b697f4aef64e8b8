"""Finite-size-style scaling collapse of isotherms R(x, T) near a quantum critical point.

Quantum-critical scaling (Fisher 1990) says R = R_c F(|x - x_c| T^(-1/(z nu))): plotted against the
scaling variable u = (x - x_c) T^(-1/(z nu)), the isotherms taken at different temperatures fall onto one
master curve. :func:`fit_collapse` finds z*nu (and x_c, unless it is fixed) by minimising the
Houdayer-Hartmann collapse quality :func:`quality_S` (J. Houdayer and A. K. Hartmann, PRB 70, 014418
(2004); the criterion the pyfssa package uses), with

- a coarse grid over (x_c, z*nu) and then Nelder-Mead from the best grid point (a simplex alone finds
  local minima of this rugged function);
- error bars from a parametric bootstrap (each point redrawn from its noise, the fit repeated), not from
  the curvature of the simplex, which pyfssa reports and which is optimistic;
- a scaling window |x - x_c0| <= window around the crossing;
- isotherms that do not fall on the collapse (typically the lowest T, spoiled by heating, RF or
  saturation) found from their own share of S, excluded with the reason stated, and the fit repeated.

Units: x is whatever the isotherms are swept in (B [T] or V_g [V]); T in kelvin; R and dR in ohms.

Examples
--------
>>> import numpy as np
>>> from qbs_lab.sim.sample import SampleModel
>>> model = SampleModel()
>>> B = np.linspace(0.008, 0.016, 41)
>>> iso = {T: (B, np.array([model.resistance(15.0, b, T) for b in B]), None) for T in (0.05, 0.1, 0.2, 0.4)}
>>> res = fit_collapse(iso, n_boot=0)
>>> round(res.znu, 1)
1.3
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize

__all__ = ["CollapseResult", "estimate_noise", "fit_collapse", "quality_S"]

#: An isotherm's own share of S above this many times the median share flags it as deviating.
EXCLUDE_FACTOR = 3.0
#: ... and above this absolute value. Clean but steep isotherms (z*nu = 0.8, ~50 points over +-35 % of
#: B_c, 1 % noise) reach S_i ~ 16 from linear interpolation alone; electrons 40 % hotter than the
#: label give S_i ~ 45, 80 % hotter ~ 110. Milder heating goes unflagged.
EXCLUDE_MIN_S = 20.0


@dataclass
class CollapseResult:
    """The outcome of :func:`fit_collapse`.

    Attributes
    ----------
    znu : float
        The exponent product z*nu (dimensionless) at the best collapse.
    znu_err : float
        Its one-sigma error from the bootstrap (NaN when ``n_boot`` = 0).
    x_c : float
        The critical point, in the units of x (e.g. T for B, V for V_g); the given value when it was fixed.
    x_c_err : float
        Its one-sigma bootstrap error (0 when x_c was fixed, NaN when ``n_boot`` = 0).
    quality : float
        The Houdayer-Hartmann quality S at the optimum (about 1 for a collapse within the noise).
    excluded : list of (float, str)
        Isotherms left out, as (T [K], reason).
    window : float
        Half-width of the scaling window, in the units of x: the points with
        |x - window_center| <= window were used.
    window_center : float
        Centre of the window (the fixed x_c, or the first estimate of the crossing), units of x.
    R_c : float
        Critical resistance [Ohm]: the isotherms' mean R at x_c.
    R_c_err : float
        Its one-sigma bootstrap error [Ohm].
    S_per_isotherm : dict of float to float
        Each kept isotherm's own mean contribution to S at the optimum, keyed by T [K].
    temperatures : list of float
        The temperatures [K] of the isotherms used in the final fit.
    n_points : int
        Number of points inside the window in the final fit.
    """

    znu: float
    znu_err: float
    x_c: float
    x_c_err: float
    quality: float
    excluded: list[tuple[float, str]] = field(default_factory=list)
    window: float = math.nan
    window_center: float = math.nan
    R_c: float = math.nan
    R_c_err: float = math.nan
    S_per_isotherm: dict[float, float] = field(default_factory=dict)
    temperatures: list[float] = field(default_factory=list)
    n_points: int = 0


# ---------------------------------------------------------------------------------------------------
# the quality function
# ---------------------------------------------------------------------------------------------------
def _contributions(
    us: Sequence[np.ndarray], ys: Sequence[np.ndarray], dys: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-point terms (y - Y)^2/(dy^2 + dY^2) and the mask of points that have brackets.

    Every array in ``us`` must be sorted ascending. Points are returned concatenated in input order.
    """
    sizes = [len(u) for u in us]
    u_all = np.concatenate(us)
    y_all = np.concatenate(ys)
    dy_all = np.concatenate(dys)
    owner = np.repeat(np.arange(len(us)), sizes)
    n = u_all.size
    K = np.zeros(n)
    Kx = np.zeros(n)
    Kxx = np.zeros(n)
    Ky = np.zeros(n)
    Kxy = np.zeros(n)
    for j, (uj, yj, dyj) in enumerate(zip(us, ys, dys, strict=True)):
        m = uj.size
        if m < 2:
            continue
        idx = np.searchsorted(uj, u_all, side="right")
        ok = (idx >= 1) & (idx <= m - 1) & (owner != j)
        if not ok.any():
            continue
        sel = np.nonzero(ok)[0]
        k = idx[sel] - 1
        u0 = u_all[sel]
        for kk in (k, k + 1):
            w = 1.0 / dyj[kk] ** 2
            xr = uj[kk] - u0  # relative to the point: the line is evaluated at 0
            K[sel] += w
            Kx[sel] += w * xr
            Kxx[sel] += w * xr * xr
            Ky[sel] += w * yj[kk]
            Kxy[sel] += w * xr * yj[kk]
    delta = K * Kxx - Kx * Kx
    has = (K > 0) & (delta > 1e-300 * np.maximum(K * Kxx, 1e-300))
    terms = np.full(n, np.nan)
    if has.any():
        d = delta[has]
        Y = (Kxx[has] * Ky[has] - Kx[has] * Kxy[has]) / d
        dY2 = Kxx[has] / d
        terms[has] = (y_all[has] - Y) ** 2 / (dy_all[has] ** 2 + dY2)
    return terms, has


def quality_S(x_scaled: Sequence[ArrayLike], y: Sequence[ArrayLike], dy: Sequence[ArrayLike]) -> float:
    """Houdayer-Hartmann collapse quality S of curves already put on the scaling axis.

    For each point (u, y, dy) of curve i, every other curve j that brackets u (u_j,k <= u <= u_j,k+1)
    contributes its two bracketing points; a straight line weighted by 1/dy^2 through all of them gives
    the master curve's value Y at u and its variance dY^2. S is the mean of (y - Y)^2/(dy^2 + dY^2) over
    the points that have at least one bracket. S ~ 1 when the curves agree within their noise.

    Parameters
    ----------
    x_scaled : sequence of array_like
        One array per curve: the scaling variable u (any units, the same for all curves).
    y : sequence of array_like
        The values (e.g. R [Ohm] or R/R_c), one array per curve, same lengths as ``x_scaled``.
    dy : sequence of array_like
        One-sigma errors of ``y``, same units; must be > 0.

    Returns
    -------
    float
        S (dimensionless); NaN if no point is bracketed by another curve.
    """
    us, ys, dys = [], [], []
    for u, yy, dd in zip(x_scaled, y, dy, strict=True):
        u = np.asarray(u, dtype=float)
        yy = np.asarray(yy, dtype=float)
        dd = np.broadcast_to(np.asarray(dd, dtype=float), u.shape)
        keep = np.isfinite(u) & np.isfinite(yy) & np.isfinite(dd)
        order = np.argsort(u[keep], kind="stable")
        us.append(u[keep][order])
        ys.append(yy[keep][order])
        dys.append(dd[keep][order])
    terms, has = _contributions(us, ys, dys)
    return float(np.mean(terms[has])) if has.any() else math.nan


# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------
def estimate_noise(x: ArrayLike, y: ArrayLike) -> float:
    """One-sigma noise [units of y] of a smooth curve sampled at x, from local linear-interpolation residuals.

    Each interior point is compared with the straight line through its two neighbours; the robust spread
    (1.4826 MAD) of these residuals, divided by their noise gain sqrt(1 + w^2 + (1-w)^2), estimates the
    noise. Curvature inflates it slightly on coarse grids.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.size < 3:
        return float(max(np.nanstd(y), 1e-12))
    w = (x[1:-1] - x[:-2]) / (x[2:] - x[:-2])
    r = y[1:-1] - ((1 - w) * y[:-2] + w * y[2:])
    gain = np.sqrt(1 + w**2 + (1 - w) ** 2)
    z = r / gain
    s = 1.4826 * np.median(np.abs(z - np.median(z)))
    scale = float(np.median(np.abs(y))) if np.any(y) else 1.0
    return float(max(s, 1e-9 * max(scale, 1e-300)))


def _initial_crossing(curves: list[tuple[float, np.ndarray, np.ndarray]]) -> float:
    """A first estimate of x_c: the median of the pairwise crossings (lower-T curve rising through)."""
    found: list[float] = []
    for a in range(len(curves)):
        for b in range(a + 1, len(curves)):
            (Ta, xa, ya), (Tb, xb, yb) = curves[a], curves[b]
            lo, hi = max(xa[0], xb[0]), min(xa[-1], xb[-1])
            if hi <= lo:
                continue
            grid = np.unique(np.concatenate([xa[(xa >= lo) & (xa <= hi)], xb[(xb >= lo) & (xb <= hi)]]))
            if grid.size < 2:
                continue
            sgn = 1.0 if Ta < Tb else -1.0  # low-T minus high-T
            d = sgn * (np.interp(grid, xa, ya) - np.interp(grid, xb, yb))
            idx = np.nonzero((d[:-1] <= 0) & (d[1:] > 0))[0]
            if idx.size == 0:
                idx = np.nonzero(np.sign(d[:-1]) * np.sign(d[1:]) < 0)[0]
            if idx.size == 0:
                continue
            # the crossing closest to the middle of the shared range
            mids = []
            for i in idx:
                t = d[i] / (d[i] - d[i + 1]) if d[i] != d[i + 1] else 0.5
                mids.append(grid[i] + t * (grid[i + 1] - grid[i]))
            c = 0.5 * (lo + hi)
            found.append(min(mids, key=lambda m: abs(m - c)))
    if found:
        return float(np.median(found))
    lo = max(c[1][0] for c in curves)
    hi = min(c[1][-1] for c in curves)
    if hi <= lo:
        lo, hi = min(c[1][0] for c in curves), max(c[1][-1] for c in curves)
    return 0.5 * (lo + hi)


@dataclass
class _Prepared:
    temps: list[float]
    xs: list[np.ndarray]
    ys: list[np.ndarray]
    dys: list[np.ndarray]


def _objective_factory(prep: _Prepared, ys: list[np.ndarray], x_c_fixed: float | None, scale: float):
    logT = [math.log(T) for T in prep.temps]

    def scaled(znu: float, x_c: float) -> list[np.ndarray]:
        return [(x - x_c) * math.exp(-lt / znu) / scale for x, lt in zip(prep.xs, logT, strict=True)]

    def S(znu: float, x_c: float) -> tuple[np.ndarray, np.ndarray]:
        return _contributions(scaled(znu, x_c), ys, prep.dys)

    return S


def _S_value(terms: np.ndarray, has: np.ndarray, min_frac: float = 0.3) -> float:
    n = has.sum()
    if n < max(4, int(min_frac * has.size)):
        return 1e12
    return float(np.mean(terms[has]))


def _optimize(
    prep: _Prepared,
    ys: list[np.ndarray],
    x_c_fixed: float | None,
    znu_bounds: tuple[float, float],
    x_c_range: tuple[float, float],
    scale: float,
    start: tuple[float, float] | None,
) -> tuple[float, float, float]:
    """Minimise S; returns (znu, x_c, S). Grid + Nelder-Mead, or Nelder-Mead only from ``start``."""
    S = _objective_factory(prep, ys, x_c_fixed, scale)
    lz_lo, lz_hi = math.log(znu_bounds[0]), math.log(znu_bounds[1])
    xc_lo, xc_hi = x_c_range
    xc_span = max(xc_hi - xc_lo, 1e-300)

    def f(p: np.ndarray) -> float:
        lz = p[0]
        xc = x_c_fixed if x_c_fixed is not None else xc_lo + p[1] * xc_span
        pen = 0.0
        if lz < lz_lo or lz > lz_hi:
            pen += 1e3 * (max(lz_lo - lz, lz - lz_hi)) ** 2 + 10.0
        if x_c_fixed is None and (p[1] < 0 or p[1] > 1):
            pen += 1e3 * (max(-p[1], p[1] - 1)) ** 2 + 10.0
        lz_c = min(max(lz, lz_lo), lz_hi)
        xc_c = xc if x_c_fixed is not None else min(max(xc, xc_lo), xc_hi)
        return _S_value(*S(math.exp(lz_c), xc_c)) + pen

    if start is None:
        lzs = np.linspace(lz_lo, lz_hi, 24)
        pxs = [0.0] if x_c_fixed is not None else np.linspace(0.0, 1.0, 15)
        best = (math.inf, lzs[0], 0.5)
        for lz in lzs:
            for px in pxs:
                v = f(np.array([lz, px]))
                if v < best[0]:
                    best = (v, lz, px)
        p0 = np.array([best[1], best[2]])
        step = np.array([(lz_hi - lz_lo) / 23, 1 / 14])
    else:
        p0 = np.array([math.log(start[0]), 0.0 if x_c_fixed is not None else (start[1] - xc_lo) / xc_span])
        step = np.array([0.08, 0.04])
    if x_c_fixed is not None:
        g = lambda q: f(np.array([q[0], 0.0]))  # noqa: E731
        sim = np.array([[p0[0]], [p0[0] + step[0]]])
        r = minimize(
            g,
            p0[:1],
            method="Nelder-Mead",
            options={"initial_simplex": sim, "xatol": 1e-4, "fatol": 1e-6, "maxiter": 400},
        )
        lz = float(r.x[0])
        xc = float(x_c_fixed)
    else:
        sim = np.array([p0, p0 + np.array([step[0], 0.0]), p0 + np.array([0.0, step[1]])])
        r = minimize(
            f,
            p0,
            method="Nelder-Mead",
            options={"initial_simplex": sim, "xatol": 1e-4, "fatol": 1e-6, "maxiter": 600},
        )
        lz = float(r.x[0])
        xc = float(min(max(xc_lo + r.x[1] * xc_span, xc_lo), xc_hi))
    lz = min(max(lz, lz_lo), lz_hi)
    return math.exp(lz), xc, float(r.fun)


def _r_at(prep: _Prepared, ys: list[np.ndarray], x_c: float) -> float:
    vals = [float(np.interp(x_c, x, y)) for x, y in zip(prep.xs, ys, strict=True) if x[0] <= x_c <= x[-1]]
    return float(np.mean(vals)) if vals else math.nan


# ---------------------------------------------------------------------------------------------------
# the fit
# ---------------------------------------------------------------------------------------------------
def fit_collapse(
    isotherms: Mapping[float, tuple[ArrayLike, ArrayLike, ArrayLike | None]],
    x_c: float | None = None,
    znu_bounds: tuple[float, float] = (0.3, 3.0),
    window: float | None = None,
    n_boot: int = 100,
    seed: int = 0,
    exclude: bool = True,
) -> CollapseResult:
    """Fit the scaling collapse R(x, T) = F((x - x_c) T^(-1/(z nu))) by minimising the quality S.

    Parameters
    ----------
    isotherms : mapping of float to (array_like, array_like, array_like or None)
        ``{T: (x, R, dR)}``: temperature [K] to the isotherm's sweep variable x (e.g. B [T] or V_g [V]),
        resistance R [Ohm] and its one-sigma error dR [Ohm] (None: estimated from the curve's scatter,
        see :func:`estimate_noise`). Grids may differ and be non-uniform; NaNs are ignored.
    x_c : float, optional
        Fix the critical point [units of x]; by default it is fitted.
    znu_bounds : (float, float)
        Range searched for z*nu (dimensionless).
    window : float, optional
        Half-width [units of x] of the scaling window around the crossing (the fixed ``x_c``, or a first
        estimate from the pairwise crossings). Default: the widest symmetric window inside the range
        that all isotherms share.
    n_boot : int
        Bootstrap replicas for the errors (0: no errors, NaN).
    seed : int
        Seed of the bootstrap's random numbers.
    exclude : bool
        Exclude deviating isotherms, one at a time (worst first) while more than 3 remain: each isotherm
        is left out in turn, the others are fitted, and its own mean share of S against their collapse is
        compared with theirs; it is excluded when it exceeds both ``EXCLUDE_FACTOR`` times their median
        and ``EXCLUDE_MIN_S``.

    Returns
    -------
    CollapseResult
    """
    # -- clean and sort --------------------------------------------------------------------------
    curves: list[tuple[float, np.ndarray, np.ndarray, np.ndarray]] = []
    for T, (x, R, dR) in sorted(isotherms.items()):
        x = np.asarray(x, dtype=float).ravel()
        R = np.asarray(R, dtype=float).ravel()
        d = (
            np.full_like(x, np.nan)
            if dR is None
            else np.broadcast_to(np.asarray(dR, dtype=float), x.shape).astype(float)
        )
        keep = np.isfinite(x) & np.isfinite(R)
        if dR is not None:
            keep &= np.isfinite(d) & (d > 0)
        order = np.argsort(x[keep], kind="stable")
        x, R, d = x[keep][order], R[keep][order], d[keep][order]
        if x.size < 2:
            continue
        if dR is None:
            d = np.full_like(x, estimate_noise(x, R))
        if not float(T) > 0:
            raise ValueError(f"temperature must be > 0 K, got {T}")
        curves.append((float(T), x, R, d))
    if len(curves) < 2:
        raise ValueError("a collapse needs at least two isotherms with two points each")

    # -- window ------------------------------------------------------------------------------------
    center = float(x_c) if x_c is not None else _initial_crossing([(T, x, R) for T, x, R, _ in curves])
    if window is None:
        lo = max(c[1][0] for c in curves)
        hi = min(c[1][-1] for c in curves)
        half = min(center - lo, hi - center)
        if not half > 0:
            lo_all, hi_all = min(c[1][0] for c in curves), max(c[1][-1] for c in curves)
            half = max(abs(center - lo_all), abs(hi_all - center))
        window = float(half)
    window = float(window)
    if not window > 0:
        raise ValueError(f"window must be > 0, got {window}")

    windowed: list[tuple[float, np.ndarray, np.ndarray, np.ndarray]] = []
    for T, x, R, d in curves:
        m = np.abs(x - center) <= window * (1 + 1e-12)
        if m.sum() >= 2:
            windowed.append((T, x[m], R[m], d[m]))
    x_c_range = (center - 0.5 * window, center + 0.5 * window)
    scale = window  # scaling x by the window keeps u of order 1

    def prepare(cs: list[tuple[float, np.ndarray, np.ndarray, np.ndarray]]) -> _Prepared:
        return _Prepared([c[0] for c in cs], [c[1] for c in cs], [c[2] for c in cs], [c[3] for c in cs])

    def per_isotherm(
        prep: _Prepared, znu: float, xc: float
    ) -> tuple[dict[float, float], np.ndarray, np.ndarray]:
        terms, has = _objective_factory(prep, prep.ys, x_c, scale)(znu, xc)
        sizes = np.cumsum([0] + [len(x) for x in prep.xs])
        out = {}
        for k, T in enumerate(prep.temps):
            sl = slice(sizes[k], sizes[k + 1])
            out[T] = float(np.mean(terms[sl][has[sl]])) if has[sl].any() else math.nan
        return out, terms, has

    excluded: list[tuple[float, str]] = []
    kept = list(windowed)
    if len(kept) < 2:
        raise ValueError("fewer than two isotherms have two points in the window")
    while exclude and len(kept) > 3:
        # leave one out: refit without each isotherm and measure how far it lies from the others' collapse,
        # so that a bad isotherm cannot pull the fit towards itself and hide
        worst: tuple[float, float, float] | None = None  # (ratio, T, S_T), with the median of the rest
        for cand in kept:
            rest = [c for c in kept if c[0] != cand[0]]
            z_r, xc_r, _ = _optimize(
                prepare(rest), [c[2] for c in rest], x_c, znu_bounds, x_c_range, scale, None
            )
            s_all, _t, _h = per_isotherm(prepare(kept), z_r, xc_r)
            s_rest, _t, _h = per_isotherm(prepare(rest), z_r, xc_r)
            finite = [v for v in s_rest.values() if math.isfinite(v)]
            s_c = s_all[cand[0]]
            if not finite or not math.isfinite(s_c):
                continue
            med = max(float(np.median(finite)), 1e-12)
            if s_c > EXCLUDE_FACTOR * med and s_c > EXCLUDE_MIN_S and (worst is None or s_c / med > worst[0]):
                worst = (s_c / med, cand[0], s_c, med)
        if worst is None:
            break
        _ratio, T_bad, s_bad, med = worst
        lowest = T_bad == min(c[0] for c in kept)
        cause = "heating, RF or saturation?" if lowest else "outside the scaling regime or a bad sweep?"
        excluded.append(
            (
                T_bad,
                f"T={T_bad:g} K: deviates from the collapse of the others "
                f"(S_i = {s_bad:.3g} vs median {med:.3g}): {cause}",
            )
        )
        kept = [c for c in kept if c[0] != T_bad]

    prep = prepare(kept)
    znu, xc, _S = _optimize(prep, prep.ys, x_c, znu_bounds, x_c_range, scale, None)
    S_i, terms, has = per_isotherm(prep, znu, xc)

    R_c = _r_at(prep, prep.ys, xc)

    # -- bootstrap -----------------------------------------------------------------------------------
    znu_err = x_c_err = R_c_err = math.nan
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        zs, xcs, rcs = [], [], []
        for _ in range(n_boot):
            ys_b = [y + dy * rng.standard_normal(y.shape) for y, dy in zip(prep.ys, prep.dys, strict=True)]
            zb, xb, _S = _optimize(prep, ys_b, x_c, znu_bounds, x_c_range, scale, (znu, xc))
            zs.append(zb)
            xcs.append(xb)
            rcs.append(_r_at(prep, ys_b, xb))
        znu_err = float(np.std(zs, ddof=1)) if n_boot > 1 else math.nan
        x_c_err = 0.0 if x_c is not None else (float(np.std(xcs, ddof=1)) if n_boot > 1 else math.nan)
        R_c_err = float(np.nanstd(rcs, ddof=1)) if n_boot > 1 else math.nan

    return CollapseResult(
        znu=znu,
        znu_err=znu_err,
        x_c=xc,
        x_c_err=x_c_err,
        quality=float(np.mean(terms[has])) if has.any() else math.nan,
        excluded=excluded,
        window=window,
        window_center=center,
        R_c=R_c,
        R_c_err=R_c_err,
        S_per_isotherm=S_i,
        temperatures=list(prep.temps),
        n_points=int(sum(len(x) for x in prep.xs)),
    )
