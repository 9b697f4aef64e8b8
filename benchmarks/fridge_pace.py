"""At the fridge's pace: what the store writes per point, and what a field step costs beside its physics.

1. Bytes passed to ``write()`` per point (``wchar`` of ``/proc/self/io``: every byte the process handed
   the kernel, chunk files, journal and temporary files alike) by :class:`RunStore` for grids of 8,000
   points made of lines of 25, 400 and 2,000 points, the station's ten variables, at the fridge's pace
   (a point every 4 s of run time) and at in-memory pace (a point every 5 µs), and the chunk writes
   (folds) and journal appends it made. With ``--before REV`` the store of git revision REV (e.g. the
   one before the journal, ``e62d9ac``) is measured beside it, in the same run.
2. The field-ramp time of ``field_isotherms`` (five isotherms, 6 to 18 mT) with 25 and with 400 fields
   per isotherm, stepped, and with 400 swept continuously, on the simulated lab: the fridge time spent in
   the magnet role's ramps (the run's and the park's) beside its physical floor, travel / rate at the
   station's 2 mT/s (continuous: the sweeps at their 0.2 mT/s too), the messages the supply received per
   ramp, and the least ratio one message per ramp allows at the lab's 2 ms a message.
3. The plan efficiency (physics floor / estimated fridge time) of the default field_isotherms and
   phase_diagram, as ``qbs-lab estimate`` reports it.

Run from the repository root (about a minute; Linux, for ``/proc/self/io``):

    python benchmarks/fridge_pace.py [--before e62d9ac]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from qbs_lab.actuators import STATION_VARIABLES
from qbs_lab.procedure import load_procedure, parse_settings
from qbs_lab.runner import Runner
from qbs_lab.runs import estimate_plan
from qbs_lab.sim.lab import SimLab
from qbs_lab.station import load_station
from qbs_lab.store import run_store

ROOT = Path(__file__).resolve().parent.parent
STATION = ROOT / "station.yaml"
POINTS = 8000
LINES = (25, 400, 2000)
PACES = {"4 s/point": 4.0, "in-memory": 5e-6}
VARIABLES = {**{k: {"units": u, "long_name": n} for k, (u, n) in STATION_VARIABLES.items()}, "t": {}}


def written() -> int:
    """Bytes this process has passed to write() so far."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/self/io")


def store_bytes(module: ModuleType, line: int, step: float, where: Path) -> tuple[float, float, int, int]:
    """Bytes written per point, wall µs per point, chunk writes (renames) and journal appends."""
    shape = (POINTS // line, line)
    coords = [("y", np.arange(shape[0], dtype=float), {}), ("x", np.arange(line, dtype=float), {})]
    store = module.RunStore.create(where, coords, VARIABLES)
    values = np.random.default_rng(0).normal(size=len(VARIABLES))
    renames, appends = [0], [0]
    real_replace = module.os.replace

    def replace(src: Any, dst: Any) -> None:
        renames[0] += 1
        real_replace(src, dst)

    module.os.replace = replace
    append = getattr(module.RunStore, "_append_journal", None)
    if append is not None:

        def counted(self: Any) -> None:
            appends[0] += 1
            append(self)

        module.RunStore._append_journal = counted
    try:
        before, wall = written(), time.perf_counter()
        t = 0.0
        for i in range(shape[0]):
            for j in range(line):
                t += step
                values[-1] = t
                store.record((i, j), values)
        store.close()
        wall = time.perf_counter() - wall
        total = written() - before
    finally:
        module.os.replace = real_replace
        if append is not None:
            module.RunStore._append_journal = append
    return total / POINTS, wall / POINTS * 1e6, renames[0], appends[0]


def load_before(rev: str) -> ModuleType | None:
    """The run store of git revision ``rev``, as a module (None without git or that revision)."""
    try:
        source = subprocess.run(
            ["git", "show", f"{rev}:qbs_lab/store/run_store.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    spec = importlib.util.spec_from_loader(f"run_store_{rev}", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, f"run_store@{rev}", "exec"), module.__dict__)
    return module


@dataclass
class Ramps:
    """The magnet role's ramps in one run of field_isotherms."""

    spent: float  # [s] of fridge time in the role's ramps and sweeps (a sweep's filter tail left out)
    floor: float  # [s] travel / rate, summed
    count: int  # ramps and sweeps
    messages: int  # messages the supply received during them
    latency: float  # [s] the simulated lab's time a message takes


def field_ramps(num: int, sweep: str = "stepped") -> Ramps:
    """field_isotherms with ``num`` fields per isotherm on the simulated lab: the fridge time of the
    magnet role's ramps (and, continuous, its sweeps up to the hold), their floor, how many there were
    and the messages the magnet supply received during them (one message: one instant of its log)."""
    config = load_station(STATION)
    proc = load_procedure("field_isotherms")
    plan = proc.plan(parse_settings(proc, [f"num={num}", f"sweep={sweep}"]))
    out = Ramps(0.0, 0.0, 0, 0, 0.0)
    with SimLab.from_station(STATION, seed=0) as lab:
        name = next(n for n in lab.instruments if lab.role_of(n) == "magnet")
        log = lab.emulator(name).log
        with contextlib.redirect_stdout(io.StringIO()):
            station = config.connect(lab=lab)
        with station:
            magnet, clock = station.magnet, station.clock
            out.latency = float(getattr(clock, "io_latency", 0.0))

            def timed(method: Callable[..., None], tail_of: Callable[..., float]) -> Callable[..., None]:
                def call(*args: Any, **kwargs: Any) -> None:
                    t0, n0 = clock.now(), len(log)
                    try:
                        method(*args, **kwargs)
                    finally:
                        out.spent += clock.now() - t0 - tail_of(*args, **kwargs)
                        out.count += 1
                        out.messages += len({c.time for c in log[n0:]})

                return call

            magnet.ramp_to = timed(magnet.ramp_to, lambda *a, **k: 0.0)  # type: ignore[method-assign]
            magnet.sweep_to = timed(  # type: ignore[method-assign]
                magnet.sweep_to, lambda *a, tail=0.0, **k: tail
            )
            result = Runner(plan, station).run()
            assert result.status == "completed", result.message
            out.floor = magnet.floor
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", help="also measure the run store of this git revision (e.g. e62d9ac)")
    args = parser.parse_args()
    stores = {"ours": run_store}
    if args.before:
        old = load_before(args.before)
        if old is None:
            print(f"(no store at git revision {args.before}: measuring ours only)")
        else:
            stores[f"@{args.before}"] = old

    print(f"1. store: bytes passed to write() per point, {POINTS} points, {len(VARIABLES)} variables")
    header = f"   {'store':<10} {'pace':<10} " + "".join(f"{f'lines of {n}':>22}" for n in LINES)
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for name, module in stores.items():
            for pace, step in PACES.items():
                cells, spread = [], []
                for line in LINES:
                    per, _, renames, _ = store_bytes(module, line, step, Path(tmp) / f"{name}{pace}{line}")
                    cells.append(f"{per:>9,.0f} B ({renames:>5} ren)")
                    spread.append(per)
                flat = max(spread) / min(spread)
                print(
                    f"   {name:<10} {pace:<10} "
                    + "".join(f"{c:>22}" for c in cells)
                    + f"   max/min {flat:.2f}"
                )
    print("   (ren: chunk files renamed into place; the journal is appended, never renamed)")

    print("\n2. field_isotherms: fridge time of the field ramps beside their floor (travel / rate)")
    print(
        f"   {'fields':>6} {'sweep':<10} {'ramps':>6} {'ramp time':>10} {'floor':>8} {'ratio':>6}"
        f" {'above floor':>12} {'msgs/ramp':>10} {'1 msg/ramp bound':>17}"
    )
    for num, sweep in ((25, "stepped"), (400, "stepped"), (400, "continuous")):
        r = field_ramps(num, sweep)
        # no step can start sooner than the message that starts it reaches the supply
        bound = (r.floor + r.count * r.latency) / r.floor
        print(
            f"   {num:>6} {sweep:<10} {r.count:>6} {r.spent:>8.1f} s {r.floor:>6.1f} s"
            f" {r.spent / r.floor:>6.3f}"
            f" {(r.spent - r.floor) / r.count * 1e3:>7.1f} ms/r {r.messages / r.count:>10.2f}"
            f" {bound:>17.3f}"
        )
    print(
        "   (continuous: a sweep's time up to its hold, its filter tail left out, and its messages include"
        " the field read at each sample; the bound: the floor plus one message of the lab's latency per"
        " ramp, over the floor)"
    )

    print("\n3. plan efficiency (physics floor / estimated fridge time), default parameters")
    config = load_station(STATION)
    for name in ("field_isotherms", "phase_diagram"):
        proc = load_procedure(name)
        est = estimate_plan(proc.plan(proc.parameters()), config)
        floor = sum(est.floor.values())
        print(f"   {name:<16} {est.efficiency:.3f}  (floor {floor:.0f} s of {est.total:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
