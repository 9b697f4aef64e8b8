"""The Python API (qbs_lab.run, estimate, resume, open_run, list_runs) on the simulated lab.

A run from Python and a run from the command line with the same parameters and seed give the same
dataset (one code path); the estimate matches the fridge time the run took; a Ctrl-C'd run resumes
from Python onto the same grid; a user's procedure file and a Plan object run; the catalog queries
filter as asked; misuse raises one-line errors.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from test_cli_run import MY_PROC, STATION, cli, ctrl_c_at

import qbs_lab
from qbs_lab.plan import Axis, Plan, linspace
from qbs_lab.procedure import ProcedureError
from qbs_lab.runs import PlanError
from qbs_lab.store.catalog import Catalog

SMALL = {"num": 5, "temperatures": [0.06, 0.24], "V_g": 12.0}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api") / "data"


@pytest.fixture(scope="module")
def py_run(data: Path) -> qbs_lab.Run:
    return qbs_lab.run(
        "field_isotherms", sim=True, seed=3, station=STATION, data=data, progress=False, **SMALL
    )


def test_import_qbs_lab_is_light() -> None:
    import subprocess

    heavy = ("xarray", "scipy", "qcodes", "zarr", "numpy")
    code = f"import qbs_lab, sys; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_python_run_gives_the_same_dataset_as_the_cli_run(py_run: qbs_lab.Run, data: Path) -> None:
    assert py_run.status == "completed"
    assert py_run.id == "1" and py_run.procedure == "field_isotherms"
    assert py_run.path is not None and py_run.path.is_dir()
    assert (py_run.done, py_run.points) == (10, 10)
    assert (py_run.sim, py_run.scenario, py_run.seed) == (True, "clean", 3)
    ds = py_run.dataset
    assert dict(ds.sizes) == {"T": 2, "B": 5}
    assert float(ds["V_g"]) == 12.0
    ran = cli(
        "run",
        "field_isotherms",
        "--sim",
        "--seed",
        "3",
        "--station",
        str(STATION),
        "--data",
        str(data),
        "--no-progress",
        "--set",
        "num=5",
        "--set",
        "temperatures=0.06,0.24",
        "--set",
        "V_g=12",
    )
    assert ran.code == 0, ran.err
    cli_id = re.search(r"^run (\d+) completed: (\S+)$", ran.out, re.M)
    assert cli_id and cli_id[1] == "2"
    with xr.open_zarr(cli_id[2]) as other:
        other = other.load()
    assert set(other.data_vars) == set(ds.data_vars)
    for v in ds.data_vars:
        assert np.array_equal(other[v].values, ds[v].values, equal_nan=True), v
    assert json.loads(other.attrs["parameters"]) == json.loads(ds.attrs["parameters"])
    assert other.attrs["truth"] == ds.attrs["truth"]
    # the outcome the CLI prints from is on the Run too
    assert py_run.outcome is not None and py_run.summary.startswith("10/10 points; ")
    assert py_run.outcome.online  # the online crossing ran
    assert py_run.fridge_time == pytest.approx(sum(json.loads(ds.attrs["phases"]).values()))


def test_a_different_seed_gives_different_noise(py_run: qbs_lab.Run, tmp_path: Path) -> None:
    other = qbs_lab.run(
        "field_isotherms", sim=True, seed=4, station=STATION, data=tmp_path, progress=False, **SMALL
    )
    assert not np.array_equal(other.dataset["R"].values, py_run.dataset["R"].values)


def test_estimate_matches_the_run_and_checks_limits(py_run: qbs_lab.Run) -> None:
    est = qbs_lab.estimate("field_isotherms", station=STATION, seed=3, **SMALL)
    assert est.points == 10
    assert set(est.phases) >= {"ramp", "stabilize", "settle", "measure", "park"}
    assert est.total == pytest.approx(sum(est.phases.values()))
    assert abs(est.total - py_run.fridge_time) <= 0.05 * py_run.fridge_time
    text = str(est)
    assert "field_isotherms: 10 points on T[2] x B[5]" in text and "temperature stabilization" in text
    with pytest.raises(PlanError, match="V_g"):
        qbs_lab.estimate("field_isotherms", station=STATION, V_g=50.0)
    with pytest.raises(ProcedureError, match="V_gate"):
        qbs_lab.estimate("field_isotherms", station=STATION, V_gate=3.0)
    with pytest.raises(PlanError, match="add --sim"):
        qbs_lab.estimate("field_isotherms", station=STATION, sim=False, scenario="rf_leak")


def test_catalog_queries_filter_and_open_runs(py_run: qbs_lab.Run, data: Path) -> None:
    every = qbs_lab.list_runs(data=data)
    assert [r.id for r in every] == sorted((r.id for r in every), key=int, reverse=True)  # newest first
    assert py_run.id in [r.id for r in every]
    mine = qbs_lab.list_runs(data=data, procedure="field_isotherms")
    assert mine and {r.procedure for r in mine} == {"field_isotherms"}
    assert qbs_lab.list_runs(data=data, procedure="gate_sweep") == []
    assert all(r.status == "completed" for r in qbs_lab.list_runs(data=data, status="completed"))
    assert qbs_lab.list_runs(data=data, status="interrupted") == []
    assert qbs_lab.list_runs(data=data, sim=False) == []
    assert len(qbs_lab.list_runs(data=data, limit=1)) == 1
    opened = qbs_lab.open_run(int(py_run.id), data=data)
    assert (opened.id, opened.status, opened.path) == (py_run.id, "completed", py_run.path)
    assert np.array_equal(opened.dataset["R"].values, py_run.dataset["R"].values)
    assert f"<Run {py_run.id} field_isotherms completed 10/10 points" in repr(opened)


def test_a_procedure_file_run_from_python_resumes_after_ctrl_c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "my_sweep.py").write_text(MY_PROC)
    data = tmp_path / "data"
    with ctrl_c_at(20.0, monkeypatch) as fired:
        run = qbs_lab.run(tmp_path / "my_sweep.py", sim=True, station=STATION, data=data, num=9)
    assert "fired" in fired
    assert run.status == "interrupted" and run.procedure == "my_sweep"
    assert run.left == "gate 0 V, magnet 0 T (driven), heater off, RF off"
    m = int(np.isfinite(run.dataset["t"].values).sum())
    assert 0 < m < 9
    capsys.readouterr()
    done = qbs_lab.resume(run.id, data=data)  # on the lab the catalog recorded
    err = capsys.readouterr().err
    assert f"resuming run {run.id} at point {m + 1}/9" in err
    assert "9/9 points" in err  # the progress line (a line per 10 % off a terminal) counts the whole run
    assert done.status == "completed" and done.id == run.id
    ds = done.dataset
    assert np.isfinite(ds["R"].values).all()
    assert np.all(np.diff(ds["t"].values) > 0)
    assert [r["from_point"] for r in json.loads(ds.attrs["resumed"])] == [m]
    assert done.outcome is not None and done.outcome.resumed_from == m
    # the fridge time of the whole run, not only of the resumed part
    assert done.fridge_time >= float(np.nanmax(ds["t"].values)) - 1.0
    assert done.fridge_time > done.outcome.result.duration


def test_a_plan_object_runs_and_resumes_only_with_its_plan(tmp_path: Path) -> None:
    plan = Plan("my_plan", axes=(Axis("V_g", linspace(1.0, 5.0, 5)),), fixed={"B": 0.0})
    data = tmp_path / "data"
    run = qbs_lab.run(plan, sim=True, seed=2, station=STATION, data=data, progress=False)
    assert run.status == "completed" and run.procedure == "my_plan"
    ds = run.dataset
    assert ds["R"].dims == ("V_g",)
    assert np.allclose(ds["V_g"].values, [1, 2, 3, 4, 5])
    assert np.allclose(ds["V_g_meas"].values, ds["V_g"].values, atol=1e-3)
    assert np.isfinite(ds["R"].values).all()
    assert Catalog(data).get(run.id).source == "<plan>"
    assert [r.id for r in qbs_lab.list_runs(data=data, procedure="my_plan")] == [run.id]
    with pytest.raises(ProcedureError, match="has no parameter"):
        qbs_lab.run(plan, sim=True, station=STATION, data=data, num=3)
    with pytest.raises(PlanError, match="complete"):
        qbs_lab.resume(run.id, data=data, plan=plan)
    Catalog(data).update(run.id, status="interrupted")
    with pytest.raises(ProcedureError, match="Plan object"):
        qbs_lab.resume(run.id, data=data)


def test_scenario_or_faults_without_sim_raise_before_anything_runs(tmp_path: Path) -> None:
    for kwargs, flag in (({"scenario": "rf_leak"}, "--scenario"), ({"faults": "x.yaml"}, "--faults")):
        with pytest.raises(PlanError, match=f"{flag}.*add --sim"):
            qbs_lab.run("field_sweep", station=STATION, data=tmp_path, **kwargs)
    assert Catalog(tmp_path).runs() == []


def test_in_a_notebook_progress_is_a_tqdm_bar_not_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a Jupyter kernel's shell (faked here), the run draws tqdm's notebook bar, counting every
    point, and writes no progress line."""
    from qbs_lab import api

    bars = []
    real = api._progress

    def progress(*args):  # type: ignore[no-untyped-def]
        out = real(*args)
        bars.append(out[2])
        return out

    monkeypatch.setattr(api, "_in_notebook", lambda: True)
    monkeypatch.setattr(api, "_progress", progress)
    run = qbs_lab.run("gate_sweep", sim=True, station=STATION, data=tmp_path, num=6)
    assert run.status == "completed"
    (bar,) = bars
    assert type(bar).__module__ == "tqdm.notebook"
    assert (bar.n, bar.total) == (6, 6)
    assert "points" not in capsys.readouterr().err  # no progress line
    assert api._in_notebook() is True
    monkeypatch.undo()
    assert api._in_notebook() is False  # a script, a terminal, pytest: the line


def test_export_writes_netcdf_without_being_told_the_format(py_run: qbs_lab.Run, data: Path) -> None:
    ran = cli("export", py_run.id, "--data", str(data))
    assert ran.code == 0, ran.err
    assert py_run.path is not None
    nc = py_run.path.with_suffix(".nc")
    assert ran.out.strip() == f"run {py_run.id}: {nc}"
    with xr.open_dataset(nc) as exported:
        assert np.array_equal(exported["R"].values, py_run.dataset["R"].values)
