"""qbs-lab run, estimate, runs, export, resume and procedures, through ``qbs_lab.cli.main``.

A small field_isotherms run (2 isotherms x 5 fields) on the simulated lab is made once and looked at
from every command: the run's report, the catalog, the netCDF export, and ``estimate`` against the
fridge time the run took. A user's own procedure file runs by path and resumes by run id after a
Ctrl-C. User mistakes end in one line and exit 2. The README's main command runs as a user types it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

from qbs_lab import clock, runner
from qbs_lab.cli import main
from qbs_lab.procedure import load_procedure
from qbs_lab.store.catalog import Catalog

ROOT = Path(__file__).resolve().parent.parent
STATION = ROOT / "station.yaml"
SMALL = ["--set", "num=5", "--set", "temperatures=0.06,0.24"]
PHASE_NAMES = ("ramps", "temperature stabilization", "lock-in settling", "measuring", "parking")
BUILTIN = (
    "field_isotherms",
    "field_sweep",
    "gate_isotherms",
    "gate_sweep",
    "phase_diagram",
    "temperature_sweep",
)


@dataclass
class Ran:
    code: int
    out: str
    err: str


def cli(*argv: str) -> Ran:
    """``qbs-lab ARGV`` in this process, its stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return Ran(code, out.getvalue(), err.getvalue())


def seconds(hms: str) -> int:
    """h:mm:ss as qbs-lab prints durations, in seconds."""
    h, m, s = (int(x) for x in hms.split(":"))
    return 3600 * h + 60 * m + s


@dataclass
class SmallRun:
    ran: Ran
    data: Path
    run_id: str
    path: Path
    ds: xr.Dataset


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> SmallRun:
    data = tmp_path_factory.mktemp("cli_run") / "data"
    ran = cli(
        "run",
        "field_isotherms",
        "--sim",
        "--station",
        str(STATION),
        "--data",
        str(data),
        "--no-progress",
        *SMALL,
    )
    assert ran.code == 0, ran.err
    match = re.search(r"^run (\d+) completed: (\S+)$", ran.out, re.M)
    assert match, ran.out
    path = Path(match[2])
    with xr.open_zarr(path) as ds:
        loaded = ds.load()
    return SmallRun(ran, data, match[1], path, loaded)


# -- run, runs, export, estimate ---------------------------------------------------------------------
def test_run_prints_where_the_dataset_is_and_a_summary(small_run: SmallRun) -> None:
    ran, ds = small_run.ran, small_run.ds
    assert "Traceback" not in ran.err
    # where: data/<date>/<id>-field_isotherms.zarr, the catalog's path, a store xarray opens
    assert (
        small_run.path
        == small_run.data / date.today().isoformat() / f"{small_run.run_id}-field_isotherms.zarr"
    )
    assert small_run.path.is_dir()
    assert Catalog(small_run.data).get(small_run.run_id).path == str(small_run.path)
    assert dict(ds.sizes) == {"T": 2, "B": 5}
    assert np.isfinite(ds["R"].values).all()
    assert ds.attrs["status"] == "completed"
    # the summary: points, ranges, the fixed gate voltage
    summary = re.search(r"^\s+(\d+)/(\d+) points; (.*)$", ran.out, re.M)
    assert summary, ran.out
    assert (summary[1], summary[2]) == ("10", "10")
    R = ds["R"].values
    assert f"R {R.min():.4g} to {R.max():.4g} Ohm" in summary[3]
    for part in ("T 0.06 to 0.24 K", "B 0.006 to 0.018 T", "V_g = 15 V"):
        assert part in summary[3]
    # the fridge time the run took (as the dataset records it per phase): on the simulated lab the run
    # is itself the twin's estimate (the plan is not dry-run first); the physics floor beside it
    fridge = re.search(r"fridge time (\d+:\d\d:\d\d), wall time ([\d.]+) s", ran.out)
    assert fridge, ran.out
    phases = json.loads(ds.attrs["phases"])
    assert set(phases) == {"ramp", "stabilize", "settle", "measure", "suspended", "park"}
    assert abs(seconds(fridge[1]) - sum(phases.values())) <= 1
    assert 0 < float(fridge[2]) < 60
    floor = json.loads(ds.attrs["physics_floor"])
    efficiency = re.search(r"plan efficiency ([\d.]+): physics floor (\d+:\d\d:\d\d)", ran.out)
    assert efficiency, ran.out
    assert abs(seconds(efficiency[2]) - sum(floor.values())) <= 1
    assert float(efficiency[1]) == pytest.approx(sum(floor.values()) / sum(phases.values()), abs=1e-3)
    assert all(floor[p] <= phases[p] + 1e-6 for p in floor), (floor, phases)  # never above what it took
    assert float(efficiency[1]) >= 0.95
    # the simulated sample's truth, as the dataset records it
    truth = re.search(r"simulated sample's truth: B_c = ([\d.]+) mT, R_c = (\d+) Ohm", ran.out)
    assert truth, ran.out
    recorded = json.loads(ds.attrs["truth"])
    assert truth[1] == f"{recorded['B_c'] * 1e3:.3f}"
    assert truth[2] == f"{recorded['R_c']:.0f}"
    assert 11.0 < float(truth[1]) < 12.5  # the clean scenario's B_c at V_g = 15 V (11.703 mT)


def test_runs_lists_the_run_as_completed_with_every_point(small_run: SmallRun) -> None:
    ran = cli("runs", "--data", str(small_run.data))
    assert ran.code == 0
    rows = [line.split() for line in ran.out.splitlines() if line.split()[:1] == [small_run.run_id]]
    assert len(rows) == 1, ran.out
    row = rows[0]
    assert row[1:4] == ["field_isotherms", "completed", "10/10"]
    assert "sim" in row and "seed" in " ".join(row)


def test_export_writes_a_netcdf_file_with_the_same_data(small_run: SmallRun, tmp_path: Path) -> None:
    ran = cli("export", small_run.run_id, "--netcdf", "--data", str(small_run.data))
    assert ran.code == 0, ran.err
    nc = small_run.path.with_suffix(".nc")
    assert ran.out.strip() == f"run {small_run.run_id}: {nc}"
    with xr.open_dataset(nc) as exported:
        ds = small_run.ds
        assert dict(exported.sizes) == dict(ds.sizes)
        for v in ds.data_vars:
            assert np.array_equal(exported[v].values, ds[v].values), v
            assert exported[v].attrs["units"] == ds[v].attrs["units"], v
        for c in ("T", "B", "V_g"):
            assert np.array_equal(exported[c].values, ds[c].values)
            assert exported[c].attrs["units"] == ds[c].attrs["units"]
        assert exported.attrs["status"] == "completed"
        assert exported.attrs["run_id"] == small_run.run_id
    # -o puts it elsewhere
    target = tmp_path / "copy.nc"
    ran = cli("export", small_run.run_id, "--netcdf", "--data", str(small_run.data), "-o", str(target))
    assert ran.code == 0 and target.is_file()
    with xr.open_dataset(target) as exported:
        assert np.array_equal(exported["R"].values, small_run.ds["R"].values)


def test_estimate_splits_the_time_by_phase_within_5_percent_of_the_run(small_run: SmallRun) -> None:
    ran = cli("estimate", "field_isotherms", "--station", str(STATION), *SMALL)
    assert ran.code == 0, ran.err
    assert "field_isotherms: 10 points on T[2] x B[5]" in ran.out
    assert "every setpoint is within the station's limits" in ran.out
    total = re.search(r"estimated fridge time (\d+:\d\d:\d\d)", ran.out)
    assert total, ran.out
    split: dict[str, tuple[int, float]] = {}
    for name in PHASE_NAMES:
        line = re.search(rf"^\s+{name}\s+(\d+:\d\d:\d\d)\s+([\d.]+) %$", ran.out, re.M)
        assert line, (name, ran.out)
        split[name] = (seconds(line[1]), float(line[2]))
    assert all(s > 0 for s, _ in split.values()), split  # every phase takes time in this plan
    # the parts add up to the total (each rounded to a second), the shares to 100 %
    assert abs(sum(s for s, _ in split.values()) - seconds(total[1])) <= len(PHASE_NAMES)
    assert sum(p for _, p in split.values()) == pytest.approx(100.0, abs=0.3)
    # stabilizing two temperatures dominates, as it does at the fridge
    assert max(split, key=lambda k: split[k][0]) == "temperature stabilization"
    # within 5 % of the fridge time the run actually took
    took = sum(json.loads(small_run.ds.attrs["phases"]).values())
    assert abs(seconds(total[1]) - took) <= 0.05 * took, (seconds(total[1]), took)


# -- procedures --------------------------------------------------------------------------------------
def test_procedures_lists_the_six_built_in_procedures() -> None:
    ran = cli("procedures")
    assert ran.code == 0, ran.err
    listed = {line.split()[0]: line for line in ran.out.splitlines() if line.strip()}
    assert set(BUILTIN) <= set(listed), ran.out
    for name in BUILTIN:  # each with its one-line description
        doc = load_procedure(name).doc.splitlines()[0]
        assert doc in listed[name]


def test_procedures_name_lists_the_parameters_with_defaults_and_units() -> None:
    ran = cli("procedures", "field_isotherms")
    assert ran.code == 0, ran.err
    lines = ran.out.splitlines()
    proc = load_procedure("field_isotherms")
    for f in dataclasses.fields(proc.parameters):
        found = [line for line in lines if re.match(rf"\s*{f.name}\b", line)]
        assert len(found) == 1, (f.name, ran.out)
        line = found[0]
        units = f.metadata.get("units")
        if units:
            assert re.search(rf"(?<![\w/]){re.escape(units)}(?![\w/])", line), (f.name, units, line)
        default = f.default
        if isinstance(default, tuple):
            assert all(f"{v:g}" in line for v in default), line
        elif isinstance(default, bool):
            assert str(default).lower() in line.lower(), line
        elif isinstance(default, int | float):
            assert f"{default:g}" in line, line
        assert f.metadata.get("help", "") in line


# -- a user's own procedure, run by path and resumed by id ------------------------------------------
MY_PROC = '''"""My gate sweep: R(V_g) at zero field."""

from dataclasses import dataclass

from qbs_lab.plan import Axis, Plan, linspace
from qbs_lab.procedure import param


@dataclass(frozen=True)
class Parameters:
    V_start: float = param(2.0, "V", "first gate voltage")
    V_stop: float = param(6.0, "V", "last gate voltage")
    num: int = param(9, "", "gate voltages")


def plan(p: Parameters) -> Plan:
    return Plan("my_sweep", axes=(Axis("V_g", linspace(p.V_start, p.V_stop, p.num)),), fixed={"B": 0.0})
'''


@contextmanager
def ctrl_c_at(run_seconds: float, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A Ctrl-C (a real SIGINT to this process) once the run's virtual time passes ``run_seconds``.

    Armed by the first Runner with a store (the real run: the estimate's dry run on the twin has none,
    and the runner is then inside the CLI's Ctrl-C handler), on that run's own clock."""
    state: dict[str, Any] = {}
    real_run, real_sleep = runner.Runner.run, clock.VirtualClock.sleep

    def run(self: runner.Runner, start: int = 0, t_offset: float = 0.0) -> runner.RunResult:
        if self.store is not None and "clock" not in state:
            state["clock"] = getattr(self.clock, "clock", self.clock)
            state["origin"] = self.clock.now() - t_offset
        return real_run(self, start, t_offset)

    def sleep(self: clock.VirtualClock, s: float) -> None:
        real_sleep(self, s)
        if (
            self is state.get("clock")
            and "fired" not in state
            and self.now() - state["origin"] >= run_seconds
        ):
            state["fired"] = self.now() - state["origin"]
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(runner.Runner, "run", run)
    monkeypatch.setattr(clock.VirtualClock, "sleep", sleep)
    yield state
    monkeypatch.setattr(runner.Runner, "run", real_run)
    monkeypatch.setattr(clock.VirtualClock, "sleep", real_sleep)


def test_a_procedure_file_runs_by_path_and_resumes_by_run_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "my_sweep.py").write_text(MY_PROC)
    data = tmp_path / "data"
    monkeypatch.chdir(work)
    # interrupted part-way (the gate ramps to 2 V, then a point every few seconds of fridge time)
    with ctrl_c_at(20.0, monkeypatch) as fired:
        ran = cli(
            "run", "my_sweep.py", "--sim", "--station", str(STATION), "--data", str(data), "--no-progress"
        )
    assert "fired" in fired
    assert ran.code == 130, ran.err
    (record,) = Catalog(data).runs()
    assert f"qbs-lab resume {record.run_id}" in ran.err  # how to go on is said
    assert "Traceback" not in ran.err
    assert record.state == "interrupted"
    assert record.procedure == "my_sweep"
    assert record.source == str((work / "my_sweep.py").resolve())  # the file is recorded, not the name
    assert record.path is not None
    with xr.open_zarr(record.path) as ds:
        t = ds["t"].values
    m = int(np.isfinite(t).sum())
    assert 0 < m < 9 and np.isfinite(t[:m]).all()

    # from elsewhere, where a relative my_sweep.py would not be found: the recorded path is used
    monkeypatch.chdir(tmp_path)
    ran = cli("resume", record.run_id, "--data", str(data), "--no-progress")
    assert ran.code == 0, ran.err
    assert f"run {record.run_id} completed: " in ran.out
    assert "9/9 points" in ran.out
    with xr.open_zarr(record.path) as ds:
        assert ds.attrs["procedure"] == "my_sweep"
        assert ds.attrs["status"] == "completed"
        assert [r["from_point"] for r in json.loads(ds.attrs["resumed"])] == [m]
        assert ds["R"].dims == ("V_g",)
        assert np.allclose(ds["V_g"].values, np.linspace(2.0, 6.0, 9))
        assert ds["V_g"].attrs["units"] == "V"
        assert float(ds["B"]) == 0.0
        for v in ds.data_vars:
            assert np.isfinite(ds[v].values).all(), v
        t = ds["t"].values
        assert np.all(np.diff(t) > 0)  # gate order, each point measured once
        assert np.allclose(ds["V_g_meas"].values, ds["V_g"].values, atol=1e-3)
    assert Catalog(data).get(record.run_id).state == "completed"


# -- user errors: one line, exit 2 ---------------------------------------------------------------------
RUN = ["run", "field_isotherms", "--sim", "--station", "{station}", "--data", "{data}", "--no-progress"]
ERRORS = {
    "unknown procedure": (
        ["run", "no_such_procedure", "--sim", "--station", "{station}", "--data", "{data}"],
        ["no procedure 'no_such_procedure'", "field_isotherms"],
    ),
    "missing procedure file": (
        ["run", "{tmp}/absent.py", "--sim", "--station", "{station}", "--data", "{data}"],
        ["{tmp}/absent.py"],
    ),
    "unknown parameter": ([*RUN, "--set", "V_gate=3"], ["V_gate", "field_isotherms"]),
    "setting without =": ([*RUN, "--set", "num"], ["num"]),
    "bad whole number": ([*RUN, "--set", "num=many"], ["num=many", "whole number"]),
    "bad number list": ([*RUN, "--set", "temperatures=0.06,warm"], ["temperatures=0.06,warm"]),
    "gate outside the limits": ([*RUN, "--set", "V_g=50"], ["{station}", "V_g", "50", "40"]),
    "field outside the limits": ([*RUN, "--set", "B_stop=0.5"], ["{station}", "B", "0.1 T"]),
    "estimate outside the limits": (
        ["estimate", "field_isotherms", "--station", "{station}", "--set", "V_g=-45"],
        ["{station}", "V_g", "-45", "40"],
    ),
    "missing station file": (
        ["run", "field_isotherms", "--sim", "--station", "{tmp}/absent.yaml", "--data", "{data}"],
        ["{tmp}/absent.yaml"],
    ),
    "resume of an unknown run": (["resume", "42", "--data", "{data}"], ["no run 42"]),
    "resume of a run id that is not one": (["resume", "last", "--data", "{data}"], ["'last'"]),
    "export of an unknown run": (["export", "42", "--netcdf", "--data", "{data}"], ["no run 42"]),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_user_errors_end_in_one_line_and_exit_2(case: str, tmp_path: Path) -> None:
    argv, expected = ERRORS[case]
    values = {"station": str(STATION), "data": str(tmp_path / "data"), "tmp": str(tmp_path)}
    ran = cli(*(a.format(**values) for a in argv))
    assert ran.code == 2, (ran.out, ran.err)
    assert "Traceback" not in ran.err
    lines = ran.err.strip().splitlines()
    assert len(lines) == 1, ran.err
    assert lines[0].startswith("qbs-lab: error: ")
    for text in expected:
        assert text.format(**values) in lines[0], (text, lines[0])
    assert ran.out == ""  # nothing was connected, run or printed
    assert Catalog(tmp_path / "data").runs() == []  # and no run was recorded


def test_resume_of_a_completed_run_is_refused_in_one_line(small_run: SmallRun) -> None:
    ran = cli("resume", small_run.run_id, "--data", str(small_run.data))
    assert ran.code == 2
    lines = ran.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qbs-lab: error: ")
    assert f"run {small_run.run_id}" in lines[0] and "complete" in lines[0]
    assert Catalog(small_run.data).get(small_run.run_id).state == "completed"


# -- the README's main command -------------------------------------------------------------------------
def test_the_readme_main_command(tmp_path: Path) -> None:
    """``qbs-lab run field_isotherms --sim`` with the default parameters, from a directory holding the
    station file, as the README has a user type it (its wall time: benchmarks/wall_times.py)."""
    shutil.copy(STATION, tmp_path / "station.yaml")
    entry = Path(sys.executable).parent / "qbs-lab"
    cmd = [str(entry)] if entry.exists() else [sys.executable, "-m", "qbs_lab.cli"]
    proc = subprocess.run(
        [*cmd, "run", "field_isotherms", "--sim"], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    where = re.search(r"^run 1 completed: (\S+)$", proc.stdout, re.M)
    assert where, proc.stdout
    assert where[1] == f"data/{date.today().isoformat()}/1-field_isotherms.zarr"
    assert re.search(r"^\s+125/125 points; ", proc.stdout, re.M)
    assert re.search(r"simulated sample's truth: B_c = [\d.]+ mT", proc.stdout)
    # the progress line (the run on the simulated lab is its own estimate: no dry run before it)
    assert re.search(r"field_isotherms: 125 points on the simulated lab", proc.stderr)
    assert "125/125 points" in proc.stderr
    with xr.open_zarr(tmp_path / where[1]) as ds:
        assert dict(ds.sizes) == {"T": 5, "B": 25}
        assert np.isfinite(ds["R"].values).all()
        assert ds.attrs["status"] == "completed"
