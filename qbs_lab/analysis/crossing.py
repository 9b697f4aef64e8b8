"""Crossing point of isotherms R(x) taken at several temperatures, from all isotherms jointly.

Near a quantum critical point the isotherms R_T(x) (x = B or V_g) all cross at one point (x_c, R_c):
on one side R falls on cooling, on the other it rises. :func:`find_crossing`

- smooths each isotherm with a local cubic (its own, possibly non-uniform grid; its noise measured
  point by point from the data, see :mod:`qbs_lab.analysis.smoothing`), on ln R when R > 0;
- finds where the order of the isotherms in T flips: at each x the slope a(x) of the smoothed values
  against ln T and its error; a crossing needs a significantly positive a on one side and a
  significantly negative a on the other (otherwise ``"no crossing in range"``, and ``order`` says
  which way the isotherms are ordered);
- puts (x_c, R_c) where the family's spread is smallest inside that flip: the minimum over x of the
  chi^2 of all smoothed isotherms about their weighted mean. Every isotherm adds information, however
  noisy; none has to cross another "significantly" on its own;
- the smoothing's own bias estimated by redoing the estimate with narrower local fits, the shift added
  to the errors;
- errors by a wild bootstrap: each isotherm is rebuilt as its smooth plus its own residuals (leverage
  corrected) times random signs, so noise that changes along an isotherm stays where it is, and the
  whole estimate is repeated on every replica;
- the crossing of every pair of isotherms, their drift with temperature and its error; the
  verdict ``"drifting crossing"`` when the drift is significant and the family's spread at x_c is beyond
  its noise, else ``"single crossing"``.

The analysis does not depend on the simulator: the pair quantum h/4e^2 is defined here.

Examples
--------
>>> import numpy as np
>>> x = np.linspace(-1.0, 1.0, 21)
>>> data = {T: (x, 1000.0 * (1.0 + 0.5 * np.tanh(x / T))) for T in (0.1, 0.2, 0.4)}
>>> result = find_crossing(data, n_boot=20)
>>> result.verdict, abs(result.x_c) < 1e-3, round(result.R_c)
('single crossing', True, 1000)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qbs_lab.analysis.smoothing import Isotherm, as_arrays, local_operator, prepare

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

GRID = 241  # points of the common grid on which the isotherms are compared
FLIP_SIGMAS = 2.0  # the order in T counts as flipped where |a| exceeds this many of its errors
DRIFT_SIGMAS = 3.0  # a drift is significant beyond this many of its errors
SPREAD_P = 0.01  # ... and the family's spread at x_c beyond its noise below this p-value
MIN_DRIFT_CROSSINGS = 3  # with two, a drift cannot be told from one pair's bias
WINDOW_SYST = 0.6  # the smoothing bias is estimated with local fits this much narrower

ORDER_RISES_ON_COOLING = "R rises on cooling across the whole range (isotherms never cross)"
ORDER_FALLS_ON_COOLING = "R falls on cooling across the whole range (isotherms never cross)"
ORDER_NONE = "the isotherms agree within their noise across the whole range"


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
        Best estimate of the critical point and its standard error [unit of x]; NaN without a crossing.
    R_c, R_c_err : float
        Critical resistance and its standard error [Ohm]; NaN without a crossing.
    R_c_over_RQ : float
        R_c in units of the pair quantum h/4e^2 (6453.2 Ohm).
    drift, drift_err : float
        Slope of the pairwise crossings against their mean temperature, and its standard
        error [unit of x per K]; NaN with fewer than two such crossings.
    verdict : str
        ``"single crossing"``, ``"drifting crossing"`` or ``"no crossing in range"``.
    crossings : list of Crossing
        The crossing of each pair of isotherms (where it is found in most replicas), sorted by (T1, T2).
    x_name, over_name : str
        Names of the swept variable and of the isotherm parameter (e.g. "B" and "T").
    spread_chi2 : float
        Reduced chi^2 of the isotherms about their mean at x_c (about 1 when they meet within noise).
    order : str
        How the isotherms are ordered in T when they do not cross (empty otherwise).
    excluded : list of (float, str)
        Isotherms not used, as (T [K], reason).
    temperatures : list of float
        The temperatures [K] of the isotherms used.
    grid, spread : ndarray
        The common grid [unit of x] and the family's chi^2 spread on it (for plots).
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
    order: str = ""
    excluded: list[tuple[float, str]] = field(default_factory=list)
    temperatures: list[float] = field(default_factory=list)
    grid: np.ndarray = field(default_factory=lambda: np.zeros(0))
    spread: np.ndarray = field(default_factory=lambda: np.zeros(0))

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


# -- smoothing and replicas ---------------------------------------------------------------------


def window_points(n: int, scale: float = 1.0) -> int:
    """Points in each local cubic fit: enough to average the noise, few enough to follow a steep step."""
    return int(np.clip(round(0.12 * scale * n), 7 if scale >= 1 else 5, 31 * scale))


@dataclass
class _Fit:
    idx: np.ndarray  # (G, k) points of each grid value's fit
    L: np.ndarray  # (G, k) weights
    value: np.ndarray  # (G,) smoothed y on the grid
    var: np.ndarray  # (G,) its variance from the noise
    smooth: np.ndarray  # (n,) smoothed y at the isotherm's own points
    resid: np.ndarray  # (n,) leverage-corrected residuals


def _fit(iso: Isotherm, grid: np.ndarray, scale: float = 1.0) -> _Fit:
    k = window_points(iso.x.size, scale)
    idx, L = local_operator(iso.x, iso.sigma, grid, k)
    value = np.sum(L * iso.y[idx], axis=1)
    var = np.sum(L * L * iso.sigma[idx] ** 2, axis=1)
    sidx, sL = local_operator(iso.x, iso.sigma, iso.x, k)
    smooth = np.sum(sL * iso.y[sidx], axis=1)
    lev = np.sum(np.where(sidx == np.arange(iso.x.size)[:, None], sL, 0.0), axis=1)
    resid = (iso.y - smooth) / np.sqrt(np.clip(1.0 - lev, 0.05, 1.0))
    return _Fit(idx, L, value, var, smooth, resid)


def _replicas(fit: _Fit, y_rep: np.ndarray) -> np.ndarray:
    """Smoothed grid values (B, G) of replica rows y_rep (B, n)."""
    return np.einsum("bgk,gk->bg", y_rep[:, fit.idx], fit.L)


def _spread(values: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """chi^2 of the isotherms about their weighted mean (..., G), and the mean, from values (..., I, G)."""
    w = 1.0 / var
    mean = np.sum(values * w, axis=-2) / np.sum(w, axis=-2)
    chi2 = np.sum((values - mean[..., None, :]) ** 2 * w, axis=-2)
    return chi2, mean


def _argmin_in(f: np.ndarray, grid: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Position [unit of x] of the minimum of f (..., G) within grid[lo:hi+1], parabola-refined."""
    sub = f[..., lo : hi + 1]
    k = np.argmin(sub, axis=-1) + lo
    km = np.clip(k, max(lo, 1), min(hi, grid.size - 2))
    take = lambda d: np.take_along_axis(f, (km + d)[..., None], axis=-1)[..., 0]  # noqa: E731
    f0, fm, fp = take(0), take(-1), take(1)
    den = fm - 2 * f0 + fp
    with np.errstate(all="ignore"):
        shift = np.where(den > 0, 0.5 * (fm - fp) / den, 0.0)
    shift = np.clip(shift, -1.0, 1.0)
    step = grid[1] - grid[0]
    x = grid[km] + shift * step
    return np.clip(x, grid[lo], grid[hi])


def _order_slope(values: np.ndarray, var: np.ndarray, logT: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted slope a(x) of the smoothed values against ln T, and its error, on the grid."""
    w = 1.0 / var
    sw = w.sum(axis=0)
    mt = (w * logT[:, None]).sum(axis=0) / sw
    dt = logT[:, None] - mt
    sxx = (w * dt * dt).sum(axis=0)
    a = (w * dt * values).sum(axis=0) / sxx
    return a, 1.0 / np.sqrt(sxx)


def _flip(z: np.ndarray) -> tuple[int, int] | None:
    """Grid indices (i, j), i < j, of the strongest flip of the order: z[i] and z[j] significant with
    opposite signs and nothing significant between them; None when the order never flips."""
    sig = np.flatnonzero(np.abs(z) >= FLIP_SIGMAS)
    best: tuple[float, int, int] | None = None
    for a, b in itertools.pairwise(sig):
        if np.sign(z[a]) != np.sign(z[b]):
            # strength: how clearly each side is ordered, over a stretch beside the flip
            left = np.abs(z[max(0, a - 20) : a + 1]).max()
            right = np.abs(z[b : b + 21]).max()
            s = min(left, right)
            if best is None or s > best[0]:
                best = (s, int(a), int(b))
    return None if best is None else (best[1], best[2])


def _zero_near(d: np.ndarray, grid: np.ndarray, x0: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Zero of d (..., G) within grid[lo:hi+1] nearest x0 (...,), linearly interpolated; NaN if none."""
    seg = d[..., lo : hi + 1]
    g = grid[lo : hi + 1]
    change = np.signbit(seg[..., :-1]) != np.signbit(seg[..., 1:])
    with np.errstate(all="ignore"):
        t = seg[..., :-1] / (seg[..., :-1] - seg[..., 1:])
    xz = g[:-1] + t * (g[1:] - g[:-1])
    dist = np.where(change, np.abs(xz - np.asarray(x0)[..., None]), np.inf)
    k = np.argmin(dist, axis=-1)
    found = np.isfinite(np.take_along_axis(dist, k[..., None], axis=-1)[..., 0])
    return np.where(found, np.take_along_axis(xz, k[..., None], axis=-1)[..., 0], np.nan)


def _robust_sd(v: np.ndarray) -> np.ndarray:
    """Spread of bootstrap values along axis 0 (1.4826 MAD, NaN ignored)."""
    import warnings

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(v, axis=0)
        return 1.4826 * np.nanmedian(np.abs(v - med), axis=0)


def _wslope(t: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least-squares slope of v against t along the last axis, NaN entries ignored."""
    ok = np.isfinite(v)
    ww = np.where(ok, w, 0.0)
    vv = np.where(ok, v, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        sw = ww.sum(axis=-1)
        mt = (ww * t).sum(axis=-1) / sw
        mv = (ww * vv).sum(axis=-1) / sw
        dt = t - mt[..., None]
        den = (ww * dt * dt).sum(axis=-1)
        return np.where(den > 0, (ww * dt * (vv - mv[..., None])).sum(axis=-1) / den, np.nan)


# -- the estimate -------------------------------------------------------------------------------


def find_crossing(
    data: Any,
    x: str = "B",
    over: str = "T",
    n_boot: int = 200,
    seed: int = 0,
    *,
    exclude: Mapping[float, str] | None = None,
    isotherms: Sequence[Isotherm] | None = None,
) -> CrossingResult:
    """The crossing point (x_c, R_c) of all isotherms jointly, its drift, and a verdict.

    Parameters
    ----------
    data : xarray.Dataset, xarray.DataArray or mapping
        A Dataset with a variable ``"R"`` [Ohm] over exactly the two dimensions ``x`` and ``over``
        (or that DataArray), or a mapping ``{T: (x_values, R_values)}`` in which each isotherm has its
        own, possibly non-uniform grid. NaN points are ignored (a run in progress); isotherms with fewer
        than 5 valid points are not used (and listed in ``excluded``).
    x : str
        The swept variable: ``"B"`` [T] or ``"V_g"`` [V].
    over : str
        The isotherm parameter, normally ``"T"`` [K].
    n_boot : int
        Bootstrap replicas for the error bars (below 2: no error bars, NaN).
    seed : int
        Seed of the bootstrap's random numbers.
    exclude : mapping of float to str, optional
        Isotherms to leave out, {T: reason} (e.g. those the collapse found heated).
    isotherms : sequence of Isotherm, optional
        Already prepared isotherms (:func:`qbs_lab.analysis.smoothing.prepare`); ``data`` is then unused.

    Returns
    -------
    CrossingResult
        x_c [unit of x], R_c [Ohm], their standard errors, R_c / (h/4e^2), the drift [unit of x per K],
        every pair's crossing, and the isotherms left out with their reasons.
    """
    excluded: list[tuple[float, str]] = []
    if isotherms is None:
        iso, excluded = prepare(as_arrays(data, x, over))
    else:
        iso = list(isotherms)
    if exclude:
        excluded += [(T, r) for T, r in exclude.items()]
        iso = [it for it in iso if it.T not in exclude]
    # isotherms at the same temperature: keep the first
    seen: set[float] = set()
    iso = [it for it in iso if not (it.T in seen or seen.add(it.T))]  # type: ignore[func-returns-value]

    def nothing(
        order: str, grid: np.ndarray | None = None, spread: np.ndarray | None = None
    ) -> CrossingResult:
        nan = math.nan
        empty = np.zeros(0)
        return CrossingResult(
            nan, nan, nan, nan, nan, nan, nan, VERDICT_NONE, [], x, over, nan, order, excluded,
            [it.T for it in iso], empty if grid is None else grid, empty if spread is None else spread,
        )  # fmt: skip

    if len(iso) < 2:
        return nothing("fewer than two usable isotherms")
    lo = max(float(it.x[0]) for it in iso)
    hi = min(float(it.x[-1]) for it in iso)
    if not hi > lo:
        return nothing("the isotherms share no range of " + x)
    grid = np.linspace(lo, hi, GRID)
    fits = [_fit(it, grid) for it in iso]
    values = np.stack([f.value for f in fits])  # (I, G)
    var = np.stack([f.var for f in fits])
    logT = np.log(np.array([it.T for it in iso]))
    a, a_err = _order_slope(values, var, logT)
    z = a / a_err
    chi2, mean = _spread(values, var)
    flip = _flip(z)
    if flip is None:
        significant = z[np.abs(z) >= FLIP_SIGMAS]
        if significant.size == 0:
            order = ORDER_NONE
        else:
            order = ORDER_FALLS_ON_COOLING if np.median(significant) > 0 else ORDER_RISES_ON_COOLING
        return nothing(order, grid, chi2)
    i0, j0 = flip
    x_c = float(_argmin_in(chi2, grid, i0, j0))
    # the smoothing's bias: the same estimate with narrower local fits; the shift counts as an error
    narrow = [_fit(it, grid, WINDOW_SYST) for it in iso]
    chi2_n, mean_n = _spread(np.stack([f.value for f in narrow]), np.stack([f.var for f in narrow]))
    x_c_n = float(_argmin_in(chi2_n, grid, i0, j0))
    syst_x = abs(x_c_n - x_c)
    syst_y = abs(float(np.interp(x_c_n, grid, mean_n)) - float(np.interp(x_c, grid, mean)))
    y_c = float(np.interp(x_c, grid, mean))
    R_c = float(iso[0].R(y_c))
    spread_chi2 = float(np.interp(x_c, grid, chi2)) / max(len(iso) - 1, 1)

    # every pair's crossing, the one nearest x_c anywhere in the range (a drifting crossing moves)
    plo, phi = 0, GRID - 1
    T = np.array([it.T for it in iso])
    pi, pj = np.triu_indices(len(iso), 1)  # every pair of isotherms
    xp = _zero_near(values[pi] - values[pj], grid, np.full(pi.size, x_c), plo, phi)
    Rp = np.array([float(iso[0].R(np.interp(v, grid, mean))) if math.isfinite(v) else math.nan for v in xp])
    tm = 0.5 * (T[pi] + T[pj])

    nb = max(int(n_boot), 0)
    x_c_err = R_c_err = drift_err = math.nan
    xp_err = np.full(xp.size, math.nan)
    bxp = None
    if nb >= 2:
        rng = np.random.default_rng(seed)
        reps = []
        for it, f in zip(iso, fits, strict=True):
            signs = rng.choice(np.array([-1.0, 1.0]), size=(nb, it.x.size))
            # each point's own residual, but never below the noise measured there: a local cubic
            # through few points (a sparse isotherm) follows part of the noise and leaves small residuals
            size = np.maximum(np.abs(f.resid), it.sigma)
            reps.append(_replicas(f, f.smooth + size * signs))
        bvals = np.stack(reps, axis=1)  # (B, I, G)
        bchi2, bmean = _spread(bvals, var[None])
        bx = _argmin_in(bchi2, grid, i0, j0)
        by = np.array([np.interp(bx[b], grid, bmean[b]) for b in range(nb)])
        # the isotherms meet less closely than their noise allows (a residual bias or a small drift):
        # the errors are scaled up as the spread's chi^2 says (the Particle Data Group's scale factor)
        scale = math.sqrt(max(spread_chi2, 1.0))
        x_c_err = scale * math.hypot(float(np.std(bx, ddof=1)), syst_x)
        R_c_err = float(np.std(iso[0].R(by), ddof=1))
        R_c_err = scale * math.hypot(R_c_err, syst_y * R_c if iso[0].log else syst_y)
        bxp = _zero_near(bvals[:, pi] - bvals[:, pj], grid, np.full((nb, pi.size), x_c), plo, phi)
        # each crossing's error: its bootstrap spread and the smoothing's bias (narrower fits' shift)
        narrow_values = np.stack([f.value for f in narrow])
        xp_n = _zero_near(narrow_values[pi] - narrow_values[pj], grid, xp, plo, phi)
        xp_err = np.hypot(_robust_sd(bxp), np.where(np.isfinite(xp_n), np.abs(xp_n - xp), 0.0))
        lost = np.mean(~np.isfinite(bxp), axis=0)
        xp = np.where(lost > 0.25, np.nan, xp)  # a crossing that vanishes in many replicas is noise

    keep = np.isfinite(xp) & np.isfinite(xp_err) & (xp_err > 0) if nb >= 2 else np.isfinite(xp)
    crossings = [
        Crossing(float(T[pi[k]]), float(T[pj[k]]), float(xp[k]), float(Rp[k]), float(xp_err[k]))
        for k in np.flatnonzero(keep)
    ]
    drift = math.nan
    if keep.sum() >= 2 and np.ptp(tm[keep]) > 0:
        w = np.where(keep, 1.0 / np.where(keep, xp_err, 1.0) ** 2, 0.0) if nb >= 2 else keep.astype(float)
        drift = float(_wslope(tm, np.where(keep, xp, np.nan), w))
        if bxp is not None:
            drift_err = float(np.nanstd(_wslope(tm, np.where(keep, bxp, np.nan), w), ddof=1))
            # crossings that scatter about the line beyond their errors make the drift less certain
            t_k, x_k, w_k = tm[keep], xp[keep], w[keep]
            icpt = np.sum(w_k * (x_k - drift * t_k)) / np.sum(w_k)
            dof_line = int(keep.sum()) - 2
            if dof_line >= 1:
                chi2_line = float(np.sum(w_k * (x_k - icpt - drift * t_k) ** 2)) / dof_line
                drift_err *= math.sqrt(max(chi2_line, 1.0))

    from scipy.special import chdtrc  # chi^2 survival function (scipy.stats takes a second to import)

    dof = max(len(iso) - 2, 1)
    p_spread = float(chdtrc(dof, spread_chi2 * (len(iso) - 1))) if len(iso) >= 3 else 1.0
    drifts = (
        len(crossings) >= MIN_DRIFT_CROSSINGS
        and math.isfinite(drift)
        and math.isfinite(drift_err)
        and abs(drift) > DRIFT_SIGMAS * drift_err
        and p_spread < SPREAD_P
    )
    return CrossingResult(
        x_c=x_c,
        x_c_err=x_c_err,
        R_c=R_c,
        R_c_err=R_c_err,
        R_c_over_RQ=R_c / H_OVER_4E2,
        drift=drift,
        drift_err=drift_err,
        verdict=VERDICT_DRIFTING if drifts else VERDICT_SINGLE,
        crossings=crossings,
        x_name=x,
        over_name=over,
        spread_chi2=spread_chi2,
        order="",
        excluded=excluded,
        temperatures=[float(t) for t in T],
        grid=grid,
        spread=chi2,
    )
