"""Running procedures from Python: scripts and notebooks, on the same code path as ``qbs-lab``.

>>> import qbs_lab                                                                   # doctest: +SKIP
>>> run = qbs_lab.run("field_isotherms", sim=True, V_g=15, temperatures=[0.06, 0.12, 0.24])  # doctest: +SKIP
>>> run.id, run.status, run.path                                                     # doctest: +SKIP
>>> run.dataset["R"].sel(T=0.12)                                                     # doctest: +SKIP

:func:`run` takes a built-in procedure's name, the path of a user's procedure file, a loaded
:class:`~qbs_lab.procedure.Procedure` or a :class:`~qbs_lab.plan.Plan`; parameters are keywords
(lists become tuples) or the command line's ``settings=["num=5"]``. It checks the station's limits,
times the plan on the simulated twin, runs into a new store with the catalog, the run log and the online
analysis, exactly as ``qbs-lab run`` does (the command calls these functions). :func:`estimate`,
:func:`resume`, :func:`open_run` and :func:`list_runs` are ``qbs-lab estimate``, ``resume``, and the
catalog. Errors a user can make raise :class:`~qbs_lab.procedure.ProcedureError`,
:class:`~qbs_lab.runs.PlanError`, :class:`~qbs_lab.station.StationError` and the like with a one-line
message; a Ctrl-C parks the instruments and returns the run with status ``interrupted``.

Progress: in a Jupyter notebook a tqdm bar (with ipywidgets), elsewhere the progress line on stderr.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qbs_lab.console import quiet
from qbs_lab.plan import Plan
from qbs_lab.procedure import (
    Procedure,
    ProcedureError,
    load_procedure,
    parameters_from_dict,
    parse_settings,
)

if TYPE_CHECKING:
    import xarray as xr

    from qbs_lab.runs import Estimate, RunOutcome
    from qbs_lab.sim.faults import FaultSchedule
    from qbs_lab.store.catalog import RunRecord

__all__ = [
    "PLAN_SOURCE",
    "Run",
    "RunEstimate",
    "estimate",
    "lab_options",
    "list_runs",
    "open_run",
    "resume",
    "run",
    "runs",
]

#: the catalog's ``source`` of a run made from a Plan object (it cannot be loaded again by name)
PLAN_SOURCE = "<plan>"


@dataclass(frozen=True)
class _NoParameters:
    """A Plan object run from Python has its parameters already applied."""


@dataclass
class Run:
    """A run in the catalog: its id, status, store path, and (from :func:`run`/:func:`resume` in this
    process) the outcome with the summary, estimate, online crossing updates and checks."""

    id: str
    procedure: str
    status: str
    path: Path | None
    points: int
    done: int
    created: str
    sim: bool
    scenario: str | None
    seed: int | None
    parameters: dict[str, Any]
    message: str | None
    data_dir: Path
    outcome: RunOutcome | None = None

    @classmethod
    def _from_record(cls, record: RunRecord, data_dir: Path, outcome: RunOutcome | None = None) -> Run:
        return cls(
            record.run_id,
            record.procedure,
            record.state,
            Path(record.path) if record.path else None,
            record.points,
            record.done,
            record.created,
            record.sim,
            record.scenario,
            record.seed,
            record.parameters,
            record.message,
            data_dir,
            outcome,
        )

    @property
    def dataset(self) -> xr.Dataset:
        """The run's dataset, loaded into memory (NaN where not measured yet)."""
        import xarray as xr

        if self.path is None or not self.path.exists():
            raise ProcedureError(f"run {self.id}: its store {self.path} is missing")
        with xr.open_zarr(self.path) as ds:
            return ds.load()

    @property
    def summary(self) -> str:
        return self.outcome.summary if self.outcome is not None else ""

    @property
    def left(self) -> str:
        """Where the instruments were left when this process's run or resume ended ("gate 0 V, ...")."""
        return self.outcome.left if self.outcome is not None else ""

    @property
    def fridge_time(self) -> float:
        """Fridge time of the whole run so far [s] (every segment, parking included)."""
        from qbs_lab.store.run_store import RunStore

        if self.path is None or not self.path.exists():
            return 0.0
        return float(sum(json.loads(RunStore.open(self.path).attrs().get("phases", "{}")).values()))

    def resume(self, **options: Any) -> Run:
        """Continue this run (see :func:`resume`)."""
        return resume(self.id, data=self.data_dir, **options)

    def __repr__(self) -> str:
        lab = f"sim ({self.scenario}, seed {self.seed})" if self.sim else "fridge"
        return (
            f"<Run {self.id} {self.procedure} {self.status} {self.done}/{self.points} points, {lab}:"
            f" {self.path}>"
        )


@dataclass
class RunEstimate:
    """A plan checked against the station's limits and timed on its simulated twin."""

    plan: Plan
    estimate: Estimate

    @property
    def total(self) -> float:
        """Fridge time [s], parking included."""
        return self.estimate.total

    @property
    def phases(self) -> dict[str, float]:
        return dict(self.estimate.phases)

    @property
    def points(self) -> int:
        return self.estimate.points

    def __str__(self) -> str:
        from qbs_lab.runs import format_estimate

        return format_estimate(self.estimate, self.plan)


ProcedureLike = str | Path | Procedure | Plan


def _procedure(procedure: ProcedureLike) -> Procedure:
    if isinstance(procedure, Procedure):
        return procedure
    if isinstance(procedure, Plan):
        plan = procedure
        return Procedure(
            plan.procedure, _NoParameters, lambda _p: plan, PLAN_SOURCE, f"the Plan {plan.procedure!r}"
        )
    if isinstance(procedure, Path):
        return load_procedure(str(procedure))
    if isinstance(procedure, str):
        return load_procedure(procedure)
    raise ProcedureError(
        f"a procedure is a built-in name, a .py file, a Procedure or a Plan, not {type(procedure).__name__}"
    )


def _parameters(proc: Procedure, settings: Sequence[str], values: dict[str, Any]) -> Any:
    """The procedure's Parameters: command-line ``key=value`` settings, then keyword values."""
    if not values:
        return parse_settings(proc, settings)
    known = {f.name for f in dataclasses.fields(proc.parameters)}
    unknown = [k for k in values if k not in known]
    if unknown:
        has = ", ".join(sorted(known)) or "none (a Plan object)"
        raise ProcedureError(f"procedure {proc.name} has no parameter {unknown[0]!r}; it has {has}")
    base = dataclasses.asdict(parse_settings(proc, settings))
    return parameters_from_dict(proc, {**base, **values})


def lab_options(
    station: str | Path,
    sim: bool,
    scenario: str | None,
    seed: int,
    data: str | Path,
    faults: str | Path | FaultSchedule | None,
) -> Any:
    """The run's LabOptions; misuse (--scenario or --faults without --sim) raises PlanError."""
    from qbs_lab.runs import LabOptions, PlanError

    if not sim:
        if scenario is not None:
            raise PlanError(["--scenario chooses the simulated sample: add --sim"])
        if faults is not None:
            raise PlanError(["--faults injects faults into the simulated lab: add --sim"])
    if isinstance(faults, str | Path):  # every problem of the schedule now, before anything runs
        from qbs_lab.sim.faults import FaultSchedule

        faults = FaultSchedule.from_yaml(faults)
    return LabOptions(Path(station), sim, scenario, seed, Path(data), faults)


def _in_notebook() -> bool:
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return type(shell).__name__ == "ZMQInteractiveShell"


class _NotebookBar:
    """A subscriber drawing tqdm's notebook bar (the progress line's counterpart in Jupyter)."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def __call__(self, k: int, index: tuple[int, ...], values: Sequence[float]) -> None:
        self.bar.n = k + 1  # absolute: a resumed run starts part-way
        self.bar.set_postfix_str(f"fridge time {values[-1]:.0f} s", refresh=False)
        self.bar.refresh()


def _progress(progress: bool | str, total: int, label: str) -> tuple[bool, list[Callable[..., None]], Any]:
    """(draw the progress line?, extra subscribers, a bar to close): a notebook bar where there is one."""
    if not progress:
        return False, [], None
    if progress == "line" or not _in_notebook():
        return True, [], None
    try:
        from tqdm.notebook import tqdm

        bar = tqdm(total=total, desc=label, unit="point")
    except Exception:  # no tqdm or no ipywidgets: the line (every 10 % off a terminal)
        return True, [], None
    return False, [_NotebookBar(bar)], bar


def _outcome_run(outcome: RunOutcome, data: Path) -> Run:
    from qbs_lab.store.catalog import Catalog

    return Run._from_record(Catalog(data).get(outcome.run_id), data, outcome)


def run(
    procedure: ProcedureLike,
    *,
    sim: bool = False,
    scenario: str | None = None,
    seed: int = 0,
    station: str | Path = "station.yaml",
    data: str | Path = "data",
    faults: str | Path | FaultSchedule | None = None,
    settings: Sequence[str] = (),
    progress: bool | str = True,
    on_created: Callable[[str], None] | None = None,
    **parameters: Any,
) -> Run:
    """Run a procedure into a new dataset and return the run (``.dataset`` holds the data).

    ``sim``: on the simulated lab (``scenario``, ``seed``; ``faults``: a fault schedule to inject);
    otherwise on the station's instruments. ``progress``: True (a notebook bar or the line), "line",
    or False.
    """
    from qbs_lab.runs import start_run

    proc = _procedure(procedure)
    params = _parameters(proc, settings, parameters)
    opts = lab_options(station, sim, scenario, seed, data, faults)
    line, subscribers, bar = _progress(progress, proc.plan(params).size, proc.name)
    try:
        with quiet():
            outcome = start_run(
                proc, params, opts, progress=line, subscribers=subscribers, on_created=on_created
            )
    finally:
        if bar is not None:
            bar.close()
    return _outcome_run(outcome, opts.data_dir)


def estimate(
    procedure: ProcedureLike,
    *,
    sim: bool = True,
    scenario: str | None = None,
    seed: int = 0,
    station: str | Path = "station.yaml",
    settings: Sequence[str] = (),
    start: int = 0,
    **parameters: Any,
) -> RunEstimate:
    """Check every setpoint against the station's limits and time the plan on the simulated twin
    (no instrument is touched, with or without ``sim``)."""
    from qbs_lab.runs import PlanError, estimate_plan
    from qbs_lab.station import load_station

    if scenario is not None and not sim:
        raise PlanError(["--scenario chooses the simulated sample: add --sim"])
    proc = _procedure(procedure)
    plan = proc.plan(_parameters(proc, settings, parameters))
    with quiet():
        est = estimate_plan(plan, load_station(station), seed=seed, scenario=scenario, start=start)
    return RunEstimate(plan, est)


def resume(
    run_id: str | int,
    *,
    data: str | Path = "data",
    sim: bool | None = None,
    scenario: str | None = None,
    seed: int | None = None,
    station: str | Path | None = None,
    faults: str | Path | FaultSchedule | None = None,
    plan: Plan | None = None,
    progress: bool | str = True,
) -> Run:
    """Continue an interrupted, aborted or killed run from its first unmeasured point.

    On the station and lab the catalog recorded, unless told otherwise (``sim``, ``scenario``,
    ``seed``, ``station``). A run made from a Plan object needs that ``plan`` again.
    """
    from qbs_lab.runs import LabOptions, PlanError, resume_run
    from qbs_lab.store.catalog import Catalog

    run_id = str(run_id)
    data = Path(data)
    record = Catalog(data).get(run_id)
    use_sim = record.sim if sim is None else sim
    if not use_sim and (scenario is not None or faults is not None):
        flag = "--scenario chooses the simulated sample" if scenario else "--faults injects faults"
        raise PlanError([f"{flag}: run {run_id} ran on the instruments; add --sim"])
    proc = None
    if plan is not None:
        proc = _procedure(plan)
    elif record.source == PLAN_SOURCE:
        raise ProcedureError(
            f"run {run_id} ran a Plan object from Python: resume it there with qbs_lab.resume({run_id},"
            " plan=...)"
        )
    opts = LabOptions(data_dir=data)
    if faults is not None:
        opts = lab_options(station or record.station, True, None, 0, data, faults)
    line, subscribers, bar = _progress(progress, record.points, record.procedure)
    try:
        with quiet():
            outcome = resume_run(
                run_id,
                opts,
                progress=line,
                subscribers=subscribers,
                sim=sim,
                scenario=scenario,
                seed=seed,
                station=Path(station) if station is not None else None,
                procedure=proc,
            )
    finally:
        if bar is not None:
            bar.close()
    return _outcome_run(outcome, data)


def open_run(run_id: str | int, *, data: str | Path = "data") -> Run:
    """A run from the catalog by id (its ``.dataset`` opens the store)."""
    from qbs_lab.store.catalog import Catalog

    return Run._from_record(Catalog(data).get(str(run_id)), Path(data))


def list_runs(
    *,
    data: str | Path = "data",
    procedure: str | None = None,
    status: str | None = None,
    sim: bool | None = None,
    limit: int | None = None,
) -> list[Run]:
    """The catalog's runs, newest first, optionally only one procedure's, one status's (completed,
    running, interrupted, aborted, crashed) or the simulated (``sim=True``) or real ones."""
    from qbs_lab.store.catalog import Catalog

    out = []
    for record in Catalog(data).runs():
        if procedure is not None and record.procedure != procedure:
            continue
        if status is not None and record.state != status:
            continue
        if sim is not None and record.sim != sim:
            continue
        out.append(Run._from_record(record, Path(data)))
        if limit is not None and len(out) >= limit:
            break
    return out


#: ``from qbs_lab.api import runs`` (at the top level it is ``qbs_lab.list_runs``: ``qbs_lab.runs`` is
#: the module that runs them)
runs = list_runs
