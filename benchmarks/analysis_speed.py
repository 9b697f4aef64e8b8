"""Speed of the analysis at real sizes: the online update and ``qbs-lab analyze crossing``.

Issue 10, item 4 (targets on the 2-core machine): one online update at 12 isotherms x 2,000 points under
1 s, starting from the previous update's fit; ``qbs-lab analyze crossing`` under 2 s wall for 12 x 151
including both plots. Data: generated isotherm sets (tests/isotherm_sets.py, logistic family, z*nu 1.2,
1 % noise). Run:

    python benchmarks/analysis_speed.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from isotherm_sets import SetSpec, make_set  # noqa: E402

from qbs_lab.analysis.online import OnlineCrossing  # noqa: E402
from qbs_lab.plan import Axis, Plan  # noqa: E402


def common_grid_set(n_iso: int, n_points: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T [K], B [T], R [Ohm] (T, B)) on one grid, as a run stores it."""
    data, truth = make_set(SetSpec(n_iso=n_iso, grid="uniform"), seed)
    temps = np.array(sorted(data))
    B = np.linspace(truth["B_c"] * 0.93, truth["B_c"] * 1.07, n_points)
    R = np.array([np.interp(B, *data[T]) for T in temps])  # the set's curves on the common grid
    return temps, B, R


def online_update(n_iso: int, n_points: int, repeats: int = 3) -> tuple[float, float]:
    """(first update with n_iso - 1 isotherms [s], the next update, reusing its fit [s]) (best of repeats)."""
    temps, B, R = common_grid_set(n_iso, n_points)
    first, second = [], []
    for _ in range(repeats):
        plan = Plan("bench", axes=(Axis("T", tuple(temps)), Axis("B", tuple(B))))
        online = OnlineCrossing(plan, ("R", "t"))
        part = np.full_like(R, np.nan)
        part[:-1] = R[:-1]
        online.preload(part)
        t0 = time.perf_counter()
        online.update()
        first.append(time.perf_counter() - t0)
        online.preload(R)
        t0 = time.perf_counter()
        online.update()
        second.append(time.perf_counter() - t0)
    return min(first), min(second)


def cli_wall(n_iso: int, n_points: int) -> tuple[float, list[str]]:
    temps, B, R = common_grid_set(n_iso, n_points)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.nc"
        xr.Dataset({"R": (("T", "B"), R)}, coords={"T": temps, "B": B}).to_netcdf(path)
        cmd = [sys.executable, "-m", "qbs_lab.cli", "analyze", "crossing", str(path)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t0
        pngs = sorted(p.name for p in Path(tmp).glob("*.png"))
    if proc.returncode:
        print(proc.stderr)
    return wall, pngs


def main() -> None:
    print(f"{'what':52s} {'time':>9s}  target")
    for n_iso, n_points in ((12, 151), (12, 2000)):
        first, second = online_update(n_iso, n_points)
        print(f"{f'online update, {n_iso} x {n_points}, from scratch':52s} {first:8.2f} s")
        target = "< 1 s" if n_points == 2000 else ""
        print(
            f"{f'online update, {n_iso} x {n_points}, from the previous fit':52s} {second:8.2f} s  {target}"
        )
    wall, pngs = cli_wall(12, 151)
    print(f"{'qbs-lab analyze crossing, 12 x 151, both plots (wall)':52s} {wall:8.2f} s  < 2 s  {pngs}")
    print("\nbefore issue 10: 25 s (12 x 151) and 233 s (12 x 2000) per online update; 12-24 s per CLI call")


if __name__ == "__main__":
    main()
