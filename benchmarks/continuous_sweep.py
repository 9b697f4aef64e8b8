"""Continuous field sweeps on the simulated lab: up against down, with and without the lag correction.

For each sweep rate, R(B) at 0.1 K and V_g = 15 V is swept up and down (6 to 18 mT, 25 grid fields)
with the lock-in at 0.3 s, 24 dB/oct (its filter delays by n·tau = 1.2 s) and its input noise set to
~1 % of R; a second up sweep (another seed) measures the noise. Printed per rate: the filter's lag in
field, the rms up-minus-down difference of the binned R without and with the correction, the rms
difference of the two up sweeps (noise alone), and the fridge time of one sweep beside the default
stepped line. The figure (``docs/continuous_sweep.png`` unless ``--png``) shows, at the rate where the
lag is a quarter of a grid step, both directions uncorrected and corrected, and their differences.

Run from the repository root (about a minute):

    python benchmarks/continuous_sweep.py [--png PATH]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from qbs_lab.continuous import Samples, load_line
from qbs_lab.interrupt import GuardedClock, StopRequest
from qbs_lab.plan import Axis, FieldPolicy, Plan, linspace
from qbs_lab.runner import Runner
from qbs_lab.sim import SimLab
from qbs_lab.station import load_station
from qbs_lab.store.run_store import RunStore

STATION = Path("station.yaml")
NOISE = 5e-8  # V/sqrt(Hz): about 1 % of R per reading at mid-sweep
B0, B1, NUM = 0.006, 0.018, 25


def sweep(
    tmp: Path, seed: int, rate: float | None, up: bool
) -> tuple[np.ndarray, Samples | None, np.ndarray, float]:
    """R on the grid (ascending B), the raw samples, the grid (ascending), the run's fridge time [s];
    ``rate`` None: the stepped sweep."""
    grid = np.asarray(linspace(B0, B1, NUM) if up else linspace(B1, B0, NUM))
    policy = FieldPolicy() if rate is None else FieldPolicy(sweep="continuous", sweep_rate=rate)
    plan = Plan("field_sweep", (Axis("B", tuple(grid)),), {"V_g": 15.0, "T": 0.1}, field_policy=policy)
    lab = SimLab.from_station(STATION, seed=seed)
    lab.state.lockin.noise_density = NOISE
    config = load_station(STATION)
    try:
        with config.connect(lab=lab, clock=GuardedClock(lab.clock, StopRequest())) as station:
            runner = Runner(plan, station)
            store = RunStore.for_plan(tmp / f"{seed}-{rate}-{up}.zarr", plan, runner.variable_attrs())
            runner.store = store
            result = runner.run()
            assert result.status == "completed", result.message
            R = store.dataset().R.values
            samples = None
            if rate is not None:
                _, samples = load_line(next((store.path / "sweeps").glob("line_*.npz")))
    finally:
        lab.close()
    fridge = sum(v for k, v in result.phases.items() if k not in ("stabilize", "park"))
    order = np.argsort(grid)
    return R[order], samples, grid[order], fridge


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x[1:-1] ** 2)))  # the end bins see half a bin of ramp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--png", type=Path, default=Path("docs/continuous_sweep.png"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        _, _, _, stepped = sweep(tmp, 1, None, True)
        print(f"stepped line (25 fields, settle 13 tau each): {stepped:.0f} s of fridge time")
        print(
            f"{'rate':>10} {'lag':>8} {'up-down raw':>12} {'up-down corr':>13} {'up-up noise':>12}"
            f" {'sweep time':>10}"
        )
        shown = None
        for rate in (5e-5, 1e-4, 2e-4, 4e-4):
            R_up, s_up, g, t_up = sweep(tmp, 2, rate, True)
            R_dn, s_dn, _, _ = sweep(tmp, 3, rate, False)
            R_up2, _, _, _ = sweep(tmp, 4, rate, True)
            assert s_up is not None and s_dn is not None
            raw_up = s_up.binned(g, delay=0.0)["R"]
            raw_dn = s_dn.binned(g, delay=0.0)["R"]
            print(
                f"{rate * 1e3:7.3f} mT/s {s_up.delay * rate * 1e3:6.3f} mT"
                f" {rms(raw_up - raw_dn):9.1f} Ohm {rms(R_up - R_dn):10.1f} Ohm"
                f" {rms(R_up - R_up2):9.1f} Ohm {t_up:8.0f} s"
            )
            if rate == 1e-4:
                shown = (rate, g, R_up, R_dn, raw_up, raw_dn, R_up - R_up2, s_up, s_dn)
    assert shown is not None
    rate, g, R_up, R_dn, raw_up, raw_dn, noise, s_up, s_dn = shown
    mT = 1e3
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 7.5), sharex=True, height_ratios=(2, 1))
    a_up, a_dn = s_up.arrays(), s_dn.arrays()
    top.plot(a_up["B_meas"] * mT, a_up["R"], ",", color="tab:blue", alpha=0.25)
    top.plot(a_dn["B_meas"] * mT, a_dn["R"], ",", color="tab:red", alpha=0.25)
    top.plot(g * mT, raw_up, "^--", color="tab:blue", mfc="none", label="up, uncorrected")
    top.plot(g * mT, raw_dn, "v--", color="tab:red", mfc="none", label="down, uncorrected")
    top.plot(g * mT, R_up, "^-", color="tab:blue", label="up, lag corrected")
    top.plot(g * mT, R_dn, "v-", color="tab:red", label="down, lag corrected")
    top.set_ylabel("R [Ohm]")
    top.set_title(
        f"continuous sweeps at {rate * mT:g} mT/s, lock-in 0.3 s 24 dB/oct (lag n·τ = {s_up.delay:g} s,"
        f" {s_up.delay * rate * mT:.2f} mT)",
        fontsize=9,
    )
    top.legend(fontsize=8)
    bottom.axhspan(-2 * rms(noise), 2 * rms(noise), color="0.85", label="±2× rms of two up sweeps")
    bottom.plot(g * mT, raw_up - raw_dn, "o--", mfc="none", color="k", label="up − down, uncorrected")
    bottom.plot(g * mT, R_up - R_dn, "o-", color="tab:green", label="up − down, corrected")
    bottom.axhline(0, color="0.5", lw=0.5)
    bottom.set_xlabel("B [mT]")
    bottom.set_ylabel("ΔR [Ohm]")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    args.png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=110)
    print(f"figure: {args.png}")


if __name__ == "__main__":
    main()
