"""Finite-size-style scaling collapse of isotherms R(x, T) near a quantum critical point.

Quantum-critical scaling (Fisher 1990) says R = R_c F(|x - x_c| T^(-1/(z nu))): plotted against the
scaling variable u = (x - x_c) T^(-1/(z nu)), the isotherms taken at different temperatures fall onto one
master curve. :func:`fit_collapse` finds z*nu (and x_c, unless it is fixed) by minimising the
Houdayer-Hartmann collapse quality S (J. Houdayer and A. K. Hartmann, PRB 70, 014418 (2004); the
criterion the pyfssa package uses, :func:`quality_S`), with

- the master curve's interpolation error counted: S compares each point with straight lines through the
  bracketing points of the other isotherms; where an isotherm is steep and coarsely sampled (small z*nu,
  low T) the line misses the curve by far more than the noise. Each bracket's variance gets the
  interpolation error t (1 - t) h^2 |R''| / 2 estimated from the bracketing isotherm's own second
  differences, so that undersampled stretches weigh little instead of biasing z*nu (and instead of
  getting clean isotherms excluded);
- a coarse grid over (x_c, z*nu) and then pattern searches from the best grid points, evaluated in
  batches (many parameter sets and data replicas per numpy pass), fast enough for online use;
- an optional linear drift of the critical point, x_c(T) = x_c + drift * T (a drifting crossing):
  fitted when it improves the collapse significantly (``drift=None``), always, or never; x_c is then
  the T -> 0 critical point;
- a scaling window |x - x_c0| <= window around the first estimate of the crossing;
- isotherms that do not fall on the collapse (typically the lowest T, spoiled by heating, RF or
  saturation) found from their own share of S, excluded with the reason stated, and the fit repeated.

Error model (``CollapseResult.error_budget``). pyfssa's errors from the curvature of the final simplex
are optimistic, and so is a bootstrap of the noise alone: on simulated runs the electrons of the lowest
isotherms run ~1 % hotter than the bath (excitation heating), which moves z*nu by several noise sigmas.
The one-sigma errors of z*nu, x_c and the drift are the sum in quadrature of

- noise: a parametric bootstrap that refits the whole collapse (all parameters at once, so the
  correlation of x_c and z*nu is kept) on replicas drawn from the fitted model itself: a smoothing
  spline master curve F(u) through the collapsed points, evaluated at every point's (x, T), plus
  Gaussian noise dR * sqrt(max(S, 1)) (the noise scaled up when the collapse is worse than the noise).
  The replicas' median offset from the model's own parameters is the fit's bias (from the sampling and
  the interpolation); it is subtracted from the result, and its uncertainty counted here. With few
  replicas the spread is widened by Student's t (n_boot - 1 degrees of freedom): x 1.22 for 8;
- isotherms: the largest shift of the result when one isotherm is left out, times sqrt(max(S, 1));
- window: the shift when the scaling window is narrowed to ``WINDOW_SHRINK`` of its width, times
  sqrt(max(S, 1)).

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
from scipy.interpolate import make_smoothing_spline
from scipy.stats import t as student_t

__all__ = ["CollapseResult", "estimate_noise", "fit_collapse", "quality_S"]

#: An isotherm's own share of S above this many times the median share flags it as deviating.
EXCLUDE_FACTOR = 3.0
#: ... and above this absolute value. With the interpolation error counted, clean isotherms have S_i of
#: 1 to 2 (up to ~5 where a step is sampled by one point); with the isotherms of the tests (six, 50 points,
#: 1 % noise) a lowest isotherm whose electrons are 40 % hotter than its label is excluded, 20 % is not.
EXCLUDE_MIN_S = 20.0
#: A drift of x_c with T is fitted (``drift=None``) when it lowers the collapse's chi^2,
#: n (S_0 - S_1) / max(S_1, 1) with n the points compared, by more than this.
DRIFT_MIN_GAIN = 30.0
#: The window-variation check refits with the window narrowed to this fraction.
WINDOW_SHRINK = 0.7


@dataclass
class CollapseResult:
    """The outcome of :func:`fit_collapse`.

    Attributes
    ----------
    znu : float
        The exponent product z*nu (dimensionless) at the best collapse, less the fit's own bias when
        ``n_boot`` >= 2 (see ``error_budget``).
    znu_err : float
        Its one-sigma error: noise (model bootstrap), isotherm choice and window choice in quadrature
        (see ``error_budget``; NaN when ``n_boot`` < 2).
    x_c : float
        The critical point, in the units of x (e.g. T for B, V for V_g); the given value when it was
        fixed. With a drift it is the T -> 0 value.
    x_c_err : float
        Its one-sigma error, as ``znu_err`` (0 when x_c was fixed, NaN when ``n_boot`` < 2).
    quality : float
        The Houdayer-Hartmann quality S at the optimum, interpolation error counted (about 1 for a
        collapse within the noise).
    excluded : list of (float, str)
        Isotherms left out, as (T [K], reason).
    window : float
        Half-width of the scaling window, in the units of x: the points with
        |x - window_center| <= window were used.
    window_center : float
        Centre of the window (the fixed x_c, or the first estimate of the crossing), units of x.
    R_c : float
        Critical resistance [Ohm]: the isotherms' mean R at x_c (at x_c(T) with a drift).
    R_c_err : float
        Its one-sigma bootstrap error [Ohm].
    S_per_isotherm : dict of float to float
        Each kept isotherm's own mean contribution to S at the optimum, keyed by T [K].
    temperatures : list of float
        The temperatures [K] of the isotherms used in the final fit.
    n_points : int
        Number of points inside the window in the final fit.
    drift : float
        Slope of the critical point with temperature, x_c(T) = x_c + drift * T [units of x per K];
        0 when no drift was fitted.
    drift_err : float
        Its one-sigma error (0 when no drift was fitted).
    error_budget : dict of str to dict of str to float
        The parts of the errors (see the module docstring), ``{"noise" | "isotherms" | "window":
        {"znu": ..., "x_c": ..., "drift": ...}}`` (one sigma each, units of the quantity; the totals are
        their sum in quadrature), ``{"bias": {...}}``, the fit's own bias that was subtracted, and
        ``{"noise_scale": {"factor": s}}``, s = sqrt(max(S, 1)). Empty when ``n_boot`` < 2.
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
    drift: float = 0.0
    drift_err: float = 0.0
    error_budget: dict[str, dict[str, float]] = field(default_factory=dict)

    def scaling_variable(self, x: ArrayLike, T: float) -> np.ndarray:
        """u = (x - x_c(T)) T^(-1/(z nu)) [units of x times K^(-1/(z nu))], with x_c(T) = x_c + drift*T."""
        return (np.asarray(x, dtype=float) - (self.x_c + self.drift * T)) * T ** (-1.0 / self.znu)


# ---------------------------------------------------------------------------------------------------
# the classic quality function (as pyfssa)
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
    the points that have at least one bracket. S ~ 1 when the curves agree within their noise. This is
    the classic S (as pyfssa); :func:`fit_collapse` also counts the interpolation error.

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
    """One-sigma noise [units of y] of a smooth curve sampled at x, from local interpolation residuals.

    Each point is compared with the cubic through its two neighbours on either side (with fewer than 5
    points: the straight line through its two neighbours); the robust spread (1.4826 MAD) of these
    residuals, divided by their noise gain sqrt(1 + sum of the interpolation weights squared),
    estimates the noise. The cubic ignores the curvature of a coarsely sampled steep isotherm, which
    inflates a straight-line estimate many times; a step sampled by one or two points still inflates it.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.size < 3:
        return float(max(np.nanstd(y), 1e-12))
    if x.size < 5:
        w = (x[1:-1] - x[:-2]) / (x[2:] - x[:-2])
        r = y[1:-1] - ((1 - w) * y[:-2] + w * y[2:])
        z = r / np.sqrt(1 + w**2 + (1 - w) ** 2)
    else:
        i = np.arange(2, x.size - 2)
        nb = np.stack([i - 2, i - 1, i + 1, i + 2], axis=1)  # the neighbours of each point
        xn = x[nb]
        L = np.ones_like(xn)  # Lagrange weights of the cubic through the neighbours, at x_i
        for a in range(4):
            for b in range(4):
                if a != b:
                    L[:, a] *= (x[i] - xn[:, b]) / (xn[:, a] - xn[:, b])
        z = (y[i] - np.sum(L * y[nb], axis=1)) / np.sqrt(1 + np.sum(L * L, axis=1))
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


def _interp_coeff(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Linear-interpolation error scale h_k^2 |y''| / 2 [units of y] of each interval of a sampled curve.

    Between two samples a distance h apart, the straight line misses a curve of second derivative y''
    by t (1 - t) h^2 y'' / 2 at the fraction t of the interval. y'' is the larger of the two second
    divided differences that touch the interval, less one standard error of their noise (noise alone
    gives ~0). ``y`` may carry leading batch axes; returns shape (..., m - 1).
    """
    m = x.size
    if m < 3:
        return np.zeros((*y.shape[:-1], max(m - 1, 0)))
    h = np.diff(x)
    d2 = 2.0 * np.diff(np.diff(y, axis=-1) / h, axis=-1) / (x[2:] - x[:-2])
    hl, hr = h[:-1], h[1:]
    noise = np.sqrt(
        (2 / (hl * (hl + hr)) * dy[:-2]) ** 2
        + (2 / (hl * hr) * dy[1:-1]) ** 2
        + (2 / (hr * (hl + hr)) * dy[2:]) ** 2
    )
    a = np.maximum(np.abs(d2) - noise, 0.0)
    pad = np.zeros((*a.shape[:-1], 1))
    return 0.5 * h**2 * np.maximum(np.concatenate([pad, a], axis=-1), np.concatenate([a, pad], axis=-1))


# ---------------------------------------------------------------------------------------------------
# the collapse problem, evaluated in batches
# ---------------------------------------------------------------------------------------------------
_GRID_LZ = 16  # grid points in log(z*nu)
_GRID_XC = 11  # grid points in x_c
_STARTS = 3  # pattern searches from the best grid points
_TOL = np.array([1e-4, 3e-5, 1e-3])  # final steps in (log z*nu, x_c / x_c range, drift / drift range)


class _Problem:
    """The collapse quality of a fixed set of windowed isotherms, for batches of parameters and data.

    A parameter set is p = (log z*nu, p_x, p_d): x_c(T_ref) = x_lo + p_x (x_hi - x_lo) with p_x in
    [0, 1] (or the fixed x_c), and drift = p_d * drift_max with p_d in [-1, 1]; x_c(T) = x_c(T_ref) +
    drift (T - T_ref). Data replicas are arrays Y of all points' R values, shape (rows, N); point masks
    (rows, N) select subsets (an isotherm left out, a narrower window) without rebuilding the problem.
    """

    def __init__(
        self,
        temps: list[float],
        xs: list[np.ndarray],
        ys: list[np.ndarray],
        dys: list[np.ndarray],
        center: float,
        window: float,
        x_c_fixed: float | None,
        znu_bounds: tuple[float, float],
    ) -> None:
        self.temps = np.asarray(temps, dtype=float)
        self.logT = np.log(self.temps)
        self.xs = xs
        self.sizes = np.array([x.size for x in xs])
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)])
        self.N = int(self.starts[-1])
        self.owner = np.repeat(np.arange(len(xs)), self.sizes)
        self.x_all = np.concatenate(xs)
        self.y_all = np.concatenate(ys)
        self.dy_all = np.concatenate(dys)
        self.scale = window  # u of order 1
        self.x_c_fixed = x_c_fixed
        self.xc_lo, self.xc_hi = center - 0.5 * window, center + 0.5 * window
        self.drift_max = 0.5 * window / float(np.max(self.temps))
        # with a drift the search moves x_c(T_ref), T_ref a mean temperature weighted towards low T
        # (where the steep isotherms pin x_c(T) best), less correlated with the drift than x_c(0)
        wT = self.temps**-1.5
        self.T_ref = float(np.sum(wT * self.temps) / np.sum(wT))
        self.lo = np.array([math.log(znu_bounds[0]), 0.0, -1.0])
        self.hi = np.array([math.log(znu_bounds[1]), 1.0, 1.0])
        self.coef = self.coefficients(self.y_all[None, :])
        self.basis = np.eye(3)  # search directions with a drift (see drift_search)

    def coefficients(self, Y: np.ndarray) -> np.ndarray:
        """Interpolation-error scales (R, N) of data rows Y (R, N): interval k of curve j at its point k."""
        out = np.zeros(Y.shape)
        for j, m in enumerate(self.sizes):
            s0 = self.starts[j]
            if m >= 2:
                out[:, s0 : s0 + m - 1] = _interp_coeff(
                    self.xs[j], Y[:, s0 : s0 + m], self.dy_all[s0 : s0 + m]
                )
        return out

    # -- parameters ---------------------------------------------------------------------------------
    def values(self, P: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(z*nu, x_c at T = 0, drift) of parameter rows P (..., 3)."""
        znu = np.exp(P[..., 0])
        drift = P[..., 2] * self.drift_max
        if self.x_c_fixed is not None:
            return znu, np.full(P.shape[:-1], float(self.x_c_fixed)), drift
        return znu, self.xc_lo + P[..., 1] * (self.xc_hi - self.xc_lo) - drift * self.T_ref, drift

    # -- the quality ----------------------------------------------------------------------------------
    def terms(
        self,
        P: np.ndarray,
        Y: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        coef: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-point terms (y - Y)^2/(dy^2 + dY^2) and the bracketed mask, both (B, N), for P (B, 3).

        ``Y`` (B, N) or (1, N): the R values (default the data) and ``coef`` their interpolation-error
        scales (:meth:`coefficients`; computed when Y is given without them); ``mask`` (B, N): the
        points in use.
        """
        B, N = P.shape[0], self.N
        if Y is None:
            Y, coef = self.y_all[None, :], self.coef
        elif coef is None:
            coef = self.coefficients(Y)
        znu, xc, drift = self.values(P)
        shift = xc[:, None] + drift[:, None] * self.temps[None, :]
        inv = np.exp(-self.logT[None, :] / znu[:, None]) / self.scale
        u = (self.x_all[None, :] - shift[:, self.owner]) * inv[:, self.owner]  # (B, N), sorted per curve
        lo = float(u.min())
        span = float(u.max()) - lo
        width = span + max(abs(span), 1.0) * 1e-6 + 1e-12
        off = np.arange(B)[:, None] * width  # rows moved apart: one searchsorted serves all of them
        q = (u - lo + off).ravel()
        rows = np.arange(B)[:, None]
        flat = rows * N  # row offsets into raveled (B, N) arrays
        uf = u.ravel()
        Yf = np.broadcast_to(Y, (B, N)).ravel()
        Cf = np.broadcast_to(coef, (B, N)).ravel()
        K = np.zeros((B, N))
        Kx = np.zeros((B, N))
        Kxx = np.zeros((B, N))
        Ky = np.zeros((B, N))
        Kxy = np.zeros((B, N))
        for j, m in enumerate(self.sizes):
            if m < 2:
                continue
            s0 = self.starts[j]
            uj = u[:, s0 : s0 + m]
            loc = np.searchsorted((uj - lo + off).ravel(), q, side="right").reshape(B, N) - rows * m
            ok = (loc >= 1) & (loc <= m - 1)
            ok[:, self.owner == j] = False
            k0 = np.clip(loc - 1, 0, m - 2) + s0  # left bracket, as a point index
            g0 = flat + k0
            if mask is not None:
                mf = mask.ravel() if mask.shape[0] == B else np.broadcast_to(mask, (B, N)).ravel()
                ok &= mf[g0] & mf[g0 + 1]
            u0, u1 = uf[g0], uf[g0 + 1]
            y0, y1 = Yf[g0], Yf[g0 + 1]
            c = Cf[g0]
            dyj0, dyj1 = self.dy_all[k0], self.dy_all[k0 + 1]
            with np.errstate(divide="ignore", invalid="ignore"):
                t = np.where(ok, (u - u0) / (u1 - u0), 0.5)
            g = t * (1.0 - t) * c
            e2 = g * g / ((1.0 - t) ** 2 + t * t)
            w0 = np.where(ok, 1.0 / (dyj0 * dyj0 + e2), 0.0)
            w1 = np.where(ok, 1.0 / (dyj1 * dyj1 + e2), 0.0)
            r0 = np.where(ok, u0 - u, 0.0)
            r1 = np.where(ok, u1 - u, 0.0)
            K += w0 + w1
            Kx += w0 * r0 + w1 * r1
            Kxx += w0 * r0 * r0 + w1 * r1 * r1
            Ky += w0 * y0 + w1 * y1
            Kxy += w0 * r0 * y0 + w1 * r1 * y1
        delta = K * Kxx - Kx * Kx
        has = (K > 0) & (delta > 1e-12 * K * Kxx)
        if mask is not None:
            has &= mask
        with np.errstate(divide="ignore", invalid="ignore"):
            Yhat = (Kxx * Ky - Kx * Kxy) / delta
            dY2 = Kxx / delta
            terms = np.where(has, (np.broadcast_to(Y, (B, N)) - Yhat) ** 2 / (self.dy_all**2 + dY2), 0.0)
        return terms, has

    def S(
        self,
        P: np.ndarray,
        Y: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        coef: np.ndarray | None = None,
    ) -> np.ndarray:
        """The quality S (B,) of parameter rows P (B, 3); 1e12 where too few points are compared."""
        terms, has = self.terms(P, Y, mask, coef)
        n = has.sum(axis=1)
        n_in = self.N if mask is None else mask.sum(axis=1)
        s = terms.sum(axis=1) / np.maximum(n, 1)
        return np.where(n >= np.maximum(4, 0.3 * n_in), s, 1e12)

    def per_isotherm(self, p: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Each isotherm's mean share of S (NaN where none of its points is compared) at one p."""
        terms, has = self.terms(p[None, :], None, mask[None, :])
        num = np.bincount(self.owner, weights=terms[0], minlength=len(self.sizes))
        den = np.bincount(self.owner, weights=has[0].astype(float), minlength=len(self.sizes))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / den, np.nan)

    # -- the search ---------------------------------------------------------------------------------
    def active(self, drift: bool) -> np.ndarray:
        return np.array([True, self.x_c_fixed is None, drift])

    def search(
        self,
        p0: np.ndarray,
        step: np.ndarray,
        drift: bool,
        Y: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        *,
        free: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pattern searches from the rows of p0 (R, 3), each with its own data row Y / mask row (R, N).

        Each round evaluates the points one step either way along each free search direction (the
        parameter axes; with a drift, the drift direction of :attr:`basis`) and the last move repeated
        once and twice (Hooke-Jeeves), moves to the best, and halves the steps when the centre is best;
        the unfinished searches run in one batch. ``free``: which parameters move (default: z*nu, x_c
        unless fixed, and the drift with ``drift``; a parameter held keeps its value in p0).
        """
        act = self.active(drift) if free is None else free
        basis = self.basis if drift else np.eye(3)
        eye = np.eye(3)[act]
        offs = np.concatenate([np.zeros((1, 3)), eye, -eye])  # the centre, then +- each free direction
        R, C = p0.shape[0], offs.shape[0] + 2
        best = p0.copy()
        if not drift and free is None:
            best[:, 2] = 0.0
        steps = np.tile(np.where(act, step, 0.0), (R, 1))
        move = np.zeros((R, 3))  # the last move, tried again once and twice (Hooke-Jeeves pattern moves)
        fbest = np.full(R, np.inf)
        coef = None if Y is None else self.coefficients(Y)
        live = np.arange(R)
        for _ in range(300):
            b, mv = best[live, None, :], move[live, None, :]
            nb = (offs[None, :, :] * steps[live, None, :]) @ basis.T
            P = np.clip(np.concatenate([b + nb, b + mv, b + 2 * mv], axis=1), self.lo, self.hi)
            F = self.S(
                P.reshape(live.size * C, 3),
                None if Y is None else np.repeat(Y[live], C, axis=0),
                None if mask is None else np.repeat(mask[live], C, axis=0),
                None if coef is None else np.repeat(coef[live], C, axis=0),
            ).reshape(live.size, C)
            k = np.argmin(F, axis=1)
            new = P[np.arange(live.size), k]
            move[live] = new - best[live]
            best[live] = new
            fbest[live] = F[np.arange(live.size), k]
            stay = live[k == 0]
            steps[stay] *= 0.5
            live = live[~np.all(steps[live][:, act] <= _TOL[act], axis=1)]
            if live.size == 0:
                break
        return best, fbest

    def grid_step(self) -> np.ndarray:
        return np.array([(self.hi[0] - self.lo[0]) / (_GRID_LZ - 1), 1.0 / (_GRID_XC - 1), 0.25])

    def fit(
        self, drift: bool, mask: np.ndarray | None = None, start: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Best parameters (R, 3) and S (R,) for each row of ``mask`` (R, N) (one row: all points).

        Without ``start``: a grid over (log z*nu, x_c), pattern searches from its best points, and with
        ``drift`` (one mask row only) :meth:`drift_search` from the best of those. With ``start``
        (R, 3): pattern searches from there only.
        """
        mask = np.ones((1, self.N), dtype=bool) if mask is None else mask
        R = mask.shape[0]
        step = self.grid_step()
        if start is not None:
            return self.search(start, 0.5 * step, drift, None, mask)
        lzs = np.linspace(self.lo[0], self.hi[0], _GRID_LZ)
        pxs = [0.5] if self.x_c_fixed is not None else np.linspace(0.0, 1.0, _GRID_XC)
        G = np.array([(lz, px, 0.0) for lz in lzs for px in pxs])
        F = self.S(np.tile(G, (R, 1)), None, np.repeat(mask, len(G), axis=0)).reshape(R, len(G))
        top = np.argsort(F, axis=1, kind="stable")[:, :_STARTS]
        n_s = top.shape[1]
        P, F2 = self.search(G[top].reshape(R * n_s, 3), step, False, None, np.repeat(mask, n_s, axis=0))
        P, F2 = P.reshape(R, n_s, 3), F2.reshape(R, n_s)
        k = np.argmin(F2, axis=1)
        best, fbest = P[np.arange(R), k], F2[np.arange(R), k]
        if not drift:
            return best, fbest
        return self.drift_search(best[:1], mask[:1])

    def drift_search(self, p0: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The fit with a drift, from the fit without, p0 (1, 3), for one mask row (1, N).

        x_c and the drift are strongly correlated (how strongly depends on the data), which stalls a
        search along the parameter axes. So: a profile first, the best (z*nu, x_c) at each of several
        fixed drifts; the valley's direction from the profile around its minimum becomes the drift
        direction of the search basis (kept in ``self.basis`` for the refits of this problem); then
        the search in that basis from the profile's minimum.
        """
        pds = np.linspace(-0.9, 0.9, 13)
        starts = np.repeat(p0, pds.size, axis=0)
        starts[:, 2] = pds
        free = np.array([True, self.x_c_fixed is None, False])
        P, F = self.search(
            starts, 0.5 * self.grid_step(), True, None, np.repeat(mask, pds.size, axis=0), free=free
        )
        k = int(np.clip(np.argmin(F), 1, pds.size - 2))
        slope = (P[k + 1] - P[k - 1]) / (pds[k + 1] - pds[k - 1])
        self.basis = np.eye(3)
        self.basis[:2, 2] = slope[:2]
        return self.search(P[k : k + 1], np.array([0.02, 0.01, 0.05]), True, None, mask)


def _master_curve(prob: _Problem, p: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """R of every point on a smooth master curve F(u) fitted to the collapsed kept points at p.

    A smoothing spline (weights 1/dR^2, smoothing by generalised cross-validation) through all kept
    points against u; the data where it cannot be made.
    """
    znu, xc, dr = (float(v) for v in prob.values(p))
    T = prob.temps[prob.owner]
    u = (prob.x_all - (xc + dr * T)) * T ** (-1.0 / znu) / prob.scale
    sel = np.flatnonzero(mask)
    order = sel[np.argsort(u[sel], kind="stable")]
    us, ys, ws = u[order], prob.y_all[order], 1.0 / prob.dy_all[order] ** 2
    keep = np.concatenate([[True], np.diff(us) > 1e-12 * max(float(np.ptp(us)), 1e-300)])
    if keep.sum() < 5:
        return prob.y_all.copy()
    try:
        spline = make_smoothing_spline(us[keep], ys[keep], w=ws[keep])
    except (ValueError, np.linalg.LinAlgError):
        return prob.y_all.copy()
    out = prob.y_all.copy()
    out[sel] = spline(u[sel])
    return out


def _r_at(xs: list[np.ndarray], Y: np.ndarray, starts: np.ndarray, idx: list[int], x_at: np.ndarray) -> float:
    """Mean over the isotherms ``idx`` of R interpolated at x_at[j] (inside the isotherm's range)."""
    vals = []
    for j in idx:
        x, y = xs[j], Y[starts[j] : starts[j + 1]]
        if x[0] <= x_at[j] <= x[-1]:
            vals.append(float(np.interp(x_at[j], x, y)))
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
    drift: bool | None = None,
) -> CollapseResult:
    """Fit the scaling collapse R(x, T) = F((x - x_c(T)) T^(-1/(z nu))) by minimising the quality S.

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
        Replicas of the model bootstrap for the errors and the bias correction (below 2: no errors,
        NaN, and no correction). The isotherm and window parts are added whenever ``n_boot`` >= 2.
    seed : int
        Seed of the bootstrap's random numbers.
    exclude : bool
        Exclude deviating isotherms, one at a time (worst first) while more than 3 remain: each isotherm
        is left out in turn, the others are fitted, and its own mean share of S against their collapse is
        compared with theirs; it is excluded when it exceeds both ``EXCLUDE_FACTOR`` times their median
        and ``EXCLUDE_MIN_S``.
    drift : bool, optional
        Fit a linear drift of the critical point, x_c(T) = x_c + drift * T (x_c free only). None (the
        default): with four or more isotherms, when it lowers the collapse's chi^2 by more than
        ``DRIFT_MIN_GAIN``.

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
    if len(windowed) < 2:
        raise ValueError("fewer than two isotherms have two points in the window")

    prob = _Problem(
        [c[0] for c in windowed],
        [c[1] for c in windowed],
        [c[2] for c in windowed],
        [c[3] for c in windowed],
        center,
        window,
        None if x_c is None else float(x_c),
        znu_bounds,
    )
    J = len(windowed)
    temps = prob.temps

    def points(curve_mask: np.ndarray) -> np.ndarray:
        return curve_mask[prob.owner]

    def choose_drift(kept: np.ndarray) -> tuple[bool, np.ndarray, float]:
        """Whether to fit a drift on the kept isotherms, with the chosen model's best p and S."""
        mask = points(kept)[None, :]
        p0, s0 = prob.fit(False, mask)
        if drift is False or x_c is not None or (drift is None and kept.sum() < 4):
            return False, p0[0], float(s0[0])
        p1, s1 = prob.drift_search(p0, mask)
        if drift:
            return True, p1[0], float(s1[0])
        _t, has = prob.terms(p1, None, mask)
        gain = int(has.sum()) * (float(s0[0]) - float(s1[0])) / max(float(s1[0]), 1.0)
        if gain > DRIFT_MIN_GAIN:
            return True, p1[0], float(s1[0])
        return False, p0[0], float(s0[0])

    kept = np.ones(J, dtype=bool)
    with_drift, p_best, _s = choose_drift(kept)
    excluded: list[tuple[float, str]] = []
    changed = False
    while exclude and kept.sum() > 3:
        # leave one out: refit without each isotherm and measure how far it lies from the others' collapse,
        # so that a bad isotherm cannot pull the fit towards itself and hide
        cands = np.flatnonzero(kept)
        rest = np.repeat(kept[None, :], cands.size, axis=0)
        rest[np.arange(cands.size), cands] = False
        p_loo, _f = prob.fit(with_drift, rest[:, prob.owner], np.repeat(p_best[None, :], cands.size, axis=0))
        worst: tuple[float, int, float, float] | None = None  # (ratio, index, S_i, median of the rest)
        for r, c in enumerate(cands):
            s_all = prob.per_isotherm(p_loo[r], points(kept))
            s_rest = prob.per_isotherm(p_loo[r], points(rest[r]))
            finite = [s_rest[j] for j in np.flatnonzero(rest[r]) if math.isfinite(s_rest[j])]
            s_c = s_all[c]
            if not finite or not math.isfinite(s_c):
                continue
            med = max(float(np.median(finite)), 1e-12)
            if s_c > EXCLUDE_FACTOR * med and s_c > EXCLUDE_MIN_S and (worst is None or s_c / med > worst[0]):
                worst = (s_c / med, int(c), s_c, med)
        if worst is None:
            break
        _ratio, j_bad, s_bad, med = worst
        T_bad = float(temps[j_bad])
        lowest = j_bad == int(np.flatnonzero(kept)[0])
        cause = "heating, RF or saturation?" if lowest else "outside the scaling regime or a bad sweep?"
        excluded.append(
            (
                T_bad,
                f"T={T_bad:g} K: deviates from the collapse of the others "
                f"(S_i = {s_bad:.3g} vs median {med:.3g}): {cause}",
            )
        )
        kept[j_bad] = False
        changed = True

    if changed:
        with_drift, p_best, _s = choose_drift(kept)
    kmask = points(kept)
    S_best = float(prob.S(p_best[None, :], None, kmask[None, :])[0])
    znu_v, xc_v, dr_v = (float(v) for v in prob.values(p_best))
    idx = [int(j) for j in np.flatnonzero(kept)]
    s_i = prob.per_isotherm(p_best, kmask)
    S_i = {float(temps[j]): float(s_i[j]) for j in idx}
    terms, has = prob.terms(p_best[None, :], None, kmask[None, :])
    quality = float(terms[0][has[0]].mean()) if has.any() else math.nan
    R_c = _r_at(prob.xs, prob.y_all, prob.starts, idx, xc_v + dr_v * temps)

    # -- errors ------------------------------------------------------------------------------------
    znu_err = x_c_err = R_c_err = math.nan
    drift_err = 0.0
    budget: dict[str, dict[str, float]] = {}
    if n_boot > 1:
        rng = np.random.default_rng(seed)
        noise_scale = math.sqrt(max(S_best, 1.0)) if math.isfinite(S_best) else 1.0
        Y0 = _master_curve(prob, p_best, kmask)
        Yb = Y0[None, :] + noise_scale * prob.dy_all[None, :] * rng.standard_normal((n_boot, prob.N))
        rows_Y = [Yb]
        rows_M = [np.repeat(kmask[None, :], n_boot, axis=0)]
        # jackknife over the kept isotherms (three or more), and the narrower window
        n_jack = len(idx) if len(idx) >= 3 else 0
        for j in idx[:n_jack]:
            m = kmask.copy()
            m[prob.owner == j] = False
            rows_M.append(m[None, :])
            rows_Y.append(prob.y_all[None, :])
        wmask = kmask & (np.abs(prob.x_all - center) <= WINDOW_SHRINK * window * (1 + 1e-12))
        rows_M.append(wmask[None, :])
        rows_Y.append(prob.y_all[None, :])
        Y_all, M_all = np.concatenate(rows_Y), np.concatenate(rows_M)
        P, _f = prob.search(
            np.repeat(p_best[None, :], Y_all.shape[0], axis=0),
            0.5 * prob.grid_step(),
            with_drift,
            Y_all,
            M_all,
        )
        z, xcs, drs = prob.values(P)
        est = {"znu": z, "x_c": xcs, "drift": drs}
        best = {"znu": znu_v, "x_c": xc_v, "drift": dr_v}
        boot = slice(0, n_boot)
        jack = slice(n_boot, n_boot + n_jack)
        budget = {
            "noise": {},
            "isotherms": {},
            "window": {},
            "bias": {},
            "noise_scale": {"factor": noise_scale},
        }
        total, corrected = {}, {}
        # a standard deviation from a few replicas is itself uncertain: widen it so that +-2 of it
        # covers like +-2 sigma (Student's t with n_boot - 1 degrees of freedom)
        few_replicas = float(student_t.ppf(0.97725, n_boot - 1)) / 2.0
        for name, v in est.items():
            # the model bootstrap's median offset from its input is the fit's own bias (sampling and
            # interpolation); it is removed, and its uncertainty counted with the noise
            bias = float(np.median(v[boot])) - best[name]
            sd_noise = float(np.std(v[boot], ddof=1)) * math.sqrt(1.0 + 1.6 / n_boot) * few_replicas
            # systematic parts, scaled like the noise when the collapse is worse than the noise: the
            # largest shift when one isotherm is left out, and the shift with the narrower window
            sd_iso = noise_scale * (float(np.max(np.abs(v[jack] - best[name]))) if n_jack else 0.0)
            sd_win = noise_scale * abs(float(v[-1]) - best[name])
            budget["noise"][name] = sd_noise
            budget["isotherms"][name] = sd_iso
            budget["window"][name] = sd_win
            budget["bias"][name] = bias
            total[name] = math.sqrt(sd_noise**2 + sd_iso**2 + sd_win**2)
            corrected[name] = best[name] - bias
        znu_err = total["znu"]
        x_c_err = 0.0 if x_c is not None else total["x_c"]
        drift_err = total["drift"] if with_drift else 0.0
        znu_v = corrected["znu"]
        if x_c is None:
            xc_v = corrected["x_c"]
        if with_drift:
            dr_v = corrected["drift"]
        R_c = _r_at(prob.xs, prob.y_all, prob.starts, idx, xc_v + dr_v * temps)
        rcs = [_r_at(prob.xs, Yb[b], prob.starts, idx, xcs[b] + drs[b] * temps) for b in range(n_boot)]
        R_c_err = float(np.nanstd(rcs, ddof=1))

    return CollapseResult(
        znu=znu_v,
        znu_err=znu_err,
        x_c=xc_v,
        x_c_err=x_c_err,
        quality=quality,
        excluded=excluded,
        window=window,
        window_center=center,
        R_c=R_c,
        R_c_err=R_c_err,
        S_per_isotherm=S_i,
        temperatures=[float(temps[j]) for j in idx],
        n_points=int(kmask.sum()),
        drift=dr_v if with_drift else 0.0,
        drift_err=drift_err,
        error_budget=budget,
    )
