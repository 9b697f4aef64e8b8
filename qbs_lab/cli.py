"""The ``qbs-lab`` command.

    qbs-lab demo [--station PATH] [--scenario NAME] [--seed N]
        A short dry run on the simulated lab through the QCoDeS drivers, printing live readings.
    qbs-lab sim serve [--station PATH] [--scenario NAME] [--seed N] [--port-base N]
        Serve the station's emulated instruments on 127.0.0.1 (real time) until Ctrl-C.
    qbs-lab station check [--station PATH] [--sim [--scenario NAME] [--seed N]]
        Validate the station file, connect, and print every role's live reading and limits.
    qbs-lab run PROCEDURE [--set KEY=VALUE ...] [--station PATH] [--sim [--scenario NAME] [--seed N]]
        Run a procedure (a built-in name or a .py file) into a new dataset, with progress and time left.
    qbs-lab estimate PROCEDURE [--set KEY=VALUE ...] [--station PATH] [--sim [--scenario NAME] [--seed N]]
        Check every setpoint against the station's limits and time the plan on the simulated twin.
    qbs-lab procedures [NAME]
        The built-in procedures, or one procedure's parameters with their defaults and units.
    qbs-lab runs | resume RUN_ID [--sim ...] | export RUN_ID   [--data DIR]
        The catalog of runs; continue an interrupted or killed run; write a run as netCDF.
    qbs-lab queue add|load|list|remove|move|clear|estimate|run
        Tonight's plan: a persistent queue of procedures; run resumes an interrupted item.
    qbs-lab analyze crossing PATH [--x B|V_g] [--over T] [--json]
        Crossing point and scaling collapse of R isotherms in a zarr or netCDF dataset, with plots.
    qbs-lab view [--data DIR] [--port N] [--host H]
        A read-only web page following the runs and the queue as the data comes in (127.0.0.1:8642).

A mistake a user can make (missing or broken station file, unknown scenario, --scenario without --sim)
ends in one line naming the file and key and exit 2, never a traceback; a mistake in the command line
itself prints the subcommand's usage. -v on any command shows the instruments' and libraries' messages,
which otherwise go to the run log only.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shlex
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: `qbs-lab --help` stays fast
    from qbs_lab.queue import Queue
    from qbs_lab.runs import LabOptions, RunOutcome

__all__ = ["main"]


#: the simulated sample's scenarios (qbs_lab.sim.sample.SCENARIOS, checked by a test): named here so
#: that parsing the command line imports no physics
SCENARIO_NAMES = ("anomalous_metal", "clean", "drifting", "rf_leak")


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


class _Parser(argparse.ArgumentParser):
    """Reports unknown arguments with the subcommand's usage, not the top level's."""

    def parse_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def,override]
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            getattr(parsed, "_parser", self).error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed


class _Version(argparse.Action):
    """``--version``: the installed version, looked up only when asked (importlib.metadata is slow)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        from qbs_lab import __version__

        print(f"qbs_lab {__version__}")
        parser.exit()


def _add_station(p: argparse.ArgumentParser, default: str | None = "station.yaml") -> None:
    shown = "default: %(default)s" if default else "default: the one the run started on"
    p.add_argument("--station", default=default, help=f"station file ({shown})")


def _add_sim_options(p: argparse.ArgumentParser, *, always: bool = False, resume: bool = False) -> None:
    """--sim, --scenario, --seed: the same meaning everywhere (``always``: a command that only
    simulates; ``resume``: unset means the catalog's choice)."""
    if not always:
        p.add_argument(
            "--sim",
            action=argparse.BooleanOptionalAction if resume else "store_true",
            default=None if resume else False,
            help="on the simulated lab instead of the instruments"
            + (" (default: as the run started)" if resume else ""),
        )
    p.add_argument(
        "--scenario",
        choices=SCENARIO_NAMES,
        metavar="NAME",
        help=f"sample scenario, with --sim: {', '.join(SCENARIO_NAMES)} (default: "
        + ("the run's" if resume else "the station's sim.scenario")
        + ")",
    )
    p.add_argument(
        "--seed",
        type=_seed,
        default=None if resume else 0,
        help="noise seed, a whole number >= 0 (default: " + ("the run's" if resume else "%(default)s") + ")",
    )


def _add_lab_options(p: argparse.ArgumentParser) -> None:
    """A command that only simulates: --sim is accepted (and changes nothing), --scenario needs none."""
    _add_station(p)
    p.add_argument("--sim", action="store_true", help="(always on the simulated lab)")
    _add_sim_options(p, always=True)


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


def _add_faults(p: argparse.ArgumentParser, queue: bool = False) -> None:
    p.add_argument(
        "--faults", help="with --sim: a fault schedule (YAML) to inject, for a dry run of a bad night"
    )
    if queue:
        p.add_argument(
            "--fault-times",
            choices=("queue", "run"),
            default="queue",
            help="fault times count from the queue's start or from each run's start (default: %(default)s)",
        )


def _leaf(sub: argparse._SubParsersAction, name: str, **kwargs: str) -> argparse.ArgumentParser:
    """A subcommand whose own usage is printed for its errors."""
    p = sub.add_parser(name, **kwargs)
    p.set_defaults(_parser=p)
    p.add_argument("-v", "--verbose", action="store_true", help="instrument and library messages too")
    return p


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="qbs-lab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = _leaf(sub, "demo", help="dry-run R(B) isotherms on the simulated lab, printing live readings")
    _add_lab_options(demo)
    sim = sub.add_parser("sim", help="the simulated lab")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    serve = _leaf(sim_sub, "serve", help="serve the emulated instruments on 127.0.0.1 until Ctrl-C")
    _add_lab_options(serve)
    serve.add_argument(
        "--port-base",
        type=_port,
        default=0,
        help="first TCP port (instruments take consecutive ports); default: free ports from the OS",
    )
    station = sub.add_parser("station", help="the station file and its instruments")
    station_sub = station.add_subparsers(dest="station_command", required=True)
    check = _leaf(station_sub, "check", help="validate, connect, print every role's reading and limits")
    check.add_argument("path", nargs="?", help=argparse.SUPPRESS)  # deprecated: use --station
    _add_station(check)
    _add_sim_options(check)
    run = _leaf(sub, "run", help="run a procedure into a new dataset")
    _add_procedure_options(run)
    _add_station(run)
    _add_sim_options(run)
    _add_faults(run)
    run.add_argument("--data", default="data", help="data directory (default: %(default)s)")
    run.add_argument("--no-progress", action="store_true", help="no progress line")
    run.add_argument(
        "--view", nargs="?", const=8642, type=_port, metavar="PORT", help="serve the live view beside the run"
    )
    estimate = _leaf(sub, "estimate", help="check limits and time a procedure, touching no instrument")
    _add_procedure_options(estimate)
    _add_station(estimate)
    _add_sim_options(estimate)
    procedures = _leaf(sub, "procedures", help="the procedures, or one procedure's parameters")
    procedures.add_argument("name", nargs="?", help="a procedure name or .py file")
    runs = _leaf(sub, "runs", help="the catalog of runs")
    runs.add_argument("--data", default="data", help="data directory (default: %(default)s)")
    runs.add_argument("--limit", type=int, default=20, help="newest N runs (default: %(default)s)")
    runs.add_argument(
        "--rebuild",
        action="store_true",
        help="make the catalog anew from the run stores on disk (the old file is kept aside)",
    )
    resume = _leaf(sub, "resume", help="continue a run from its first unmeasured point")
    resume.add_argument("run_id", help="the run's id (qbs-lab runs)")
    _add_station(resume, default=None)
    _add_sim_options(resume, resume=True)
    _add_faults(resume)
    resume.add_argument("--data", default="data", help="data directory (default: %(default)s)")
    resume.add_argument("--no-progress", action="store_true", help="no progress line")
    export = _leaf(sub, "export", help="write a run's dataset as netCDF")
    export.add_argument("run_id", help="the run's id (qbs-lab runs)")
    export.add_argument("--netcdf", action="store_true", help="as a netCDF file (the default)")
    export.add_argument("--data", default="data", help="data directory (default: %(default)s)")
    export.add_argument("-o", "--output", help="file to write (default: beside the store, .nc)")
    queue = sub.add_parser("queue", help="tonight's plan: a persistent queue of procedures")
    queue_sub = queue.add_subparsers(dest="queue_command", required=True)
    q_add = _leaf(queue_sub, "add", help="append a procedure (checked against the station's limits)")
    q_add.add_argument("procedure", help="a built-in procedure or a .py file")
    q_add.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    _add_station(q_add)
    q_load = _leaf(queue_sub, "load", help="append the items of a plan file (YAML), each checked")
    q_load.add_argument("file")
    _add_station(q_load)
    _leaf(queue_sub, "list", help="the items, in order, with their status and run")
    q_remove = _leaf(queue_sub, "remove", help="take an item out")
    q_remove.add_argument("item", type=int, help="the item's id (qbs-lab queue list)")
    q_move = _leaf(queue_sub, "move", help="put an item at a position (1 = first)")
    q_move.add_argument("item", type=int, help="the item's id (qbs-lab queue list)")
    q_move.add_argument("position", type=int)
    _leaf(queue_sub, "clear", help="remove the done and failed items")
    q_est = _leaf(queue_sub, "estimate", help="fridge time of what is left, and when it will finish")
    _add_station(q_est)
    _add_sim_options(q_est)
    q_run = _leaf(queue_sub, "run", help="run the items in order (resumes an interrupted one)")
    _add_station(q_run)
    _add_sim_options(q_run)
    _add_faults(q_run, queue=True)
    q_run.add_argument("--no-progress", action="store_true", help="no progress line")
    q_run.add_argument(
        "--view", nargs="?", const=8642, type=_port, metavar="PORT", help="serve the live view beside it"
    )
    for q in queue_sub.choices.values():
        q.add_argument("--data", default="data", help="data directory (default: %(default)s)")
    analyze = sub.add_parser("analyze", help="analysis of stored datasets")
    analyze_sub = analyze.add_subparsers(dest="analyze_command", required=True)
    crossing = _leaf(analyze_sub, "crossing", help="crossing point and scaling collapse of R isotherms")
    crossing.add_argument("path", help="a zarr store or netCDF file with R over two dimensions")
    crossing.add_argument("--x", default="B", help="the swept dimension: B or V_g (default: %(default)s)")
    crossing.add_argument("--over", default="T", help="the isotherms' dimension (default: %(default)s)")
    crossing.add_argument("--json", action="store_true", help="print one JSON object instead of a report")
    crossing.add_argument(
        "--at", metavar="NAME=VALUE", help="one slice of a phase diagram, e.g. --at V_g=15 (default: all)"
    )
    view = _leaf(sub, "view", help="a read-only web page following the runs and the queue live")
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

    from qbs_lab.analysis.report import (
        analyze_crossing,
        format_report,
        format_search,
        parse_at,
        search_estimate,
    )

    result, plots, analyses = analyze_crossing(args.path, x=args.x, over=args.over, at=parse_at(args.at))
    search = search_estimate(args.path)  # a find_crossing run: its own estimate beside the grid's
    if args.json:
        print(json.dumps(result | {"search": search} if search and isinstance(result, dict) else result))
    else:
        print(format_report(analyses, args.x, plots) + (f"\n{format_search(search)}" if search else ""))
    return 0


def _lab_options(args: argparse.Namespace, sim: bool) -> LabOptions:
    from qbs_lab.api import lab_options

    faults = getattr(args, "faults", None)
    return lab_options(args.station, sim, args.scenario, args.seed, getattr(args, "data", "data"), faults)


def _run(args: argparse.Namespace) -> int:
    import time

    from qbs_lab import api

    wall = time.perf_counter()
    with _beside_view(args):
        run = api.run(args.procedure, settings=args.settings, **_api_lab(args))
    return _ran(run, time.perf_counter() - wall)


def _resume(args: argparse.Namespace) -> int:
    import time

    from qbs_lab import api

    wall = time.perf_counter()
    return _ran(api.resume(args.run_id, **_api_lab(args)), time.perf_counter() - wall)


def _api_lab(args: argparse.Namespace) -> dict[str, object]:
    """The lab flags as the Python API takes them (the same meaning on both)."""
    keys = ("station", "sim", "scenario", "seed", "faults", "data")
    return {k: getattr(args, k) for k in keys} | {"progress": "line" if not args.no_progress else False}


def _ran(run: object, wall: float) -> int:
    outcome = run.outcome  # type: ignore[attr-defined]
    code = _report(outcome, wall)
    _report_faults(outcome)
    return code


def _report(outcome: RunOutcome, wall: float) -> int:
    from qbs_lab.analysis.online import format_update
    from qbs_lab.progress import format_duration

    result = outcome.result
    path = Path(outcome.path)
    with contextlib.suppress(ValueError):  # shown as typed: relative to here when it is below here
        path = path.relative_to(Path.cwd())
    print(f"run {outcome.run_id} {result.status}: {path}")
    print(f"  {outcome.summary}")
    whole = result.duration  # a resumed run counts the whole run, as its progress line did
    if outcome.resumed_from:
        from qbs_lab.store import RunStore

        whole = sum(json.loads(RunStore.open(outcome.path).attrs().get("phases", "{}")).values())
    fridge = f"fridge time {format_duration(whole)}"
    if outcome.estimate is not None:
        fridge += f" (estimated {format_duration(whole - result.duration + outcome.estimate.total)})"
    if outcome.resumed_from:
        fridge += (
            f", {format_duration(result.duration)} of it since resuming at point {outcome.resumed_from + 1}"
        )
    print(f"  {fridge}, wall time {wall:.1f} s")
    if result.floor:
        floor = format_duration(sum(result.floor.values()))
        print(f"  plan efficiency {result.efficiency:.3f}: physics floor {floor}")
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
    if outcome.left:
        print(f"  instruments left: {outcome.left}", file=sys.stderr)
    if (result.message or "").startswith("no space left on device"):
        print(
            f"  free some space, then continue with: qbs-lab resume {outcome.run_id}"
            " (points not yet on disk are measured again)",
            file=sys.stderr,
        )
        return 1
    print(f"  every measured point is kept; continue with: qbs-lab resume {outcome.run_id}", file=sys.stderr)
    return 130 if result.status == "interrupted" else 1


def _report_faults(outcome: RunOutcome) -> None:
    """Which scheduled faults fired in this run, and a warning for each that never did."""
    if not outcome.faults.get("scheduled"):
        return
    from qbs_lab.fault_times import FaultTimeline
    from qbs_lab.sim.faults import FaultSchedule

    timeline = FaultTimeline(FaultSchedule.from_list(outcome.faults["scheduled"]), "run")
    timeline.for_run()
    timeline.record(outcome.run_id, outcome.faults)
    _print_fault_report(timeline)


def _print_fault_report(timeline: object) -> None:
    lines, warns = timeline.report()  # type: ignore[attr-defined]
    print("\n".join(lines))
    for w in warns:
        print(f"qbs-lab: warning: {w}", file=sys.stderr)


def _estimate(args: argparse.Namespace) -> int:
    from qbs_lab import api

    est = api.estimate(
        args.procedure,
        settings=args.settings,
        station=args.station,
        sim=args.sim,
        scenario=args.scenario,
        seed=args.seed,
    )
    print(est)
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
    from qbs_lab.lock import LockError, data_lock, hold
    from qbs_lab.runs import reconcile
    from qbs_lab.store import Catalog, RunStore, RunStoreError

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

    from qbs_lab.runs import PlanError
    from qbs_lab.store import RunStore
    from qbs_lab.store.catalog import Catalog

    record = Catalog(args.data).get(args.run_id)
    if record.path is None or not Path(record.path).exists():
        raise PlanError([f"run {args.run_id}: its store {record.path} is missing"])
    damage = RunStore.open(record.path).damage()  # checksums: damaged points are never exported
    if damage:
        raise PlanError(
            [f"run {args.run_id}: damaged chunk, {d.describe()}" for d in damage]
            + [f"qbs-lab resume {args.run_id} measures them again"]
        )
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
        _check_limits(entries, args.station)
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


def _check_limits(entries: list[tuple[str, list[str]]], station: str) -> None:
    """Every item's setpoints against the station's limits, before it is queued."""
    from qbs_lab.actuators import check_plan
    from qbs_lab.procedure import ProcedureError, load_procedure, parse_settings
    from qbs_lab.queue import QueueError
    from qbs_lab.station import load_station

    config = load_station(station)
    problems = []
    for procedure, settings in entries:
        try:
            proc = load_procedure(procedure)
            plan = proc.plan(parse_settings(proc, settings))
        except ProcedureError as err:
            problems.append(str(err))
            continue
        for problem in check_plan(plan, config):
            problems.append(f"{station}: {procedure}: outside the station's limits: {problem}")
    if problems:
        raise QueueError(problems)


def _queue_list(queue: Queue) -> None:
    items = queue.items()
    if not items:
        print("the queue is empty")
        return
    # in run order; the item id is what remove and move take
    print(f"{'item':>4}  {'procedure':<18} {'status':<8} {'run':>4}  settings")
    for i in items:
        run = i.run_id or ""
        note = f"  ({i.message})" if i.message and i.status == "failed" else ""
        print(f"{i.item_id:>4}  {i.procedure:<18} {i.status:<8} {run:>4}  {' '.join(i.settings)}{note}")


def _queue_estimate(args: argparse.Namespace, queue: Queue) -> int:
    from datetime import datetime, timedelta

    from qbs_lab.procedure import load_procedure, parse_settings
    from qbs_lab.progress import format_duration
    from qbs_lab.runner import first_unmeasured
    from qbs_lab.runs import estimate_plan
    from qbs_lab.station import load_station
    from qbs_lab.store import Catalog, RunStore

    _lab_options(args, args.sim)  # the same misuse checks as run
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
    timeline = None
    if opts.faults is not None:
        from qbs_lab.fault_times import FaultTimeline

        timeline = FaultTimeline(opts.faults, args.fault_times)  # type: ignore[arg-type]

    def item_opts():  # type: ignore[no-untyped-def]
        return dataclasses.replace(opts, faults=timeline.for_run()) if timeline is not None else opts

    def start(item, on_created):  # type: ignore[no-untyped-def]
        wall = time.perf_counter()
        proc = load_procedure(item.procedure)
        outcome = start_run(
            proc, parse_settings(proc, item.settings), item_opts(), progress=progress, on_created=on_created
        )
        _report(outcome, time.perf_counter() - wall)
        if timeline is not None:
            timeline.record(outcome.run_id, outcome.faults)
        return outcome

    def resume(item):  # type: ignore[no-untyped-def]
        wall = time.perf_counter()
        print(f"resuming item {item.item_id} (run {item.run_id})")
        outcome = resume_run(item.run_id, item_opts(), progress=progress)
        _report(outcome, time.perf_counter() - wall)
        if timeline is not None:
            timeline.record(outcome.run_id, outcome.faults)
        return outcome

    from qbs_lab.notify import Notifier
    from qbs_lab.runs import runner_locks
    from qbs_lab.station import load_station

    notifier = Notifier(load_station(opts.station).notify)
    from qbs_lab.procedure import ProcedureError
    from qbs_lab.queue import QueueError
    from qbs_lab.runs import PlanError
    from qbs_lab.store import CatalogError, RunStoreError

    # an item's own problem fails that item and the queue goes on; the station's or the disk's stop it
    cannot_run = (PlanError, ProcedureError, QueueError, CatalogError, RunStoreError)
    with runner_locks(opts.data_dir, None if opts.sim else opts.station), _beside_view(args):
        ended = run_queue(
            queue, start, resume, Catalog(args.data), notify=notifier.send, cannot_run=cannot_run
        )
    print(f"queue {ended}")
    _queue_list(queue)
    if timeline is not None:
        _print_fault_report(timeline)
    return {"done": 0, "interrupted": 130, "stopped": 1}[ended]


def _station_check(args: argparse.Namespace) -> int:
    from qbs_lab.sim.lab import SimLab
    from qbs_lab.station import load_station
    from qbs_lab.station_check import print_station_check

    if args.path is not None:  # the old positional form, kept working (no longer in the help)
        args.station = args.path
    _lab_options(args, args.sim)  # --scenario without --sim: one line
    config = load_station(args.station)
    if not args.sim:
        from qbs_lab.lock import hold, station_lock

        with hold(station_lock(args.station), f"the station {args.station}"), config.connect() as st:
            print(f"station {args.station}: the instruments")
            print_station_check(st)
        return 0
    with SimLab.from_station(args.station, seed=args.seed, scenario=args.scenario) as lab:
        st = config.connect(lab=lab)
        with st:
            print(f"station {args.station} on the simulated lab (scenario {lab.scenario!r}, seed {lab.seed})")
            print_station_check(st)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from qbs_lab.sim.demo import run_demo
    from qbs_lab.sim.lab import SimLab, SimLabError

    with SimLab.from_station(args.station, seed=args.seed, scenario=args.scenario) as lab:
        missing = {"lockin", "gate", "magnet", "fridge"} - set(lab.instruments)
        if missing:
            raise SimLabError(
                f"{args.station}: the demo needs instruments named {', '.join(sorted(missing))}"
            )
        run_demo(lab)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from qbs_lab.clock import RealClock
    from qbs_lab.sim.lab import SimLab, SimLabError

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


def _user_error(err: BaseException) -> list[str] | None:
    """The lines of a mistake a user can make (shown without a traceback); None for anything else.
    The error classes are imported here, after the command ran, so a fast command stays fast."""
    from qbs_lab.analysis.report import AnalysisInputError
    from qbs_lab.drivers.errors import RoleError
    from qbs_lab.lock import LockError
    from qbs_lab.procedure import ProcedureError
    from qbs_lab.queue import QueueError
    from qbs_lab.runs import PlanError
    from qbs_lab.sim.faults import FaultError
    from qbs_lab.sim.lab import SimLabError
    from qbs_lab.station import StationError
    from qbs_lab.store import CatalogError, RunStoreError
    from qbs_lab.store.space import DiskFull, InsufficientSpace

    if isinstance(err, StationError | PlanError | QueueError | FaultError):
        return list(err.problems)
    user = (SimLabError, RoleError, AnalysisInputError, ProcedureError, CatalogError, RunStoreError)
    user += (LockError, InsufficientSpace, DiskFull)
    if isinstance(err, user):
        return [str(err)]
    return None


def main(argv: Sequence[str] | None = None) -> int:
    # QCoDeS's SR830 driver warns about its own buffer parameters: nothing a user can act on
    warnings.filterwarnings("ignore", message=".*does not correctly pass kwargs.*")
    args = _parser().parse_args(argv)
    from qbs_lab.lock import set_command

    set_command(shlex.join(["qbs-lab", *(sys.argv[1:] if argv is None else argv)]))
    from qbs_lab.console import quiet

    with quiet(getattr(args, "verbose", False)):
        return _main(args)


def _main(args: argparse.Namespace) -> int:
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
    except Exception as err:
        problems = _user_error(err)
        if problems is None:  # the last resort: one line here, the traceback in the log file
            from qbs_lab.diagnostics import log_traceback

            log = log_traceback(err, args.command)
            text = str(err).strip().splitlines()[0][:300] if str(err).strip() else "no message"
            where = f" (details in {log})" if log else ""
            print(f"qbs-lab: error: unexpected {type(err).__name__}: {text}{where}", file=sys.stderr)
            return 1
        for problem in problems:
            print(f"qbs-lab: error: {problem}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
