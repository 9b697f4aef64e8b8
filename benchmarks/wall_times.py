"""Wall-clock figures that tests used to assert (a loaded CI machine failed them; tests assert no time).

Each figure is measured here, the median and range of ``--repeat`` runs, beside the budget the test
had held it to:

- the online collapse update (``fit_collapse`` with exclusion on, the online bootstrap) on
  field_isotherms' 5 isotherms x 25 points: budget 0.6 s (was tests/test_analysis_accuracy.py);
- ``find_crossing`` with a 200-sample bootstrap on 5 isotherms of ~40 points: budget 0.5 s
  (was tests/test_analysis_crossing.py);
- the README's main command, ``qbs-lab run field_isotherms --sim`` with its defaults, as a whole
  process: budget 60 s (was tests/test_cli_run.py).

Run from the repository root:

    python benchmarks/wall_times.py [--repeat 3] [--no-cli]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from qbs_lab.analysis import find_crossing
from qbs_lab.analysis.collapse import fit_collapse
from qbs_lab.sim.sample import SampleModel, scenario_params

ROOT = Path(__file__).resolve().parents[1]
V_G = 15.0  # V
FIELD_TEMPS = (0.06, 0.09, 0.12, 0.18, 0.24)  # K, field_isotherms' defaults
FIELD_GRID = np.linspace(0.006, 0.018, 25)  # T, field_isotherms' defaults
ONLINE_BOOT = 8  # OnlineCrossing's collapse_boot


def online_isotherms(seed: int = 0) -> dict[float, tuple[np.ndarray, np.ndarray, None]]:
    model = SampleModel(scenario_params("clean"))
    rng = np.random.default_rng(1000 + seed)
    out = {}
    for T in FIELD_TEMPS:
        R = np.array([model.resistance(V_G, b, T) for b in FIELD_GRID])
        out[T] = (FIELD_GRID, R + 5.0 * rng.standard_normal(FIELD_GRID.size), None)
    return out


def random_grid_isotherms(seed: int = 4) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    model = SampleModel(scenario_params("clean"))
    B_c = model.truth(V_G)["B_c"]
    rng = np.random.default_rng(seed)
    data = {}
    for T in (0.05, 0.1, 0.2, 0.35, 0.5):
        n = 40 + int(rng.integers(-8, 9))
        B = B_c * (0.2 + 1.6 * np.sort(rng.uniform(0.0, 1.0, n)))
        data[T] = (B, np.array([model.resistance(V_G, b, T) for b in B]) + rng.normal(0.0, 20.0, n))
    return data


def timed(fn: Callable[[], object], repeat: int, warm: bool = True) -> list[float]:
    if warm:
        fn()  # imports and caches
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def readme_command() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(ROOT / "station.yaml", Path(tmp) / "station.yaml")
        subprocess.run(
            [sys.executable, "-m", "qbs_lab.cli", "run", "field_isotherms", "--sim", "--no-progress"],
            cwd=tmp,
            check=True,
            capture_output=True,
            timeout=600,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-cli", action="store_true", help="skip the README command (a minute or so)")
    args = parser.parse_args()
    iso, grid = online_isotherms(), random_grid_isotherms()
    rows = [
        (
            "online collapse update (5 x 25 points)",
            lambda: fit_collapse(iso, n_boot=ONLINE_BOOT, exclude=True),
            0.6,
        ),
        ("find_crossing, 200 bootstrap samples", lambda: find_crossing(grid, n_boot=200, seed=9), 0.5),
    ]
    if not args.no_cli:
        rows.append(("README command: run field_isotherms --sim", readme_command, 60.0))  # a whole process
    print(f"{'figure':<44} {'median':>9} {'min':>9} {'max':>9} {'budget':>8}")
    for name, fn, budget in rows:
        cli = fn is readme_command  # a whole process each time: no warm-up, one run per --repeat 3
        times = timed(fn, max(1, args.repeat // 3) if cli else args.repeat, warm=not cli)
        print(
            f"{name:<44} {statistics.median(times):>8.3f}s {min(times):>8.3f}s {max(times):>8.3f}s"
            f" {budget:>7.1f}s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
