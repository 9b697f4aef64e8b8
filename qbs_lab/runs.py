"""The whole job of a run: check, estimate, connect, run into a new store, record, and resume.

:func:`estimate_plan` checks every setpoint against the station's limits (no instrument touched), then
dry-runs the plan on the station's simulated twin (same roles, same waits, virtual clock, no store) and
returns the fridge time split into ramps, stabilization, settling, measuring and parking, with the time
each point is expected (the schedule the progress line's "time left" follows) and the physics floor
of each phase (:func:`efficiency_line`). A run on the simulated lab is itself the twin's run: it is not
dry-run first (unless faults are injected: the estimate is then the plan's without them).

:func:`start_run` makes the catalog entry and the store (``data/<date>/<run_id>-<procedure>.zarr``),
runs with Ctrl-C routed to a safe stop, and records how it ended. :func:`resume_run` continues a run
that was interrupted, aborted or killed from its first unmeasured point onto the same grid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from qbs_lab import __version__, console
from qbs_lab.actuators import STATION_VARIABLES, check_plan, describe_parked
from qbs_lab.analysis.online import OnlineCrossing, format_update, search_update
from qbs_lab.clock import RealClock, VirtualClock
from qbs_lab.interrupt import GuardedClock, StopRequest, catch_sigint
from qbs_lab.lock import data_lock, hold, station_lock
from qbs_lab.notify import Notifier
from qbs_lab.plan import AXIS_KINDS, RF_OFF, Plan
from qbs_lab.procedure import Procedure, load_procedure, parameters_from_dict
from qbs_lab.progress import (
    ESTIMATE_PROGRESS_POINTS,
    Progress,
    SearchProgress,
    WorkProgress,
    format_duration,
)
from qbs_lab.runner import PHASES, Runner, RunResult, Subscriber, first_unmeasured
from qbs_lab.sim.lab import SimLab
from qbs_lab.station import Station, StationConfig, StationError, load_station
from qbs_lab.store.catalog import Catalog, CatalogError, RunRecord, now_iso
from qbs_lab.store.end_record import EndRecord
from qbs_lab.store.run_store import RunStore, RunStoreError
from qbs_lab.store.space import check_free_space, disk_full, storage_reason
from qbs_lab.suspenders import Suspenders

__all__ = [
    "Estimate",
    "LabOptions",
    "PlanError",
    "RunOutcome",
    "efficiency_line",
    "estimate_plan",
    "format_estimate",
    "reconcile",
    "resume_run",
    "runner_locks",
    "start_run",
]


class PlanError(Exception):
    """A plan the station may not run (setpoints outside its limits), or a run that cannot go on."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class LabOptions:
    """Where a run happens: the station file, simulated or not (scenario, seed), the data directory."""

    station: Path = Path("station.yaml")
    sim: bool = False
    scenario: str | None = None
    seed: int = 0
    data_dir: Path = Path("data")
    faults: Path | None = None  # a fault schedule (YAML) for the simulated lab: a dry run of bad nights


@dataclass
class Estimate:
    """Fridge time [s] per phase, the expected time of each point and the end (parking included)."""

    phases: dict[str, float]
    schedule: list[float]
    points: int
    floor: dict[str, float] = field(default_factory=dict)  # what the physics needs, per phase [s]

    @property
    def total(self) -> float:
        return sum(self.phases.values())

    @property
    def efficiency(self) -> float:
        """Physics floor / fridge time."""
        return sum(self.floor.values()) / self.total if self.total > 0 else 1.0


@dataclass
class RunOutcome:
    run_id: str
    path: Path
    result: RunResult
    estimate: Estimate | None = None
    summary: str = ""
    lab_truth: dict[str, Any] = field(default_factory=dict)
    online: list[dict[str, Any]] = field(default_factory=list)  # the crossing updates, last is newest
    checks: dict[str, Any] | None = None  # the procedure's own verdict (Procedure.analyze)
    unrecorded: str | None = None  # what of the run's end could not be written (a full disk)
    left: str = ""  # where the instruments were left, in words ("gate 0 V, magnet 0 T (driven), ...")
    # the simulated lab's faults: "scheduled" (resolved), "events" (fired/ended) and its clock at the end
    faults: dict[str, Any] = field(default_factory=dict)
    resumed_from: int = 0  # the first point this segment measured (0: a fresh run)


# -- estimate ------------------------------------------------------------------------------------------
def estimate_plan(
    plan: Plan, config: StationConfig, *, seed: int = 0, scenario: str | None = None, start: int = 0
) -> Estimate:
    """Check ``plan`` against the station's limits, then time it on the station's simulated twin."""
    problems = check_plan(plan, config)
    if problems:
        raise PlanError([f"{config.path}: outside the station's limits: {p}" for p in problems])
    try:
        lab = SimLab.from_station(config.path, seed=seed, scenario=scenario)
    except Exception as err:
        raise PlanError([f"{config.path}: no simulated twin for the estimate ({err})"]) from None
    with lab:
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the twin's "Connected to" lines are noise
                station = config.connect(lab=lab)
        except StationError as err:
            raise PlanError(
                [f"the estimate needs an emulator for every role's instrument: {p}" for p in err.problems]
            ) from None
        with station:
            # the same suspenders as the run (their polling costs fridge time); nothing trips on the twin
            supervisor = Suspenders(station, config.suspenders, station.clock)
            # a long plan takes minutes to time: show it moving (wall time left)
            ticker = [WorkProgress(plan.size, f"timing {plan.procedure} on the simulated lab", start=start)]
            # (an adaptive plan stores on a grid it does not fill: its points say nothing of its progress)
            ticker = ticker if plan.size - start >= ESTIMATE_PROGRESS_POINTS and plan.search is None else []
            result = Runner(plan, station, supervisor=supervisor, subscribers=ticker).run(start=start)
            for t in ticker:
                t.finish()
    if result.status != "completed":
        raise PlanError(
            [f"the dry run on the simulated lab stopped at point {result.done}: {result.message}"]
        )
    return Estimate(dict(result.phases), result.point_times, plan.size - start, dict(result.floor))


def format_estimate(est: Estimate, plan: Plan) -> str:
    names = {
        "ramp": "ramps",
        "stabilize": "temperature stabilization",
        "settle": "lock-in settling",
        "measure": "measuring",
        "suspended": "suspended",
        "park": "parking",
    }
    grid = " x ".join(f"{a.name}[{len(a.values)}]" for a in plan.axes)
    lines = [f"{plan.procedure}: {est.points} points on {grid}"]
    lines.append("  every setpoint is within the station's limits")
    lines.append(f"  estimated fridge time {format_duration(est.total)}:")
    for phase in PHASES:
        if phase == "suspended" and not est.phases[phase]:
            continue  # only a run that was paused has this phase
        share = est.phases[phase] / est.total if est.total else 0.0
        lines.append(f"    {names[phase]:<26} {format_duration(est.phases[phase]):>10}  {100 * share:4.1f} %")
    lines.append(efficiency_line(est.phases, est.floor))
    parts = ", ".join(
        f"{names[p]} {format_duration(est.floor[p])}" for p in PHASES if est.floor.get(p, 0.0) > 0
    )
    lines.append(f"    physics floor: {parts}")
    return "\n".join(lines)


def efficiency_line(phases: dict[str, float], floor: dict[str, float]) -> str:
    """One line: the physics floor (ramps at the allowed rates, lock-in settling, reaching and holding
    each temperature) beside the fridge time, and their ratio."""
    total, need = sum(phases.values()), sum(floor.values())
    ratio = need / total if total > 0 else 1.0
    return (
        f"  plan efficiency {ratio:.3f}: physics floor {format_duration(need)} of fridge time"
        f" {format_duration(total)} (the rest: instrument I/O, waits past the physics)"
    )


# -- connecting ----------------------------------------------------------------------------------------
@contextmanager
def _station(
    config: StationConfig, opts: LabOptions, stop: StopRequest
) -> Iterator[tuple[Station, SimLab | None]]:
    lab = None
    if opts.sim:  # QBS_LAB_SIM_SPEED paces the run's lab in wall time (to watch it); unset: full speed
        lab = SimLab.from_station(
            opts.station, seed=opts.seed, scenario=opts.scenario, clock=VirtualClock.from_env()
        )
    try:
        if lab is not None and opts.faults is not None:
            lab.load_faults(opts.faults)
        clock = GuardedClock(lab.clock if lab is not None else RealClock(), stop)
        station = config.connect(lab=lab, clock=clock)
        try:
            yield station, lab
        finally:
            station.close()
    finally:
        if lab is not None:
            lab.close()


def _snapshot(station: Station) -> dict[str, Any]:
    instruments: dict[str, Any] = {}
    for name, driver in station.drivers.items():
        snap = getattr(driver, "snapshot", None)
        try:
            instruments[name] = snap(update=False) if callable(snap) else {"class": type(driver).__name__}
        except Exception as err:  # a snapshot is a record, never a reason to stop a run
            instruments[name] = {"class": type(driver).__name__, "snapshot_error": str(err)}
    return {"file": str(station.config.path), "instruments": instruments}


def _software() -> dict[str, str]:
    out = {"qbs_lab": __version__}
    for pkg in ("qcodes", "pymeasure", "pyvisa", "xarray", "zarr", "numpy"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str, allow_nan=True)


class _CatalogProgress:
    """Keeps the catalog's ``done`` count current, at most every few seconds."""

    def __init__(self, catalog: Catalog, run_id: str, every: float = 5.0) -> None:
        import time

        self._time = time.monotonic
        self.catalog, self.run_id, self.every, self._last = catalog, run_id, every, self._time()

    def __call__(self, k: int, index: tuple[int, ...], values: Sequence[float]) -> None:
        if self._time() - self._last >= self.every:
            self._last = self._time()
            self.catalog.update(self.run_id, done=k + 1)


# -- running ---------------------------------------------------------------------------------------------
@contextmanager
def runner_locks(data_dir: Path, station: Path | None) -> Iterator[None]:
    """One lab, one runner: the data directory's lock and, at the instruments (``station`` given), the
    station's; raises :class:`~qbs_lab.lock.LockError` at once if another process holds either."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(hold(data_lock(data_dir), f"the data directory {data_dir}"))
        if station is not None:
            stack.enter_context(hold(station_lock(station), f"the station {station}"))
        yield


def store_bytes(plan: Plan) -> int:
    """Room a run needs [bytes]: its store (float64 per variable and point, twice over for the chunk
    being replaced and chunk padding), its log, end record, catalog row and the catalog's WAL."""
    variables = (len(plan.measurements) or len(STATION_VARIABLES)) + 1
    return 2 * 8 * variables * plan.size + (512 << 10)


def procedure_hash(source: str | None) -> str | None:
    """SHA-256 of a user's procedure file (None for a built-in procedure)."""
    if source is None:
        return None
    try:
        return hashlib.sha256(Path(source).read_bytes()).hexdigest()
    except OSError:
        return None


def start_run(
    proc: Procedure,
    params: Any,
    opts: LabOptions,
    *,
    out: TextIO | None = None,
    progress: bool = True,
    estimate: bool = True,
    subscribers: Sequence[Subscriber] = (),
    on_created: Callable[[str], None] | None = None,
) -> RunOutcome:
    """Run ``proc`` with ``params`` into a new store; the catalog records it from start to end.

    ``on_created(run_id)`` is called as soon as the run has its catalog row (the queue notes it there).
    """
    config = load_station(opts.station)
    plan = proc.plan(params)
    problems = check_plan(plan, config)
    if problems:
        raise PlanError([f"{opts.station}: outside the station's limits: {p}" for p in problems])
    with runner_locks(opts.data_dir, None if opts.sim else opts.station):
        return _start_locked(
            proc, params, plan, config, opts, out, progress, estimate, subscribers, on_created
        )


def _start_locked(
    proc: Procedure,
    params: Any,
    plan: Plan,
    config: StationConfig,
    opts: LabOptions,
    out: TextIO | None,
    progress: bool,
    estimate: bool,
    subscribers: Sequence[Subscriber],
    on_created: Callable[[str], None] | None,
) -> RunOutcome:
    check_free_space(opts.data_dir, store_bytes(plan))
    est = None
    if estimate and opts.sim and opts.faults is not None:  # the estimate: the plan without the faults
        est = estimate_plan(plan, config, seed=opts.seed, scenario=opts.scenario)
    elif estimate and not opts.sim:  # at the fridge the twin may lack an emulator: progress by rate
        try:
            est = estimate_plan(plan, config, seed=opts.seed, scenario=opts.scenario)
        except PlanError:
            est = None
    if est is not None and progress:
        print(
            f"{proc.name}: {plan.size} points, estimated fridge time {format_duration(est.total)}",
            file=out or sys.stderr,
            flush=True,
        )
    elif opts.sim and progress:  # the run is on the twin: its fridge time is the estimate, run once
        print(f"{proc.name}: {plan.size} points on the simulated lab", file=out or sys.stderr, flush=True)
    catalog = Catalog(opts.data_dir)
    run_id = catalog.new_run(
        procedure=proc.name,
        source=proc.source,
        points=plan.size,
        station=str(Path(opts.station).resolve()),
        sim=opts.sim,
        scenario=(opts.scenario or config.sim.get("scenario", "clean")) if opts.sim else None,
        seed=opts.seed if opts.sim else None,
        parameters=dataclasses.asdict(params),
    )
    # absolute: every command finds the store from any working directory
    path = Path(opts.data_dir).resolve() / date.today().isoformat() / f"{run_id}-{proc.name}.zarr"
    stop = StopRequest()
    try:
        catalog.update(run_id, path=str(path))
        with _station(config, opts, stop) as (station, lab):
            notifier = Notifier(config.notify, run_id=run_id, procedure=proc.name)
            notify = _logged(notifier.send, RunLog(path))
            supervisor = Suspenders(station, config.suspenders, station.clock, notify=notify)
            runner = Runner(plan, station, stop=stop, supervisor=supervisor)
            attrs = {
                "run_id": run_id,
                "procedure": proc.name,
                "parameters": _dumps(dataclasses.asdict(params)),
                "station": _dumps(_snapshot(station)),
                "sample": _dumps(config.sample),
                "software": _dumps(_software()),
                "start_time": now_iso(),
                "status": "running",
                "simulated": int(opts.sim),
            }
            if proc.source is not None:  # a user's file: resume refuses if it has changed since
                attrs["source"] = proc.source
                attrs["procedure_sha256"] = procedure_hash(proc.source) or ""
            if lab is not None:
                attrs["sim"] = _dumps({"scenario": lab.scenario, "seed": lab.seed})
                attrs["truth"] = _dumps(_truth(lab, plan))
            store = RunStore.for_plan(path, plan, runner.variable_attrs(), attrs)
            EndRecord(path).reserve()  # room for the outcome, taken now: it can be written on a full disk
            runner.store = store
            if on_created is not None:  # the store exists: from now on the run can be resumed
                on_created(run_id)
            log = RunLog(path)
            ctx = _Context(
                catalog, run_id, plan, store, log, 0, 0.0, est, progress, out, subscribers, sim=opts.sim
            )
            result = _run(runner, ctx)
            summary, unrecorded = _finish(store, catalog, run_id, result, plan, ctx.log, station, lab)
            checks = _checks(proc, store, result, ctx.log)
            truth = _truth(lab, plan) if lab is not None else {}
            faults = _fault_record(lab)
    except BaseException as err:
        # e.g. a station that cannot be reached: the catalog must not go on saying "running"
        message = storage_reason(err, path)[:500]
        with contextlib.suppress(CatalogError, OSError):
            if catalog.get(run_id).status == "running":
                catalog.update(run_id, status="aborted", ended=now_iso(), message=message)
        with contextlib.suppress(OSError):  # the libraries' own account (a connection traceback)
            path.parent.mkdir(parents=True, exist_ok=True)
            log = RunLog(path)
            for note in console.drain():
                log.write(note)
            log.write(f"run {run_id} aborted: {type(err).__name__}: {err}")
        full = disk_full(err, path)
        if full is not None:
            raise full from None
        raise
    outcome = RunOutcome(run_id, path, result, est, summary, truth, ctx.online, checks, unrecorded)
    outcome.left, outcome.faults = ctx.left, faults
    return outcome


def resume_run(
    run_id: str,
    opts: LabOptions,
    *,
    out: TextIO | None = None,
    progress: bool = True,
    subscribers: Sequence[Subscriber] = (),
    sim: bool | None = None,
    scenario: str | None = None,
    seed: int | None = None,
    station: Path | None = None,
    procedure: Procedure | None = None,
) -> RunOutcome:
    """Continue run ``run_id`` from its first unmeasured point, on the station and lab it started on
    (the catalog's choice) unless ``sim``, ``scenario``, ``seed`` or ``station`` say otherwise;
    ``procedure``: the one to use instead of loading the recorded one (a Plan object's run)."""
    overrides = {"sim": sim, "scenario": scenario, "seed": seed, "station": station, "procedure": procedure}
    with contextlib.ExitStack() as locks:
        locks.enter_context(hold(data_lock(opts.data_dir), f"the data directory {opts.data_dir}"))
        catalog = Catalog(opts.data_dir)
        record = reconcile(catalog, catalog.get(run_id))
        if record.damaged:
            raise CatalogError(
                f"run {run_id}: its catalog row is damaged ({record.damaged}); rebuild the catalog from"
                f" the stores with `qbs-lab runs --rebuild --data {opts.data_dir}`"
            )
        if not (record.sim if sim is None else sim):
            where = station if station is not None else record.station
            locks.enter_context(hold(station_lock(where), f"the station {where}"))
        return _resume_locked(record, catalog, opts, out, progress, subscribers, **overrides)


def _resume_locked(
    record: RunRecord,
    catalog: Catalog,
    opts: LabOptions,
    out: TextIO | None,
    progress: bool,
    subscribers: Sequence[Subscriber],
    sim: bool | None = None,
    scenario: str | None = None,
    seed: int | None = None,
    station: Path | None = None,
    procedure: Procedure | None = None,
) -> RunOutcome:
    run_id = record.run_id
    state = record.state
    if state == "running":
        raise PlanError([f"run {run_id} is still running (process {record.pid})"])
    if record.path is None or not Path(record.path).exists():
        raise PlanError([f"run {run_id}: its store {record.path} is missing"])
    store = RunStore.open(record.path)
    damage = store.damage()  # checksums: a damaged chunk's points are measured again, never trusted
    if state == "completed" and not damage:
        raise PlanError([f"run {run_id} is complete: every point is measured"])
    for d in damage:
        line = f"run {run_id}: damaged chunk, {d.describe()}: measured again"
        print(line, file=out or sys.stderr, flush=True)
        RunLog(Path(record.path)).write(line)
    attrs = store.attrs()
    recorded_hash = attrs.get("procedure_sha256")
    if record.source and recorded_hash and procedure_hash(record.source) != recorded_hash:
        raise PlanError(
            [
                f"run {run_id}: the procedure file {record.source} has changed since the run started;"
                " resuming would mix two versions in one dataset: start a new run instead"
            ]
        )
    proc = procedure or load_procedure(record.source or record.procedure)
    params = parameters_from_dict(proc, record.parameters)
    plan = proc.plan(params)
    if store.dims != plan.dims or store.shape != plan.shape:
        raise PlanError([f"run {run_id}: the procedure now makes a different grid than the one stored"])
    stored = store.dataset()
    for axis in plan.axes:
        if not np.array_equal(stored[axis.name].values, np.asarray(axis.values)):
            raise PlanError([f"run {run_id}: axis {axis.name} differs from the stored one"])
    start = first_unmeasured(plan, store.measured())
    t_stored = stored["t"].values
    t_offset = float(np.nanmax(t_stored)) if np.isfinite(t_stored).any() else 0.0
    use_sim = record.sim if sim is None else sim
    opts = dataclasses.replace(
        opts,
        station=station if station is not None else Path(record.station),
        sim=use_sim,
        scenario=scenario if scenario is not None else (record.scenario if use_sim else None),
        seed=seed if seed is not None else (record.seed if record.seed is not None else opts.seed),
    )
    config = load_station(opts.station)
    problems = check_plan(plan, config)
    if problems:
        raise PlanError([f"{opts.station}: outside the station's limits: {p}" for p in problems])
    check_free_space(opts.data_dir, store_bytes(plan))
    est = None  # on the simulated lab the resumed run is itself the twin's estimate: not run twice
    where = f"resuming run {run_id} at point {start + 1}/{plan.size}"
    if progress:
        print(where, file=out or sys.stderr, flush=True)
    RunLog(Path(record.path)).write(where)
    resumed = json.loads(attrs.get("resumed", "[]"))
    resumed.append({"at": now_iso(), "from_point": start, "pid": os.getpid()})
    path = Path(record.path)
    try:
        store.update_attrs(status="running", resumed=json.dumps(resumed))
        end = EndRecord(path)
        if end.path.exists():
            end.clear()
        else:
            end.reserve()
        catalog.update(run_id, status="running", pid=os.getpid(), ended=None, message=None)
    except (OSError, CatalogError) as err:
        full = disk_full(err, path)
        raise full if full is not None else err from None
    stop = StopRequest()
    with _station(config, opts, stop) as (station, lab):
        notifier = Notifier(config.notify, run_id=run_id, procedure=proc.name)
        notify = _logged(notifier.send, RunLog(Path(record.path)))
        supervisor = Suspenders(station, config.suspenders, station.clock, notify=notify)
        runner = Runner(plan, station, stop=stop, store=store, supervisor=supervisor)
        log = RunLog(path)
        ctx = _Context(
            catalog, run_id, plan, store, log, start, t_offset, est, progress, out, subscribers, sim=opts.sim
        )
        result = _run(runner, ctx)
        summary, unrecorded = _finish(store, catalog, run_id, result, plan, log, station, lab)
        checks = _checks(proc, store, result, log)
        truth = _truth(lab, plan) if lab is not None else {}
        faults = _fault_record(lab)
    outcome = RunOutcome(run_id, path, result, est, summary, truth, ctx.online, checks, unrecorded)
    outcome.left, outcome.faults, outcome.resumed_from = ctx.left, faults, start
    return outcome


def _fault_record(lab: SimLab | None) -> dict[str, Any]:
    if lab is None:
        return {}
    return {
        "scheduled": [f.to_dict() for f in lab.faults.faults],
        "events": [e.to_dict() for e in lab.fault_log],
        "lab_time": lab.clock.now(),
    }


def reconcile(catalog: Catalog, record: RunRecord) -> RunRecord:
    """Bring the catalog and a run's store in line after a run that could not write its end everywhere
    (a full disk). The end record, written in place at the end and blank while a run goes, says how it
    ended; without one, a catalog that has an outcome speaks for a store still saying ``running``.
    The record as it is now (the caller holds the data directory's lock)."""
    if record.damaged or not record.path or not Path(record.path).is_dir():
        return record
    path = Path(record.path)
    try:
        attrs = json.loads((path / ".zattrs").read_text())
    except (OSError, ValueError):
        return record
    end = EndRecord(path).read() or {}
    store_status = attrs.get("status")
    if end.get("status") not in (None, "running"):
        status, message, ended = end["status"], end.get("message"), end.get("ended")
    elif record.status != "running" and store_status == "running":
        status, message, ended = record.status, record.message, record.ended
    else:
        return record
    with contextlib.suppress(OSError, RunStoreError):  # still full: the next command tries again
        if store_status != status:
            RunStore.open(path).update_attrs(
                status=status, message=message or "", end_time=ended or now_iso()
            )
    if record.status != status or record.message != message:
        with contextlib.suppress(OSError, CatalogError):
            done = int(RunStore.open(path).measured().sum())
            catalog.update(record.run_id, status=status, message=message, ended=ended, done=done, pid=None)
            return catalog.get(record.run_id)
    return record


@dataclass
class _Context:
    """What a run segment (a start or a resume) needs besides the runner."""

    catalog: Catalog
    run_id: str
    plan: Plan
    store: RunStore
    log: RunLog
    start: int = 0
    t_offset: float = 0.0
    est: Estimate | None = None
    progress: bool = True
    out: TextIO | None = None
    subscribers: Sequence[Subscriber] = ()
    online: list[dict[str, Any]] = field(default_factory=list)
    sim: bool = False  # on the simulated lab: a completed run is its own (the twin's) estimate
    left: str = ""  # where the instruments were left (parked), in words


class RunLog:
    """The run's text log beside its store (``<run_id>-<procedure>.log``): one timestamped line each."""

    def __init__(self, store_path: Path) -> None:
        self.path = Path(store_path).with_suffix(".log")

    def write(self, message: str) -> None:
        """Append a line; on a full disk the line is lost, never the run (the catalog and the end
        record still say how it ended)."""
        with contextlib.suppress(OSError), open(self.path, "a", encoding="utf-8") as f:
            f.write(f"{now_iso()}  {message}\n")


def _logged(send: Callable[..., Any], log: RunLog) -> Callable[..., Any]:
    """``send`` that first writes pauses and recoveries to the run log (the live view reads them)."""

    def notify(event: str, **fields: Any) -> Any:
        if event in ("suspended", "resumed"):
            log.write(f"{event}: {fields.get('message', '')}")
        return send(event, **fields)

    return notify


def _estimate_attr(est: Estimate, start: int, t_offset: float) -> str:
    """The estimate as a store attribute, for readers of a run in progress (the live view's time left
    and phase split): fridge time per phase [s] and a thinned schedule of [point, expected t [s]]."""
    n = len(est.schedule)
    step = max(1, n // 200)
    marks = sorted({*range(0, n, step), n - 1}) if n else []
    schedule = [[start + k, round(est.schedule[k] + t_offset, 3)] for k in marks]
    return _dumps(
        {"total_s": est.total, "phases": est.phases, "end_s": est.total + t_offset, "schedule": schedule}
    )


def _run(runner: Runner, ctx: _Context) -> RunResult:
    plan, out = ctx.plan, ctx.out or sys.stderr
    bar = None
    subs: list[Subscriber] = [_CatalogProgress(ctx.catalog, ctx.run_id), *ctx.subscribers]
    if plan.search is not None:  # an adaptive plan reports its own running estimate
        ctx.online = json.loads(ctx.store.attrs().get("online", "[]"))

        def on_estimate(record: dict[str, Any]) -> None:
            update = search_update(record)
            ctx.online.append(update)
            ctx.store.update_attrs(online=_dumps(ctx.online))
            if bar is not None:
                bar.expect(record.get("expected_end_s"))
                bar.message(f"crossing after {format_update(update)}")

        runner.log = ctx.log.write
        runner.on_estimate = on_estimate
    elif OnlineCrossing.applies(plan) and "R" in runner.variables:
        ctx.online = json.loads(ctx.store.attrs().get("online", "[]"))

        def on_update(record: dict[str, Any]) -> None:
            ctx.online.append(record)
            ctx.store.update_attrs(online=_dumps(ctx.online))
            line = f"crossing after {format_update(record)}"
            ctx.log.write(line)
            if bar is not None:
                bar.message(line)  # above the progress line, which is redrawn below it

        online = OnlineCrossing(plan, runner.variables, on_update)
        if ctx.start:
            online.preload(ctx.store.dataset()["R"].values)
        subs.append(online)
    if ctx.progress:
        est = ctx.est
        bar = (SearchProgress if plan.search is not None else Progress)(
            plan.size,
            start=ctx.start,
            schedule=[t + ctx.t_offset for t in est.schedule] if est else None,
            schedule_end=(est.total + ctx.t_offset) if est else None,
            out=out,
            t_start=ctx.t_offset,
            label=f"run {ctx.run_id} ",
        )
        subs.insert(0, bar)
    runner.subscribers = subs
    for note in console.drain():  # the instruments' connection lines, library warnings
        ctx.log.write(note)
    ctx.log.write(
        f"run {ctx.run_id} {plan.procedure}: from point {ctx.start} of {plan.size}"
        + (f", estimated fridge time {format_duration(ctx.est.total)}" if ctx.est else "")
    )
    if ctx.est is not None:
        ctx.store.update_attrs(estimate=_estimate_attr(ctx.est, ctx.start, ctx.t_offset))
    if isinstance(runner.supervisor, Suspenders):
        for line in runner.supervisor.summary():
            ctx.log.write(f"watching: {line}")
    with catch_sigint(runner.stop):
        result = runner.run(start=ctx.start, t_offset=ctx.t_offset)
    if bar is not None:
        bar.finish()
    if ctx.est is None and ctx.sim and result.status == "completed":  # the twin's run: not run twice
        times = [t - ctx.t_offset for t in result.point_times]
        own = Estimate(dict(result.phases), times, plan.size - ctx.start, dict(result.floor))
        ctx.store.update_attrs(estimate=_estimate_attr(own, ctx.start, ctx.t_offset))
    if runner.station is not None and (plan.park or result.status != "completed"):
        fault = result.status != "completed"
        ctx.left = describe_parked(runner.station, fault, result.park_failures)
        ctx.log.write(f"instruments left: {ctx.left}")
    station = runner.station
    for r in getattr(station, "io_retries", []):
        ctx.log.write(
            f"retry {r.attempt} of {r.instrument}.{r.call} at t = {r.time:.1f} s after {r.error}"
            f" (waited {r.wait:g} s, {r.reconnect})"
        )
    for entry in result.interruptions:
        redo = f", redone from point {entry['redo_from']}" if "redo_from" in entry else ""
        ctx.log.write(
            f"suspended at point {entry['point']}: {entry['reason']} ({entry['policy']}):"
            f" {entry.get('outcome', '')}{redo}"
        )
    for T, waited, outcome in result.stabilization:
        ctx.log.write(f"temperature {T * 1e3:.4g} mK: {outcome} after {waited:.0f} s")
    ctx.log.write(efficiency_line(result.phases, result.floor).strip())
    for note in console.drain():
        ctx.log.write(note)
    return result


def _finish(
    store: RunStore,
    catalog: Catalog,
    run_id: str,
    result: RunResult,
    plan: Plan,
    log: RunLog,
    station: Station | None = None,
    lab: SimLab | None = None,
) -> tuple[str, str | None]:
    """Record how the run ended in the store's attributes, the end record, the catalog and the log, each
    on its own, so that one that cannot be written (a full disk) keeps none of the others from it. A
    store that cannot take its end ends the run ``aborted`` with the reason. The summary line, and what
    could not be recorded (None when everything was)."""
    try:
        attrs = store.attrs()
        retries = json.loads(attrs.get("io_retries", "[]")) + [
            dataclasses.asdict(r) for r in getattr(station, "io_retries", [])
        ]
        faults = json.loads(attrs.get("faults", "[]")) + (
            [e.to_dict() for e in lab.fault_log] if lab is not None else []
        )
        phases = json.loads(attrs.get("phases", "{}"))
        for k, v in result.phases.items():
            phases[k] = phases.get(k, 0.0) + v
        floor = json.loads(attrs.get("physics_floor", "{}"))
        for k, v in result.floor.items():
            floor[k] = floor.get(k, 0.0) + v
        stabilization = json.loads(attrs.get("stabilization", "[]")) + [
            {"T": T, "waited_s": round(w, 1), "outcome": o} for T, w, o in result.stabilization
        ]
        interruptions = json.loads(attrs.get("interruptions", "[]")) + result.interruptions
        if result.search is not None:
            store.update_attrs(search=_dumps(result.search))
        store.update_attrs(
            status=result.status,
            end_time=now_iso(),
            message=result.message or "",
            phases=_dumps(phases),
            physics_floor=_dumps(floor),
            stabilization=_dumps(stabilization),
            interruptions=_dumps(interruptions),
            park_failures=_dumps(result.park_failures),
            io_retries=_dumps(retries),
            faults=_dumps(faults),
        )
    except Exception as err:  # the store cannot say it ended: aborted, and resume finishes it
        if result.status != "aborted" or disk_full(err, store.path) is not None:
            result.status, result.message = "aborted", storage_reason(err, store.path)
    ended = now_iso()
    EndRecord(store.path).write(status=result.status, message=result.message, ended=ended)
    unrecorded = None
    try:
        done = int(store.measured().sum())
        catalog.update(run_id, status=result.status, ended=ended, done=done, message=result.message)
    except (CatalogError, OSError) as err:
        unrecorded = (
            f"the catalog could not record it ({storage_reason(err, catalog.path)});"
            " the next qbs-lab command brings it up to date"
        )
    log.write(
        f"run {run_id} {result.status} at point {result.done} of {plan.size}"
        + (f": {result.message}" if result.message else "")
        + (f"; could not park: {'; '.join(result.park_failures)}" if result.park_failures else "")
    )
    try:
        summary = _summary(store, plan)
    except (OSError, ValueError, RunStoreError) as err:
        summary = f"the store cannot be read back ({storage_reason(err, store.path)})"
    return summary, unrecorded


def _checks(proc: Procedure, store: RunStore, result: RunResult, log: RunLog) -> dict[str, Any] | None:
    """The procedure's verdict on a completed run, stored and logged; None without one."""
    if proc.analyze is None or result.status != "completed":
        return None
    with store.dataset() as ds:
        checks = proc.analyze(ds.load())
    with contextlib.suppress(OSError):  # a full disk: the verdict is still printed and logged
        store.update_attrs(checks=_dumps(checks))
    log.write(f"check: {checks.get('summary', '')}")
    return checks


def _summary(store: RunStore, plan: Plan) -> str:
    """One line: what was measured, over what ranges."""
    ds = store.dataset()
    parts = []
    if "R" in ds:
        R = ds["R"].values
        if np.isfinite(R).any():
            parts.append(f"R {np.nanmin(R):.4g} to {np.nanmax(R):.4g} Ohm")
    for a in plan.axes:
        parts.append(f"{a.name} {_span(a.name, a.values, a.units)}")
    for k, v in plan.fixed.items():
        parts.append(f"{k} = {_span(k, (v,), AXIS_KINDS[k][0])}")
    done = int(store.measured().sum())
    return f"{done}/{plan.size} points; " + ", ".join(parts)


def _span(name: str, values: Sequence[float], units: str) -> str:
    """``0.06 to 0.24 K``; RF power's off value as "off" (``off, -40 to -30 dBm``); no stray units."""
    off = name == "P_rf" and RF_OFF in values
    on = [v for v in values if not (name == "P_rf" and v == RF_OFF)]
    text = ""
    if on:
        lo, hi = min(on), max(on)
        text = (f"{lo:g} to {hi:g}" if lo != hi else f"{lo:g}") + (f" {units}" if units else "")
    return ", ".join(t for t in ("off" if off else "", text) if t)


def _truth(lab: SimLab, plan: Plan) -> dict[str, Any]:
    """The simulated sample's ground truth: at the plan's gate voltage if it is fixed, else the
    gate-tuned transition (V_gc, R_c_gate)."""
    V_g = plan.fixed.get("V_g")
    truth = lab.truth_at(float(V_g)) if V_g is not None else dict(lab.truth)
    if V_g is None:
        truth = {k: v for k, v in truth.items() if k not in ("B_c", "R_c", "V_g")}
    return {k: v for k, v in truth.items() if not (isinstance(v, float) and math.isnan(v))}
