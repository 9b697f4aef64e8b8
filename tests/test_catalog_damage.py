"""A damaged catalog: one line and the way out; ``runs --rebuild`` makes it anew from the stores (the
truth); a row with bad JSON affects only its run. Store paths work from any working directory."""

from __future__ import annotations

import io
import json
import os
import sqlite3
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from qbs_lab.cli import main
from qbs_lab.procedure import load_procedure, parse_settings
from qbs_lab.queue import Queue
from qbs_lab.runs import LabOptions, start_run
from qbs_lab.store import Catalog

STATION = Path(__file__).resolve().parent.parent / "station.yaml"


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Three runs (completed, completed, aborted after 2 of 6 points) and a queue of one item."""
    data = tmp_path / "data"
    proc = load_procedure("gate_sweep")
    opts = LabOptions(STATION, True, None, 0, data)

    def abort_after_two(k: int, index: tuple[int, ...], values: object) -> None:
        if k == 1:
            raise RuntimeError("stopped for the test")

    for num, subs in ((4, []), (5, []), (6, [abort_after_two])):
        start_run(
            proc, parse_settings(proc, [f"num={num}"]), opts, progress=False, estimate=False, subscribers=subs
        )
    Queue(data).add("field_sweep", ["num=5"])
    return data


def runs_table(data: Path) -> dict[str, tuple[str, int, int]]:
    """`qbs-lab runs` as {id: (status, done, points)}."""
    code, out, err = cli("runs", "--data", str(data))
    assert code == 0, err
    rows = {}
    for line in out.splitlines()[1:]:
        cols = line.split()
        done, points = cols[3].split("/")
        rows[cols[0]] = (cols[2], int(done), int(points))
    return rows


EXPECTED = {"1": ("completed", 4, 4), "2": ("completed", 5, 5), "3": ("aborted", 2, 6)}


def assert_one_line_with_the_way_out(data: Path, *argv: str) -> None:
    code, out, err = cli(*argv)
    assert code == 2, (argv, out, err)
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("qbs-lab: error: ") and "the catalog is damaged" in line
    assert f"qbs-lab runs --rebuild --data {data}" in line


def rebuild_and_check(data: Path, queue_kept: bool) -> None:
    code, out, err = cli("runs", "--rebuild", "--data", str(data))
    assert code == 0, err
    assert "from 3 run stores" in out
    if queue_kept:
        assert "the queue's 1 items were copied over" in out
    else:
        assert "queue could not be read: load tonight's plan again" in out
    assert len(list(data.glob("catalog.sqlite.old-*"))) == 1  # the damaged file is kept aside
    assert runs_table(data) == EXPECTED
    record = Catalog(data).get("3")
    assert record.parameters["num"] == 6 and record.sim and record.scenario == "clean"
    assert record.station == str(STATION)
    assert [i.procedure for i in Queue(data).items()] == (["field_sweep"] if queue_kept else [])
    # the rebuilt catalog works: the aborted run resumes to the end, and new runs get new ids
    code, out, err = cli("resume", "3", "--data", str(data), "--no-progress")
    assert code == 0, err
    assert runs_table(data)["3"] == ("completed", 6, 6)
    code, out, err = cli(
        "run", "gate_sweep", "--sim", "--station", str(STATION), "--data", str(data), "--set", "num=3",
        "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert runs_table(data)["4"] == ("completed", 3, 3)


def test_a_bad_header_gives_one_line_and_rebuild_recovers(data: Path) -> None:
    assert runs_table(data) == EXPECTED
    catalog = data / "catalog.sqlite"
    with open(catalog, "r+b") as f:
        f.write(b"this is no sqlite")
    for argv in (
        ("runs", "--data", str(data)),
        ("resume", "3", "--data", str(data)),
        ("export", "1", "--netcdf", "--data", str(data)),
        ("queue", "list", "--data", str(data)),
        ("run", "gate_sweep", "--sim", "--station", str(STATION), "--data", str(data), "--no-progress"),
    ):
        assert_one_line_with_the_way_out(data, *argv)
    rebuild_and_check(data, queue_kept=False)


def test_an_overwritten_page_gives_one_line_and_rebuild_recovers(data: Path) -> None:
    catalog = data / "catalog.sqlite"
    with sqlite3.connect(catalog) as conn:
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'runs'").fetchone()
        page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    assert not Path(f"{catalog}-wal").exists() or Path(f"{catalog}-wal").stat().st_size == 0
    with open(catalog, "r+b") as f:
        f.seek((root - 1) * page)
        f.write(np.random.default_rng(7).bytes(page))
    assert_one_line_with_the_way_out(data, "runs", "--data", str(data))
    assert_one_line_with_the_way_out(data, "resume", "3", "--data", str(data))
    rebuild_and_check(data, queue_kept=True)


def test_a_row_with_bad_json_affects_only_its_run(data: Path) -> None:
    with sqlite3.connect(data / "catalog.sqlite") as conn:
        conn.execute("UPDATE runs SET parameters = '{\"num\": 6,' WHERE run_id = 3")
    conn.close()
    table = runs_table(data)
    assert table["1"] == EXPECTED["1"] and table["2"] == EXPECTED["2"]
    assert table["3"][0] == "damaged"
    code, _, err = cli("resume", "3", "--data", str(data))
    assert code == 2
    (line,) = err.strip().splitlines()
    assert "run 3: its catalog row is damaged" in line and "qbs-lab runs --rebuild" in line
    code, _out, err = cli("export", "1", "--netcdf", "--data", str(data))  # the others work
    assert code == 0, err
    rebuild_and_check(data, queue_kept=True)


def test_commands_work_from_any_directory_and_old_relative_paths_are_found(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = {r.run_id: r.path for r in Catalog(data).runs()}
    assert all(p is not None and Path(p).is_absolute() for p in stored.values())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert runs_table(data) == EXPECTED
    # a catalog written by an older version: paths relative to where the run was started
    with sqlite3.connect(data / "catalog.sqlite") as conn:
        for run_id, path in stored.items():
            relative = os.path.relpath(str(path), tmp_path)  # data/<date>/<run>.zarr
            conn.execute("UPDATE runs SET path = ? WHERE run_id = ?", (relative, int(run_id)))
    conn.close()
    assert Catalog(data).get("1").path == stored["1"]
    code, _, err = cli("export", "1", "--netcdf", "--data", str(data), "-o", str(tmp_path / "one.nc"))
    assert code == 0, err
    with xr.open_dataset(tmp_path / "one.nc") as ds:
        assert int(np.isfinite(ds["R"].values).sum()) == 4
    code, _out, err = cli("resume", "3", "--data", str(data), "--no-progress")
    assert code == 0, err
    assert json.loads((Path(stored["3"] or "") / ".zattrs").read_text())["status"] == "completed"
