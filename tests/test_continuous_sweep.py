"""Continuous field sweeps (issue 15, item 1): the lock-in filter's lag corrected, up and down agree.

On the simulated lab (whose lock-in is an n-stage RC filter, :mod:`qbs_lab.sim.lockin`) the field is
swept up and down at a rate where the filter's delay n·tau is a quarter of a grid step. After the
correction the binned R(B) of the two directions must differ by no more than two sweeps in the same
direction do (the noise, measured, not assumed); without it they must differ by several times that, by
the amount the filter's delay predicts (2 n tau rate dR/dB) and with the sign of a lag (the up sweep
reads low). Noise 0.5 % and 2 % of R, different seeds and grids.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import STATION

from qbs_lab.analysis.report import analyze_crossing
from qbs_lab.continuous import Samples, bin_onto, filter_delay, load_line, raw_samples
from qbs_lab.interrupt import GuardedClock, StopRequest
from qbs_lab.plan import Axis, FieldPolicy, Plan, linspace
from qbs_lab.procedure import load_procedure, parse_settings
from qbs_lab.runner import Runner
from qbs_lab.runs import LabOptions, start_run
from qbs_lab.sim import SimLab
from qbs_lab.station import Station, load_station
from qbs_lab.store.run_store import RunStore

CONFIG = load_station(STATION)
RATE = 1e-4  # T/s: the 4-stage 0.3 s filter lags 0.12 mT, a quarter of a 0.5 mT grid step
T_BATH = 0.1  # K


@contextmanager
def sim_station(seed: int, noise: float) -> Iterator[tuple[SimLab, Station]]:
    """The reference station on a simulated lab whose lock-in input noise is ``noise`` [V/sqrt(Hz)]."""
    lab = SimLab.from_station(STATION, seed=seed)
    lab.state.lockin.noise_density = noise
    try:
        station = CONFIG.connect(lab=lab, clock=GuardedClock(lab.clock, StopRequest()))
        try:
            yield lab, station
        finally:
            station.close()
    finally:
        lab.close()


def sweep(
    tmp: Path, seed: int, noise: float, B0: float, B1: float, num: int
) -> tuple[xr.Dataset, Samples, np.ndarray]:
    """One continuous sweep B0 -> B1 at RATE, T held: the stored dataset, the raw samples, the grid."""
    grid = np.asarray(linspace(B0, B1, num))
    plan = Plan(
        "field_sweep",
        axes=(Axis("B", tuple(grid)),),
        fixed={"V_g": 15.0, "T": T_BATH},
        field_policy=FieldPolicy(sweep="continuous", sweep_rate=RATE, interval=0.2),
    )
    with sim_station(seed, noise) as (_, station):
        runner = Runner(plan, station)
        store = RunStore.for_plan(tmp / "run.zarr", plan, runner.variable_attrs())
        runner.store = store
        result = runner.run()
        assert result.status == "completed", result.message
        ds = store.dataset()
        (line,) = sorted((store.path / "sweeps").glob("line_*.npz"))
        _, samples = load_line(line)
    return ds, samples, grid


def on_ascending(grid: np.ndarray, values: np.ndarray) -> np.ndarray:
    return values[np.argsort(grid)]


@pytest.mark.parametrize(
    ("noise", "seed", "num"),
    [(2e-8, 3, 25), (1e-7, 11, 25), (2e-8, 21, 17)],  # ~0.5 % and ~2 % of R at mid-sweep
)
def test_up_and_down_agree_after_the_lag_correction_and_not_without_it(
    tmp_path: Path, noise: float, seed: int, num: int
) -> None:
    B0, B1 = 0.006, 0.018
    up, raw_up, g_up = sweep(tmp_path / "up", seed, noise, B0, B1, num)
    down, raw_down, g_down = sweep(tmp_path / "down", seed + 1, noise, B1, B0, num)
    up2, _, _ = sweep(tmp_path / "up2", seed + 2, noise, B0, B1, num)
    B = np.sort(g_up)
    inner = slice(1, -1)  # the end bins see half a bin of ramp (and the ramp's start): not compared

    R_up = on_ascending(g_up, up.R.values)
    R_down = on_ascending(g_down, down.R.values)
    R_up2 = on_ascending(g_up, up2.R.values)
    noise_rms = np.sqrt(np.mean((R_up - R_up2)[inner] ** 2))  # two sweeps the same way: noise alone
    corrected = np.sqrt(np.mean((R_up - R_down)[inner] ** 2))

    # the same samples binned without the correction (delay 0), as `lag_correction=False` stores them
    raw_R_up = on_ascending(g_up, raw_up.binned(g_up, delay=0.0)["R"])
    raw_R_down = on_ascending(g_down, raw_down.binned(g_down, delay=0.0)["R"])
    lagged = raw_R_up - raw_R_down
    uncorrected = np.sqrt(np.mean(lagged[inner] ** 2))

    assert raw_up.delay == pytest.approx(filter_delay(0.3, 24)) == pytest.approx(1.2)
    assert noise_rms > 0
    assert corrected <= 2.0 * noise_rms + 1e-3 * np.mean(R_up), (corrected, noise_rms)
    assert uncorrected >= 4.0 * max(noise_rms, corrected), (uncorrected, noise_rms, corrected)
    # a lag: going up, each reading belongs to a lower field, so R (rising with B) reads low
    assert np.all(lagged[inner] < 0)
    # and by the amount the delay predicts: 2 n tau rate dR/dB
    slope = np.gradient(R_up2, B)
    predicted = -2 * raw_up.delay * RATE * slope
    ratio = np.median(lagged[inner] / predicted[inner])
    assert 0.7 < ratio < 1.3, ratio

    # the stored grid is the raw samples binned with the line's delay (no other processing)
    stored = raw_up.binned(g_up)
    np.testing.assert_allclose(up.R.values, stored["R"], rtol=1e-12)
    # B read back at each sample: the readings span the line, and the binned field sits in its bin
    assert min(raw_up.B_meas) == pytest.approx(B0, abs=1e-6)
    assert max(raw_up.B_meas) == pytest.approx(B1, abs=1e-6)
    step = (B1 - B0) / (num - 1)
    assert np.all(np.abs(up.B_meas.values - g_up) <= step / 2)


def test_binning_a_known_line_recovers_it_at_the_grid_fields() -> None:
    """Samples of R = a + b B, unevenly spaced with a gap: each bin's value is the line at its grid
    field (a bin mean would be pulled toward the covered side), and an empty bin is interpolated."""
    rng = np.random.default_rng(4)
    grid = np.linspace(0.0, 1.0, 11)
    B = np.sort(rng.uniform(-0.05, 1.05, 400))
    B = B[(B < 0.42) | (B > 0.58)]  # bin 0.5 empty, bins 0.4 and 0.6 covered on one side only
    R = 3.0 + 2.0 * B
    out = bin_onto(grid, B, {"R": R})["R"]
    np.testing.assert_allclose(out, 3.0 + 2.0 * grid, atol=1e-9)
    # reversed grid (a down sweep) gives the same values in its own order
    np.testing.assert_allclose(bin_onto(grid[::-1], B, {"R": R})["R"], (3.0 + 2.0 * grid)[::-1], atol=1e-9)


def test_field_isotherms_continuous_from_the_command_line_settings_is_read_by_the_crossing(
    tmp_path: Path,
) -> None:
    """`--set sweep=continuous` on the default crossing experiment (three isotherms, snake): the grid
    is filled, the raw samples kept per line, and the crossing analysis finds B_c near the truth."""

    proc = load_procedure("field_isotherms")
    params = parse_settings(proc, ["sweep=continuous", "temperatures=0.06,0.12,0.24"])
    opts = LabOptions(station=STATION, sim=True, seed=5, data_dir=tmp_path / "data")
    outcome = start_run(proc, params, opts, progress=False, estimate=False)
    assert outcome.result.status == "completed", outcome.result.message
    ds = xr.open_zarr(outcome.path)
    assert ds.R.dims == ("T", "B") and not np.isnan(ds.R.values).any()
    raw = raw_samples(outcome.path)
    assert sorted(set(raw.line.values.tolist())) == [0, 25, 50]  # one file per line, by first point
    assert raw.sizes["sample"] > 3 * 25 * 5  # many readings per grid point
    result, _, _ = analyze_crossing(outcome.path, plots=False, n_boot=50)
    assert isinstance(result, dict)
    B_c = outcome.lab_truth["B_c"]
    assert result["x_c"] == pytest.approx(B_c, rel=0.03), (result["x_c"], B_c)
