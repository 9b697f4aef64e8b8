"""SIGKILL at many moments of a run loses no recorded point, and ``qbs-lab resume`` completes the grid.

One uninterrupted reference run of field_isotherms (3 isotherms x 9 fields, fixed seed) on the simulated
lab, then the same command killed at a dozen moments of its fridge time: while the gate ramps before the
first point, while the temperature stabilizes, in the middle of a reading, while the magnet steps,
while the lock-in settles, just before and just after a line completes, between two chunk files of one
write, and while parking after the last point. Each killed store must open with xarray, hold (with its
journal, :func:`live_dataset`) every point recorded before the kill bit for bit as the reference has
it (points are seconds apart at the fridge's pace: each is journaled when recorded) and nothing
recorded after the kill, and have no torn or unchecksummed chunk; the catalog must say ``crashed``.
``qbs-lab resume`` (a new process) then measures exactly the missing points onto the same grid. A
Ctrl-C (SIGINT) run is resumed too.

Each kill is sent by the run's process to itself at a moment of the run's virtual clock, so it lands at
a reproducible place of the run; the call stack at that moment is checked to be the intended phase.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from forkserver import ForkServer, Job
from numcodecs import CRC32C

from qbs_lab.store.catalog import Catalog, RunRecord
from qbs_lab.store.run_store import live_dataset

ROOT = Path(__file__).resolve().parent.parent
STATION = ROOT / "station.yaml"
SETTINGS = ["temperatures=0.06,0.12,0.24", "num=9"]
SEED = 2
SHAPE = (3, 9)
POINTS = SHAPE[0] * SHAPE[1]
RUN_ARGS = [
    "run",
    "field_isotherms",
    "--sim",
    "--station",
    str(STATION),
    "--seed",
    str(SEED),
    "--no-progress",
]
for _s in SETTINGS:
    RUN_ARGS += ["--set", _s]
TIMEOUT = 120

# A fork server: it imports qbs_lab once (1.3 s, most of a short run's cost), then for each job read
# from stdin forks a child that runs ``qbs_lab.cli.main(argv)`` (stdout, stderr to files) and reports
# the child's pid and exit code (-9 when killed by SIGKILL, as subprocess reports it). The child sends
# itself a signal at the job's ``spec``:
#   t=SECONDS              once the run's virtual time passes SECONDS, measured from the run's origin
#                          exactly as the stored t is; checked after every sleep of the lab's
#                          VirtualClock (the roles' waits and every instrument message's I/O tick);
#   replace=VAR;after=S    just before the store renames a chunk file of VAR into place, the first
#                          time after run time S (a kill between two chunk files of one write);
#   never                  no signal (the reference run, and the resumes).
# Before the signal it prints FIRED and where the run was (the call stack's qualified names), the run
# time and how many points had been recorded. With a log path the child writes every recorded point as
# [index, t, run time when the store's record call returned].
SERVER = """
import json, os, signal, sys, traceback
from pathlib import Path

from forkserver import serve
from qbs_lab import cli, clock, runner
from qbs_lab.store import run_store

job = {}
state = {}
log = []


def fire():
    state["fired"] = True
    names, f = [], sys._getframe()
    while f is not None:
        names.append(f.f_code.co_qualname)
        f = f.f_back
    t = state["clock"].now() - state["origin"]
    info = {"where": names[::-1], "t": t, "recorded": len(log)}
    print("FIRED " + json.dumps(info), file=sys.stderr, flush=True)
    os.kill(os.getpid(), getattr(signal, job["signal"]))


def run_time():
    return state["clock"].now() - state["origin"]


_run = runner.Runner.run


def run(self, start=0, t_offset=0.0):
    # estimate_plan's dry run on the simulated twin runs a Runner without a store, before the real
    # run; start_run and resume_run hand the real run's Runner its store before run(). So the first
    # Runner with a store is the real run: watch its clock (the lab's VirtualClock inside the
    # GuardedClock; the twin's clock is never watched) and count time from the run's own origin, as
    # the runner does for t (no clock moves between here and the runner taking its origin).
    if self.store is not None and "clock" not in state:
        state["clock"] = getattr(self.clock, "clock", self.clock)
        state["origin"] = self.clock.now() - t_offset
    return _run(self, start, t_offset)


_sleep = clock.VirtualClock.sleep


def sleep(self, seconds):
    _sleep(self, seconds)
    if job.get("kind") == "t" and self is state.get("clock") and not state.get("fired"):
        if run_time() >= job["at"]:
            fire()


_replace = os.replace


def replace(src, dst, *args, **kwargs):
    if job.get("kind") == "replace" and "clock" in state and not state.get("fired"):
        if Path(dst).parent.name == job["var"] and run_time() >= job["at"]:
            fire()
    return _replace(src, dst, *args, **kwargs)


_record = run_store.RunStore.record


def record(self, index, values):
    _record(self, index, values)
    log.append([[int(i) for i in index], float(values[-1]), run_time()])


runner.Runner.run = run
clock.VirtualClock.sleep = sleep
os.replace = replace
run_store.RunStore.record = record


def prepare(j):
    job.update(j)
    kind, _, arg = j["spec"].partition("=")
    job["kind"] = kind
    if kind == "t":
        job["at"] = float(arg)
    elif kind == "replace":
        var, _, after = arg.partition(";after=")
        job["var"], job["at"] = var, float(after)


serve(prepare, lambda: log)
"""


@dataclass
class Reference:
    """The uninterrupted run: its dataset, and per point in run order its index, t and record time."""

    ds: xr.Dataset
    index: list[tuple[int, int]]
    t: list[float]
    r: list[float]


@dataclass(frozen=True)
class Moment:
    name: str
    phase: str  # where the run was when the signal came (see _phase)
    at: Callable[[Reference], str]  # the kill's spec
    signal: str = "SIGKILL"
    fresh_resume: bool = False  # resume with `python -m qbs_lab.cli` in a new interpreter


def _t(f: Callable[[Reference], float]) -> Callable[[Reference], str]:
    return lambda ref: f"t={f(ref)!r}"


_WRAPPERS = {"sleep", "replace", "record", "fire"}  # the fork server's own functions


def _phase(where: list[str]) -> str:
    """What the run was doing, from the call stack (qualified names) when the signal was sent."""
    assert "Runner.run" in where, where
    below = [f for f in where[where.index("Runner.run") + 1 :] if f not in _WRAPPERS]
    rules = [
        ("park", lambda f: f == "park"),
        # the fixed setpoints (V_g for field_isotherms) go first, before the first point
        ("prepare", lambda f: f in ("Runner._prepare", "GateRole.ramp_to")),
        ("stabilize", lambda f: "TemperatureStabilizer" in f),
        ("write", lambda f: f.startswith("RunStore.")),
        ("field step", lambda f: f.startswith("MagnetRole.")),
        # reading the point, then the suspenders' look at the lab before it is stored
        ("read", lambda f: f in ("station_measurements.<locals>.read", "Suspenders.check")),
    ]
    for phase, rule in rules:
        if any(rule(f) for f in below):
            return phase
    if below == ["GuardedClock.sleep"]:  # the runner's own wait: the lock-in settling
        return "settle"
    return "other: " + " > ".join(below)


# Run order of the 3 x 9 grid (snake): line 0 is points 0-8, line 1 points 9-17 (B reversed), line 2
# 18-26. A field step is 1.5 mT at 2 mT/s (0.75 s) right after a point; the lock-in settles ~4 s before
# each point's t; the temperature stabilizes for minutes before each line.
MOMENTS = [
    Moment("gate-ramp-before-first-point", "prepare", _t(lambda ref: 5.0)),
    Moment("first-stabilization", "stabilize", _t(lambda ref: ref.t[0] / 2)),
    Moment("first-reading", "read", _t(lambda ref: (ref.t[0] + ref.r[0]) / 2)),
    Moment("field-step-in-line-0", "field step", _t(lambda ref: ref.r[2] + 0.3)),
    Moment("settling-in-line-0", "settle", _t(lambda ref: ref.t[5] - 1.0)),
    Moment("last-reading-of-line-0", "read", _t(lambda ref: ref.r[8] - 0.005)),
    Moment("right-after-line-0", "stabilize", _t(lambda ref: ref.r[8] + 1e-6), fresh_resume=True),
    # the grid is one chunk: it is written (folded from the journal) when the last point is recorded
    Moment("between-chunk-files-of-a-fold", "write", lambda ref: f"replace=T_mc;after={ref.r[11]!r}"),
    Moment("right-after-line-1", "stabilize", _t(lambda ref: ref.r[17] + 1e-6)),
    Moment("field-step-in-line-2", "field step", _t(lambda ref: ref.r[22] + 0.3)),
    Moment("settling-before-last-point", "settle", _t(lambda ref: ref.t[26] - 1.0)),
    Moment("parking-after-last-point", "park", _t(lambda ref: ref.r[26] + 1e-6)),
]
CTRL_C = Moment("ctrl-c-settling-in-line-1", "settle", _t(lambda ref: ref.t[12] - 1.0), "SIGINT", True)


@dataclass
class Outcome:
    spec: str
    kill: Job
    fired: dict[str, Any]
    record: RunRecord  # the catalog after the kill
    path: Path
    chunk_shape: tuple[int, ...]
    killed: dict[str, np.ndarray]  # every variable as stored after the kill
    killed_attrs: dict[str, Any]
    chunks: dict[str, int]  # chunk file (VAR/KEY) -> size in bytes, after the kill
    leftovers: list[str]  # temporary files left by the kill
    listing: Job  # `qbs-lab runs` after the kill
    resume: Job | subprocess.CompletedProcess[str]
    final: xr.Dataset
    final_record: RunRecord


def _fired(stderr: str) -> dict[str, Any]:
    lines = [line for line in stderr.splitlines() if line.startswith("FIRED ")]
    assert len(lines) == 1, stderr[-3000:]
    return json.loads(lines[0][len("FIRED ") :])


def _chunk_files(path: Path, variables: list[str]) -> tuple[dict[str, int], list[str]]:
    """The data variables' chunk files with their sizes, and any temporary file in the store."""
    chunks, leftovers = {}, []
    for var in sorted(p for p in path.iterdir() if p.is_dir()):
        for f in sorted(var.iterdir()):
            if f.name.endswith(".tmp"):
                leftovers.append(f"{var.name}/{f.name}")
            elif var.name in variables and re.fullmatch(r"\d+(\.\d+)*", f.name):
                chunks[f"{var.name}/{f.name}"] = f.stat().st_size
    return chunks, leftovers


def _kill_and_resume(server: ForkServer, base: Path, moment: Moment, ref: Reference) -> Outcome:
    data = base / "data"
    spec = moment.at(ref)
    kill = server.run([*RUN_ARGS, "--data", str(data)], base, spec, moment.signal)
    records = Catalog(data).runs()
    assert len(records) == 1, (kill.returncode, kill.stderr[-3000:])
    record = records[0]
    assert record.path is not None
    path = Path(record.path) if Path(record.path).is_absolute() else base / record.path
    with xr.open_zarr(path) as ds:  # the killed store opens as it is, with its folded chunks
        folded = {v: ds[v].values.copy() for v in ds.data_vars}
        killed_attrs = dict(ds.attrs)
    # a live view adds the journal's newest points; where xarray alone sees a point, it is the same
    live = live_dataset(path)
    killed = {v: live[v].values.copy() for v in live.data_vars}
    for v, values in folded.items():
        seen = np.isfinite(folded["t"])
        assert np.array_equal(values[seen], killed[v][seen]), v
    chunk_shape = tuple(json.loads((path / "t" / ".zarray").read_text())["chunks"])
    chunks, leftovers = _chunk_files(path, list(killed))
    listing = server.run(["runs", "--data", str(data)], base)
    resume_argv = ["resume", record.run_id, "--data", str(data), "--no-progress"]
    resume: Job | subprocess.CompletedProcess[str]
    if moment.fresh_resume:
        resume = subprocess.run(
            [sys.executable, "-m", "qbs_lab.cli", *resume_argv],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            cwd=base,
        )
    else:
        resume = server.run(resume_argv, base)
    with xr.open_zarr(path) as ds:
        final = ds.load()
    return Outcome(
        spec,
        kill,
        _fired(kill.stderr),
        record,
        path,
        chunk_shape,
        killed,
        killed_attrs,
        chunks,
        leftovers,
        listing,
        resume,
        final,
        Catalog(data).get(record.run_id),
    )


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[queue.Queue[ForkServer]]:
    script = tmp_path_factory.mktemp("server") / "fork_server.py"
    script.write_text(SERVER)
    pool: queue.Queue[ForkServer] = queue.Queue()
    started = [ForkServer(script, TIMEOUT) for _ in range(2)]
    for s in started:
        pool.put(s)
    yield pool
    for s in started:
        s.close()


@pytest.fixture(scope="module")
def reference(servers: queue.Queue[ForkServer], tmp_path_factory: pytest.TempPathFactory) -> Reference:
    base = tmp_path_factory.mktemp("reference")
    data, log = base / "data", base / "log.json"
    server = servers.get()
    try:
        job = server.run([*RUN_ARGS, "--data", str(data)], base, log=str(log))
    finally:
        servers.put(server)
    assert job.returncode == 0, job.stderr[-3000:]
    (record,) = Catalog(data).runs()
    assert record.state == "completed"
    assert record.path is not None
    with xr.open_zarr(record.path if Path(record.path).is_absolute() else base / record.path) as ds:
        ref_ds = ds.load()
    entries = json.loads(log.read_text())
    assert len(entries) == POINTS
    ref = Reference(ref_ds, [tuple(e[0]) for e in entries], [e[1] for e in entries], [e[2] for e in entries])
    # the log is in run order: lines 0, 1 (snake: B reversed), 2; t as stored; each point's record
    # returns after its t and before the next point's t
    assert ref.index[:9] == [(0, j) for j in range(9)]
    assert ref.index[9:18] == [(1, j) for j in reversed(range(9))]
    assert ref.index[18:] == [(2, j) for j in range(9)]
    assert np.array_equal(ref_ds["t"].values[tuple(np.array(ref.index).T)], ref.t)
    assert all(t < r for t, r in zip(ref.t, ref.r, strict=True))
    assert all(r < t for r, t in zip(ref.r, ref.t[1:], strict=False))
    assert all(np.isfinite(ref_ds[v].values).all() for v in ref_ds.data_vars)
    return ref


@pytest.fixture(scope="module")
def outcomes(
    servers: queue.Queue[ForkServer], reference: Reference, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[Outcome]]]:
    """Every kill and its resume, two at a time in the background; each test waits for its own."""

    def task(moment: Moment, base: Path) -> Outcome:
        server = servers.get()
        try:
            return _kill_and_resume(server, base, moment, reference)
        finally:
            servers.put(server)

    pool = ThreadPoolExecutor(max_workers=2)
    futures = {m.name: pool.submit(task, m, tmp_path_factory.mktemp(m.name)) for m in [*MOMENTS, CTRL_C]}
    yield futures
    for f in futures.values():
        f.cancel()
    pool.shutdown(wait=True)


def _run_order_mask(ref: Reference, m: int) -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    for idx in ref.index[:m]:
        mask[idx] = True
    return mask


def _check_killed_store(o: Outcome, ref: Reference, replace_kill: bool) -> int:
    """No torn chunk, no recorded point lost (at the fridge's pace every point is in the journal once
    recorded), nothing recorded after the kill, and what is stored is the reference bit for bit.
    Returns how many points are stored (a prefix of the run order)."""
    # every chunk file on disk is whole: a chunk's worth of float64 and its CRC32C, which matches
    k = o.chunk_shape[0]
    assert all(size == 8 * k * SHAPE[1] + 4 for size in o.chunks.values()), (o.chunk_shape, o.chunks)
    for name in o.chunks:
        assert np.frombuffer(CRC32C().decode((o.path / name).read_bytes()), "<f8").size == k * SHAPE[1]
    # a temporary file is left only by a kill between writing a chunk file and renaming it into place
    if replace_kill:
        assert len(o.leftovers) == 1 and o.leftovers[0].startswith("T_mc/"), o.leftovers
    else:
        assert o.leftovers == []

    t = o.killed["t"]
    measured = np.isfinite(t)
    m = int(measured.sum())
    # the points stored: at least every line completed before the kill, at most every point recorded
    # before it (the one being written when a replace kill came is not: t, its marker, is written last)
    recorded = o.fired["recorded"]
    assert m == recorded, (m, recorded)
    assert np.array_equal(measured, _run_order_mask(ref, m)), "the stored points are not a run-order prefix"
    for v, values in o.killed.items():
        assert np.array_equal(values[measured], ref.ds[v].values[measured]), v
        unmeasured = values[~measured]
        if replace_kill:
            # the variables whose chunk was renamed before the kill may hold the point being written,
            # never anything else; t (written last) says it is not stored, so it is measured again
            ok = np.isnan(unmeasured) | (unmeasured == ref.ds[v].values[~measured])
            assert ok.all(), v
        else:
            assert np.isnan(unmeasured).all(), v
    return m


def _check_resumed(o: Outcome, ref: Reference, m: int) -> None:
    """The resumed run: exit 0, every point, same grid and labels, the first m points untouched, the
    rest measured once each, after the kill, and matching the reference within the noise."""
    assert o.resume.returncode == 0, o.resume.stderr[-3000:]
    assert "Traceback" not in o.resume.stderr
    assert f"run {o.record.run_id} completed: " in o.resume.stdout
    assert f"{POINTS}/{POINTS} points" in o.resume.stdout
    final, rds = o.final, ref.ds
    assert dict(final.sizes) == dict(rds.sizes)
    assert set(final.data_vars) == set(rds.data_vars)
    assert set(final.coords) == set(rds.coords) == {"T", "B", "V_g"}
    for name in final.coords:
        assert np.array_equal(final[name].values, rds[name].values), name
        assert final[name].attrs == rds[name].attrs, name
    for v in final.data_vars:
        assert final[v].dims == rds[v].dims
        assert final[v].attrs == rds[v].attrs, v
        assert np.isfinite(final[v].values).all(), f"{v} has unmeasured points after the resume"
    assert final.attrs["status"] == "completed"
    assert final.attrs["run_id"] == o.record.run_id
    for key in ("procedure", "parameters", "sample", "truth", "sim", "simulated"):
        assert final.attrs[key] == rds.attrs[key], key
    resumed = json.loads(final.attrs["resumed"])
    assert len(resumed) == 1 and resumed[0]["from_point"] == m
    assert o.final_record.state == "completed"
    assert o.final_record.done == POINTS

    before = _run_order_mask(ref, m)
    for v in final.data_vars:  # what was stored before the kill is kept bit for bit
        assert np.array_equal(final[v].values[before], rds[v].values[before]), v
    t = final["t"].values
    t_order = np.array([t[idx] for idx in ref.index])
    assert np.all(np.diff(t_order) > 0), "t must increase along the run order: each point measured once"
    t_kill = float(np.max(t[before])) if m else 0.0
    after = ~before
    assert int((t > t_kill).sum()) == POINTS - m == int(after.sum())

    # After the resume the simulated fridge starts again from base and re-stabilizes, and the noise
    # continues from another state: the resumed points agree with the reference within the noise.
    # One reading's noise is read off the quadrature Y, which carries only noise for this resistive
    # sample: sigma_R = std(Y / I) (~5 Ohm); a difference of two readings has sqrt(2) sigma_R: 6 of
    # those. On top, 1 % of R for the sample temperature: the stabilizer holds it within a few 0.1 % of
    # the setpoint (T_sample is checked below), and |dlnR/dlnT| < 2 on this grid, so R moves < 1 %.
    sigma_R = float(np.std(rds["Y"].values / rds["I"].values))
    R_new, R_ref = final["R"].values[after], rds["R"].values[after]
    tol = 6 * np.sqrt(2) * sigma_R + 0.01 * np.abs(R_ref)
    assert np.all(np.abs(R_new - R_ref) <= tol), np.max(np.abs(R_new - R_ref) / tol)
    T_set = np.broadcast_to(final["T"].values[:, None], SHAPE)[after]
    assert np.all(np.abs(final["T_sample"].values[after] / T_set - 1) <= 0.02)  # the stabilizer's band
    assert np.all(np.abs(final["T_mc"].values[after] / rds["T_mc"].values[after] - 1) <= 0.02)
    assert np.allclose(final["B_meas"].values[after], rds["B_meas"].values[after], rtol=0, atol=1e-6)
    assert np.allclose(final["V_g_meas"].values[after], rds["V_g_meas"].values[after], rtol=0, atol=1e-3)
    assert np.allclose(final["I"].values[after], rds["I"].values[after], rtol=1e-3)


@pytest.mark.parametrize("moment", MOMENTS, ids=[m.name for m in MOMENTS])
def test_sigkill_loses_no_completed_line_and_resume_completes_the_grid(
    moment: Moment, reference: Reference, outcomes: dict[str, Future[Outcome]]
) -> None:
    ref = reference
    o = outcomes[moment.name].result(timeout=600)
    assert o.kill.returncode == -9, o.kill.stderr[-3000:]

    # the kill landed where it was meant to, and (a time kill) after exactly the points recorded
    # before that moment in the reference run: the killed run was the reference up to the kill
    assert _phase(o.fired["where"]) == moment.phase, o.fired["where"]
    replace_kill = o.spec.startswith("replace=")
    if not replace_kill:
        at = float(o.spec.removeprefix("t="))
        assert o.fired["recorded"] == sum(r < at for r in ref.r)

    # the catalog: still 'running' for a process that is gone, which reads as crashed
    assert o.record.status == "running"
    assert o.record.pid == o.kill.pid
    assert o.record.state == "crashed"
    assert o.record.points == POINTS
    assert o.killed_attrs["status"] == "running"

    m = _check_killed_store(o, ref, replace_kill)
    if moment.phase == "park":
        assert m == POINTS

    _check_resumed(o, ref, m)
    if m == POINTS:  # killed while parking: resume has nothing to measure, and the data stay identical
        for v in ref.ds.data_vars:
            assert np.array_equal(o.final[v].values, ref.ds[v].values), v


def test_ctrl_c_keeps_every_measured_point_and_resume_completes_the_grid(
    reference: Reference, outcomes: dict[str, Future[Outcome]]
) -> None:
    ref = reference
    o = outcomes[CTRL_C.name].result(timeout=600)
    assert o.kill.returncode == 130, o.kill.stderr[-3000:]
    assert "Traceback" not in o.kill.stderr
    assert f"qbs-lab resume {o.record.run_id}" in o.kill.stderr
    assert _phase(o.fired["where"]) == CTRL_C.phase, o.fired["where"]
    assert o.fired["recorded"] == 12
    assert o.record.state == "interrupted"
    assert o.killed_attrs["status"] == "interrupted"
    assert json.loads(o.killed_attrs["park_failures"]) == []
    # every point recorded before the Ctrl-C is kept (a partial line too: it is written on the way
    # out), and at most the point being measured when it came, which the runner finishes first
    t = o.killed["t"]
    measured = np.isfinite(t)
    m = int(measured.sum())
    assert 12 <= m <= 13
    assert np.array_equal(measured, _run_order_mask(ref, m))
    for v, values in o.killed.items():
        assert np.array_equal(values[measured], ref.ds[v].values[measured]), v
        assert np.isnan(values[~measured]).all(), v
    _check_resumed(o, ref, m)


def test_runs_lists_a_killed_run_as_crashed_with_the_points_it_stored(
    outcomes: dict[str, Future[Outcome]],
) -> None:
    """`qbs-lab runs` right after each kill: the run is crashed, with as many points as its store holds
    (what `resume` will start from), not the count the catalog last heard of."""
    rows = {}
    for moment in MOMENTS:
        o = outcomes[moment.name].result(timeout=600)
        assert o.listing.returncode == 0, o.listing.stderr
        (row,) = [
            line.split() for line in o.listing.stdout.splitlines() if line.split()[:1] == [o.record.run_id]
        ]
        stored = int(np.isfinite(o.killed["t"]).sum())
        rows[moment.name] = (row[1:4], ["field_isotherms", "crashed", f"{stored}/{POINTS}"])
    wrong = {name: got for name, (got, expected) in rows.items() if got != expected}
    assert not wrong, {name: (got, rows[name][1]) for name, got in wrong.items()}
