"""Continuous field sweeps: the magnet ramps while the lock-in is read on the clock; the lag of the
lock-in's output filter is corrected and the samples are binned onto the plan's B grid.

Why the lag is n·τ: a lock-in's output filter is n identical RC stages of time constant τ (6 dB/oct
each: SR830, SR860 and MFLI alike, and :mod:`qbs_lab.sim.lockin`). Its impulse response is a gamma
density of mean n·τ, so an input that changes linearly in time (R(B) near any B, B ramping at a
constant rate) comes out exactly n·τ late once the filter has forgotten the ramp's start. Each reading
is therefore given the field read back n·τ before it (interpolated between readbacks); up and down
sweeps then agree. What the correction leaves is the filter's smearing, an rms spread of √n·τ·rate in
B, which costs only R's curvature times its square.

The raw samples of every line are kept beside the binned grid: ``<store>/sweeps/line_NNNNN.npz``,
NNNNN the run-order number of the line's first point (written whole, then renamed), read back with
:func:`raw_samples` as one dataset on a ``sample`` dimension.

>>> filter_delay(0.3, 24)   # 4 stages of 0.3 s
1.2
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qbs_lab.filters import stages

if TYPE_CHECKING:
    import xarray as xr

    from qbs_lab.plan import FieldPolicy
    from qbs_lab.station import Station

__all__ = ["LineSweeper", "Samples", "bin_onto", "filter_delay", "raw_samples", "save_raw"]

#: the columns of a sweep's samples, each an array over the samples
SAMPLE_COLUMNS = ("t", "t_B", "B_meas", "R", "X", "Y", "I")
#: what each line's raw file holds besides the columns
LINE_FIELDS = ("delay", "rate", "interval")


def filter_delay(time_constant: float, slope_db_per_octave: int) -> float:
    """Delay [s] of an n-stage RC output filter for a ramping input: n·τ."""
    return stages(slope_db_per_octave) * time_constant


@dataclass
class Samples:
    """One line's readings: the lock-in's at times ``t`` and the field read back at ``t_B`` (both on
    the run's clock, s), with the filter delay [s] the line is corrected by."""

    t: list[float] = field(default_factory=list)
    t_B: list[float] = field(default_factory=list)
    B_meas: list[float] = field(default_factory=list)
    R: list[float] = field(default_factory=list)
    X: list[float] = field(default_factory=list)
    Y: list[float] = field(default_factory=list)
    I: list[float] = field(default_factory=list)
    delay: float = 0.0
    rate: float = 0.0
    interval: float = 0.0

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(getattr(self, k), dtype=float) for k in SAMPLE_COLUMNS}

    def field_at(self, delay: float | None = None) -> np.ndarray:
        """The field each lock-in reading belongs to: the readback ``delay`` [s] (default: the
        line's filter delay) before it, interpolated between readbacks."""
        delay = self.delay if delay is None else delay
        a = self.arrays()
        return np.interp(a["t"] - delay, a["t_B"], a["B_meas"])

    def binned(self, grid: np.ndarray, delay: float | None = None) -> dict[str, np.ndarray]:
        """R, X, Y, I, t and the corrected B_meas on ``grid`` (see :func:`bin_onto`)."""
        a = self.arrays()
        columns = {k: a[k] for k in ("R", "X", "Y", "I", "t")}
        B = self.field_at(delay)
        return {**bin_onto(grid, B, columns), "B_meas": bin_mean(grid, B)}


def bin_onto(grid: np.ndarray, B: np.ndarray, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each column at each grid field: a straight line through the samples whose field ``B`` falls in
    the grid point's bin (edges halfway between grid points; the end bins reach half a step outward),
    evaluated at the grid field, so a bin the samples cover unevenly is not biased toward its covered
    side. Where the bin's samples do not lie on both sides of the grid field (a pause in the readings
    for a lock-in range change), the line goes through the samples within a whole step instead; with
    fewer than 3 samples even there, the column is interpolated between the nearest samples."""
    grid = np.asarray(grid, dtype=float)
    B = np.asarray(B, dtype=float)
    g = np.sort(grid)
    steps = np.diff(g)
    step_lo = np.concatenate([[steps[0] if len(steps) else 1e-12], steps])
    step_hi = np.concatenate([steps, [steps[-1] if len(steps) else 1e-12]])
    by_B = np.argsort(B)
    values = {name: np.asarray(v, dtype=float) for name, v in columns.items()}
    out = {name: np.full(len(grid), np.nan) for name in columns}
    for j, gj in enumerate(grid):
        i = int(np.searchsorted(g, gj))
        dB = B - gj
        members = np.flatnonzero((dB >= -step_lo[i] / 2) & (dB < step_hi[i] / 2))
        if not (len(members) >= 3 and dB[members].min() < 0 < dB[members].max()):
            members = np.flatnonzero((dB >= -step_lo[i]) & (dB <= step_hi[i]))
        for name, v in values.items():
            if len(members) >= 3 and np.ptp(dB[members]) > 0:
                out[name][j] = np.polyfit(dB[members], v[members], 1)[1]
            elif len(B):
                out[name][j] = np.interp(gj, B[by_B], v[by_B])
    return out


def bin_mean(grid: np.ndarray, B: np.ndarray) -> np.ndarray:
    """The mean field of the samples in each grid point's bin (NaN where none fell): where the
    binned readings were taken, recorded as ``B_meas``."""
    g = np.asarray(grid, dtype=float)
    out = np.full(len(g), np.nan)
    if len(g) == 1:
        return np.array([np.mean(B)]) if len(B) else out
    for j, gj in enumerate(g):
        near = np.abs(B - gj) <= np.min(np.abs(np.delete(g, j) - gj)) / 2
        if near.any():
            out[j] = B[near].mean()
    return out


class LineSweeper:
    """Sweeps one B line on the station: the magnet ramps from where it is to the line's last field at
    the policy's rate (through :meth:`MagnetRole.sweep_to`, so the station's limits apply to the rate
    and the target), the lock-in and the field are read every ``interval``; the thermometers, gate
    and leakage are read at the line's start and end and interpolated in time.
    """

    def __init__(self, station: Station, policy: FieldPolicy) -> None:
        self.station, self.policy = station, policy
        #: seconds the sweeps' physics took: travel / rate, and the filter's lag after each ramp
        self.floor = 0.0
        #: of which the magnet role's own ramp floor (travel / rate)
        self.ramp_floor = 0.0
        #: the meter's settle waits (range changes) made while the magnet swept: within the ramp's time
        self.overlap = 0.0

    def sweep(self, grid: np.ndarray, t_origin: float) -> tuple[list[tuple[float, ...]], Samples]:
        """The records (in :data:`STATION_VARIABLES` order, then ``t``) of every grid point of the
        line, in the order given, and the raw samples."""
        st, pol = self.station, self.policy
        clock, meter, magnet = st.clock, st.resistance, st.magnet
        lockin = st.lockin
        delay = filter_delay(lockin.time_constant(), lockin.filter_slope()) if pol.lag_correction else 0.0
        # the raw samples keep the readings as taken: any delay can be applied to them later
        raw = Samples(delay=delay, rate=pol.sweep_rate, interval=pol.interval)
        full_delay = filter_delay(lockin.time_constant(), lockin.filter_slope())

        def env() -> tuple[float, float, float, float, float]:
            th, gate = st.thermometry, st.gate
            t = clock.now() - t_origin
            return t, th.temperature_mc(), th.temperature_sample(), gate.voltage(), gate.leakage()

        def sample() -> None:
            t0 = clock.now()
            r = meter.measure(settle=False)  # a range change settles the filter: a gap, not a jump
            t1 = clock.now()
            b = magnet.field()
            t2 = clock.now()
            # X and Y are read within the measurement's few queries; after a range change, at its end
            t = t1 if t1 - t0 > pol.interval else 0.5 * (t0 + t1)
            raw.t.append(t - t_origin)
            raw.t_B.append(0.5 * (t1 + t2) - t_origin)
            raw.B_meas.append(b)
            raw.R.append(r.R)
            raw.X.append(r.X)
            raw.Y.append(r.Y)
            raw.I.append(r.I)

        start = env()
        sample()  # the settled reading at the first field: anchors the first n·τ of the ramp's readings
        tail = full_delay + 2 * pol.interval
        ramp0, settled0 = magnet.floor, meter.settled
        magnet.sweep_to(float(grid[-1]), pol.sweep_rate, pol.interval, sample, tail=tail)
        self.overlap += meter.settled - settled0
        self.ramp_floor += magnet.floor - ramp0
        self.floor += magnet.floor - ramp0 + tail
        end = env()
        binned = raw.binned(np.asarray(grid, dtype=float))
        t_bins = binned["t"]
        span = end[0] - start[0]
        w = (t_bins - start[0]) / span if span > 0 else np.zeros_like(t_bins)
        envs = [np.asarray(start[i]) + w * (end[i] - start[i]) for i in range(1, 5)]
        records = [
            (
                binned["R"][j],
                binned["X"][j],
                binned["Y"][j],
                binned["I"][j],
                envs[0][j],
                envs[1][j],
                binned["B_meas"][j],
                envs[2][j],
                envs[3][j],
                t_bins[j],
            )
            for j in range(len(grid))
        ]
        return records, raw


def save_raw(store_path: Path, line: int, index: tuple[int, ...], samples: Samples) -> Path:
    """Write one line's raw samples into ``<store>/sweeps/`` (a temporary file renamed: whole or not
    at all). ``line`` is the run-order number of the line's first point, ``index`` its grid index."""
    folder = Path(store_path) / "sweeps"
    folder.mkdir(exist_ok=True)
    path = folder / f"line_{line:05d}.npz"
    tmp = folder / f".{path.name}.tmp"
    with open(tmp, "wb") as f:
        np.savez(
            f,
            index=np.asarray(index, dtype=np.int64),
            **samples.arrays(),
            **{k: np.float64(getattr(samples, k)) for k in LINE_FIELDS},
        )
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_line(path: Path) -> tuple[tuple[int, ...], Samples]:
    """One line's file: the grid index of its first point and its samples."""
    with np.load(path) as z:
        s = Samples(**{k: z[k].tolist() for k in SAMPLE_COLUMNS}, **{k: float(z[k]) for k in LINE_FIELDS})
        return tuple(int(i) for i in z["index"]), s


def raw_samples(store_path: Path) -> xr.Dataset:
    """Every line's raw samples as one dataset on a ``sample`` dimension: the columns, the line's
    number and the field each reading belongs to once its filter delay is corrected (``B_corr``)."""
    import xarray as xr

    data: dict[str, list[Any]] = {k: [] for k in (*SAMPLE_COLUMNS, "B_corr", "line", "delay")}
    for path in sorted((Path(store_path) / "sweeps").glob("line_*.npz")):
        _, s = load_line(path)
        a = s.arrays()
        n = len(a["t"])
        for k in SAMPLE_COLUMNS:
            data[k].append(a[k])
        data["B_corr"].append(s.field_at())
        data["line"].append(np.full(n, int(path.stem.split("_")[1])))
        data["delay"].append(np.full(n, s.delay))
    units = {"t": "s", "t_B": "s", "B_meas": "T", "R": "Ohm", "X": "V", "Y": "V", "I": "A", "B_corr": "T"}
    return xr.Dataset(
        {
            k: ("sample", np.concatenate(v) if v else np.array([]), {"units": units.get(k, "")})
            for k, v in data.items()
        }
    )
