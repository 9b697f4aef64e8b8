"""The scaling collapse ln R = G((x - x_c) T^(-1/(z nu))) fitted by least squares, fast enough for online use.

Quantum-critical scaling (Fisher 1990) says R = R_c F(|x - x_c| T^(-1/(z nu))): against the scaling
variable u = (x - x_c) T^(-1/(z nu)) the isotherms fall onto one master curve. :func:`fit_scaling` fits
the master curve as a cubic B-spline in u (knots at the quantiles of u, so it follows steep and flat
parts alike) together with z*nu and x_c:

- for given (z*nu, x_c) the spline is linear least squares (variable projection), so the search runs
  over two parameters only: a grid in z*nu, then Nelder-Mead in (ln z*nu, x_c), or Nelder-Mead alone from
  a previous fit (``start``; the online update of a run in progress);
- every point weighs 1/sigma^2 with sigma its own noise, measured from the data
  (:mod:`qbs_lab.analysis.smoothing`); dense isotherms are averaged down first;
- isotherms that do not fall on the collapse (typically the lowest T, whose electrons stay hotter than
  the bath) are found from their own chi^2 per point, excluded with the reason, and the fit repeated;
- errors: a wild bootstrap of the linearised fit (each replica the fit's residuals times random signs,
  so noise that changes along an isotherm and any misfit are carried as they are), all parameters at
  once (z*nu, x_c and the master curve), and in quadrature the shift of the result when the window is
  narrowed to ``WINDOW_SHRINK`` of its width;
- a collapse whose quality is far from 1, whose z*nu sits at the edge of the search, or whose errors
  exceed the range is reported as failed (``status``), with the reason.

Units: x is whatever the isotherms are swept in (B [T] or V_g [V]); T in kelvin; R in ohms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from qbs_lab.analysis.smoothing import Isotherm, average_runs

__all__ = ["ScalingResult", "fit_scaling"]

ZNU_BOUNDS = (0.2, 8.0)  # searched range of z*nu
QUALITY_MAX = 10.0  # chi^2 per degree of freedom beyond which the collapse has failed
HEATED_RATIO = 1.3  # the lowest isotherm is heated when it collapses at this many times its T ...
HEATED_GAIN = 25.0  # ... and that lowers its chi^2 by more than this
EXCLUDE_CHI2 = 10.0  # an isotherm's chi^2 per point above this ...
EXCLUDE_FACTOR = 5.0  # ... and this many times the others' median is excluded
MIN_KEPT = 3
WINDOW_SHRINK = 0.7  # the window systematic: the fit repeated in a window this much narrower
DRIFT_GAIN = 30.0  # chi^2 gain for fitting a drift of x_c with T
POINTS = 60  # isotherms are averaged down to at most this many points in the window


@dataclass
class ScalingResult:
    """The outcome of :func:`fit_scaling`.

    Attributes
    ----------
    znu, znu_err : float
        z*nu (dimensionless) and its one-sigma error.
    x_c, x_c_err : float
        The critical point of the collapse and its one-sigma error [unit of x].
    R_c, R_c_err : float
        The master curve at u = 0 [Ohm] and its one-sigma error.
    quality : float
        chi^2 per degree of freedom of the collapse (about 1 when the isotherms collapse within noise).
    status : str
        ``"ok"`` or ``"failed"``.
    reason : str
        Why the collapse failed (empty when it did not).
    excluded : list of (float, str)
        Isotherms left out of the collapse, as (T [K], reason).
    temperatures : list of float
        The temperatures [K] used.
    chi2_per_isotherm : dict of float to float
        Each used isotherm's chi^2 per point.
    window, window_center : float
        The points with |x - window_center| <= window were used [unit of x].
    drift, drift_err : float
        x_c(T) = x_c + drift * T [unit of x per K] when a drift was fitted (x_c is then the T -> 0
        value), else 0.
    """

    znu: float
    znu_err: float
    x_c: float
    x_c_err: float
    R_c: float = math.nan
    R_c_err: float = math.nan
    quality: float = math.nan
    status: str = "ok"
    reason: str = ""
    excluded: list[tuple[float, str]] = field(default_factory=list)
    temperatures: list[float] = field(default_factory=list)
    chi2_per_isotherm: dict[float, float] = field(default_factory=dict)
    window: float = math.nan
    window_center: float = math.nan
    drift: float = 0.0
    drift_err: float = 0.0
    log: bool = True
    _knots: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    _coef: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    _T_ref: float = 1.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def scaling_variable(self, x: np.ndarray, T: float) -> np.ndarray:
        """u = (x - x_c) T^(-1/(z nu)) [unit of x times K^(-1/(z nu))]."""
        return (np.asarray(x, dtype=float) - self.x_c - self.drift * T) * T ** (-1.0 / self.znu)

    def master(self, u: np.ndarray) -> np.ndarray:
        """R [Ohm] of the fitted master curve at the scaling variable u (as :meth:`scaling_variable`)."""
        from scipy.interpolate import BSpline

        v = np.asarray(u, dtype=float) / self.window * self._T_ref ** (1.0 / self.znu)
        v = np.clip(v, self._knots[0], self._knots[-1])
        y = BSpline(self._knots, self._coef, 3)(v)
        return np.exp(y) if self.log else y


class _Problem:
    def __init__(self, iso: Sequence[Isotherm], center: float, window: float) -> None:
        self.iso = list(iso)
        self.center, self.W = center, window
        xs, ys, ss, ts, owner = [], [], [], [], []
        for j, it in enumerate(self.iso):
            m = np.abs(it.x - center) <= window * (1 + 1e-12)
            x, y, s = it.x[m], it.y[m], it.sigma[m]
            if x.size > POINTS:
                x, y, s = average_runs(x, y, s, math.ceil(x.size / POINTS))
            xs.append(x)
            ys.append(y)
            ss.append(s)
            ts.append(np.full(x.size, it.T))
            owner.append(np.full(x.size, j))
        self.x, self.y, self.s = np.concatenate(xs), np.concatenate(ys), np.concatenate(ss)
        self.T, self.owner = np.concatenate(ts), np.concatenate(owner)
        self.w = 1.0 / self.s
        self.N = self.x.size
        self.n_iso = len(self.iso)
        self.T_max = max(it.T for it in self.iso)

    def use(self, kept: np.ndarray) -> tuple[np.ndarray, float]:
        """Point mask of the kept isotherms, and their reference temperature (geometric mean) [K]."""
        m = kept[self.owner]
        return m, float(np.exp(np.mean(np.log([it.T for it, k in zip(self.iso, kept, strict=True) if k]))))

    def u(self, theta: np.ndarray, m: np.ndarray, T_ref: float) -> np.ndarray:
        znu = math.exp(theta[0])
        xc = self.center + theta[1] * self.W
        if theta.size > 2:  # a drifting critical point, x_c(T) = x_c + drift * T
            xc = xc + theta[2] * self.W * self.T[m] / self.T_max
        return (self.x[m] - xc) / self.W * (self.T[m] / T_ref) ** (-1.0 / znu)

    def knots(self, u: np.ndarray) -> np.ndarray:
        n_int = int(np.clip(u.size // 8, 3, 10))
        inner = np.unique(np.quantile(u, np.linspace(0, 1, n_int + 2)[1:-1]))
        span = float(np.ptp(u)) or 1.0
        lo, hi = float(u.min()) - 1e-9 * span, float(u.max()) + 1e-9 * span
        return np.concatenate([[lo] * 4, inner, [hi] * 4])

    @staticmethod
    def basis(u: np.ndarray, t: np.ndarray) -> np.ndarray:
        from scipy.interpolate import BSpline

        return BSpline.design_matrix(np.clip(u, t[0], t[-1]), t, 3).toarray()

    def chi2(self, theta: np.ndarray, m: np.ndarray, T_ref: float) -> float:
        if (
            not ZNU_BOUNDS[0] <= math.exp(theta[0]) <= ZNU_BOUNDS[1]
            or abs(theta[1]) > 1.0
            or np.any(np.abs(theta[2:]) > 2.0)
        ):
            return 1e30
        u = self.u(theta, m, T_ref)
        B = self.basis(u, self.knots(u)) * self.w[m, None]
        b = self.y[m] * self.w[m]
        coef, *_ = _lsq(B, b)
        r = b - B @ coef
        return float(r @ r)

    def search(self, theta0: np.ndarray | None, m: np.ndarray, T_ref: float, maxfev: int = 300) -> np.ndarray:
        from scipy.optimize import minimize

        if theta0 is None:
            lzs = np.linspace(math.log(ZNU_BOUNDS[0]) + 0.05, math.log(ZNU_BOUNDS[1]) - 0.05, 24)
            f = [self.chi2(np.array([lz, 0.0]), m, T_ref) for lz in lzs]
            theta0 = np.array([lzs[int(np.argmin(f))], 0.0])
        steps = np.diag([0.15, 0.03, 0.1][: theta0.size])
        simplex = np.vstack([theta0, theta0 + steps])
        res = minimize(
            self.chi2,
            theta0,
            args=(m, T_ref),
            method="Nelder-Mead",
            options={"initial_simplex": simplex, "xatol": 5e-4, "fatol": 1e-2, "maxfev": maxfev},
        )
        return np.asarray(res.x, dtype=float)


def fit_scaling(
    isotherms: Sequence[Isotherm],
    x_c0: float,
    *,
    window: float | None = None,
    n_boot: int = 100,
    seed: int = 0,
    start: tuple[float, float] | None = None,
    exclude: bool = True,
    drift: bool | None = None,
) -> ScalingResult:
    """Fit the collapse of prepared isotherms around a first estimate x_c0 of the critical point.

    Parameters
    ----------
    isotherms : sequence of Isotherm
        From :func:`qbs_lab.analysis.smoothing.prepare`; three or more.
    x_c0 : float
        First estimate of x_c [unit of x] (the joint crossing); the window is centred there.
    window : float, optional
        Half-width of the scaling window [unit of x]; default: the shared range about x_c0 (at least
        half its longer side).
    n_boot : int
        Replicas of the wild bootstrap (below 2: no errors, NaN).
    seed : int
        Seed of the bootstrap.
    start : (float, float), optional
        (z*nu, x_c) of a previous fit to start from (skips the grid).
    exclude : bool
        Exclude isotherms that do not fall on the collapse (while more than three remain).
    drift : bool, optional
        Fit a drifting critical point x_c(T) = x_c + drift * T: None (default) when it lowers the
        collapse's chi^2 by more than ``DRIFT_GAIN`` (scaled by the quality), with four isotherms or more.
    """
    iso = sorted(isotherms, key=lambda it: it.T)
    if len(iso) < MIN_KEPT:
        raise ValueError("a collapse needs at least three isotherms")
    if window is None:
        lo = max(float(it.x[0]) for it in iso)
        hi = min(float(it.x[-1]) for it in iso)
        d_lo, d_hi = x_c0 - lo, hi - x_c0
        window = max(min(d_lo, d_hi), 0.5 * max(d_lo, d_hi))
    if not window > 0:
        raise ValueError("the scaling window is empty")
    prob = _Problem(iso, x_c0, float(window))
    kept = np.array([np.sum(prob.owner == j) >= 3 for j in range(prob.n_iso)])
    excluded: list[tuple[float, str]] = [
        (it.T, f"T={it.T:g} K: fewer than 3 points in the scaling window")
        for it, k in zip(iso, kept, strict=True)
        if not k
    ]
    theta0 = None
    if start is not None and all(math.isfinite(v) for v in start) and start[0] > 0:
        theta0 = np.array([math.log(start[0]), (start[1] - x_c0) / prob.W])
        if not (ZNU_BOUNDS[0] < start[0] < ZNU_BOUNDS[1] and abs(theta0[1]) < 0.5):
            theta0 = None
    if kept.sum() < MIN_KEPT:
        return _failed(prob, excluded, "fewer than three isotherms in the scaling window")
    m, T_ref = prob.use(kept)
    theta = prob.search(theta0, m, T_ref)
    if kept.sum() >= 4:  # a drifting x_c(T) is decided first, so that it is not taken for heating
        theta = _choose_drift(prob, theta, m, T_ref, drift)
    while exclude and kept.sum() > MIN_KEPT:
        # the lowest kept isotherm (where heating, RF and saturation show first) is left out and measured
        # against the collapse of the others: its own temperature scale (an effective electron
        # temperature) and its chi^2 per point; so a bad isotherm cannot pull the fit towards itself
        j = int(np.flatnonzero(kept)[0])
        rest = kept.copy()
        rest[j] = False
        m_r, T_r = prob.use(rest)
        th_r = prob.search(theta, m_r, T_r)
        T_eff, own, others = _held_out(prob, th_r, rest, j)
        T_bad = iso[j].T
        if T_eff > HEATED_RATIO * T_bad:
            why = (
                f"T={T_bad:g} K: follows the others' collapse only at T_e = {T_eff:.3g} K "
                f"({T_eff / T_bad:.2g} x the bath): electrons heated (excitation, RF) or saturated"
            )
        elif own > EXCLUDE_CHI2 and own > EXCLUDE_FACTOR * max(others, 1.0):
            why = (
                f"T={T_bad:g} K: deviates from the collapse of the others "
                f"(chi2/point {own:.3g} vs median {others:.3g}): heating, RF or saturation?"
            )
        else:
            break
        excluded.append((T_bad, why))
        kept[j] = False
        m, T_ref, theta = m_r, T_r, th_r

    if theta.size > 2:  # the drift chosen with all isotherms: still needed without the excluded ones?
        theta = _choose_drift(prob, theta[:2], m, T_ref, drift)
    with_drift = theta.size > 2

    # the fit at the optimum, and the linearised wild bootstrap
    u = prob.u(theta, m, T_ref)
    t = prob.knots(u)
    B = prob.basis(u, t)
    w = prob.w[m]
    coef, *_ = _lsq(B * w[:, None], prob.y[m] * w)
    fitted = B @ coef
    resid = prob.y[m] - fitted
    n, p = u.size, coef.size + theta.size
    dof = max(n - p, 1)
    quality = float(np.sum((resid * w) ** 2)) / dof
    znu = math.exp(theta[0])
    x_c = prob.center + theta[1] * prob.W
    g0 = prob.basis(np.array([-prob.center * 0.0 + 0.0]), t)[0]  # basis at u = 0
    y_c = float(g0 @ coef)
    drift_v = theta[2] * prob.W / prob.T_max if with_drift else 0.0
    znu_err = x_c_err = y_c_err = math.nan
    drift_err = 0.0
    if n_boot >= 2:
        J = np.empty((n, theta.size))
        for k in range(theta.size):
            h = 1e-4
            d = np.zeros(theta.size)
            d[k] = h
            fp = prob.basis(prob.u(theta + d, m, T_ref), t) @ coef
            fm = prob.basis(prob.u(theta - d, m, T_ref), t) @ coef
            J[:, k] = (fp - fm) / (2 * h)
        X = np.hstack([B, J]) * w[:, None]
        rng = np.random.default_rng(seed)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(n, n_boot))
        E = (resid * w * math.sqrt(n / dof))[:, None] * signs
        delta, *_ = _lsq(X, E)
        sd = np.std(delta, axis=1, ddof=1)
        npar = theta.size
        znu_err = znu * float(sd[-npar])
        x_c_err = prob.W * float(sd[-npar + 1])
        if with_drift:
            drift_err = prob.W / prob.T_max * float(sd[-1])
        y_c_err = float(np.std(g0 @ delta[:-npar], ddof=1))
        # the choice of window: the shift of the result with a narrower one counts as an error
        narrow = _Problem(iso, prob.center, WINDOW_SHRINK * prob.W)
        if all(np.sum(narrow.owner == j) >= 3 for j in np.flatnonzero(kept)):
            m_n, T_n = narrow.use(kept)
            th_n = theta.copy()
            th_n[1:] *= prob.W / narrow.W
            th_n = narrow.search(th_n, m_n, T_n, maxfev=150)
            znu_err = math.hypot(znu_err, znu - math.exp(th_n[0]))
            x_c_err = math.hypot(x_c_err, x_c - (narrow.center + th_n[1] * narrow.W))
            if with_drift:
                drift_err = math.hypot(drift_err, drift_v - th_n[2] * narrow.W / narrow.T_max)
    if iso[0].log:
        R_c, R_c_err = math.exp(y_c), math.exp(y_c) * y_c_err
    else:
        R_c, R_c_err = y_c, y_c_err
    per = _per_isotherm(prob, theta, m, T_ref, kept)
    result = ScalingResult(
        znu=znu,
        znu_err=znu_err,
        x_c=x_c,
        x_c_err=x_c_err,
        R_c=R_c,
        R_c_err=R_c_err,
        quality=quality,
        excluded=excluded,
        temperatures=[it.T for it, k in zip(iso, kept, strict=True) if k],
        chi2_per_isotherm={iso[j].T: per[j] for j in range(prob.n_iso) if kept[j]},
        window=prob.W,
        window_center=prob.center,
        drift=drift_v,
        drift_err=drift_err,
        log=iso[0].log,
        _knots=t,
        _coef=coef,
        _T_ref=T_ref,
    )
    reason = _failure(result, prob)
    if reason:
        result.status, result.reason = "failed", reason
    return result


def _per_isotherm(
    prob: _Problem, theta: np.ndarray, m: np.ndarray, T_ref: float, kept: np.ndarray
) -> dict[int, float]:
    """chi^2 per point of each kept isotherm at theta."""
    u = prob.u(theta, m, T_ref)
    B = prob.basis(u, prob.knots(u)) * prob.w[m, None]
    b = prob.y[m] * prob.w[m]
    coef, *_ = _lsq(B, b)
    r2 = (b - B @ coef) ** 2
    own = prob.owner[m]
    return {j: float(np.mean(r2[own == j])) for j in range(prob.n_iso) if kept[j]}


def _lsq(A: np.ndarray, b: np.ndarray) -> tuple[np.ndarray]:
    """Least squares by the normal equations (LAPACK's lstsq is ~100x slower on these thin matrices)."""
    G = A.T @ A
    G[np.diag_indices_from(G)] += 1e-12 * float(np.trace(G)) / G.shape[0]
    return (np.linalg.solve(G, A.T @ b),)


def _choose_drift(
    prob: _Problem, theta: np.ndarray, m: np.ndarray, T_ref: float, drift: bool | None
) -> np.ndarray:
    """theta with a drift (3 values) when it makes the collapse clearly better (or ``drift``), else theta."""
    if drift is False:
        return theta
    q0 = prob.chi2(theta, m, T_ref)
    th_d = prob.search(np.append(theta, 0.0), m, T_ref, maxfev=150)
    q1 = prob.chi2(th_d, m, T_ref)
    n_pts = int(m.sum())
    if drift or (q0 - q1) / max(q1 / max(n_pts - 16, 1), 1.0) > DRIFT_GAIN:
        return th_d
    return theta


def _held_out(prob: _Problem, theta: np.ndarray, rest: np.ndarray, c: int) -> tuple[float, float, float]:
    """Isotherm c against the collapse of the isotherms ``rest`` at theta: the temperature [K] at which
    it falls best on their master curve, its chi^2 per point there (points inside their range of u), and
    the median chi^2 per point of the others."""
    from scipy.optimize import minimize_scalar

    m, T_ref = prob.use(rest)
    u = prob.u(theta, m, T_ref)
    t = prob.knots(u)
    w = prob.w[m]
    B = prob.basis(u, t)
    coef, *_ = _lsq(B * w[:, None], prob.y[m] * w)
    r2 = ((prob.y[m] - B @ coef) * w) ** 2
    own_m = prob.owner[m]
    others = float(np.median([np.mean(r2[own_m == j]) for j in np.flatnonzero(rest)]))
    mc = prob.owner == c
    znu = math.exp(theta[0])
    T_c = prob.iso[c].T
    x_c = prob.center + theta[1] * prob.W + (theta[2] * prob.W * T_c / prob.T_max if theta.size > 2 else 0.0)
    u0 = (prob.x[mc] - x_c) / prob.W * (T_c / T_ref) ** (-1.0 / znu)
    yc, wc = prob.y[mc], prob.w[mc]

    # compared only well inside the others' range of u: the master curve is loosely held at its ends
    lo, hi = np.quantile(u, [0.03, 0.97])

    def chi2_at(log_s: float) -> float:
        uc = u0 * math.exp(log_s)
        inside = (uc >= lo) & (uc <= hi)
        if inside.sum() < 3:
            return 1e30
        r = (yc[inside] - prob.basis(uc[inside], t) @ coef) * wc[inside]
        return float(np.mean(r**2))

    own = chi2_at(0.0)
    if own >= 1e30:
        return T_c, 0.0, others
    best = minimize_scalar(chi2_at, bounds=(-4.0, 0.5), method="bounded", options={"xatol": 1e-3})
    n_in = int(np.sum((u0 >= lo) & (u0 <= hi)))
    # a temperature of its own only when it fits clearly better than the bath's (chi^2 gain > 25)
    log_s = float(best.x) if n_in * (own - best.fun) > HEATED_GAIN else 0.0
    return T_c * math.exp(-log_s * znu), own, others


def _failure(r: ScalingResult, prob: _Problem) -> str:
    if not (math.isfinite(r.znu) and math.isfinite(r.x_c) and math.isfinite(r.quality)):
        return "the fit did not converge"
    if r.quality > QUALITY_MAX:
        return (
            f"the isotherms do not collapse (chi2 per degree of freedom {r.quality:.3g}, should be about 1)"
        )
    lz = math.log(r.znu)
    if min(lz - math.log(ZNU_BOUNDS[0]), math.log(ZNU_BOUNDS[1]) - lz) < 0.02:
        return f"z·ν ran to the edge of the search ({r.znu:.3g})"
    if abs(r.x_c - prob.center) > 0.98 * prob.W:
        return "x_c ran to the edge of the window"
    if math.isfinite(r.znu_err) and r.znu_err > r.znu:
        return f"z·ν is undetermined (error {r.znu_err:.2g} larger than the value {r.znu:.2g})"
    if math.isfinite(r.x_c_err) and r.x_c_err > prob.W:
        return "x_c is undetermined (its error exceeds the window)"
    return ""


def _failed(prob: _Problem, excluded: list[tuple[float, str]], reason: str) -> ScalingResult:
    nan = math.nan
    return ScalingResult(nan, nan, nan, nan, status="failed", reason=reason, excluded=excluded,
                         window=prob.W, window_center=prob.center)  # fmt: skip
