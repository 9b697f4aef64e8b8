"""The live view's reader on stores and catalogs it did not write: a million-point run written with
zarr itself, a chunk cut short, a catalog whose writer holds its lock."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
import zarr

from qbs_lab.store import Catalog, RunStore
from qbs_lab.view.reader import MAX_CELLS, MAX_CUT_POINTS, MAX_CUTS, DataReader

VARIABLES = {"R": {"units": "Ohm", "long_name": "resistance"}, "t": {"units": "s", "long_name": "time"}}


def _run(data, shape, *, name="big"):  # type: ignore[no-untyped-def]
    """A catalog row and an empty store over (V_g, B) of ``shape``."""
    catalog = Catalog(data)
    run_id = catalog.new_run(
        procedure=name,
        source=None,
        points=int(np.prod(shape)),
        station="station.yaml",
        sim=True,
        scenario="clean",
        seed=0,
        parameters={"num": shape[1]},
    )
    path = data / f"{run_id}-{name}.zarr"
    coords = [
        ("V_g", np.linspace(-20, 20, shape[0]), {"units": "V", "long_name": "gate voltage"}),
        ("B", np.linspace(0, 0.03, shape[1]), {"units": "T", "long_name": "field"}),
    ]
    RunStore.create(path, coords, VARIABLES, attrs={"run_id": run_id, "status": "running"})
    catalog.update(run_id, path=str(path))
    return run_id, path


def test_a_million_points_are_thinned_for_the_page_by_block_means(tmp_path):
    rng = np.random.default_rng(7)
    shape = (1000, 1000)
    run_id, path = _run(tmp_path, shape)
    rows = 613  # the run is part way through its 614th line: that line is not on disk yet
    R = 10 ** rng.uniform(2, 4.5, size=shape)
    # written with zarr itself (another writer than ours), in the store's own chunks
    zarr.open_array(str(path / "R"), mode="r+")[:rows] = R[:rows]
    zarr.open_array(str(path / "t"), mode="r+")[:rows] = np.arange(rows * 1000.0).reshape(rows, 1000)
    reader = DataReader(tmp_path)
    summary = reader.runs()[0]
    assert (summary["points_done"], summary["points_total"]) == (rows * 1000, 1_000_000)
    assert summary["fridge_time_s"] == rows * 1000 - 1
    plot = reader.run_data(run_id)
    z = 10 ** np.array(plot["heat"]["log10_R"], dtype=float)  # 4 decimals: 1.2e-4 relative
    assert z.shape[0] <= MAX_CELLS[0] and z.shape[1] <= MAX_CELLS[1]
    # the reference: means over blocks of the measured rows, computed here independently
    fr, fc = -(-1000 // MAX_CELLS[0]), -(-1000 // MAX_CELLS[1])
    assert z.shape == (-(-1000 // fr), -(-1000 // fc))
    for bi, bj in [(0, 0), (5, 17), (rows // fr - 1, z.shape[1] - 1)]:
        block = R[bi * fr : (bi + 1) * fr, bj * fc : (bj + 1) * fc]
        assert z[bi, bj] == pytest.approx(block.mean(), rel=2e-4)
    edge = rows // fr  # the block holding the last measured row mixes measured and unmeasured rows
    assert z[edge, 0] == pytest.approx(R[edge * fr : rows, 0:fc].mean(), rel=2e-4)
    assert np.isnan(z[edge + 1 :]).all()  # not measured: no colour
    assert len(plot["heat"]["x"]) == z.shape[1] and len(plot["heat"]["y"]) == z.shape[0]
    cuts = plot["cuts"]
    assert 2 <= len(cuts) <= MAX_CUTS
    assert all(len(c["R"]) <= MAX_CUT_POINTS for c in cuts)
    assert cuts[-1]["value"] == pytest.approx(np.linspace(-20, 20, 1000)[rows - 1])
    assert len(json.dumps(plot)) < 2_000_000  # what the page downloads per redraw [bytes]
    assert reader.run(run_id)["now"]["setpoints"]["V_g"]["units"] == "V"


def test_a_chunk_cut_short_shows_as_not_measured(tmp_path):
    shape = (9, 3000)  # lines of 3000 points: two lines a chunk
    run_id, path = _run(tmp_path, shape, name="small")
    store = RunStore.open(path)
    chunk_rows = int(json.loads((path / "R" / ".zarray").read_text())["chunks"][0])
    assert chunk_rows < shape[0]  # several chunks
    R = np.linspace(100, 10_000, shape[0] * shape[1]).reshape(shape)
    for i in range(shape[0]):
        for j in range(shape[1]):
            store.record((i, j), (R[i, j], (i * shape[1] + j) * 1e-4))  # t [s]: few flushes
    store.flush()
    last = path / "R" / f"{(shape[0] - 1) // chunk_rows}.0"
    last.write_bytes(last.read_bytes()[:100])  # a writer killed mid-file, without an atomic rename
    reader = DataReader(tmp_path)
    plot = reader.run_data(run_id)
    z = 10 ** np.array(plot["heat"]["log10_R"], dtype=float)  # 4 decimals: 1.2e-4 relative
    first_bad = (shape[0] - 1) // chunk_rows * chunk_rows
    fc = -(-shape[1] // MAX_CELLS[1])  # columns per block
    assert np.allclose(z[:first_bad], R[:first_bad].reshape(first_bad, -1, fc).mean(axis=2), rtol=2e-4)
    assert np.isnan(z[first_bad:]).all()
    assert reader.runs()[0]["points_done"] == shape[0] * shape[1]  # t is whole: the points exist


def test_the_reader_takes_no_lock_and_writes_nothing(tmp_path):
    reader = DataReader(tmp_path)
    assert reader.runs() == [] and reader.queue_items() == []
    assert not (tmp_path / "catalog.sqlite").exists()  # read-only: it never makes a catalog
    run_id, _ = _run(tmp_path, (3, 5))
    before = (tmp_path / "catalog.sqlite").read_bytes()
    writer = sqlite3.connect(tmp_path / "catalog.sqlite", timeout=0.5)
    writer.execute("BEGIN IMMEDIATE")  # a writer in the middle of its transaction
    writer.execute("UPDATE runs SET status = 'completed' WHERE run_id = ?", (int(run_id),))
    try:
        runs = reader.runs()  # the reader is not blocked, and sees the last committed state
        assert [(r["run_id"], r["status"]) for r in runs] == [(run_id, "running")]
        writer.commit()  # nor does it block the writer
    finally:
        writer.close()
    assert reader.runs()[0]["status"] == "completed"
    reader.run(run_id), reader.run_data(run_id)
    with sqlite3.connect(tmp_path / "catalog.sqlite") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    after = (tmp_path / "catalog.sqlite").read_bytes()
    assert after != before  # the writer's change landed ...
    assert reader.runs()[0]["status"] == "completed"  # ... and the read-only reader follows it
