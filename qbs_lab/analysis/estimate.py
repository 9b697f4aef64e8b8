"""One analysis of a set of isotherms: the joint crossing, the collapse, the excluded isotherms.

:func:`analyze_isotherms` is the single code path behind every place a result is shown: the online
update of a run (:mod:`qbs_lab.analysis.online`), ``qbs-lab analyze crossing`` (text and JSON) and both
plots (:mod:`qbs_lab.analysis.report`). So each data set has one x_c, R_c, z*nu and verdict.

Steps: the isotherms are prepared once (:func:`~qbs_lab.analysis.smoothing.prepare`); the joint crossing
(:func:`~qbs_lab.analysis.crossing.find_crossing`) gives x_c, R_c and the verdict; with three or more
isotherms the collapse (:func:`~qbs_lab.analysis.scaling.fit_scaling`) runs, whatever the crossing
found, for z*nu; isotherms it finds heated are excluded and the crossing is redone without them. When the
collapse needs a drifting critical point x_c(T) = x_c + drift T, its drift is the one reported (and the
verdict is "drifting crossing" when it is significant); without a drift, the difference between the
crossing's x_c (R_c) and the collapse's is added to the crossing's error. A collapse that fails is
reported as failed, and the crossing's estimate stands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from qbs_lab.analysis.crossing import (
    DRIFT_SIGMAS,
    H_OVER_4E2,
    VERDICT_DRIFTING,
    VERDICT_NONE,
    VERDICT_SINGLE,
    CrossingResult,
    find_crossing,
)
from qbs_lab.analysis.scaling import ScalingResult, fit_scaling
from qbs_lab.analysis.smoothing import as_arrays, prepare

__all__ = ["UNITS", "Analysis", "analyze_isotherms"]

#: display unit and scale of each dimension
UNITS = {"B": ("mT", 1e3), "V_g": ("V", 1.0), "T": ("mK", 1e3)}


def _num(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


@dataclass
class Analysis:
    """The result of :func:`analyze_isotherms`.

    Attributes
    ----------
    x, over : str
        The swept dimension (B [T] or V_g [V]) and the isotherms' (T [K]).
    crossing : CrossingResult
        The joint crossing of the isotherms kept (the reported x_c, R_c, drift and verdict).
    collapse : ScalingResult or None
        The collapse (None with fewer than three isotherms).
    excluded : list of (float, str)
        Every isotherm left out, (T [K], reason).
    """

    x: str
    over: str
    crossing: CrossingResult
    collapse: ScalingResult | None
    excluded: list[tuple[float, str]] = field(default_factory=list)

    @property
    def collapse_ok(self) -> bool:
        return self.collapse is not None and self.collapse.ok

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the keys of :meth:`CrossingResult.to_dict` first (z*nu and quality from the
        collapse when it succeeded), then ``x``, ``unit``, ``R_c_h4e2``, ``drift``, ``drift_err``,
        ``order``, ``excluded`` ([{T, reason}]) and ``collapse`` ({status, reason, z*nu, x_c, R_c,
        quality, temperatures} or None)."""
        c, k = self.crossing, self.collapse
        out = c.to_dict()
        if k is not None and k.ok:
            out.update(znu=_num(k.znu), znu_err=_num(k.znu_err), quality=_num(k.quality))
        out.update(
            x=self.x,
            unit={"B": "T", "V_g": "V"}.get(self.x, ""),
            isotherms=len(c.temperatures),
            R_c_h4e2=_num(c.R_c / H_OVER_4E2),
            drift=_num(c.drift),
            drift_err=_num(c.drift_err),
            order=c.order or None,
            excluded=[{"T": T, "reason": r} for T, r in self.excluded],
            collapse=None
            if k is None
            else {
                "status": k.status,
                "reason": k.reason or None,
                "znu": _num(k.znu),
                "znu_err": _num(k.znu_err),
                "x_c": _num(k.x_c),
                "x_c_err": _num(k.x_c_err),
                "R_c": _num(k.R_c),
                "R_c_err": _num(k.R_c_err),
                "quality": _num(k.quality),
                "temperatures": k.temperatures,
            },
        )
        return out

    def lines(self) -> list[str]:
        """The readable report, one fact a line, with units."""
        xu, xs = UNITS.get(self.x, ("", 1.0))
        c, k = self.crossing, self.collapse
        n = len(c.temperatures)
        lines = [f"verdict: {c.verdict} ({n} isotherms, {len(c.crossings)} pairwise crossings)"]
        if c.verdict == VERDICT_NONE:
            lines.append(f"order: {c.order}")
        if math.isfinite(c.x_c):
            err = f" ± {c.x_c_err * xs:.2g}" if math.isfinite(c.x_c_err) else ""
            lines.append(f"x_c = {c.x_c * xs:.5g}{err} {xu} ({self.x})")
            rerr = f" ± {c.R_c_err:.2g}" if math.isfinite(c.R_c_err) else ""
            lines.append(f"R_c = {c.R_c:.5g}{rerr} Ohm = {c.R_c / H_OVER_4E2:.3f} h/4e^2")
        if math.isfinite(c.drift) and math.isfinite(c.drift_err):
            lines.append(
                f"drift of the crossings: {c.drift * xs:.3g} ± {c.drift_err * xs:.2g} {xu}/K"
                + (" (significant)" if c.verdict == "drifting crossing" else "")
            )
        if k is None:
            lines.append("collapse: not run (needs three or more isotherms)")
        elif k.ok:
            zerr = f" ± {k.znu_err:.2g}" if math.isfinite(k.znu_err) else ""
            lines.append(f"z·ν = {k.znu:.3g}{zerr}")
            lines.append(
                f"collapse quality = {k.quality:.3g} (chi2 per degree of freedom, about 1 within the noise);"
                f" its x_c = {k.x_c * xs:.5g} ± {k.x_c_err * xs:.2g} {xu}"
            )
        else:
            lines.append(f"collapse: failed ({k.reason}); the crossing's estimate stands")
        for T, reason in self.excluded:
            lines.append(f"excluded T = {T * 1e3:.4g} mK: {reason}")
        return lines


def analyze_isotherms(
    data: Any,
    x: str = "B",
    over: str = "T",
    n_boot: int = 200,
    seed: int = 0,
    *,
    start: tuple[float, float] | None = None,
) -> Analysis:
    """Crossing, collapse and exclusions of a set of isotherms (see the module docstring).

    ``data``: an xarray Dataset/DataArray R(over, x) or a mapping {T: (x, R)} (each isotherm its own
    grid; NaN ignored). ``start``: (z*nu, x_c) of a previous analysis of the same run, where the
    collapse's search starts.
    """
    iso, left = prepare(as_arrays(data, x, over))
    skip = dict(left)
    crossing = find_crossing(None, x, over, n_boot, seed, exclude=skip, isotherms=iso)
    collapse = None
    if len(iso) >= 3:
        if math.isfinite(crossing.x_c):
            x0 = crossing.x_c
        else:
            x0 = 0.5 * (max(float(it.x[0]) for it in iso) + min(float(it.x[-1]) for it in iso))
        try:
            collapse = fit_scaling(
                iso, x0, n_boot=max(n_boot // 2, 2) if n_boot >= 2 else 0, seed=seed, start=start
            )
        except ValueError as err:
            collapse = ScalingResult(math.nan, math.nan, math.nan, math.nan, status="failed", reason=str(err))
        if collapse.excluded:
            skip.update(collapse.excluded)
            crossing = find_crossing(None, x, over, n_boot, seed, exclude=skip, isotherms=iso)
    if collapse is not None and collapse.ok and collapse.drift == 0.0 and math.isfinite(crossing.x_c):
        # two estimators of one critical point: where they disagree, by more than their errors allow, the
        # crossing's smoothing (a steep isotherm sampled coarsely) or the collapse's master curve is
        # biased; the disagreement counts in the crossing's error
        crossing.x_c_err = math.hypot(crossing.x_c_err, abs(crossing.x_c - collapse.x_c))
        if math.isfinite(collapse.R_c):
            crossing.R_c_err = math.hypot(crossing.R_c_err, abs(crossing.R_c - collapse.R_c))
    if collapse is not None and collapse.ok and collapse.drift_err > 0 and crossing.verdict != VERDICT_NONE:
        # the collapse measured how x_c moves with T (x_c(T) = x_c + drift T): that is the drift reported
        crossing.drift, crossing.drift_err = collapse.drift, collapse.drift_err
        if abs(collapse.drift) > DRIFT_SIGMAS * collapse.drift_err:
            crossing.verdict = VERDICT_DRIFTING
    elif (
        collapse is not None
        and collapse.ok
        and len(collapse.temperatures) >= 4
        and crossing.verdict == VERDICT_DRIFTING
    ):
        # the collapse tested a drifting x_c(T) and did not need one: the pairwise crossings' scatter
        # (a steep isotherm sampled coarsely) is not called a drift
        crossing.verdict = VERDICT_SINGLE
    return Analysis(x, over, crossing, collapse, list(skip.items()))
