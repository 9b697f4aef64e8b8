"""Scaling analysis, side by side on the same data: qbs_lab's analysis against pyfssa's autoscale.

Both get the same isotherms R(B) on one common field grid (pyfssa needs one; ours does not), and both
fit z*nu and B_c (pyfssa fits its third exponent zeta too; the truth is 0). Ours is
:func:`qbs_lab.analysis.estimate.analyze_isotherms`, the code path of ``qbs-lab analyze crossing`` and of
the online update (n_boot = 200; its noise estimated from the data): x_c is the joint crossing, z*nu
the collapse's. pyfssa gets each isotherm's noise from qbs_lab's estimate_noise.

Data sets:
- synthetic isotherms from the simulator's sample model on field_isotherms' grid (5 x 25), several z*nu
  and additive noise levels;
- the sizes of issue 10 from tests/isotherm_sets.py (not the simulator; multiplicative lock-in noise):
  6 isotherms (80-550 mK) x 135 points over +-7 % of B_c at 0.5, 1 and 2 %; 12 x 151 at 1 %; with
  ``--big``, 12 x 2,000 at 1 % (pyfssa takes minutes per fit there);
- runs of the simulated lab (``qbs-lab run field_isotherms --sim``, scenarios clean and drifting; truth
  B_c is the T -> 0 value);
- 2-D Ising Monte Carlo Binder ratios, ../shared/reference/ising2d-binder.dat (exact K_c = 0.44068679,
  nu = 1; T <-> 1/L), with its own error bars.
Reported per data set: median |z*nu - truth|, share within 10 %, median |B_c - truth|, how often the
truth lies within two stated sigmas (coverage; honest error bars give ~95 %), the median stated z*nu
error, and the median time per fit.

pyfssa (PyPI ``fssa``, 0.7.6) no longer imports on current NumPy and SciPy; :func:`patch_pyfssa` patches
the removed names at run time (numpy.asfarray and numpy.int, and scipy.optimize.optimize's
wrap_function) without copying any of its code. Run:

    python benchmarks/collapse_vs_pyfssa.py [--seeds 10] [--sim-seeds 6] [--big]
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import numpy as np

from qbs_lab.analysis.collapse import estimate_noise
from qbs_lab.analysis.estimate import analyze_isotherms
from qbs_lab.sim.sample import SampleModel, SampleParams

ROOT = Path(__file__).resolve().parent.parent
V_G = 15.0  # V
TEMPS = (0.06, 0.09, 0.12, 0.18, 0.24)  # K, field_isotherms' defaults
GRID = np.linspace(0.006, 0.018, 25)  # T
ISING = ROOT.parent / "shared" / "reference" / "ising2d-binder.dat"  # ../shared/reference/ (not in the repo)


def patch_pyfssa() -> Any:
    """Import pyfssa after restoring, at run time, the NumPy and SciPy names it still uses."""
    import scipy.optimize as so
    from scipy.optimize import _optimize

    if not hasattr(np, "asfarray"):  # removed in NumPy 2.0
        np.asfarray = lambda a, dtype=float: np.asarray(a, dtype=dtype)
    if not hasattr(np, "int"):  # removed in NumPy 1.24
        np.int = int

    def wrap_function(function: Any, args: tuple) -> tuple[list[int], Any]:
        # SciPy's old helper: a call counter and the function with its extra arguments bound
        ncalls = [0]

        def wrapper(*wargs: Any) -> Any:
            ncalls[0] += 1
            return function(*(wargs + tuple(args)))

        return ncalls, wrapper

    # scipy.optimize.optimize (deprecated module) no longer exports wrap_function
    shim = types.ModuleType("scipy.optimize.optimize")
    shim.OptimizeResult = so.OptimizeResult
    shim._status_message = _optimize._status_message
    shim.wrap_function = wrap_function
    sys.modules["scipy.optimize.optimize"] = shim
    import fssa

    return fssa


# -- data ---------------------------------------------------------------------------------------------
def synthetic(znu: float, noise: float, seed: int) -> tuple[dict[float, np.ndarray], dict[str, float]]:
    """{T: R(GRID)} with Gaussian noise [Ohm], and the truth."""
    model = SampleModel(dataclasses.replace(SampleParams(), znu=znu))
    rng = np.random.default_rng(seed)
    data = {
        T: np.array([model.resistance(V_G, b, T) for b in GRID]) + noise * rng.normal(size=GRID.size)
        for T in TEMPS
    }
    truth = model.truth(V_G)
    return data, {"znu": znu, "B_c": truth["B_c"]}


def generated(
    n_iso: int, n_points: int, noise: float, seed: int, temps: tuple[float, float] = (0.05, 1.0)
) -> tuple:
    """(grid, {T: R}, truth) from tests/isotherm_sets.py's logistic family on one common grid [T]."""
    sys.path.insert(0, str(ROOT / "tests"))
    import isotherm_sets as sets

    rng = np.random.default_rng(seed)
    znu = float(rng.uniform(0.6, 2.4))
    grid = np.linspace(sets.B_C * (1 - sets.HALF), sets.B_C * (1 + sets.HALF), n_points)
    data = {}
    for T in np.geomspace(*temps, n_iso):
        u = sets.U_EDGE * (grid - sets.B_C) / (sets.HALF * sets.B_C) * (T / sets.T_LOW) ** (-1.0 / znu)
        F = sets.scaling_function(sets.FAMILIES[seed % 3], u)
        data[float(T)] = sets.R_C * F * (1 + noise * rng.standard_normal(n_points))
    return grid, data, {"znu": znu, "B_c": sets.B_C}


def ising() -> tuple | None:
    """(K grid, {1/L: Binder ratio}, truth, {1/L: its errors}) of the 2-D Ising reference data, on the K
    values all sizes share (pyfssa needs one grid)."""
    if not ISING.exists():
        return None
    rows = np.loadtxt(ISING)
    sizes = np.unique(rows[:, 0])
    Ks = None
    for L in sizes:
        k = rows[rows[:, 0] == L, 1]
        Ks = k if Ks is None else np.intersect1d(Ks, k)
    data, err = {}, {}
    for L in sizes:
        sel = rows[(rows[:, 0] == L) & np.isin(rows[:, 1], Ks)]
        data[1.0 / L], err[1.0 / L] = sel[:, 2], sel[:, 3]
    return Ks, data, {"znu": 1.0, "B_c": 0.44068679}, err


def simulated_runs(scenario: str, seeds: range, workdir: Path) -> list[tuple[dict, dict]]:
    """Runs of field_isotherms on the simulated lab, read back from their stores."""
    import xarray as xr

    out = []
    for seed in seeds:
        data_dir = workdir / f"{scenario}-{seed}"
        cmd = [sys.executable, "-m", "qbs_lab.cli", "run", "field_isotherms", "--sim", "--no-progress"]
        cmd += ["--data", str(data_dir), "--seed", str(seed), "--scenario", scenario]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
        stores = glob.glob(str(data_dir / "*" / "*.zarr"))
        if proc.returncode != 0 or not stores:
            print(f"  (simulated run {scenario} seed {seed} failed: {proc.stderr.strip()[-200:]})")
            continue
        ds = xr.open_zarr(stores[0])
        truth = ds.attrs["truth"]
        truth = json.loads(truth) if isinstance(truth, str) else truth
        if not np.array_equal(ds["B"].values, GRID) or list(ds["T"].values) != list(TEMPS):
            print(f"  (simulated run {scenario} seed {seed}: unexpected grid, skipped)")
            continue
        R = np.asarray(ds["R"].values, dtype=float)
        out.append(({T: R[i] for i, T in enumerate(TEMPS)}, {"znu": truth["znu"], "B_c": truth["B_c"]}))
    return out


# -- the two fits ------------------------------------------------------------------------------------
def ours(
    grid: np.ndarray, data: dict[float, np.ndarray], dR: dict[float, float], seed: int
) -> dict[str, float]:
    t0 = time.perf_counter()
    a = analyze_isotherms({T: (grid, R) for T, R in data.items()}, n_boot=200, seed=seed)
    c, k = a.crossing, a.collapse
    ok = k is not None and k.ok
    return {
        "znu": k.znu if ok else np.nan,
        "znu_err": k.znu_err if ok else np.nan,
        "x_c": c.x_c,
        "x_c_err": c.x_c_err,
        "t": time.perf_counter() - t0,
    }


def pyfssa(
    fssa: Any, grid: np.ndarray, data: dict[float, np.ndarray], dR: dict[float, Any], start: float
) -> dict[str, float]:
    # finite-size scaling L^(-zeta/nu) a = f(L^(1/nu) (rho - rho_c)) with L = 1/T, rho = B, nu = z*nu
    temps = sorted(data)
    a = np.array([data[T] for T in temps])
    da = np.array([np.broadcast_to(dR[T], grid.shape) for T in temps])
    if not np.isfinite(start):  # first guess: our crossing, else the middle
        start = float(np.mean(grid))
    t0 = time.perf_counter()
    with np.errstate(all="ignore"):
        res = fssa.autoscale(l=1.0 / np.array(temps), rho=grid, a=a, da=da, rho_c0=start, nu0=1.0, zeta0=0.0)
    return {
        "znu": float(res["nu"]),
        "znu_err": float(res["dnu"]),
        "x_c": float(res["rho"]),
        "x_c_err": float(res["drho"]),
        "t": time.perf_counter() - t0,
    }


def summarize(rows: list[tuple[dict, dict]]) -> dict[str, float]:
    dz = np.array([abs(r["znu"] - t["znu"]) for r, t in rows])
    dx = np.array([abs(r["x_c"] - t["B_c"]) for r, t in rows])
    ez = np.array([r["znu_err"] for r, _ in rows])
    ex = np.array([r["x_c_err"] for r, _ in rows])
    with np.errstate(invalid="ignore"):
        return {
            "dz": float(np.median(dz)),
            "dx": float(np.median(dx)),
            "cov_z": float(np.mean(dz <= 2 * ez)),
            "cov_x": float(np.mean(dx <= 2 * ex)),
            "ez": float(np.nanmedian(ez)),
            "z10": float(np.mean(dz < 0.1 * np.array([t["znu"] for _, t in rows]))),
            "t": float(np.median([r["t"] for r, _ in rows])),
            "n": len(rows),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seeds", type=int, default=10, help="seeds per synthetic set (default: %(default)s)"
    )
    parser.add_argument(
        "--sim-seeds", type=int, default=6, help="simulated runs per scenario (default: %(default)s)"
    )
    parser.add_argument(
        "--big", action="store_true", help="also 12 isotherms x 2,000 points (slow for pyfssa)"
    )
    args = parser.parse_args()
    try:
        fssa = patch_pyfssa()
    except ImportError as err:
        sys.exit(f"pyfssa is not installed ({err}): pip install fssa (or the dev extra)")

    # (name, [(grid, {T: R}, truth, {T: dR} or None)])
    sets: list[tuple[str, list[tuple]]] = []
    for znu in (0.7, 1.3, 2.0):
        for noise in (5.0, 20.0):
            name = f"sim model 5x25 z·ν={znu} {noise:g} Ω"
            sets.append(
                (name, [(GRID, *synthetic(znu, noise, 100 * s + 7), None) for s in range(args.seeds)])
            )
    for noise in (0.005, 0.01, 0.02):
        items = [(*generated(6, 135, noise, s, (0.08, 0.55)), None) for s in range(args.seeds)]
        sets.append((f"6x135 ±7 %, {noise:.1%} noise", items))
    sets.append(("12x151, 1 % noise", [(*generated(12, 151, 0.01, s), None) for s in range(args.seeds)]))
    if args.big:
        sets.append(("12x2000, 1 % noise", [(*generated(12, 2000, 0.01, s), None) for s in range(2)]))
    with tempfile.TemporaryDirectory() as tmp:
        for scenario in ("clean", "drifting"):
            runs = simulated_runs(scenario, range(args.sim_seeds), Path(tmp))
            if runs:
                sets.append((f"simulated runs, {scenario}", [(GRID, d, t, None) for d, t in runs]))
    ref = ising()
    if ref is not None:
        sets.append(("2-D Ising Binder (K_c, ν=1)", [ref]))

    header = (
        f"{'data set':34s} {'method':8s} {'n':>3s} {'|zν-true|':>10s} {'zν±10%':>7s} {'|x_c-true|/x_c':>15s}"
        f" {'zν 2σ cov':>10s} {'x_c 2σ cov':>11s} {'zν err':>8s} {'time/fit':>9s}"
    )
    print(header)
    print("-" * len(header))
    for name, items in sets:
        rows_ours, rows_fssa = [], []
        for k, (grid, data, truth, err) in enumerate(items):
            dR = err or {T: estimate_noise(grid, R) for T, R in data.items()}
            mine = ours(grid, data, dR, k)
            rows_ours.append((mine, truth))
            rows_fssa.append((pyfssa(fssa, grid, data, dR, mine["x_c"]), truth))
        for method, rows in (("qbs_lab", rows_ours), ("pyfssa", rows_fssa)):
            s = summarize(rows)
            x_true = rows[0][1]["B_c"]
            print(
                f"{name:34s} {method:8s} {s['n']:3d} {s['dz']:10.4f} {s['z10']:7.0%} {s['dx'] / x_true:15.2e}"
                f" {s['cov_z']:10.0%} {s['cov_x']:11.0%} {s['ez']:8.4f} {s['t'] * 1e3:6.0f} ms"
            )
    print(
        "\ncoverage: share of the data sets whose truth lies within the method's stated 2σ (honest: ~95 %);"
        "\n|·-true| and zν err are medians; pyfssa's errors come from the curvature of its final simplex,"
        "\nours from the wild bootstrap (qbs_lab.analysis.crossing, .scaling). Drifting: truth B_c is the"
        "\nT -> 0 value; our x_c is where the isotherms cross (our collapse fits x_c(T) = x_c + drift·T)."
        "\npyfssa starts from our crossing."
    )


if __name__ == "__main__":
    main()
