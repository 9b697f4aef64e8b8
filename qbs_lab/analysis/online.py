"""The crossing point and scaling collapse, updated while isotherms come in.

:class:`OnlineCrossing` is a runner subscriber for plans whose outer axis is the temperature and whose
inner axis is the field or the gate voltage (``field_isotherms``, ``gate_isotherms``). Each time an
isotherm completes, with at least two complete, it runs :func:`~qbs_lab.analysis.crossing.find_crossing`
(bootstrap errors) and, from three isotherms on, :func:`~qbs_lab.analysis.collapse.fit_collapse` (deviating
isotherms excluded, a short bootstrap so an update stays well under a second), and hands a record to
``on_update`` (the run's log and store). Units: x in T or V, R in Ohm, T in K, seconds of compute.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from qbs_lab.analysis.collapse import fit_collapse
from qbs_lab.analysis.crossing import find_crossing
from qbs_lab.plan import Plan

__all__ = ["OnlineCrossing", "format_update"]

#: the inner axes an online crossing applies to, with the unit shown and its scale
X_UNITS = {"B": ("mT", 1e3), "V_g": ("V", 1.0)}


def _num(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


class OnlineCrossing:
    """Runner subscriber: crossing and collapse after every completed isotherm.

    Parameters
    ----------
    plan : Plan
        Must have dims (T, B) or (T, V_g) (see :meth:`applies`).
    variables : sequence of str
        The runner's variable order (``R`` and ``t`` among them).
    on_update : callable, optional
        Called with each update's record (a JSON-ready dict).
    n_boot, collapse_boot : int
        Bootstrap resamples of the crossing and of the collapse.
    """

    def __init__(
        self,
        plan: Plan,
        variables: Sequence[str],
        on_update: Callable[[dict[str, Any]], None] | None = None,
        *,
        n_boot: int = 100,
        collapse_boot: int = 16,
    ) -> None:
        if not self.applies(plan):
            raise ValueError(f"online crossing needs dims (T, B) or (T, V_g), not {plan.dims}")
        self.x = plan.dims[1]
        self.temperatures = np.asarray(plan.axes[0].values)
        self.xs = np.asarray(plan.axes[1].values)
        self.R = np.full(plan.shape, np.nan)
        self._iR, self._it = list(variables).index("R"), list(variables).index("t")
        self.on_update = on_update
        self.n_boot, self.collapse_boot = n_boot, collapse_boot
        self.updates: list[dict[str, Any]] = []

    @staticmethod
    def applies(plan: Plan) -> bool:
        return len(plan.dims) == 2 and plan.dims[0] == "T" and plan.dims[1] in X_UNITS

    def preload(self, R: np.ndarray) -> None:
        """Points already stored (a resumed run)."""
        self.R[...] = R

    def __call__(self, k: int, index: tuple[int, ...], values: Sequence[float]) -> None:
        i, j = index
        self.R[i, j] = values[self._iR]
        if np.isfinite(self.R[i]).all() and np.isfinite(values[self._iR]):
            self.update(t=values[self._it])

    def complete(self) -> list[int]:
        """Indices of the isotherms measured at every point."""
        return [i for i in range(len(self.temperatures)) if np.isfinite(self.R[i]).all()]

    def update(self, t: float = math.nan) -> dict[str, Any] | None:
        """Analyse the complete isotherms; None while fewer than two are complete."""
        done = self.complete()
        if len(done) < 2:
            return None
        start = time.perf_counter()
        data = {float(self.temperatures[i]): (self.xs, self.R[i]) for i in done}
        crossing = find_crossing(data, x=self.x, n_boot=self.n_boot)
        record: dict[str, Any] = {
            "t": _num(t),
            "isotherms": len(done),
            "x": self.x,
            "verdict": crossing.verdict,
            "x_c": _num(crossing.x_c),
            "x_c_err": _num(crossing.x_c_err),
            "R_c": _num(crossing.R_c),
            "R_c_err": _num(crossing.R_c_err),
            "R_c_h4e2": _num(crossing.R_c_over_RQ),
            "drift": _num(crossing.drift),
            "drift_err": _num(crossing.drift_err),
            "znu": None,
            "znu_err": None,
            "quality": None,
            "excluded": [],
        }
        if len(done) >= 3 and crossing.verdict != "no crossing in range":
            isotherms = {T: (x, R, None) for T, (x, R) in data.items()}
            collapse = fit_collapse(isotherms, n_boot=self.collapse_boot)
            record.update(
                znu=_num(collapse.znu),
                znu_err=_num(collapse.znu_err),
                quality=_num(collapse.quality),
                excluded=[{"T": T, "reason": reason} for T, reason in collapse.excluded],
                collapse_x_c=_num(collapse.x_c),
                collapse_x_c_err=_num(collapse.x_c_err),
                collapse_drift=_num(collapse.drift),
            )
        record["seconds"] = round(time.perf_counter() - start, 3)
        self.updates.append(record)
        if self.on_update is not None:
            self.on_update(record)
        return record


def format_update(record: dict[str, Any]) -> str:
    """One log line for an update."""
    unit, scale = X_UNITS[record["x"]]
    parts = [f"{record['isotherms']} isotherms: {record['verdict']}"]
    if record["x_c"] is not None:
        err = record["x_c_err"]
        parts.append(
            f"{record['x']}_c = {record['x_c'] * scale:.5g}"
            + (f" ± {err * scale:.2g}" if err is not None else "")
            + f" {unit}"
        )
    if record["R_c"] is not None:
        err = record["R_c_err"]
        parts.append(f"R_c = {record['R_c']:.5g}" + (f" ± {err:.2g}" if err is not None else "") + " Ohm")
    if record["znu"] is not None:
        err = record["znu_err"]
        parts.append(f"z·ν = {record['znu']:.3g}" + (f" ± {err:.2g}" if err is not None else ""))
    for e in record["excluded"]:
        parts.append(f"excluded T = {e['T'] * 1e3:.4g} mK ({e['reason']})")
    return "; ".join(parts) + f"  ({record['seconds']:.2f} s)"
