"""find_crossing's search: the critical point (B_c, R_c, z·ν) in as little fridge time as it takes.

Where the fridge time of a grid goes (field_isotherms: 53 % waiting for temperatures to settle, 38 %
for the lock-in to settle at each field, most points far from B_c), and what the search does instead:

- A temperature change is the dearest move (a setpoint takes 1.5-3 min to settle and hold), so the
  search never waits for one: the heater's setpoint ramps up through the range at ``T_rate`` and
  every reading takes the sample thermometer's temperature at its own time. Going down in T is
  dearer still (the fridge cools slowly): the search only goes up, from the lowest temperature.
- The warm-up to the lowest temperature, which every plan pays, is spent locating the transition:
  a fast field sweep up and one down at ``scan_rate`` while the sample warms; the field where the
  warmer sweep stops reading above the colder one is the first guess of B_c.
- Then the field sweeps back and forth at ``sweep_rate`` while the lock-in is read every
  ``interval`` (no settling: its filter's lag n·τ is corrected, :mod:`qbs_lab.continuous`), over a
  window around the current estimate of the crossing at the present temperature, as wide as the
  scaling form's informative part there (|g'(0) u| <= ``y_max``, :mod:`qbs_lab.analysis.scattered`):
  no magnet travel is spent far from B_c, and the window widens as T^(1/z·ν) as the sample warms.
- After every sweep the scaling form is fitted to every reading so far, and the search stops as
  soon as B_c is known to ``target`` and z·ν to ``target_z_nu`` (2σ, relative), over at least a
  factor ``min_span`` in temperature, or when the sample reaches the top of the range, or when the
  next sweep would overrun the fridge-time ``budget``.

Every decision (what was swept, at which temperatures, why, and the estimate after it) is kept in the
run's ``search`` attribute and written to its log. The readings are stored on the plan's grid: the
temperature axis is a set of bands (each band's readings, whatever their field, form its isotherm on
the field cells they fell in), so ``qbs-lab analyze crossing`` reads the run like any other; the raw
readings of every sweep are kept in ``<store>/sweeps/pass_NNNNN.npz``.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qbs_lab.analysis.crossing import H_OVER_4E2
from qbs_lab.analysis.scattered import ScatteredFit, fit_scattered
from qbs_lab.continuous import filter_delay
from qbs_lab.search import SearchContext

__all__ = ["CrossingSearch"]

#: the columns of the readings kept during a search
_COLUMNS = ("t", "t_B", "B_meas", "R", "X", "Y", "I", "pass", "up")


@dataclass(frozen=True)
class CrossingSearch:
    """The search's settings (SI units; see the module docstring for what each decides)."""

    bands: tuple[float, ...]  # the grid's temperatures [K]: one per band, ascending
    edges: tuple[float, ...]  # the bands' edges [K], ascending (one more than bands)
    grid: tuple[float, ...]  # the grid's fields [T], ascending
    T_range: tuple[float, float]  # [K] the temperatures the estimate is made over
    target: float = 0.01
    target_z_nu: float = 0.10
    budget: float = 900.0
    T_rate: float = 1e-3
    T_set_max: float = 0.3
    heater_range: float = 1e-3
    sweep_rate: float = 2e-4
    scan_rate: float = 5e-4
    interval: float = 0.2
    y_max: float = 1.5
    min_span: float = 2.0
    thermometer_every: float = 1.0

    def setpoints(self) -> dict[str, tuple[float, ...]]:
        return {"T": (self.T_range[0], self.T_set_max), "B": (self.grid[0], self.grid[-1])}

    def field_rates(self) -> tuple[float, ...]:
        return (self.sweep_rate, self.scan_rate)

    def run(self, ctx: SearchContext) -> dict[str, Any]:
        return _Search(self, ctx).run()


class _Search:
    """One run of a :class:`CrossingSearch`: its readings, fits and decisions."""

    def __init__(self, s: CrossingSearch, ctx: SearchContext) -> None:
        self.s, self.ctx = s, ctx
        st = ctx.station
        self.magnet, self.meter, self.thermo, self.gate = st.magnet, st.resistance, st.thermometry, st.gate
        self.cols: dict[str, list[float]] = {k: [] for k in _COLUMNS}
        self.T_read: list[tuple[float, float]] = []  # (t, T_sample) of each thermometer reading
        self.env: list[tuple[float, float, float, float]] = []  # (t, T_mc, V_g, I_leak)
        self.decisions: list[dict[str, Any]] = []
        self.fit: ScatteredFit | None = None
        self.B_c0 = math.nan
        self.n_pass = 0
        self.edges = np.asarray(s.edges, dtype=float)
        self.closed = 0  # bands stored so far
        self.t_ramp0 = 0.0
        self.t_setpoint = -math.inf
        self.delay = 0.0
        self.stopped = ""
        self.reranged = 0  # readings clipped during a sweep, taken again on a higher range

    # -- the temperature: a setpoint ramp, the sample thermometer read on the clock ----------------
    def _setpoint(self, t: float) -> None:
        s = self.s
        if t - self.t_setpoint < 2.0:
            return
        self.t_setpoint = t
        self.thermo.set_setpoint(min(s.T_range[0] + s.T_rate * (t - self.t_ramp0), s.T_set_max))

    def _read_T(self) -> float:
        t = self.ctx.now()
        T = self.thermo.temperature_sample()
        self.T_read.append((t, T))
        self._setpoint(t)
        return T

    def _read_env(self) -> None:
        t = self.ctx.now()
        self.env.append((t, self.thermo.temperature_mc(), self.gate.voltage(), self.gate.leakage()))

    # -- sweeping --------------------------------------------------------------------------------
    def _sweep(self, target: float, rate: float) -> None:
        """Sweep the field to ``target`` at ``rate`` reading the lock-in every interval (one pass)."""
        ctx, s, cols, clock = self.ctx, self.s, self.cols, self.ctx.clock
        meter, magnet = self.meter, self.magnet
        self.n_pass += 1
        n = self.n_pass
        up = float(target > magnet.field())
        last_T = [-math.inf]

        def sample() -> None:
            t0 = clock.now()
            r = meter.measure(settle=False, autorange=False)  # the range is set for the largest R
            if r.status.output_overload or max(abs(r.X), abs(r.Y)) > 0.95 * r.sensitivity:
                r = meter.measure(settle=True)  # clipped: up a range, settled (a gap in the readings)
                self.reranged += 1
            t1 = clock.now()
            b = magnet.field()
            t2 = clock.now()
            t = t1 if t1 - t0 > s.interval else 0.5 * (t0 + t1)
            cols["t"].append(t - ctx.t_origin)
            cols["t_B"].append(0.5 * (t1 + t2) - ctx.t_origin)
            cols["B_meas"].append(b)
            cols["R"].append(r.R)
            cols["X"].append(r.X)
            cols["Y"].append(r.Y)
            cols["I"].append(r.I)
            cols["pass"].append(n)
            cols["up"].append(up)
            if t2 - last_T[0] >= s.thermometer_every:
                last_T[0] = t2
                self._read_T()

        self._read_env()
        floor0 = magnet.floor
        ctx.timed("measure", lambda: magnet.sweep_to(target, rate, s.interval, sample))
        ctx.sweep_floor += magnet.floor - floor0  # the sweep's physics: measuring time
        self._read_env()
        self._read_T()

    def _set_range(self) -> None:
        """Autorange on a settled reading here, then one range up for headroom."""
        lockin = self.ctx.station.lockin
        self.meter.measure(settle=True)
        scale = list(lockin.sensitivities)
        i = min(range(len(scale)), key=lambda k: abs(scale[k] - lockin.sensitivity()))
        lockin.set_sensitivity(scale[min(i + 1, len(scale) - 1)])

    def _move(self, target: float) -> None:
        """Move the field at the station's rate, not measuring (a window far from the magnet)."""
        self.ctx.timed("ramp", lambda: self.magnet.ramp_to(target))

    def _corrected(self) -> dict[str, np.ndarray]:
        """Every reading with the field and temperature it belongs to (``B``, ``T``): read back
        the filter's delay before it, interpolated."""
        c = {k: np.asarray(v, dtype=float) for k, v in self.cols.items()}
        t = c["t"] - self.delay
        c["B"] = np.interp(t, c["t_B"], c["B_meas"])
        tT, T = (np.asarray(v, dtype=float) for v in zip(*self.T_read, strict=True))
        c["T"] = np.interp(t, tT, T)
        # where the sample's temperature reached the reading, nobody knows better than the filter's lag:
        # the temperature at the reading's own time is the other assumption (a systematic of the fit)
        c["T_now"] = np.interp(c["t"], tT, T)
        return c

    # -- the first guess ---------------------------------------------------------------------------
    def _localize(self) -> None:
        """Up and down across the field range while the sample warms: the guess of B_c."""
        s = self.s
        lo, hi = s.grid[0], s.grid[-1]
        start = self.ctx.now()
        self._move(hi)
        # the lock-in's range for the largest R (the top of the field range, the coldest sample), with
        # room to spare: the sweeps then read without changing range (each change costs a settling)
        self.ctx.timed("settle", self._set_range)
        self._sweep(lo, s.scan_rate)
        self._sweep(hi, s.scan_rate)
        c = self._corrected()
        cold, warm = c["pass"] == self.n_pass - 1, c["pass"] == self.n_pass
        g = np.linspace(lo, hi, 200)
        R_cold = _interp_by(g, c["B"][cold], c["R"][cold])
        R_warm = _interp_by(g, c["B"][warm], c["R"][warm])
        scale = max(float(np.nanmax(np.abs(np.concatenate([R_cold, R_warm])))), 1e-30)
        diff = (R_warm - R_cold) / scale
        # below B_c warming raises R, above it lowers it: the field that best splits the two signs
        pos, neg = np.clip(diff, 0, None), np.clip(-diff, 0, None)
        cost = np.cumsum(neg) + (pos.sum() - np.cumsum(pos))
        how = "where the warmer sweep stops reading above the colder one"
        if np.nanmax(np.abs(diff)) < 0.02:  # no sign of a crossing: where R is h/4e^2, else the middle
            above = np.flatnonzero(R_warm >= H_OVER_4E2)
            self.B_c0 = float(g[above[0]]) if len(above) else 0.5 * (lo + hi)
            how = (
                "no crossing seen: where R first reaches h/4e^2"
                if len(above)
                else "no crossing seen: mid-range"
            )
        else:
            self.B_c0 = float(g[int(np.argmin(cost))])
        T = c["T"][cold | warm]
        self._decide(
            "locate",
            start,
            f"swept {hi * 1e3:.4g} -> {lo * 1e3:.4g} -> {hi * 1e3:.4g} mT at {s.scan_rate * 1e3:.3g} mT/s"
            f" while warming ({T.min() * 1e3:.3g}-{T.max() * 1e3:.3g} mK)",
            f"first guess B_c = {self.B_c0 * 1e3:.4g} mT, {how}",
        )

    # -- the windows -----------------------------------------------------------------------------
    def _window(self, T: float) -> tuple[float, float, str]:
        """The field window [T] to sweep at sample temperature T [K], and why."""
        s, fit = self.s, self.fit
        lo, hi = s.grid[0], s.grid[-1]
        T_end = T + s.T_rate * 15.0  # the sample warms during the sweep: the window of its end
        if fit is None:
            center, half = self.B_c0, 0.12 * self.B_c0
            why = "±12 % around the first guess (no fit yet)"
        else:
            center, half = fit.center(T), fit.half_width(T_end, s.y_max * 1.1)
            half = min(max(half, 4 * (hi - lo) / max(len(s.grid) - 1, 1)), 0.5 * (hi - lo))
            why = f"the scaling window |g'(0) u| <= {s.y_max * 1.1:.2g} around B_c(T) from the fit"
        center = min(max(center, lo), hi)
        a, b = max(lo, center - half), min(hi, center + half)
        least = 4 * (hi - lo) / max(len(s.grid) - 1, 1)  # never narrower than a few cells
        if b - a < least:
            a, b = (lo, lo + least) if a <= lo else (hi - least, hi) if b >= hi else (a, b)
        return a, b, why

    def _pass(self) -> None:
        s = self.s
        start = self.ctx.now()
        T = self.T_read[-1][1]
        a, b, why = self._window(T)
        B = self.magnet.field()
        width = b - a
        moved = ""
        if B < a - 0.3 * width or B > b + 0.3 * width:  # far outside: get there at the station's rate
            near = a if abs(B - a) < abs(B - b) else b
            self._move(near)
            B, moved = near, f"moved to {near * 1e3:.4g} mT at the station's rate; "
        target = b if abs(B - a) <= abs(B - b) else a
        self._sweep(target, s.sweep_rate)
        self._update_fit()
        self._decide(
            "sweep",
            start,
            f"{moved}swept {B * 1e3:.4g} -> {target * 1e3:.4g} mT at {s.sweep_rate * 1e3:.3g} mT/s"
            f" (window {a * 1e3:.4g}-{b * 1e3:.4g} mT: {why})",
            self._estimate_text(),
        )

    # -- the estimate ----------------------------------------------------------------------------
    def _update_fit(self) -> None:
        s = self.s
        c = self._corrected()
        use = (c["T"] >= s.T_range[0]) & (c["T"] <= s.T_range[1]) & (c["pass"] > 2)
        passes = len(np.unique(c["pass"][use]))
        span = c["T"][use].max() / c["T"][use].min() if use.any() else 1.0
        if passes < 2 or use.sum() < 60 or span < 1.25:
            return
        # the model grows with the data: the drift only over a wide enough range, a cubic g until then
        full = span >= 1.6
        start = self.fit if self.fit is not None else None
        t0 = time.perf_counter()
        try:
            fit = self._fit(c, use, start, full)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as err:  # keep the last estimate
            self.ctx.log(f"search step {self.n_pass}: the fit failed ({type(err).__name__}: {err})")
            return
        lo, hi = s.grid[0], s.grid[-1]
        sane = (
            fit.status == "ok"
            and lo <= fit.center(s.T_range[0]) <= hi
            and lo <= fit.center(s.T_range[1]) <= hi
            and 0.2 <= fit.z_nu <= 10
            and fit.B_c_err < 0.2 * fit.B_c
            and fit.z_nu_err < fit.z_nu
        )
        if sane:
            self.fit = fit
            self.ctx.report({**self._record(), "seconds": round(time.perf_counter() - t0, 3)})

    def _fit(
        self, c: dict[str, np.ndarray], use: np.ndarray, start: ScatteredFit | None, full: bool
    ) -> ScatteredFit:
        return fit_scattered(
            c["B"][use],
            c["T"][use],
            c["R"][use],
            B_c0=start.center(0.0) if start else self.B_c0,
            z_nu0=start.z_nu if start else 1.0,
            y_max=self.s.y_max,
            t=c["t"][use],
            drift=full,
            order=5 if full else 3,
            split=c["up"][use] > 0.5,
            T_other=c["T_now"][use],
        )

    def _precise(self) -> bool:
        fit, s = self.fit, self.s
        if fit is None:
            return False
        return (
            2 * fit.B_c_err <= s.target * fit.B_c
            and 2 * fit.z_nu_err <= s.target_z_nu * fit.z_nu
            and fit.T_range[1] >= s.min_span * fit.T_range[0]
        )

    def _expected_end(self) -> float:
        """When the run should end [s]: the sample at the top of the range, or the budget."""
        s = self.s
        T = self.T_read[-1][1] if self.T_read else s.T_range[0]
        left = max(0.0, s.T_range[1] - T) / s.T_rate
        field = self.cols["B_meas"][-1] if self.cols["B_meas"] else 0.0
        return min(s.budget, self.ctx.now() + left + self._park_time(field))

    def _record(self) -> dict[str, Any]:
        fit = self.fit
        est = fit.to_dict() if fit is not None else None
        return {
            "t_s": round(self.ctx.now(), 2),
            "pass": self.n_pass,
            "isotherms": self.closed + 1,  # the bands with readings so far (the stored isotherms)
            "T_K": self.T_read[-1][1] if self.T_read else None,
            "estimate": est,
            "expected_end_s": round(self._expected_end(), 1),
        }

    def _estimate_text(self) -> str:
        fit = self.fit
        if fit is None:
            return "no estimate yet"
        return (
            f"B_c = {fit.B_c * 1e3:.5g} ± {fit.B_c_err * 1e3:.2g} mT,"
            f" z·ν = {fit.z_nu:.3g} ± {fit.z_nu_err:.2g},"
            f" R_c = {fit.R_c:.5g} ± {fit.R_c_err:.2g} Ohm ({fit.used} readings,"
            f" {fit.T_range[0] * 1e3:.3g}-{fit.T_range[1] * 1e3:.3g} mK)"
        )

    def _decide(self, what: str, start: float, did: str, then: str) -> None:
        T = [T for t, T in self.T_read if t >= start]
        entry = {
            "pass": self.n_pass,
            "what": what,
            "t_s": round(start, 2),
            "duration_s": round(self.ctx.now() - start, 2),
            "T_mK": [round(min(T) * 1e3, 2), round(max(T) * 1e3, 2)] if T else None,
            "did": did,
            "estimate": then,
        }
        self.decisions.append(entry)
        T_text = f", T {entry['T_mK'][0]:.3g}-{entry['T_mK'][1]:.3g} mK" if T else ""
        self.ctx.log(f"search step {self.n_pass} (t = {start:.0f} s{T_text}): {did}; {then}")

    def _stop_reason(self) -> str:
        s = self.s
        T = self.T_read[-1][1]
        if self._precise():
            return f"target reached: B_c to {s.target:.0%} and z·ν to {s.target_z_nu:.0%} (2σ)"
        if T >= s.T_range[1]:
            return f"the sample reached the top of the range ({T * 1e3:.4g} mK)"
        a, b, _ = self._window(T)
        next_pass = (b - a) / s.sweep_rate
        if self.ctx.now() + next_pass + self._park_time(b) > s.budget:
            return f"the fridge-time budget ({s.budget:.0f} s) would be overrun by the next sweep and parking"
        return ""

    def _park_time(self, field: float) -> float:
        """Seconds parking takes from ``field`` [T]: the magnet to zero, the gate to its safe value, at
        the station's rates (the gate's steps a little slower: 20 % on top)."""
        config = self.ctx.station.config
        gate = config.gate
        volts = abs(self.env[-1][2] - gate.safe_value) if self.env else 0.0  # the last gate reading
        return abs(field) / config.magnet.max_rate + 1.2 * volts / gate.max_rate

    # -- storing on the grid -----------------------------------------------------------------------
    def _cells(self, band: int) -> list[tuple[tuple[int, ...], tuple[float, ...]]]:
        """Band ``band``'s readings on the field cells they fell in: one record per cell."""
        c = self._corrected()
        lo, hi = self.edges[band], self.edges[band + 1]
        g = np.asarray(self.s.grid, dtype=float)
        step = float(np.min(np.diff(g))) if len(g) > 1 else 1.0
        sel = (c["T"] >= lo) & (c["T"] < hi) & (c["B"] >= g[0] - step / 2) & (c["B"] <= g[-1] + step / 2)
        if not sel.any():
            return []
        cell = np.clip(np.rint(np.interp(c["B"][sel], g, np.arange(len(g)))), 0, len(g) - 1).astype(int)
        env = np.asarray(self.env, dtype=float)
        out = []
        for j in np.unique(cell):
            m = cell == j
            t = float(c["t"][sel][m].mean())
            T_mc, V_g, I_leak = (float(np.interp(t, env[:, 0], env[:, i])) for i in (1, 2, 3))
            mean = {k: float(c[k][sel][m].mean()) for k in ("R", "X", "Y", "I", "T", "B")}
            rec = (mean["R"], mean["X"], mean["Y"], mean["I"], T_mc, mean["T"], mean["B"], V_g, I_leak, t)
            out.append(((band, int(j)), rec))
        return out

    def _close_bands(self, everything: bool = False) -> None:
        """Store every band the sample has warmed past (all of them at the end)."""
        T_now = self.T_read[-1][1] if self.T_read else -math.inf
        while self.closed < len(self.s.bands) and (everything or T_now > self.edges[self.closed + 1] * 1.01):
            for idx, rec in self._cells(self.closed):
                self.ctx.record(idx, rec)
            self.closed += 1

    def _save_pass(self, first: int) -> None:
        """The raw readings since index ``first`` in ``<store>/sweeps/pass_NNNNN.npz`` (whole or not)."""
        if self.ctx.store_path is None:
            return
        folder = Path(self.ctx.store_path) / "sweeps"
        folder.mkdir(exist_ok=True)
        path = folder / f"pass_{self.n_pass:05d}.npz"
        tmp = folder / f".{path.name}.tmp"
        cols = {k: np.asarray(v[first:], dtype=float) for k, v in self.cols.items()}
        tT, T = (np.asarray(v, dtype=float) for v in zip(*self.T_read, strict=True))
        with open(tmp, "wb") as f:
            np.savez(f, **cols, t_T=tT, T_sample=T, delay=np.float64(self.delay), B_c0=np.float64(self.B_c0))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    # -- the whole search --------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        s, ctx = self.s, self.ctx
        lockin = ctx.station.lockin
        self.delay = filter_delay(lockin.time_constant(), lockin.filter_slope())
        try:
            resumed = self._load_previous()
            # the heater first: the sample warms while the gate and the magnet move; the ramp goes on
            # from where the sample is (a resumed run's fridge may have cooled or warmed meanwhile)
            self.thermo.set_heater_range(s.heater_range)
            T_now = self.thermo.temperature_sample()
            self.t_ramp0 = ctx.now() - max(0.0, T_now - s.T_range[0]) / s.T_rate
            self._read_T()
            ctx.move_fixed()
            first = len(self.cols["t"])
            if resumed:
                self._update_fit()
                ctx.log(
                    f"search resumed with {first} readings of {self.n_pass} sweeps; {self._estimate_text()}"
                )
            if self.fit is None:
                self._localize()
                if not self._suspect(first):
                    self._save_pass(first)
            while True:
                first = len(self.cols["t"])
                self.stopped = self._stop_reason()
                if self.stopped:
                    break
                self._pass()
                if self._suspect(first):
                    continue
                self._save_pass(first)
                self._close_bands()
            self.ctx.log(f"search stopped: {self.stopped}; {self._estimate_text()}")
            self._close_bands(everything=True)
        except BaseException:
            # what is measured is stored after parking (the runner's), not before
            self.stopped = self.stopped or "the run ended before the search did"
            while self.closed < len(s.bands):
                ctx.pending.extend(self._cells(self.closed) if self.T_read else [])
                self.closed += 1
            raise
        return self.result()

    def _suspect(self, first: int) -> bool:
        """The stop request and the suspenders after a sweep: True (the sweep's readings dropped) when
        the lab paused and recovered during it."""
        if not self.ctx.check():
            return False
        self._drop_from(first)
        self.ctx.log(f"search step {self.n_pass}: the lab paused during this sweep; its readings are dropped")
        return True

    def _load_previous(self) -> bool:
        """A resumed run: the readings of its earlier sweeps (``sweeps/pass_*.npz``) come back."""
        folder = Path(self.ctx.store_path) / "sweeps" if self.ctx.store_path is not None else None
        files = sorted(folder.glob("pass_*.npz")) if folder is not None and folder.is_dir() else []
        if not files:
            return False
        for path in files:
            with np.load(path) as z:
                for k in _COLUMNS:
                    self.cols[k].extend(z[k].tolist())
                T_read = list(zip(z["t_T"].tolist(), z["T_sample"].tolist(), strict=True))
                self.B_c0 = float(z["B_c0"]) if "B_c0" in z else self.B_c0
        self.T_read = T_read  # each file holds every thermometer reading up to it
        self.n_pass = int(max(self.cols["pass"], default=0))
        return True

    def _drop_from(self, first: int) -> None:
        for v in self.cols.values():
            del v[first:]

    def result(self) -> dict[str, Any]:
        fit = self.fit
        estimate = None
        if fit is not None:
            estimate = {
                "B_c": fit.B_c,
                "B_c_err": fit.B_c_err,
                "R_c": fit.R_c,
                "R_c_err": fit.R_c_err,
                "z_nu": fit.z_nu,
                "z_nu_err": fit.z_nu_err,
                "drift": fit.drift,
                "drift_err": fit.drift_err,
                "T_range_K": list(fit.T_range),
                "readings": fit.used,
                "units": {"B_c": "T", "R_c": "Ohm", "drift": "1/K"},
            }
        return {
            "estimate": estimate,
            "stopped": self.stopped,
            "first_guess_B_c": self.B_c0,
            "passes": self.n_pass,
            "readings": len(self.cols["t"]),
            "reranged": self.reranged,
            "targets": {"B_c": self.s.target, "z_nu": self.s.target_z_nu, "budget_s": self.s.budget},
            "decisions": self.decisions,
        }


def _interp_by(g: np.ndarray, B: np.ndarray, R: np.ndarray) -> np.ndarray:
    order = np.argsort(B)
    return np.interp(g, B[order], R[order])
