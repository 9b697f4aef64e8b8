"""Is a resistance intrinsic, or made by the environment? The RF-sensitivity and excitation checks.

Both functions take an :class:`xarray.Dataset` with a variable ``R`` [Ohm] over the right dimensions,
whatever produced it (a run of the ``rf_sensitivity`` or ``excitation_check`` procedure, a file, a
synthetic set), and return a JSON-ready dict: plain numbers (non-finite ones as None), units in the key
names (``_Ohm``, ``_W``, ``_K``, ``_A``, ``_Hz``, ``_dBm``; ratios bare), a ``verdict`` and a one-line
``summary``.

:func:`rf_sensitivity`
    Dimensions: ``P_rf`` [dBm] with an RF-off level (:data:`qbs_lab.plan.RF_OFF`), ``repeat`` (the
    off-then-levels sequence measured again), and any others (``B``, ``V_g``, ``T``...): each of their
    combinations is an operating point. At each point, R at every level is the mean over the repeats;
    the standard error comes from the repeats' scatter. Each level's change from RF off, dR, has
    standard error sqrt(s_off^2/n_off + s_on^2/n_on), where each level's s^2 is the larger of its own
    sample variance and the variance pooled over all levels of that point (with three repeats a single
    level's variance has two degrees of freedom and can come out small by chance; the pooled one has
    n_levels*(n_repeats-1); a level whose own scatter is larger, RF-induced fluctuations say, keeps
    it). The significance is |dR| / its standard error. d log R / d log P (P [W] = 10^((P_dBm-30)/10))
    is the slope of a weighted straight-line fit of ln R against ln P over the on-levels whose change is
    significant (two or more), else over all on-levels.

    A point is RF-sensitive when some level changes R by at least ``n_sigma`` (5) standard errors AND
    by at least ``min_relative_change`` (1 %) of R. Both are needed: significance alone would flag a
    0.05 % change once the repeats are many and quiet, though a change that small is irrelevant to the
    question the check answers (is a low-temperature plateau, a factor-of-several effect, extrinsic?)
    and is within what the bath's slow drift does between repeats (thermometer stability 0.1-0.5 %
    times d ln R / d ln T ~ 1-3 at a point sensitive to temperature); and a large change that is not
    significant is noise. The run is RF-sensitive when any point is.

:func:`excitation_check`
    Dimensions: ``I_exc`` [A] (the excitation current), optionally ``f_exc`` [Hz] (lock-in
    frequencies) and ``T`` [K] (bath temperatures). The current is the measured ``I`` where the
    dataset has it (the nominal ``I_exc`` otherwise), the bath temperature the mean of ``T_sample``
    over each temperature's points where it has it (the ``T`` coordinate otherwise).

    - Ohmic test: per (T, f) line, d = R(I)/R(I_min) - 1. A point is non-ohmic when |d| exceeds
      ``tolerance`` (1 %) AND ``n_sigma`` (3) standard errors. The noise of one reading is read off
      the quadrature: the lock-in's noise is the same on X and Y, so the scatter of Y about its
      straight-line dependence on X (a phase offset) gives the noise voltage, pooled over the dataset
      (a robust estimate: 1.4826 x median absolute residual), and R's relative error is that over |X|.
      Without X and Y only the tolerance applies.
    - Out-of-phase ratio |Y/X|: per line, the least-squares slope of Y against X (set by the
      strongest readings); flagged above ``max_out_of_phase`` (0.05, a phase of ~3 degrees: a
      capacitive or badly phased signal that makes X a poor measure of R).
    - Frequencies: at each (T, I), R at every other frequency relative to the first; flagged when a
      difference exceeds the tolerance and n_sigma standard errors.
    - Electron temperature, where R changes with I: R(T) at the smallest current over the bath
      temperatures (two or more, strictly monotonic) is the thermometer; ln T_e is read off ln R by
      monotonic (PCHIP) interpolation, only within the calibrated range. For heating,
      T_e^4 - T^4 = I^2 R / (Sigma*A): a weighted least-squares fit through the origin gives Sigma*A
      [W/K^4] (weights from R's noise through d ln R / d ln T). The calibration points themselves are
      taken at I_min and slightly heated: with the fitted Sigma*A their temperatures are corrected
      (T_cal^4 = T^4 + I_min^2 R / Sigma*A) and the fit is redone, three times.
      Heating is the explanation when every non-ohmic point moved R in the direction a higher
      temperature does, and T_e^4 - T^4 grows as (I^2 R)^n with n within 0.7..1.3 (when three or more
      points with a spread of at least 3x in power allow a fit of n).

    Verdict: ``"ohmic"`` (no non-ohmic point), ``"self-heating"`` (non-ohmic, and heating explains it),
    ``"non-ohmic (not heating)"`` (non-ohmic, and heating contradicts it), or ``"non-ohmic (heating
    untested)"`` (non-ohmic, but no usable R(T): one bath temperature, a non-monotonic R(T), or every
    T_e beyond the calibrated range).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr
from scipy.interpolate import PchipInterpolator

from qbs_lab.plan import RF_OFF

__all__ = ["dbm_to_watts", "excitation_check", "rf_sensitivity"]

#: an RF level at or below this [dBm] counts as "RF off" (no source goes below about -145 dBm)
RF_OFF_BELOW = -150.0


def dbm_to_watts(dbm: float | np.ndarray) -> float | np.ndarray:
    """Power [W] from a level in dBm (0 dBm = 1 mW)."""
    return 10.0 ** ((np.asarray(dbm, dtype=float) - 30.0) / 10.0)


def _num(x: Any, digits: int = 6) -> float | None:
    """A JSON-ready number: rounded to ``digits`` significant digits; None for NaN or infinity."""
    if x is None:
        return None
    x = float(x)
    if not math.isfinite(x):
        return None
    return float(f"{x:.{digits}g}")


def _coord_text(name: str, value: float, units: str) -> str:
    if units == "T":
        return f"{name}={value * 1e3:g} mT"
    if units == "K":
        return f"{name}={value * 1e3:g} mK"
    return f"{name}={value:g}{' ' + units if units else ''}"


def _scalar_coords(ds: xr.Dataset, var: str) -> dict[str, float]:
    out = {}
    for name, c in ds[var].coords.items():
        if c.ndim == 0 and np.issubdtype(c.dtype, np.number):
            out[str(name)] = float(c.values)
    return out


# -- RF sensitivity ------------------------------------------------------------------------------------
def rf_sensitivity(
    ds: xr.Dataset,
    *,
    var: str = "R",
    rf_dim: str = "P_rf",
    repeat_dim: str = "repeat",
    n_sigma: float = 5.0,
    min_relative_change: float = 0.01,
) -> dict[str, Any]:
    """R with the RF off against each RF level at each operating point; see the module docstring.

    Returns a dict with ``verdict`` ("RF-sensitive", "RF-insensitive", or "undetermined" without
    repeats), ``summary``, ``criteria``, ``levels_dBm``, the ``fixed`` scalar coordinates, ``points``
    (one dict per operating point: ``coords``, ``R_off_Ohm``, ``R_off_err_Ohm``, ``repeats``,
    ``noise_Ohm`` (pooled scatter of one reading), ``levels`` (per on-level: ``P_dBm``, ``P_W``,
    ``R_Ohm``, ``R_err_Ohm``, ``dR_Ohm``, ``dR_err_Ohm``, ``dR_over_R``, ``dR_over_R_err``,
    ``significance_sigma``, ``significant``, ``sensitive``), ``dlogR_dlogP``, ``dlogR_dlogP_err``,
    ``slope_levels_dBm``, ``verdict``), and the largest change over all (``max_abs_dR_over_R``,
    ``max_significance_sigma``).
    """
    if var not in ds:
        raise ValueError(f"the dataset has no variable {var!r}")
    R = ds[var]
    if rf_dim not in R.dims:
        raise ValueError(f"{var} has no dimension {rf_dim!r} (RF power levels [dBm])")
    if repeat_dim not in R.dims:
        R = R.expand_dims({repeat_dim: [0.0]})
    levels = np.asarray(R[rf_dim].values, dtype=float)
    off = levels <= max(RF_OFF_BELOW, RF_OFF)
    if not off.any():
        raise ValueError(f"{rf_dim} has no RF-off level ({RF_OFF:g} dBm)")
    if off.sum() > 1:
        raise ValueError(f"{rf_dim} has more than one RF-off level")
    if off.all():
        raise ValueError(f"{rf_dim} has no RF-on level")
    on_idx = np.flatnonzero(~off)
    on_idx = on_idx[np.argsort(levels[on_idx])]
    off_i = int(np.flatnonzero(off)[0])
    point_dims = [d for d in R.dims if d not in (rf_dim, repeat_dim)]
    R = R.transpose(*point_dims, rf_dim, repeat_dim)
    values = np.asarray(R.values, dtype=float)
    shape = values.shape[: len(point_dims)]
    units = {d: str(ds[d].attrs.get("units", "")) if d in ds.coords else "" for d in point_dims}
    n_rep = int(values.shape[-1])
    points = []
    for index in np.ndindex(*shape):
        coords = {d: float(R[d].values[i]) for d, i in zip(point_dims, index, strict=True)}
        block = values[index]  # (levels, repeats)
        res = _rf_point(block, levels, off_i, on_idx, n_sigma, min_relative_change)
        res = {"coords": {k: _num(v) for k, v in coords.items()}, **res}
        res["label"] = ", ".join(_coord_text(d, coords[d], units[d]) for d in point_dims) or "the point"
        points.append(res)
    determined = [p for p in points if p["verdict"] != "undetermined"]
    if not determined:
        verdict = "undetermined"
    elif any(p["verdict"] == "RF-sensitive" for p in points):
        verdict = "RF-sensitive"
    else:
        verdict = "RF-insensitive"
    all_levels = [(p, lv) for p in points for lv in p["levels"] if lv["dR_over_R"] is not None]
    biggest = max(all_levels, key=lambda pl: abs(pl[1]["dR_over_R"]), default=None)
    sig_values = [lv["significance_sigma"] for _, lv in all_levels if lv["significance_sigma"] is not None]
    out: dict[str, Any] = {
        "check": "rf_sensitivity",
        "verdict": verdict,
        "criteria": {"n_sigma": n_sigma, "min_relative_change": min_relative_change},
        "levels_dBm": [float(levels[i]) for i in on_idx],
        "repeats": n_rep,
        "fixed": _scalar_coords(ds, var),
        "points": points,
        "max_abs_dR_over_R": _num(abs(biggest[1]["dR_over_R"])) if biggest else None,
        "max_significance_sigma": _num(max(sig_values)) if sig_values else None,
    }
    out["summary"] = _rf_summary(out, biggest)
    return out


def _rf_point(
    block: np.ndarray,
    levels: np.ndarray,
    off_i: int,
    on_idx: np.ndarray,
    n_sigma: float,
    min_rel: float,
) -> dict[str, Any]:
    n = np.isfinite(block).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.nansum(block, axis=1) / np.maximum(n, 1), np.nan)
        ss = np.nansum((block - mean[:, None]) ** 2, axis=1)
        dof = int(np.sum(np.maximum(n - 1, 0)))
        pooled = float(np.sum(ss) / dof) if dof > 0 else math.nan
        own = np.where(n > 1, ss / np.maximum(n - 1, 1), np.nan)
    var_l = np.fmax(own, pooled)  # the larger of each level's own and the pooled variance (NaN-aware)
    se = np.sqrt(var_l / np.maximum(n, 1))
    R_off, se_off = mean[off_i], se[off_i]
    rows = []
    for i in on_idx:
        dR = mean[i] - R_off
        dR_err = math.sqrt(se_off**2 + se[i] ** 2)
        if not math.isfinite(dR_err):
            sig = math.nan
        elif dR_err > 0:
            sig = abs(dR) / dR_err
        else:
            sig = math.inf if dR != 0 else 0.0
        rel = dR / R_off if R_off else math.nan
        rel_err = dR_err / abs(R_off) if R_off else math.nan
        significant = bool(math.isfinite(dR) and sig >= n_sigma) if not math.isnan(sig) else False
        sensitive = bool(significant and abs(rel) >= min_rel)
        rows.append(
            {
                "P_dBm": float(levels[i]),
                "P_W": _num(dbm_to_watts(levels[i])),
                "R_Ohm": _num(mean[i]),
                "R_err_Ohm": _num(se[i]),
                "dR_Ohm": _num(dR),
                "dR_err_Ohm": _num(dR_err),
                "dR_over_R": _num(rel),
                "dR_over_R_err": _num(rel_err),
                "significance_sigma": _num(sig, 4) if math.isfinite(sig) else None,
                "significant": significant,
                "sensitive": sensitive,
            }
        )
    slope, slope_err, used = _log_slope(mean, se, levels, on_idx, [r["significant"] for r in rows])
    if not math.isfinite(pooled) and not any(math.isfinite(se[i]) for i in on_idx):
        verdict = "undetermined"  # one reading per level: no scatter, no error bar
    else:
        verdict = "RF-sensitive" if any(r["sensitive"] for r in rows) else "RF-insensitive"
    return {
        "R_off_Ohm": _num(R_off),
        "R_off_err_Ohm": _num(se_off),
        "repeats": int(n.max()) if n.size else 0,
        "noise_Ohm": _num(math.sqrt(pooled)) if math.isfinite(pooled) else None,
        "levels": rows,
        "dlogR_dlogP": _num(slope, 4),
        "dlogR_dlogP_err": _num(slope_err, 3),
        "slope_levels_dBm": used,
        "verdict": verdict,
    }


def _log_slope(
    mean: np.ndarray, se: np.ndarray, levels: np.ndarray, on_idx: np.ndarray, significant: list[bool]
) -> tuple[float, float, list[float]]:
    """d ln R / d ln P over the significant on-levels (two or more), else all on-levels."""
    chosen = [i for i, s in zip(on_idx, significant, strict=True) if s]
    if len(chosen) < 2:
        chosen = list(on_idx)
    chosen = [i for i in chosen if np.isfinite(mean[i]) and mean[i] > 0]
    if len(chosen) < 2:
        return math.nan, math.nan, [float(levels[i]) for i in chosen]
    x = np.log(dbm_to_watts(levels[chosen]))
    y = np.log(mean[chosen])
    sy = se[chosen] / mean[chosen]
    weighted = bool(np.all(np.isfinite(sy)) and np.all(sy > 0))
    w = 1.0 / sy**2 if weighted else np.ones_like(x)
    xm = np.sum(w * x) / np.sum(w)
    sxx = np.sum(w * (x - xm) ** 2)
    slope = float(np.sum(w * (x - xm) * y) / sxx)
    if weighted:
        err = math.sqrt(1.0 / sxx)
    elif len(x) > 2:
        resid = y - (np.sum(w * y) / np.sum(w) + slope * (x - xm))
        err = math.sqrt(np.sum(resid**2) / (len(x) - 2) / sxx)
    else:
        err = math.nan
    return slope, err, [float(levels[i]) for i in chosen]


def _rf_summary(out: dict[str, Any], biggest: tuple[dict[str, Any], dict[str, Any]] | None) -> str:
    c = out["criteria"]
    crit = f"criteria {c['n_sigma']:g} sigma and {100 * c['min_relative_change']:g} %"
    if out["verdict"] == "undetermined":
        return f"undetermined: no repeats, so no error bars ({crit})"
    if out["verdict"] == "RF-sensitive":
        hits = [p for p in out["points"] if p["verdict"] == "RF-sensitive"]
        p = max(hits, key=lambda q: max(abs(lv["dR_over_R"] or 0) for lv in q["levels"] if lv["sensitive"]))
        lv = max((lv for lv in p["levels"] if lv["sensitive"]), key=lambda lv: abs(lv["dR_over_R"]))
        first = min(lv2["P_dBm"] for lv2 in p["levels"] if lv2["sensitive"])
        sig = lv["significance_sigma"]
        sig_text = f"{sig:.3g} sigma" if sig is not None else "noise-free"
        slope = p["dlogR_dlogP"]
        slope_text = f", dlogR/dlogP = {slope:.3g}" if slope is not None else ""
        return (
            f"RF-sensitive at {len(hits)}/{len(out['points'])} points: at {p['label']}, "
            f"{lv['P_dBm']:g} dBm changes R by {100 * lv['dR_over_R']:+.3g} % ({sig_text}), "
            f"sensitive from {first:g} dBm{slope_text} ({crit})"
        )
    if biggest is None:
        return f"RF-insensitive ({crit})"
    p, lv = biggest
    sig = lv["significance_sigma"]
    return (
        f"RF-insensitive: largest change {100 * lv['dR_over_R']:+.2g} % "
        f"({sig:.2g} sigma) at {p['label']}, {lv['P_dBm']:g} dBm ({crit})"
        if sig is not None
        else f"RF-insensitive: largest change {100 * lv['dR_over_R']:+.2g} % ({crit})"
    )


# -- excitation check ----------------------------------------------------------------------------------
def excitation_check(
    ds: xr.Dataset,
    *,
    var: str = "R",
    current_dim: str = "I_exc",
    frequency_dim: str = "f_exc",
    temperature_dim: str = "T",
    tolerance: float = 0.01,
    n_sigma: float = 3.0,
    max_out_of_phase: float = 0.05,
) -> dict[str, Any]:
    """Ohmic test, out-of-phase signal, frequency agreement and T_e(I); see the module docstring.

    Returns a dict with ``verdict``, ``summary``, ``criteria``, ``fixed`` scalar coordinates,
    ``noise_V`` (one reading's noise from the quadrature, or None), ``lines`` (per bath temperature and
    frequency: ``T_K`` (setpoint), ``T_bath_K``, ``f_Hz``, ``I_A``, ``R_Ohm``, ``deviation``
    (R/R(I_min) - 1), ``deviation_err``, ``non_ohmic`` flags, ``ohmic_up_to_A``, ``out_of_phase``
    |Y/X|), ``ohmic_up_to_A`` (per bath temperature, all frequencies), ``max_abs_deviation``,
    ``max_out_of_phase``, ``frequency_agreement`` (``max_abs_difference``, ``disagree`` and the
    frequencies) and ``heating`` (``calibration`` R(T), ``points`` with ``T_e_K``, ``P_W`` = I^2 R and
    ``T_e4_minus_T4_K4``, ``sigma_A_W_per_K4`` with ``sigma_A_err_W_per_K4``, ``power_law_exponent``,
    ``explains``, ``reason``).
    """
    if var not in ds:
        raise ValueError(f"the dataset has no variable {var!r}")
    R = ds[var]
    if current_dim not in R.dims:
        raise ValueError(f"{var} has no dimension {current_dim!r} (excitation currents [A])")
    extra = [d for d in R.dims if d not in (current_dim, frequency_dim, temperature_dim)]
    if extra:
        raise ValueError(
            f"{var} has dimensions {extra} besides {current_dim}, {frequency_dim} and {temperature_dim}"
        )
    dims = (temperature_dim, frequency_dim, current_dim)

    def arranged(name: str) -> np.ndarray | None:
        if name not in ds or ds[name].dims != R.dims:
            return None
        a = ds[name]
        for d in (temperature_dim, frequency_dim):
            if d not in a.dims:
                a = a.expand_dims({d: [math.nan]})
        return np.asarray(a.transpose(*dims).values, dtype=float)

    Rv = arranged(var)
    assert Rv is not None
    nT, nf = Rv.shape[:2]
    I_nom = np.asarray(R[current_dim].values, dtype=float)
    order = np.argsort(I_nom)
    I_meas = arranged("I")
    I = (
        np.broadcast_to(I_nom, Rv.shape).copy()
        if I_meas is None
        else np.where(np.isfinite(I_meas), I_meas, I_nom)
    )
    Rv, I, I_nom = Rv[..., order], I[..., order], I_nom[order]
    X, Y = arranged("X"), arranged("Y")
    if X is not None and Y is not None:
        X, Y = X[..., order], Y[..., order]
    T_set = (
        np.asarray(R[temperature_dim].values, dtype=float)
        if temperature_dim in R.dims
        else np.array([float(ds[temperature_dim]) if temperature_dim in ds.coords else math.nan])
    )
    f = np.asarray(R[frequency_dim].values, dtype=float) if frequency_dim in R.dims else np.array([math.nan])
    T_s = arranged("T_sample")
    T_bath = np.array(
        [
            float(np.nanmean(T_s[k])) if T_s is not None and np.isfinite(T_s[k]).any() else T_set[k]
            for k in range(nT)
        ]
    )

    # the noise of one reading, from the quadrature's scatter about its dependence on X
    noise_V = math.nan
    phase = np.full((nT, nf), math.nan)
    if X is not None and Y is not None:
        resid = []
        for k in range(nT):
            for j in range(nf):
                x, y = X[k, j], Y[k, j]
                ok = np.isfinite(x) & np.isfinite(y)
                if ok.sum() >= 2 and np.sum(x[ok] ** 2) > 0:
                    slope = float(np.sum(x[ok] * y[ok]) / np.sum(x[ok] ** 2))
                    phase[k, j] = abs(slope)
                    resid.extend((y[ok] - slope * x[ok]).tolist())
        if len(resid) >= 3:
            r = np.asarray(resid)
            noise_V = float(1.4826 * np.median(np.abs(r - np.median(r))))
        rel_noise = noise_V / np.abs(X) if math.isfinite(noise_V) else np.zeros_like(Rv)
    else:
        rel_noise = np.zeros_like(Rv)

    # ohmic test per line
    R0 = Rv[..., :1]
    dev = Rv / R0 - 1.0
    dev_err = np.sqrt(rel_noise**2 + rel_noise[..., :1] ** 2) * (Rv / R0)
    dev_err[..., 0] = 0.0
    non_ohmic = (np.abs(dev) > tolerance) & (np.abs(dev) > n_sigma * dev_err)
    non_ohmic &= np.isfinite(dev)
    lines = []
    for k in range(nT):
        for j in range(nf):
            bad = np.flatnonzero(non_ohmic[k, j])
            lines.append(
                {
                    "T_K": _num(T_set[k]),
                    "T_bath_K": _num(T_bath[k]),
                    "f_Hz": _num(f[j]),
                    "I_A": [_num(v) for v in I[k, j]],
                    "R_Ohm": [_num(v) for v in Rv[k, j]],
                    "deviation": [_num(v, 4) for v in dev[k, j]],
                    "deviation_err": [_num(v, 3) for v in dev_err[k, j]],
                    "non_ohmic": [bool(v) for v in non_ohmic[k, j]],
                    "ohmic_up_to_A": _num(I_nom[bad[0] - 1] if bad.size else I_nom[-1]),
                    "out_of_phase": _num(phase[k, j], 3),
                }
            )
    ohmic_up_to = []
    for k in range(nT):
        bad = np.flatnonzero(non_ohmic[k].any(axis=0))
        ohmic_up_to.append({"T_K": _num(T_set[k]), "I_A": _num(I_nom[bad[0] - 1] if bad.size else I_nom[-1])})

    # frequency agreement
    freq: dict[str, Any] = {
        "frequencies_Hz": [_num(v) for v in f],
        "max_abs_difference": None,
        "disagree": False,
    }
    if nf >= 2:
        diff = Rv[:, 1:, :] / Rv[:, :1, :] - 1.0
        diff_err = np.sqrt(rel_noise[:, 1:, :] ** 2 + rel_noise[:, :1, :] ** 2)
        disagree = (np.abs(diff) > tolerance) & (np.abs(diff) > n_sigma * diff_err)
        freq["max_abs_difference"] = _num(np.nanmax(np.abs(diff)), 3) if np.isfinite(diff).any() else None
        freq["disagree"] = bool(disagree.any())

    heating = _heating(Rv, I, rel_noise, non_ohmic, T_bath) if non_ohmic.any() else None
    max_phase = float(np.nanmax(phase)) if np.isfinite(phase).any() else math.nan
    if not non_ohmic.any():
        verdict = "ohmic"
    elif heating is None or heating["explains"] is None:
        verdict = "non-ohmic (heating untested)"
    elif heating["explains"]:
        verdict = "self-heating"
    else:
        verdict = "non-ohmic (not heating)"
    warnings = []
    if math.isfinite(max_phase) and max_phase > max_out_of_phase:
        warnings.append(f"out-of-phase signal |Y/X| up to {max_phase:.2g} (above {max_out_of_phase:g})")
    if freq["disagree"]:
        warnings.append(f"the lock-in frequencies disagree by up to {100 * freq['max_abs_difference']:.2g} %")
    imax = np.unravel_index(np.nanargmax(np.abs(dev)), dev.shape) if np.isfinite(dev).any() else None
    out: dict[str, Any] = {
        "check": "excitation_check",
        "verdict": verdict,
        "criteria": {"tolerance": tolerance, "n_sigma": n_sigma, "max_out_of_phase": max_out_of_phase},
        "fixed": _scalar_coords(ds, var),
        "noise_V": _num(noise_V, 3),
        "lines": lines,
        "ohmic_up_to_A": ohmic_up_to,
        "max_abs_deviation": _num(abs(dev[imax]), 4) if imax is not None else None,
        "max_out_of_phase": _num(max_phase, 3),
        "frequency_agreement": freq,
        "heating": heating,
        "warnings": warnings,
    }
    out["summary"] = _excitation_summary(out, dev, imax, I_nom, T_set, f)
    return out


def _heating(
    Rv: np.ndarray,
    I: np.ndarray,
    rel_noise: np.ndarray,
    non_ohmic: np.ndarray,
    T_bath: np.ndarray,
) -> dict[str, Any]:
    """T_e(I) from R(T) at the smallest current, and the Sigma*A that T_e^4 - T^4 = I^2 R / Sigma*A gives."""
    result: dict[str, Any] = {
        "calibration": None,
        "points": [],
        "sigma_A_W_per_K4": None,
        "sigma_A_err_W_per_K4": None,
        "power_law_exponent": None,
        "explains": None,
        "reason": "",
    }
    with np.errstate(invalid="ignore"):
        R_cal = np.nanmean(Rv[:, :, 0], axis=1)
        I_cal = np.nanmean(I[:, :, 0], axis=1)
    good = np.isfinite(R_cal) & np.isfinite(T_bath) & (R_cal > 0) & (T_bath > 0)
    if good.sum() < 2:
        result["reason"] = "R(T) needs the smallest current at two or more bath temperatures"
        return result
    srt = np.argsort(T_bath[good])
    Tc, Rc, Ic = T_bath[good][srt], R_cal[good][srt], I_cal[good][srt]
    if np.any(np.diff(Tc) <= 0):
        result["reason"] = "two bath temperatures coincide: no thermometer"
        return result
    a, b = _monotonic_run(Rc)
    if b - a < 2:
        result["calibration"] = {"T_K": [_num(v) for v in Tc], "R_Ohm": [_num(v) for v in Rc]}
        result["reason"] = "R(T) at the smallest current is not strictly monotonic: no thermometer"
        return result
    # the longest stretch of neighbouring temperatures over which R(T) is strictly monotonic (a plateau
    # such as an anomalous metal's floor, flat within the noise, is no thermometer)
    Tc, Rc, Ic = Tc[a:b], Rc[a:b], Ic[a:b]
    direction = 1.0 if Rc[1] > Rc[0] else -1.0  # sign of dR/dT
    with np.errstate(invalid="ignore"):
        n_cal = np.maximum(np.isfinite(Rv[:, :, 0]).sum(axis=1), 1)
        rel_cal = np.sqrt(np.nansum(rel_noise[:, :, 0] ** 2, axis=1)) / n_cal
    # the non-ohmic points at bath temperatures inside the thermometer's range: did R move the way a
    # higher temperature moves it?
    idx = np.argwhere(non_ohmic)
    inside = (T_bath >= Tc[0] * (1 - 1e-9)) & (T_bath <= Tc[-1] * (1 + 1e-9))
    outside = [tuple(i) for i in idx if not inside[i[0]]]
    idx = np.array([i for i in idx if inside[i[0]]], dtype=int).reshape(-1, 3)
    wrong = [tuple(i) for i in idx if np.sign(Rv[tuple(i)] - Rv[i[0], i[1], 0]) != direction]
    T_cal = Tc.copy()
    sigma_A = math.nan
    pts: list[dict[str, Any]] = []
    fit: tuple[float, float, float] = (math.nan, math.nan, math.nan)
    for _ in range(4):  # fit, correct the calibration's own heating, fit again
        lnT, lnR = np.log(T_cal), np.log(Rc)
        fwd = PchipInterpolator(lnT, lnR)
        inv = PchipInterpolator(lnR, lnT) if direction > 0 else PchipInterpolator(lnR[::-1], lnT[::-1])
        pts = []
        for i in idx:
            k, j, m = (int(v) for v in i)
            if (k, j, m) in wrong:
                continue
            r = Rv[k, j, m]
            if not (np.isfinite(r) and lnR.min() <= math.log(r) <= lnR.max()):
                pts.append({"index": (k, j, m), "T_e": math.nan})
                continue
            Te = math.exp(float(inv(math.log(r))))
            slope = abs(float(fwd(math.log(Te), 1)))  # d ln R / d ln T at T_e
            # R's noise here and that of the calibration point at this bath temperature
            sig_lnT = math.hypot(rel_noise[k, j, m], rel_cal[k]) / slope if slope > 0 else math.nan
            T0 = T_bath[k]  # the bath, on the sample-stage thermometer
            pts.append(
                {
                    "index": (k, j, m),
                    "T_e": Te,
                    "T_bath": T0,
                    "P": float(I[k, j, m] ** 2 * r),
                    "dT4": Te**4 - T0**4,
                    "dT4_err": 4 * Te**4 * sig_lnT,
                }
            )
        usable = [p for p in pts if math.isfinite(p["T_e"]) and p["dT4"] > 0]
        if not usable:
            break
        fit = _fit_sigma_a(usable)
        if not math.isfinite(fit[0]) or fit[0] <= 0:
            break
        sigma_A = fit[0]
        T_cal = (Tc**4 + Ic**2 * Rc / sigma_A) ** 0.25
    result["calibration"] = {
        "T_K": [_num(v) for v in T_cal],
        "R_Ohm": [_num(v) for v in Rc],
        "I_A": [_num(v) for v in Ic],
        "dlnR_dlnT_sign": int(direction),
    }
    result["points"] = [
        {
            "T_bath_K": _num(T_bath[p["index"][0]]),
            "line": list(p["index"][:2]),
            "I_A": _num(I[p["index"]]),
            "R_Ohm": _num(Rv[p["index"]]),
            "T_e_K": _num(p["T_e"], 5),
            "P_W": _num(p.get("P")),
            "T_e4_minus_T4_K4": _num(p.get("dT4"), 4),
            "sigma_A_point_W_per_K4": _num(p["P"] / p["dT4"], 4) if p.get("dT4", 0) > 0 else None,
        }
        for p in pts
    ]
    usable = [p for p in pts if math.isfinite(p["T_e"]) and p["dT4"] > 0]
    beyond = sum(1 for p in pts if not math.isfinite(p["T_e"])) + len(outside)
    exponent = _power_law_exponent(usable)
    result["power_law_exponent"] = _num(exponent, 3)
    result["points_beyond_calibration"] = beyond
    result["points_wrong_direction"] = len(wrong)
    if wrong:
        result["explains"] = False
        result["reason"] = (
            f"{len(wrong)} non-ohmic point(s) moved R the way a lower temperature does: not heating"
        )
    elif not usable:
        result["reason"] = "every non-ohmic point lies beyond the calibrated R(T)"
    elif math.isfinite(exponent) and not 0.7 <= exponent <= 1.3:
        result["explains"] = False
        result["reason"] = f"T_e^4 - T^4 grows as (I^2 R)^{exponent:.2g}, not as I^2 R: not heating"
    else:
        result["explains"] = True
        result["reason"] = "R(I) maps onto R(T) through T_e^4 - T^4 proportional to I^2 R"
        result["sigma_A_W_per_K4"] = _num(sigma_A, 4)
        result["sigma_A_err_W_per_K4"] = _num(fit[1], 2)
    return result


def _monotonic_run(y: np.ndarray) -> tuple[int, int]:
    """The longest contiguous stretch y[a:b] that is strictly increasing or strictly decreasing (the
    first of equally long ones)."""
    best = (0, min(len(y), 1))
    for sign in (1.0, -1.0):
        start = 0
        for i in range(1, len(y) + 1):
            if i == len(y) or not sign * (y[i] - y[i - 1]) > 0:
                if i - start > best[1] - best[0]:
                    best = (start, i)
                start = i
    return best


def _fit_sigma_a(pts: list[dict[str, Any]]) -> tuple[float, float, float]:
    """Sigma*A and its error from dT4 = P / Sigma*A (weighted least squares through the origin), with
    the reduced chi^2."""
    P = np.array([p["P"] for p in pts])
    y = np.array([p["dT4"] for p in pts])
    s = np.array([p["dT4_err"] for p in pts])
    w = 1.0 / s**2 if np.all(np.isfinite(s)) and np.all(s > 0) else np.ones_like(P)
    k = float(np.sum(w * P * y) / np.sum(w * P * P))
    if k <= 0:
        return math.nan, math.nan, math.nan
    k_err = math.sqrt(1.0 / np.sum(w * P * P))
    chi2 = float(np.sum(w * (y - k * P) ** 2) / (len(P) - 1)) if len(P) > 1 else math.nan
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        k_err = k_err * math.sqrt(chi2) if math.isfinite(chi2) else math.nan
    elif math.isfinite(chi2) and chi2 > 1:
        k_err *= math.sqrt(chi2)
    return 1.0 / k, k_err / k**2, chi2


def _power_law_exponent(pts: list[dict[str, Any]]) -> float:
    """n in T_e^4 - T^4 ~ (I^2 R)^n, per bath temperature pooled (a common slope, own intercepts);
    NaN unless three or more points span a factor of 3 in power at some bath temperature."""
    groups: dict[float, list[tuple[float, float]]] = {}
    for p in pts:
        groups.setdefault(p["T_bath"], []).append((math.log(p["P"]), math.log(p["dT4"])))
    sxy = sxx = 0.0
    enough = False
    for g in groups.values():
        if len(g) < 2:
            continue
        x, y = np.array(g).T
        if len(g) >= 3 and x.max() - x.min() >= math.log(3):
            enough = True
        sxy += float(np.sum((x - x.mean()) * (y - y.mean())))
        sxx += float(np.sum((x - x.mean()) ** 2))
    return sxy / sxx if enough and sxx > 0 else math.nan


def _excitation_summary(
    out: dict[str, Any],
    dev: np.ndarray,
    imax: tuple[int, ...] | None,
    I_nom: np.ndarray,
    T_set: np.ndarray,
    f: np.ndarray,
) -> str:
    tol = out["criteria"]["tolerance"]
    parts = [out["verdict"]]

    def where(k: int, j: int) -> str:
        bits = []
        if math.isfinite(T_set[k]):
            bits.append(f"{T_set[k] * 1e3:g} mK")
        if math.isfinite(f[j]):
            bits.append(f"{f[j]:g} Hz")
        return ", ".join(bits)

    if imax is not None:
        k, j, m = imax
        at = where(k, j)
        parts.append(
            f"R/R(I_min) - 1 up to {100 * dev[imax]:+.3g} % at {I_nom[m] * 1e9:.3g} nA"
            + (f" ({at})" if at else "")
        )
    lows = [o for o in out["ohmic_up_to_A"] if o["I_A"] is not None]
    if out["verdict"] == "ohmic":
        parts.append(f"within {100 * tol:g} % up to {I_nom[-1] * 1e9:.3g} nA everywhere")
    elif lows:
        lo = min(lows, key=lambda o: o["T_K"] if o["T_K"] is not None else 0)
        at = f" at {lo['T_K'] * 1e3:g} mK" if lo["T_K"] is not None else ""
        parts.append(f"ohmic within {100 * tol:g} % up to {lo['I_A'] * 1e9:.3g} nA{at}")
    h = out["heating"]
    if h is not None and h["explains"]:
        pts = [p for p in h["points"] if p["T_e_K"] is not None]
        hot = max(pts, key=lambda p: p["T_e_K"] - (p["T_bath_K"] or 0))
        parts.append(
            f"T_e = {hot['T_e_K'] * 1e3:.3g} mK at {hot['I_A'] * 1e9:.3g} nA"
            f" (bath {hot['T_bath_K'] * 1e3:.3g} mK)"
        )
        err = h["sigma_A_err_W_per_K4"]
        parts.append(
            f"Sigma*A = {h['sigma_A_W_per_K4']:.3g}" + (f" ± {err:.2g}" if err is not None else "") + " W/K^4"
        )
    elif h is not None and h["reason"]:
        parts.append(h["reason"])
    if out["max_out_of_phase"] is not None:
        parts.append(f"|Y/X| <= {out['max_out_of_phase']:.2g}")
    fa = out["frequency_agreement"]
    if fa["max_abs_difference"] is not None:
        parts.append(
            f"frequencies {'disagree' if fa['disagree'] else 'agree'}"
            f" (max {100 * fa['max_abs_difference']:.2g} %)"
        )
    return "; ".join(parts)
