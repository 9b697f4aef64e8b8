"""The crossing point and scaling collapse, updated while isotherms come in.

:class:`OnlineCrossing` is a runner subscriber for plans whose outer axis is the temperature and whose
inner axis is the field or the gate voltage (``field_isotherms``, ``gate_isotherms``). Each time an
isotherm completes, with at least two complete, it runs
:func:`~qbs_lab.analysis.estimate.analyze_isotherms` (the same code path as ``qbs-lab analyze crossing``:
the joint crossing with bootstrap errors and, from three isotherms on, the collapse, heated isotherms
excluded), its collapse search starting from the previous update's fit, and hands a record to
``on_update`` (the run's log and store). Units: x in T or V, R in Ohm, T in K, seconds of compute.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from qbs_lab.analysis.crossing import H_OVER_4E2
from qbs_lab.analysis.estimate import analyze_isotherms
from qbs_lab.plan import Plan

__all__ = ["OnlineCrossing", "format_update", "search_update"]

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
    n_boot : int
        Bootstrap replicas of the crossing (the collapse uses half as many).
    collapse_boot : int
        Unused; kept for callers of the earlier signature.
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
        self._start: tuple[float, float] | None = None  # (z*nu, x_c) of the last collapse that succeeded

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
        analysis = analyze_isotherms(data, x=self.x, n_boot=self.n_boot, start=self._start)
        result = analysis.to_dict()
        collapse = analysis.collapse
        if collapse is not None and collapse.ok:
            self._start = (collapse.znu, collapse.x_c)
        record: dict[str, Any] = {
            "t": _num(t),
            "isotherms": len(done),
            "x": self.x,
            **{
                k: result[k]
                for k in ("verdict", "x_c", "x_c_err", "R_c", "R_c_err", "R_c_h4e2", "drift", "drift_err")
            },
            "znu": result["znu"],
            "znu_err": result["znu_err"],
            "quality": result["quality"],
            "excluded": result["excluded"],
            "order": result["order"],
            "collapse": result["collapse"],
        }
        if collapse is not None:
            record.update(
                collapse_x_c=_num(collapse.x_c),
                collapse_x_c_err=_num(collapse.x_c_err),
                collapse_status=collapse.status,
            )
        record["seconds"] = round(time.perf_counter() - start, 3)
        self.updates.append(record)
        if self.on_update is not None:
            self.on_update(record)
        return record


def search_update(report: dict[str, Any]) -> dict[str, Any]:
    """An adaptive search's running estimate (:mod:`qbs_lab.crossing_search`) as an update record,
    the same keys as :meth:`OnlineCrossing.update`'s (the log, the live view and ``analyze`` read them)."""
    est = report.get("estimate") or {}

    def num(key: str) -> float | None:
        return _num(est.get(key, math.nan))

    T = est.get("T_range") or [math.nan, math.nan]
    R_c = num("R_c")
    return {
        "t": _num(report.get("t_s", math.nan)),
        "isotherms": report.get("isotherms", 0),
        "x": "B",
        "verdict": f"search step {report.get('pass', 0)}, readings at {T[0] * 1e3:.3g}-{T[1] * 1e3:.3g} mK",
        "x_c": num("B_c"),
        "x_c_err": num("B_c_err"),
        "R_c": R_c,
        "R_c_err": num("R_c_err"),
        "R_c_h4e2": None if R_c is None else R_c / H_OVER_4E2,
        "drift": num("drift"),
        "drift_err": num("drift_err"),
        "znu": num("z_nu"),
        "znu_err": num("z_nu_err"),
        "quality": None,
        "excluded": [],
        "order": None,
        "collapse": None,
        "expected_end_s": report.get("expected_end_s"),
        "search": True,
        "seconds": report.get("seconds", 0.0),
    }


def format_update(record: dict[str, Any]) -> str:
    """One log line for an update."""
    unit, scale = X_UNITS[record["x"]]
    parts = [
        record["verdict"] if record.get("search") else f"{record['isotherms']} isotherms: {record['verdict']}"
    ]
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
    collapse = record.get("collapse")
    if collapse and collapse.get("status") == "failed":
        parts.append(f"collapse failed ({collapse.get('reason')})")
    for e in record["excluded"]:
        parts.append(f"excluded T = {e['T'] * 1e3:.4g} mK ({e['reason']})")
    return "; ".join(parts) + f"  ({record['seconds']:.2f} s)"
