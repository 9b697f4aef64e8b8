"""Isotherms prepared for analysis: cleaned, binned, their noise measured, and local-polynomial smoothers.

Everything downstream (the joint crossing, the scaling collapse, the bootstrap) works on
:class:`Isotherm` objects made here, so that each sees the same points and the same noise.

- Values: y = ln R when every R of the data set is positive (isotherms spanning decades become smooth
  and multiplicative lock-in noise becomes even), otherwise y = R [Ohm] (noise about zero on the
  superconducting side).
- Noise: each point is compared with the cubic through its two neighbours on either side; the running
  robust spread (1.4826 x median |residual|) over a window of neighbours gives sigma at every point, so
  noise that changes along an isotherm (heteroscedastic) is kept as it is.
- Dense isotherms are averaged in runs of consecutive points down to at most ``MAX_POINTS`` (errors
  1/sqrt(sum 1/sigma^2)): the analysis of 2,000 points costs what 300 cost, and loses nothing at the
  resolution of a curve that is smooth over a few points.
- :func:`local_operator`: the weights of a local cubic fit at query points, so that fits of bootstrap
  replicas are one gather and one product.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Isotherm", "as_arrays", "local_operator", "prepare"]

MIN_POINTS = 5  # an isotherm with fewer valid points is not used
MAX_POINTS = 300  # dense isotherms are averaged down to this many points


@dataclass
class Isotherm:
    """One isotherm ready for analysis.

    Attributes
    ----------
    T : float
        Its temperature [K].
    x : ndarray
        The swept variable, sorted [unit of x]; averaged in runs for dense isotherms.
    y : ndarray
        ln(R / Ohm), or R [Ohm] when the data set is not all positive (see ``log``).
    sigma : ndarray
        One-sigma noise of each y (same units as y).
    n_raw : int
        Valid points before averaging.
    log : bool
        Whether y is ln R.
    """

    T: float
    x: np.ndarray
    y: np.ndarray
    sigma: np.ndarray
    n_raw: int
    log: bool

    def R(self, y: np.ndarray | float) -> np.ndarray:
        """Resistance [Ohm] of values on the y scale."""
        return np.exp(y) if self.log else np.asarray(y, dtype=float)


def as_arrays(data: Any, x: str, over: str) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """[(T, x, R)] from an xarray Dataset/DataArray R(over, x) or a mapping {T: (x, R[, dR])}, sorted by T.

    Non-finite points are dropped; each isotherm is sorted along x.
    """
    import xarray as xr

    out: list[tuple[float, np.ndarray, np.ndarray]] = []
    if isinstance(data, xr.Dataset | xr.DataArray):
        da = data["R"] if isinstance(data, xr.Dataset) else data
        if set(da.dims) != {x, over}:
            raise ValueError(f"R must have exactly the dimensions ({x!r}, {over!r}); it has {da.dims}")
        da = da.transpose(over, x)
        xs = np.asarray(da[x].values, dtype=float)
        for T, row in zip(
            np.asarray(da[over].values, dtype=float), np.asarray(da.values, dtype=float), strict=True
        ):
            out.append((float(T), xs, row))
    elif isinstance(data, Mapping):
        for T, val in data.items():
            xa, Ra = np.asarray(val[0], dtype=float).ravel(), np.asarray(val[1], dtype=float).ravel()
            if xa.shape != Ra.shape:
                raise ValueError(f"isotherm at {over}={T}: x and R differ in length")
            out.append((float(T), xa, Ra))
    else:
        raise TypeError("data must be an xarray Dataset with a variable 'R' or a mapping {T: (x, R)}")
    clean = []
    for T, xa, Ra in out:
        ok = np.isfinite(xa) & np.isfinite(Ra)
        order = np.argsort(xa[ok], kind="stable")
        clean.append((T, xa[ok][order], Ra[ok][order]))
    return sorted(clean, key=lambda t: t[0])


def _point_noise(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Noise sigma at every point (units of y): running robust spread of local-cubic residuals."""
    n = x.size
    if n >= 5:
        i = np.arange(2, n - 2)
        nb = np.stack([i - 2, i - 1, i + 1, i + 2], axis=1)
        xn = x[nb]
        L = np.ones_like(xn)  # Lagrange weights of the cubic through the four neighbours, at x_i
        for a in range(4):
            for b in range(4):
                if a != b:
                    L[:, a] *= (x[i] - xn[:, b]) / (xn[:, a] - xn[:, b])
        z = (y[i] - np.sum(L * y[nb], axis=1)) / np.sqrt(1 + np.sum(L * L, axis=1))
        z = np.concatenate([[z[0], z[0]], z, [z[-1], z[-1]]])
    else:
        z = np.full(n, np.std(y) if n > 1 else 0.0)
    a = np.abs(z)
    size = int(np.clip(n // 8, 7, 61)) | 1
    size = min(size, n if n % 2 else n - 1)
    padded = np.pad(a, size // 2, mode="edge")
    local = 1.4826 * np.median(np.lib.stride_tricks.sliding_window_view(padded, size), axis=1)
    overall = 1.4826 * float(np.median(a))
    scale = float(np.median(np.abs(y))) or 1.0
    floor = max(0.3 * overall, 1e-7 * scale)
    return np.maximum(local, floor)


def average_runs(x: np.ndarray, y: np.ndarray, s: np.ndarray, m: int) -> tuple[np.ndarray, ...]:
    """Weighted means of runs of m consecutive points, with their errors."""
    n = x.size
    groups = np.arange(n) // m
    w = 1.0 / s**2
    sw = np.bincount(groups, weights=w)
    xm = np.bincount(groups, weights=w * x) / sw
    ym = np.bincount(groups, weights=w * y) / sw
    return xm, ym, 1.0 / np.sqrt(sw)


def prepare(
    raw: Sequence[tuple[float, np.ndarray, np.ndarray]], *, log: bool | None = None
) -> tuple[list[Isotherm], list[tuple[float, str]]]:
    """Isotherms ready for analysis from [(T, x, R)], and those left out as (T, reason).

    ``log``: analyse ln R (default: when every R is positive).
    """
    if log is None:
        log = all(bool(np.all(R > 0)) for _T, _x, R in raw if R.size)
    kept: list[Isotherm] = []
    left: list[tuple[float, str]] = []
    for T, xs, Rs in raw:
        if xs.size < MIN_POINTS:
            left.append((T, f"T={T:g} K: {xs.size} valid points, fewer than {MIN_POINTS}"))
            continue
        if np.ptp(xs) <= 0:
            left.append((T, f"T={T:g} K: all points at one x"))
            continue
        y = np.log(Rs) if log else Rs.astype(float)
        # points at repeated x: average them first (the cubic residuals need distinct x)
        ux, inv = np.unique(xs, return_inverse=True)
        if ux.size < xs.size:
            cnt = np.bincount(inv)
            y = np.bincount(inv, weights=y) / cnt
            xs = ux
        s = _point_noise(xs, y)
        if xs.size > MAX_POINTS:
            xs, y, s = average_runs(xs, y, s, math.ceil(xs.size / MAX_POINTS))
        kept.append(Isotherm(float(T), xs, y, s, int(Rs.size), bool(log)))
    return kept, left


def local_operator(
    x: np.ndarray, sigma: np.ndarray, xq: np.ndarray, k: int, degree: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Weights of a local weighted polynomial fit of k consecutive points around each query point.

    Returns (idx, L), both (Q, k): the fit at xq[q] is sum(L[q] * y[idx[q]]). Weights 1/sigma^2 and a
    tricube kernel in distance; the degree drops where the window is short.
    """
    n = x.size
    k = int(min(max(k, degree + 2), n))
    deg = int(min(degree, k - 2))
    pos = np.searchsorted(x, xq)
    start = np.clip(pos - k // 2, 0, n - k)
    idx = start[:, None] + np.arange(k)[None, :]
    xw = x[idx]
    h = np.max(np.abs(xw - xq[:, None]), axis=1) * 1.0001 + 1e-300
    t = (xw - xq[:, None]) / h[:, None]
    kern = (1 - np.abs(t) ** 3) ** 3
    w = kern / sigma[idx] ** 2
    V = t[:, :, None] ** np.arange(deg + 1)[None, None, :]  # (Q, k, deg+1)
    VW = V * w[:, :, None]
    G = np.einsum("qki,qkj->qij", VW, V)  # normal equations, (Q, deg+1, deg+1)
    G += 1e-12 * np.trace(G, axis1=1, axis2=2)[:, None, None] * np.eye(deg + 1)
    e0 = np.zeros((len(xq), deg + 1, 1))
    e0[:, 0, 0] = 1.0
    c0 = np.linalg.solve(G, e0)[:, :, 0]  # first row of G^-1
    L = np.einsum("qi,qki->qk", c0, VW)
    return idx, L
