"""Per-point overhead of an acquisition loop with storage on: our runner beside QCoDeS dond and Measurement.

All three drive the same in-memory parameters (settable axes x and y, three gettable values a, b, c:
plain Python callables on a shared dict; QCoDeS wraps the very same callables in ``Parameter`` objects,
as its users would) over 5,000 points, in two shapes: a 2-D grid of 50 x 100 and a 1-D sweep of 5,000.
Storage is on for everyone, in a temporary directory that is removed at the end:

- qbs_lab: ``Plan`` with custom ``Axis(setter=...)`` and ``Measurement(getter=...)``, a ``Runner`` with
  no station (no settle wait) writing a real zarr store made by ``RunStore.for_plan``;
- QCoDeS ``dond`` with ``LinSweep`` axes into a fresh SQLite database (no plot, no progress bar);
- QCoDeS ``Measurement`` with the usual hand-written loop of ``set`` / ``get`` / ``datasaver.add_result``.

Per-point overhead is the wall time of a whole run, setup and final write included (store or dataset
creation, the loop, the last flush), divided by the number of points. The in-memory set and get calls
themselves cost well under a microsecond per point (printed as "bare calls"), so the figure is the
framework's own cost. Each figure is the median of ``--repeat`` runs (min-max beside it), the systems
interleaved so that drift and other load hit all alike; "x ours" is the ratio to our runner's figure in
the same shape. The line under the table says how much of ours is the creation of the zarr store.

The export table times reading a finished run back as an xarray Dataset from disk: ours
``xr.open_zarr(path).load()``, QCoDeS ``load_by_id(run_id).to_xarray_dataset()``. The memory column is
the peak of traced Python and NumPy allocations during one extra run per system (tracemalloc, not
timed; SQLite's own C allocations are not traced). Run from the repository root:

    python benchmarks/overhead.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import statistics
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable
from itertools import count
from pathlib import Path

import numpy as np
import xarray as xr

from qbs_lab.plan import Axis, Measurement, Plan, linspace
from qbs_lab.runner import Runner
from qbs_lab.store.run_store import RunStore

POINTS = 5000
SHAPES = {"2-D 50x100": (50, 100), "1-D 5000": (5000,)}
AXES = ("x", "y")
GETTABLES = ("a", "b", "c")

# -- the in-memory parameters, shared by all three systems ---------------------------------------------
STATE = {"x": 0.0, "y": 0.0}


def set_x(value: float) -> None:
    STATE["x"] = value


def set_y(value: float) -> None:
    STATE["y"] = value


def get_a() -> float:
    return STATE["x"] + STATE["y"]


def get_b() -> float:
    return STATE["x"] * STATE["y"]


def get_c() -> float:
    return STATE["x"] - 2.0 * STATE["y"]


SETTERS: dict[str, Callable[[float], None]] = {"x": set_x, "y": set_y}
GETTERS: dict[str, Callable[[], float]] = {"a": get_a, "b": get_b, "c": get_c}


def axis_values(shape: tuple[int, ...]) -> list[tuple[float, ...]]:
    """The sweep values of each axis: n evenly spaced values in [0, 1] (as LinSweep makes them)."""
    return [linspace(0.0, 1.0, n) for n in shape]


def bare_calls(shape: tuple[int, ...]) -> float:
    """Wall time [s] of the set and get calls alone, in the same nested order, nothing stored."""
    values = axis_values(shape)
    setters = [SETTERS[a] for a in AXES[: len(shape)]]
    getters = list(GETTERS.values())
    t0 = time.perf_counter()
    if len(shape) == 1:
        for v in values[0]:
            setters[0](v)
            _ = [g() for g in getters]
    else:
        for v in values[0]:
            setters[0](v)
            for w in values[1]:
                setters[1](w)
                _ = [g() for g in getters]
    return time.perf_counter() - t0


# -- qbs_lab --------------------------------------------------------------------------------------------
class Ours:
    name = "qbs_lab Runner + zarr store"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.serial = count()
        self.last: Path | None = None
        self.create: dict[tuple[int, ...], list[float]] = {}  # store creation [s] per shape

    def run(self, shape: tuple[int, ...]) -> float:
        """One run; its wall time [s] (store creation, the loop and the final flush)."""
        values = axis_values(shape)
        path = self.workdir / f"run{next(self.serial)}.zarr"
        t0 = time.perf_counter()
        plan = Plan(
            "overhead",
            axes=tuple(Axis(a, v, setter=SETTERS[a]) for a, v in zip(AXES, values, strict=False)),
            measurements=tuple(Measurement(name, getter) for name, getter in GETTERS.items()),
            park=False,
        )
        runner = Runner(plan)
        t1 = time.perf_counter()
        runner.store = RunStore.for_plan(path, plan, runner.variable_attrs())
        self.create.setdefault(shape, []).append(time.perf_counter() - t1)
        result = runner.run()
        wall = time.perf_counter() - t0
        if result.status != "completed" or result.done != POINTS:
            raise RuntimeError(f"our run ended {result.status} after {result.done} points: {result.message}")
        self.last = path
        return wall

    def export(self) -> tuple[float, int]:
        """Reading the last run back as an xarray Dataset: wall time [s] and the points found."""
        assert self.last is not None
        t0 = time.perf_counter()
        ds = xr.open_zarr(self.last).load()
        wall = time.perf_counter() - t0
        return wall, int(np.isfinite(ds["a"].values).sum())


# -- QCoDeS ---------------------------------------------------------------------------------------------
class QCoDeS:
    """QCoDeS on the same callables, its database in ``workdir`` (never ~/.qcodes or ~/experiments.db)."""

    def __init__(self, workdir: Path) -> None:
        import qcodes
        from qcodes.dataset import initialise_or_create_database_at, load_or_create_experiment
        from qcodes.parameters import Parameter

        db = workdir / "qcodes.db"
        qcodes.config["core"]["db_location"] = str(db)
        qcodes.config["dataset"]["dond_plot"] = False
        qcodes.config["dataset"]["dond_show_progress"] = False
        qcodes.config["dataset"]["export_automatic"] = False
        initialise_or_create_database_at(db)
        self.exp = load_or_create_experiment("overhead", sample_name="in-memory")
        self.setters = {a: Parameter(a, set_cmd=SETTERS[a]) for a in AXES}
        self.getters = [Parameter(g, get_cmd=GETTERS[g], set_cmd=False) for g in GETTABLES]
        self.last_id: int | None = None

    def check(self, dataset) -> None:  # a QCoDeS DataSet
        rows = POINTS * len(GETTABLES)  # QCoDeS's results table holds one row per dependent and point
        if dataset.number_of_results != rows:
            raise RuntimeError(f"QCoDeS stored {dataset.number_of_results} rows, not {rows}")
        self.last_id = dataset.run_id

    def dond(self, shape: tuple[int, ...]) -> float:
        from qcodes.dataset import LinSweep, dond

        sweeps = [LinSweep(self.setters[a], 0.0, 1.0, n, 0.0) for a, n in zip(AXES, shape, strict=False)]
        with contextlib.redirect_stdout(io.StringIO()):  # its "Starting experimental run" line
            t0 = time.perf_counter()
            dataset, _, _ = dond(*sweeps, *self.getters, exp=self.exp, do_plot=False, show_progress=False)
            wall = time.perf_counter() - t0
        self.check(dataset)
        return wall

    def measurement(self, shape: tuple[int, ...]) -> float:
        from qcodes.dataset import Measurement as QcMeasurement

        values = axis_values(shape)
        axes = [self.setters[a] for a in AXES[: len(shape)]]
        getters = self.getters
        t0 = time.perf_counter()
        meas = QcMeasurement(exp=self.exp, name="overhead")
        for p in axes:
            meas.register_parameter(p)
        for p in getters:
            meas.register_parameter(p, setpoints=axes)
        with contextlib.redirect_stdout(io.StringIO()), meas.run() as saver:
            if len(shape) == 1:
                x = axes[0]
                for v in values[0]:
                    x.set(v)
                    saver.add_result((x, v), *((p, p.get()) for p in getters))
            else:
                x, y = axes
                for v in values[0]:
                    x.set(v)
                    for w in values[1]:
                        y.set(w)
                        saver.add_result((x, v), (y, w), *((p, p.get()) for p in getters))
        wall = time.perf_counter() - t0
        self.check(saver.dataset)
        return wall

    def export(self) -> tuple[float, int]:
        """Loading the last dataset from the database as an xarray Dataset: wall time [s], points."""
        from qcodes.dataset import load_by_id

        assert self.last_id is not None
        t0 = time.perf_counter()
        ds = load_by_id(self.last_id).to_xarray_dataset()
        wall = time.perf_counter() - t0
        return wall, int(np.isfinite(ds["a"].values).sum())


def peak_traced(run: Callable[[], object]) -> float:
    """Peak traced allocations [MiB] during ``run()`` (beyond what was allocated before it)."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (peak - base) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeat", type=int, default=5, help="runs per figure, median (default: %(default)s)"
    )
    repeat = parser.parse_args().repeat
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    dond_name = "QCoDeS dond (SQLite)"
    with tempfile.TemporaryDirectory(prefix="qbs_overhead_") as tmp:
        workdir = Path(tmp)
        ours, qc = Ours(workdir), QCoDeS(workdir)
        systems: dict[str, Callable[[tuple[int, ...]], float]] = {
            ours.name: ours.run,
            dond_name: qc.dond,
            "QCoDeS Measurement + add_result": qc.measurement,
        }
        exporters = {ours.name: ours.export, dond_name: qc.export}
        for shape in SHAPES.values():  # warm-up: imports, first calls, database schema
            for run in systems.values():
                run(shape)
        ours.create.clear()
        walls: dict[tuple[str, str], list[float]] = {}
        exports: dict[tuple[str, str], list[float]] = {}
        for _ in range(repeat):
            for label, shape in SHAPES.items():
                for name, run in systems.items():  # interleaved, so drift hits every system alike
                    gc.collect()  # nobody pays for the previous system's garbage
                    walls.setdefault((name, label), []).append(run(shape))
                    if name in exporters:
                        wall, found = exporters[name]()
                        if found != POINTS:
                            raise RuntimeError(f"{name} export holds {found} points, not {POINTS}")
                        exports.setdefault((name, label), []).append(wall)
        create = {label: statistics.median(ours.create[shape]) for label, shape in SHAPES.items()}
        memory = {
            (name, label): peak_traced(lambda run=run, shape=shape: run(shape))
            for label, shape in SHAPES.items()
            for name, run in systems.items()
        }
        bare = {label: min(bare_calls(shape) for _ in range(repeat)) for label, shape in SHAPES.items()}

    def per_point(key: tuple[str, str], f: Callable[[list[float]], float] = statistics.median) -> float:
        return f(walls[key]) / POINTS * 1e6

    print(f"{POINTS} points of in-memory parameters (axes x, y; gettables a, b, c), storage on")
    print(f"per point: median of {repeat} runs [us], min-max, ratio to ours, peak traced allocations [MiB]")
    print(f"{'system':<34} {'shape':<11} {'per point':>14} {'min-max':>13} {'x ours':>7} {'peak alloc':>11}")
    for label in SHAPES:
        for name in systems:
            us = per_point((name, label))
            spread = f"{per_point((name, label), min):.1f}-{per_point((name, label), max):.1f}"
            ratio = us / per_point((ours.name, label))
            print(f"{name:<34} {label:<11} {us:14.1f} {spread:>13} {ratio:7.1f} {memory[name, label]:11.1f}")
        print(f"{'bare set/get calls (no framework)':<34} {label:<11} {bare[label] / POINTS * 1e6:14.2f}")
    print()
    for label in SHAPES:
        us = per_point((ours.name, label))
        print(
            f"ours, {label}: store creation (RunStore.for_plan) {create[label] * 1e3:.1f} ms per run, "
            f"{create[label] / POINTS * 1e6:.1f} of the {us:.1f} us per point"
        )
    print()
    print(f"{'xarray export from disk':<34} {'shape':<11} {'time [ms]':>14} {'min-max':>13} {'x ours':>7}")
    for label in SHAPES:
        for name in exporters:
            ms = [t * 1e3 for t in exports[name, label]]
            ratio = statistics.median(ms) / statistics.median(t * 1e3 for t in exports[ours.name, label])
            spread = f"{min(ms):.1f}-{max(ms):.1f}"
            print(f"{name:<34} {label:<11} {statistics.median(ms):14.1f} {spread:>13} {ratio:7.1f}")
    print()
    for label in SHAPES:
        ratio = per_point((dond_name, label)) / per_point((ours.name, label))
        verdict = "meets" if ratio >= 10 else "MISSES"
        print(f"dond / ours, {label}: {ratio:.1f}x ({verdict} the 10x target)")


if __name__ == "__main__":
    main()
