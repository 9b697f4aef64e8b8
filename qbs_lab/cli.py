"""The ``qbs-lab`` command.

    qbs-lab demo [--station PATH] [--scenario NAME] [--seed N]
        A short dry run on the simulated lab through the QCoDeS drivers, printing live readings.
    qbs-lab sim serve [--station PATH] [--scenario NAME] [--seed N] [--port-base N]
        Serve the station's emulated instruments on 127.0.0.1 (real time) until Ctrl-C.
    qbs-lab station check [PATH] [--sim [--scenario NAME] [--seed N]]
        Validate the station file, connect, and print every role's live reading and limits.
    qbs-lab run PROCEDURE [--set KEY=VALUE ...] [--station PATH] [--sim [--scenario NAME] [--seed N]]
        Run a procedure (a built-in name or a .py file) into a new dataset, with progress and time left.
    qbs-lab estimate PROCEDURE [--set KEY=VALUE ...] [--station PATH]
        Check every setpoint against the station's limits and time the plan on the simulated twin.
    qbs-lab procedures [NAME]
        The built-in procedures, or one procedure's parameters with their defaults and units.
    qbs-lab runs | resume RUN_ID | export RUN_ID --netcdf   [--data DIR]
        The catalog of runs; continue an interrupted or killed run; write a run as netCDF.
    qbs-lab queue add|load|list|remove|move|clear|estimate|run
        Tonight's plan: a persistent queue of procedures; run resumes an interrupted item.
    qbs-lab analyze crossing PATH [--x B|V_g] [--over T] [--json]
        Crossing point and scaling collapse of R isotherms in a zarr or netCDF dataset, with plots.
    qbs-lab view [--data DIR] [--port N] [--host H]
        A read-only web page following the runs and the queue as the data comes in (127.0.0.1:8642).

A mistake a user can make (missing or broken station file, unknown scenario) ends in one line naming
the file and key and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

from qbs_lab import __version__
from qbs_lab.analysis.report import AnalysisInputError
from qbs_lab.clock import RealClock
from qbs_lab.diagnostics import log_traceback, route_library_logging
from qbs_lab.drivers.errors import RoleError
from qbs_lab.lock import LockError, set_command
from qbs_lab.procedure import ProcedureError
from qbs_lab.queue import Queue, QueueError
from qbs_lab.runs import LabOptions, PlanError, RunOutcome
from qbs_lab.sim.faults import FaultError
from qbs_lab.sim.lab import SimLab, SimLabError
from qbs_lab.sim.sample import SCENARIOS
from qbs_lab.station import StationError
from qbs_lab.store import CatalogError, RunStoreError
from qbs_lab.store.space import DiskFull, InsufficientSpace

__all__ = ["main"]


def _seed(text: str) -> int:
    value = int(text) if text.lstrip("-").isdigit() else -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return value


def _port(text: str) -> int:
    value = int(text) if text.isdigit() else -1
    if not 1024 <= value <= 65000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port from 1024 to 65000")
    return value


def _add_lab_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--station", default="station.yaml", help="station file (default: %(default)s)")
    p.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        help="sample scenario (default: the station's sim.scenario)",
    )
    p.add_argument(
        "--seed", type=_seed, default=0, help="noise seed, a whole number >= 0 (default: %(default)s)"
    )


def _add_procedure_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("procedure", help="a built-in procedure (qbs-lab procedures) or a .py file")
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter (repeatable); tuples as a,b,c or start:stop:num",
    )
    _add_lab_options(p)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qbs-lab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"qbs_lab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="dry-run R(B) isotherms on the simulated lab, printing live readings")
    _add_lab_options(demo)
    sim = sub.add_parser("sim", help="the simulated lab")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    serve = sim_sub.add_parser("serve", help="serve the emulated instruments on 127.0.0.1 until Ctrl-C")
    _add_lab_options(serve)
    serve.add_argument(
        "--port-base",
        type=_port,
        default=0,
        help="first TCP port (instruments take consecutive ports); default: free ports from the OS",
    )
    station = sub.add_parser("station", help="the station file and its instruments")
    station_sub = station.add_subparsers(dest="station_command", required=True)
    check = station_sub.add_parser("check", help="validate, connect, print every role's reading and limits")
    check.add_argument("path", nargs="?", default="station.yaml", help="station file (default: %(default)s)")
    check.add_argument("--sim", action="store_true", help="on the simulated lab instead of the instruments")
    check.add_argument("--scenario", choices=sorted(SCENARIOS), help="sample scenario, with --sim")
    check.add_argument("--seed", type=_seed, default=0, help="noise seed, with --sim (default: %(default)s)")
    run = sub.add_parser("run", help="run a procedure into a new dataset")
    _add_procedure_options(run)
    run.add_argument("--sim", action="store_true", help="on the simulated lab instead of the instruments")
    run.add_argument(
        "--faults", help="with --sim: a fault schedule (YAML) to inject, for a dry run of a bad night"
    )
    run.add_argument("--data", default="data", help="data directory (default: %(default)s)")
    run.add_argument("--no-progress", action="store_true", help="no progress line")
    run.add_argument(
        "--view", nargs="?", const=8642, type=_port, metavar="PORT", help="serve the live view beside the run"
    )
    estimate = sub.add_parser("estimate", help="check limits and time a procedure, touching no instrument")
    _add_procedure_options(estimate)
    procedures = sub.add_parser("procedures", help="the procedures, or one procedure's parameters")
    procedures.add_argument("name", nargs="?", help="a procedure name or .py file")
    runs = sub.add_parser("runs", help="the catalog of runs")
    runs.add_argument("--data", default="data", help="data directory (default: %(default)s)")
    runs.add_argument("--limit", type=int, default=20, help="newest N runs (default: %(default)s)")
    runs.add_argument(
        "--rebuild",
        action="store_true",
        help="make the catalog anew from the run stores on disk (the old file is kept aside)",
    )
    resume = sub.add_parser("resume", help="continue a run from its first unmeasured point")
    resume.add_argument("run_id", help="the run's id (qbs-lab runs)")
    resume.add_argument("--data", default="data", help="data directory (default: %(default)s)")
    resume.add_argument("--no-progress", action="store_true", help="no progress line")
    export = sub.add_parser("export", help="write a run's dataset as netCDF")
    export.add_argument("run_id", help="the run's id (qbs-lab runs)")
    export.add_argument("--netcdf", action="store_true", required=True, help="as a netCDF file")
    export.add_argument("--data", default="data", help="data directory (default: %(default)s)")
    export.add_argument("-o", "--output", help="file to write (default: beside the store, .nc)")
    queue = sub.add_parser("queue", help="tonight's plan: a persistent queue of procedures")
    queue_sub = queue.add_subparsers(dest="queue_command", required=True)
    q_add = queue_sub.add_parser("add", help="append a procedure")
    q_add.add_argument("procedure", help="a built-in procedure or a .py file")
    q_add.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    q_load = queue_sub.add_parser("load", help="append the items of a plan file (YAML)")
    q_load.add_argument("file")
    for q in (q_add, q_load):  # every item is checked against the station's limits when queued
        q.add_argument("--station", default="station.yaml", help="station file (default: %(default)s)")
    queue_sub.add_parser("list", help="the items, in order, with their status and run")
    q_remove = queue_sub.add_parser("remove", help="take an item out")
    q_remove.add_argument("item", type=int)
    q_move = queue_sub.add_parser("move", help="put an item at a position (1 = first)")
    q_move.add_argument("item", type=int)
    q_move.add_argument("position", type=int)
    queue_sub.add_parser("clear", help="remove the done and failed items")
    q_est = queue_sub.add_parser("estimate", help="fridge time of what is left, and when it will finish")
    _add_lab_options(q_est)
    q_run = queue_sub.add_parser("run", help="run the items in order (resumes an interrupted one)")
    _add_lab_options(q_run)
    q_run.add_argument("--sim", action="store_true", help="on the simulated lab instead of the instruments")
    q_run.add_argument("--faults", help="with --sim: a fault schedule (YAML) injected into every item's lab")
    q_run.add_argument("--no-progress", action="store_true", help="no progress line")
    q_run.add_argument(
        "--view", nargs="?", const=8642, type=_port, metavar="PORT", help="serve the live view beside it"
    )
    for q in (
        q_add,
        q_load,
        q_remove,
        q_move,
        q_est,
        q_run,
        *[queue_sub.choices[c] for c in ("list", "clear")],
    ):
        q.add_argument("--data", default="data", help="data directory (default: %(default)s)")
    analyze = sub.add_parser("analyze", help="analysis of stored datasets")
    analyze_sub = analyze.add_subparsers(dest="analyze_command", required=True)
    crossing = analyze_sub.add_parser("crossing", help="crossing point and scaling collapse of R isotherms")
    crossing.add_argument("path", help="a zarr store or netCDF file with R over two dimensions")
    crossing.add_argument("--x", default="B", help="the swept dimension: B or V_g (default: %(default)s)")
    crossing.add_argument("--over", default="T", help="the isotherms' dimension (default: %(default)s)")
    crossing.add_argument("--json", action="store_true", help="print one JSON object instead of a report")
    crossing.add_argument(
        "--at", metavar="NAME=VALUE", help="one slice of a phase diagram, e.g. --at V_g=15 (default: all)"
    )
    view = sub.add_parser("view", help="a read-only web page following the runs and the queue live")
    view.add_argument("--data", default="data", help="data directory (default: %(default)s)")
    view.add_argument("--port", type=_port, default=8642, help="TCP port (default: %(default)s)")
    view.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s: loopback)")
    view.add_argument("--station", default="station.yaml", help="station file for the queue's estimates")
    return parser


def _view(args: argparse.Namespace) -> int:
    from qbs_lab.view.__main__ import main as view_main

    argv = ["--data", args.data, "--host", args.host, "--port", str(args.port), "--station", args.station]
    return view_main(argv)


def _beside_view(args: argparse.Namespace) -> contextlib.AbstractContextManager[None]:
    if getattr(args, "view", None) is None:
        return contextlib.nullcontext()
    from qbs_lab.view.launch import view_beside

    return view_beside(args.data, args.station, args.view)


def _analyze_crossing(args: argparse.Namespace) -> int:
    import json

    from qbs_lab.analysis.report import analyze_crossing, format_report, parse_at

    result, plots, analyses = analyze_crossing(args.path, x=args.x, over=args.over, at=parse_at(args.at))
    print(json.dumps(result, allow_nan=False) if args.json else format_report(analyses, args.x, plots))
    return 0


def _lab_options(args: argparse.Namespace, sim: bool) -> LabOptions:
    data = Path(getattr(args, "data", "data"))
    faults = getattr(args, "faults", None)
    if faults and not sim:
        raise PlanError(["--faults injects faults into the simulated lab: add --sim"])
    if faults:  # every problem of the schedule now, before anything runs
        from qbs_lab.sim.faults import FaultSchedule

        FaultSchedule.from_yaml(faults)
    return LabOptions(
        Path(args.station), sim, args.scenario, args.seed, data, Path(faults) if faults else None
    )


def _run(args: argparse.Namespace) -> int:
    import time

    from qbs_lab.procedure import load_procedure, parse_settings
    from qbs_lab.runs import start_run

    wall = time.perf_counter()
    proc = load_procedure(args.procedure)
    params = parse_settings(proc, args.settings)
    opts = _lab_options(args, args.sim)
    with _beside_view(args):
        outcome = start_run(proc, params, opts, progress=not args.no_progress)
    return _report(outcome, time.perf_counter() - wall)


def _resume(args: argparse.Namespace) -> int:
    import time

    from qbs_lab.runs import LabOptions, resume_run

    wall = time.perf_counter()
    outcome = resume_run(args.run_id, LabOptions(data_dir=Path(args.data)), progress=not args.no_progress)
    return _report(outcome, time.perf_counter() - wall)


def _report(outcome: RunOutcome, wall: float) -> int:
    from qbs_lab.analysis.online import format_update
    from qbs_lab.progress import format_duration

    result = outcome.result
    path = Path(outcome.path)
    with contextlib.suppress(ValueError):  # shown as typed: relative to here when it is below here
        path = path.relative_to(Path.cwd())
    print(f"run {outcome.run_id} {result.status}: {path}")
    print(f"  {outcome.summary}")
    fridge = f"fridge time {format_duration(result.duration)}"
    if outcome.estimate is not None:
        fridge += f" (estimated {format_duration(outcome.estimate.total)})"
    print(f"  {fridge}, wall time {wall:.1f} s")
    if outcome.online:
        print(f"  crossing after {format_update(outcome.online[-1])}")
    if outcome.checks:
        print(f"  check: {outcome.checks.get('summary', '')}")
    t = outcome.lab_truth
    if t.get("B_c") is not None and outcome.online:
        print(
            f"  simulated sample's truth: B_c = {t['B_c'] * 1e3:.3f} mT, R_c = {t['R_c']:.0f} Ohm,"
            f" z·ν = {t['znu']:.3g}"
        )
    elif t.get("B_c") is not None:
        print(f"  simulated sample's truth: B_c = {t['B_c'] * 1e3:.3f} mT, R_c = {t['R_c']:.0f} Ohm")
    elif t.get("V_gc") is not None:
        print(f"  simulated sample's truth: V_gc = {t['V_gc']:.3f} V, R_c = {t['R_c_gate']:.0f} Ohm at B = 0")
    for failure in result.park_failures:
        print(f"qbs-lab: warning: could not park: {failure}", file=sys.stderr)
    if outcome.unrecorded:
        print(f"qbs-lab: warning: run {outcome.run_id}: {outcome.unrecorded}", file=sys.stderr)
    if result.status == "completed":
        return 0
    print(f"qbs-lab: run {outcome.run_id} {result.status}: {result.message}", file=sys.stderr)
    if (result.message or "").startswith("no space left on device"):
        print(
            f"  free some space, then continue with: qbs-lab resume {outcome.run_id}"
            " (points not yet on disk are measured again)",
            file=sys.stderr,
        )
        return 1
    print(f"  every measured point is kept; continue with: qbs-lab resume {outcome.run_id}", file=sys.stderr)
    return 130 if result.status == "interrupted" else 1


def _estimate(args: argparse.Namespace) -> int:
    from qbs_lab.procedure import load_procedure, parse_settings
    from qbs_lab.runs import estimate_plan, format_estimate
    from qbs_lab.station import load_station

    proc = load_procedure(args.procedure)
    plan = proc.plan(parse_settings(proc, args.settings))
    est = estimate_plan(plan, load_station(args.station), seed=args.seed, scenario=args.scenario)
    print(format_estimate(est, plan))
    return 0


def _procedures(args: argparse.Namespace) -> int:
    from qbs_lab.procedure import describe_parameters, list_procedures, load_procedure

    if args.name:
        proc = load_procedure(args.name)
        print(f"{proc.name}: {proc.doc}")
        print("parameters (--set key=value):")
        print("\n".join(describe_parameters(proc)))
        return 0
    for name in list_procedures():
        print(f"  {name:<18} {load_procedure(name).doc.splitlines()[0]}")
    return 0


def _runs(args: argparse.Namespace) -> int:
    from qbs_lab.lock import data_lock, hold
    from qbs_lab.runs import reconcile
    from qbs_lab.store import Catalog, RunStore

    if args.rebuild:
        return _rebuild(args)
    catalog = Catalog(args.data)
    records = catalog.runs(args.limit)
    if any(r.status == "running" for r in records):  # a run that could not write its end (a full disk)
        with (
            contextlib.suppress(LockError),  # a runner is at work: its runs are its business
            hold(data_lock(args.data), f"the data directory {args.data}", note=False),
        ):
            records = [reconcile(catalog, r) for r in records]
    if not records:
        print(f"no runs in {args.data}")
        return 0
    print(f"{'id':>4}  {'procedure':<18} {'status':<11} {'points':>11}  {'created':<25} lab")
    for r in records:
        lab = f"sim ({r.scenario}, seed {r.seed})" if r.sim else "fridge"
        done = r.done
        if r.state != "completed" and r.path and Path(r.path).exists():  # the catalog lags a killed run
            with contextlib.suppress(RunStoreError, OSError, ValueError):
                done = int(RunStore.open(r.path).measured().sum())
        print(
            f"{r.run_id:>4}  {r.procedure:<18} {r.state:<11} {done:>5}/{r.points:<5}  {r.created:<25} {lab}"
        )
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    from qbs_lab.lock import data_lock, hold
    from qbs_lab.store.rebuild import rebuild_catalog

    with hold(data_lock(args.data), f"the data directory {args.data}"):
        report = rebuild_catalog(args.data)
    print(f"rebuilt the catalog of {args.data} from {len(report.runs)} run stores")
    if report.moved_aside is not None:
        print(f"  the old catalog is kept as {report.moved_aside}")
    if report.queue_items:
        print(f"  the queue's {report.queue_items} items were copied over")
    elif report.queue_items is None:
        print("  the old catalog's queue could not be read: load tonight's plan again (qbs-lab queue load)")
    for problem in report.unreadable:
        print(f"qbs-lab: warning: not in the catalog: {problem}", file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    import xarray as xr

    from qbs_lab.store.catalog import Catalog

    record = Catalog(args.data).get(args.run_id)
    if record.path is None or not Path(record.path).exists():
        raise PlanError([f"run {args.run_id}: its store {record.path} is missing"])
    target = Path(args.output) if args.output else Path(record.path).with_suffix(".nc")
    if target.is_dir() or not target.parent.is_dir():
        what = "is a directory" if target.is_dir() else f"its directory {target.parent} does not exist"
        raise PlanError([f"-o {target}: {what}: give a file to write"])
    with xr.open_zarr(record.path) as ds:
        try:
            ds.load().to_netcdf(target)
        except OSError as err:
            raise PlanError([f"{target}: cannot write the netCDF file ({err.strerror or err})"]) from None
    print(f"run {args.run_id}: {target}")
    return 0


def _queue(args: argparse.Namespace) -> int:
    from qbs_lab.queue import Queue

    queue = Queue(args.data)
    cmd = args.queue_command
    if cmd in ("add", "load"):
        from qbs_lab.queue import settings_from_yaml

        entries = [(args.procedure, args.settings)] if cmd == "add" else settings_from_yaml(args.file)
        _check_queue_limits(entries, args.station, "" if cmd == "add" else f"{args.file}: ")
    if cmd == "add":
        item = queue.add(args.procedure, args.settings)
        print(
            f"queued item {item.item_id} at position {item.position}:"
            f" {item.procedure} {' '.join(item.settings)}"
        )
    elif cmd == "load":
        items = queue.load(args.file)
        print(f"queued {len(items)} items from {args.file}")
    elif cmd == "remove":
        queue.remove(args.item)
        print(f"removed item {args.item}")
    elif cmd == "move":
        queue.move(args.item, args.position)
        print(f"item {args.item} is now at position {queue.get(args.item).position}")
    elif cmd == "clear":
        print(f"removed {queue.clear_finished()} finished items")
    elif cmd == "list":
        _queue_list(queue)
    elif cmd == "estimate":
        return _queue_estimate(args, queue)
    elif cmd == "run":
        return _queue_run(args, queue)
    return 0


def _check_queue_limits(entries: list[tuple[str, list[str]]], station: str, where: str) -> None:
    """Refuse to queue an item that the station's limits would stop at `queue run`."""
    from qbs_lab.actuators import check_plan
    from qbs_lab.procedure import load_procedure, parse_settings
    from qbs_lab.station import load_station

    config = load_station(station)
    problems = []
    for n, (procedure, settings) in enumerate(entries):
        proc = load_procedure(procedure)
        item = f"{where}items[{n}] ({procedure}): " if where else f"{procedure}: "
        for p in check_plan(proc.plan(parse_settings(proc, settings)), config):
            problems.append(f"{item}outside the limits of {station}: {p}")
    if problems:
        raise QueueError(problems)


def _queue_list(queue: Queue) -> None:
    items = queue.items()
    if not items:
        print("the queue is empty")
        return
    print(f"{'pos':>3} {'item':>4}  {'procedure':<18} {'status':<8} {'run':>4}  settings")
    for i in items:
        run = i.run_id or ""
        note = f"  ({i.message})" if i.message and i.status == "failed" else ""
        print(
            f"{i.position:>3} {i.item_id:>4}  {i.procedure:<18} {i.status:<8} {run:>4}"
            f"  {' '.join(i.settings)}{note}"
        )


def _queue_estimate(args: argparse.Namespace, queue: Queue) -> int:
    from datetime import datetime, timedelta

    from qbs_lab.procedure import load_procedure, parse_settings
    from qbs_lab.progress import format_duration
    from qbs_lab.runner import first_unmeasured
    from qbs_lab.runs import estimate_plan
    from qbs_lab.station import load_station
    from qbs_lab.store import Catalog, RunStore

    config = load_station(args.station)
    catalog = Catalog(args.data)
    total = 0.0
    todo = [i for i in queue.items() if i.status in ("pending", "running")]
    if not todo:
        print("nothing left to run")
        return 0
    for item in todo:
        proc = load_procedure(item.procedure)
        plan = proc.plan(parse_settings(proc, item.settings))
        start = 0
        if item.run_id is not None:
            record = catalog.get(item.run_id)
            if record.path and Path(record.path).exists():
                start = first_unmeasured(plan, RunStore.open(record.path).measured())
        est = estimate_plan(plan, config, seed=args.seed, scenario=args.scenario, start=start)
        total += est.total
        left = f" (from point {start})" if start else ""
        print(
            f"  item {item.item_id:>3}  {item.procedure:<18} {est.points:>6} points{left}"
            f"  {format_duration(est.total):>10}"
        )
    finish = datetime.now().astimezone() + timedelta(seconds=total)
    print(f"total {format_duration(total)}; started now, it would finish at {finish:%a %H:%M}")
    return 0


def _queue_run(args: argparse.Namespace, queue: Queue) -> int:
    import time

    from qbs_lab.procedure import load_procedure, parse_settings
    from qbs_lab.queue import run_queue
    from qbs_lab.runs import resume_run, start_run
    from qbs_lab.store import Catalog

    opts = _lab_options(args, args.sim)
    progress = not args.no_progress

    def start(item, on_created):  # type: ignore[no-untyped-def]
        wall = time.perf_counter()
        proc = load_procedure(item.procedure)
        outcome = start_run(
            proc, parse_settings(proc, item.settings), opts, progress=progress, on_created=on_created
        )
        _report(outcome, time.perf_counter() - wall)
        return outcome

    def resume(item):  # type: ignore[no-untyped-def]
        wall = time.perf_counter()
        print(f"resuming item {item.item_id} (run {item.run_id})")
        outcome = resume_run(item.run_id, opts, progress=progress)
        _report(outcome, time.perf_counter() - wall)
        return outcome

    from qbs_lab.notify import Notifier
    from qbs_lab.runs import runner_locks
    from qbs_lab.station import load_station

    notifier = Notifier(load_station(opts.station).notify)
    # an item's own problem fails that item and the queue goes on; the station's or the disk's stop it
    cannot_run = (PlanError, ProcedureError, QueueError, CatalogError, RunStoreError)
    with runner_locks(opts.data_dir, None if opts.sim else opts.station), _beside_view(args):
        ended = run_queue(
            queue, start, resume, Catalog(args.data), notify=notifier.send, cannot_run=cannot_run
        )
    print(f"queue {ended}")
    _queue_list(queue)
    return {"done": 0, "interrupted": 130, "stopped": 1}[ended]


def _station_check(args: argparse.Namespace) -> int:
    from qbs_lab.station import load_station
    from qbs_lab.station_check import print_station_check

    config = load_station(args.path)
    if not args.sim:
        from qbs_lab.lock import hold, station_lock

        with hold(station_lock(args.path), f"the station {args.path}"), config.connect() as st:
            print(f"station {args.path}: the instruments")
            print_station_check(st)
        return 0
    with SimLab.from_station(args.path, seed=args.seed, scenario=args.scenario) as lab:
        st = config.connect(lab=lab)
        with st:
            print(f"station {args.path} on the simulated lab (scenario {lab.scenario!r}, seed {lab.seed})")
            print_station_check(st)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from qbs_lab.sim.demo import run_demo

    with SimLab.from_station(args.station, seed=args.seed, scenario=args.scenario) as lab:
        missing = {"lockin", "gate", "magnet", "fridge"} - set(lab.instruments)
        if missing:
            raise SimLabError(
                f"{args.station}: the demo needs instruments named {', '.join(sorted(missing))}"
            )
        run_demo(lab)
    return 0


def _serve(args: argparse.Namespace) -> int:
    lab = SimLab.from_station(args.station, seed=args.seed, scenario=args.scenario, clock=RealClock())
    ports = {name: args.port_base + i for i, name in enumerate(lab.instruments)} if args.port_base else None
    try:
        addresses = lab.serve_tcp(ports)
    except OSError as err:
        lab.close()
        raise SimLabError(f"cannot open the TCP ports ({err.strerror})") from None
    print(f"simulated lab from {args.station} (scenario {lab.scenario!r}, seed {lab.seed}); real time")
    width = max(len(n) for n in addresses)
    sockets = {n: lab.tcp_address(n, "socket") for n in addresses}
    col = max(len(a) for a in sockets.values())
    print(f"  {'':<{width}}  {'raw socket (set a read termination)':<{col}}  HiSLIP (END on every reply)")
    for name, default in addresses.items():
        hislip = lab.tcp_address(name, "hislip")
        marks = ("*" if default == sockets[name] else " ", "*" if default == hislip else " ")
        print(f"  {name:<{width}}  {sockets[name]:<{col - 1}}{marks[0]}  {hislip}{marks[1]}")
    print("* the instrument's usual LAN protocol; connect with visalib='@py'; Ctrl-C stops", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("stopped")
    finally:
        lab.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    # QCoDeS's SR830 driver warns about its own buffer parameters: nothing a user can act on
    warnings.filterwarnings("ignore", message=".*does not correctly pass kwargs.*")
    route_library_logging()  # QCoDeS's own tracebacks go to the log file, not the terminal
    args = _parser().parse_args(argv)
    set_command(shlex.join(["qbs-lab", *(sys.argv[1:] if argv is None else argv)]))
    try:
        data = getattr(args, "data", None)
        # the data directory, or the nearest of its parents that exists, must be a directory
        found = next((p for p in (Path(data), *Path(data).parents) if p.exists()), None) if data else None
        if found is not None and not found.is_dir():
            where = "is a file" if found == Path(data) else f"is under {found}, a file"
            print(f"qbs-lab: error: --data {data}: {where}, not a data directory", file=sys.stderr)
            return 2
        run_id = getattr(args, "run_id", None)
        if run_id is not None and not (run_id.isascii() and run_id.isdigit()):  # "²".isdigit() is True
            print(
                f"qbs-lab: error: {run_id!r} is not a run id (a whole number, as `qbs-lab runs` lists)",
                file=sys.stderr,
            )
            return 2
        if args.command == "demo":
            return _demo(args)
        if args.command == "sim" and args.sim_command == "serve":
            return _serve(args)
        if args.command == "station" and args.station_command == "check":
            return _station_check(args)
        if args.command == "analyze" and args.analyze_command == "crossing":
            return _analyze_crossing(args)
        commands = {
            "run": _run,
            "resume": _resume,
            "estimate": _estimate,
            "procedures": _procedures,
            "runs": _runs,
            "export": _export,
            "queue": _queue,
            "view": _view,
        }
        code = commands[args.command](args)
        sys.stdout.flush()  # a reader gone before the last lines (`runs | head`): caught below, not at exit
        return code
    except SimLabError as err:
        print(f"qbs-lab: error: {err}", file=sys.stderr)
        return 2
    except StationError as err:
        for problem in err.problems:
            print(f"qbs-lab: error: {problem}", file=sys.stderr)
        return 2
    except (PlanError, QueueError, FaultError) as err:
        for problem in err.problems:
            print(f"qbs-lab: error: {problem}", file=sys.stderr)
        return 2
    except (RoleError, AnalysisInputError, ProcedureError, CatalogError, RunStoreError) as err:
        print(f"qbs-lab: error: {err}", file=sys.stderr)
        return 2
    except (LockError, InsufficientSpace, DiskFull) as err:
        print(f"qbs-lab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qbs-lab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `qbs-lab runs | head`: the reader has gone; say nothing more
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except MemoryError:
        print("qbs-lab: error: out of memory (a plan or a file too large?)", file=sys.stderr)
        return 2
    except Exception as err:  # the last resort: one line here, the traceback in the log file
        log = log_traceback(err, " ".join(sys.argv[1:] if argv is None else argv))
        text = str(err).strip().splitlines()[0][:300] if str(err).strip() else "no message"
        where = f" (details in {log})" if log else ""
        print(f"qbs-lab: error: unexpected {type(err).__name__}: {text}{where}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
