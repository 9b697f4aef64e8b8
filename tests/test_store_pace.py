"""The run store at the fridge's pace: a point written once, a crash losing seconds, damage named.

- A store is rewritten a handful of times per chunk (doublings), never once a point, whatever the
  line's length; the journal carries the newest points in between.
- ``xarray.open_zarr`` reads a store while it is written (what is folded), :func:`live_dataset` all of it.
- A writer SIGKILLed in the middle of a long line (a real process, a real signal) loses at most the
  points of its last ``flush_seconds`` of run time, at the fridge's pace and at in-memory pace.
- A chunk damaged on disk (flipped bits, random bytes of the right size, a truncated file) is named
  (variable, chunk, points), its points count as unmeasured, and ``qbs-lab resume`` says so in one line
  and measures them again, rather than trusting them or calling the run complete.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import STATION

from qbs_lab.cli import main
from qbs_lab.store import run_store
from qbs_lab.store.catalog import Catalog
from qbs_lab.store.run_store import FOLD_MIN, JOURNAL, RunStore, live_dataset

VARS = {"R": {"units": "Ohm"}, "X": {"units": "V"}, "t": {"units": "s"}}


def make(path: Path, shape: tuple[int, ...], flush_seconds: float = 2.0) -> RunStore:
    names = ("y", "x")[-len(shape) :]
    coords = [(n, np.arange(s, dtype=float), {}) for n, s in zip(names, shape, strict=True)]
    return RunStore.create(path, coords, VARS, flush_seconds=flush_seconds)


def count_renames(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    renamed: list[str] = []
    real = os.replace

    def replace(src: str | Path, dst: str | Path) -> None:
        renamed.append(str(dst))
        real(src, dst)

    monkeypatch.setattr(run_store.os, "replace", replace)
    return renamed


@pytest.mark.parametrize("line", [25, 400, 2000])
@pytest.mark.parametrize("step", [4.0, 1e-5])
def test_a_chunk_is_rewritten_a_handful_of_times_whatever_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: int, step: float
) -> None:
    shape = (4000 // line, line)
    store = make(tmp_path / "s.zarr", shape)
    renamed = count_renames(monkeypatch)
    t = 0.0
    for i in range(shape[0]):
        for j in range(line):
            t += step
            store.record((i, j), (float(i), float(j), t))
    store.close()
    chunks = set(renamed)
    writes_per_chunk = len(renamed) / len(chunks)
    # doublings from FOLD_MIN points up to the chunk's size, and the final write: log2, not linear
    points_per_chunk = shape[0] * line / (len(chunks) / len(VARS))
    assert writes_per_chunk <= np.log2(points_per_chunk / FOLD_MIN) + 2, (writes_per_chunk, points_per_chunk)
    assert not (tmp_path / "s.zarr" / JOURNAL).stat().st_size  # all folded at the end
    with xr.open_zarr(tmp_path / "s.zarr") as ds:
        assert np.array_equal(ds["X"].values, np.broadcast_to(np.arange(line, dtype=float), shape))
        assert np.isfinite(ds["t"].values).all()


def test_a_running_store_reads_with_xarray_and_live(tmp_path: Path) -> None:
    path = tmp_path / "run.zarr"
    store = make(path, (3, 200))
    t = 0.0
    seen = []
    for i in range(3):
        for j in range(200):
            t += 4.0
            store.record((i, j), (i * 1000.0 + j, -j, t))
            if j in (10, 150) or (i, j) == (2, 199):
                with xr.open_zarr(path) as ds:  # a reader while the writer goes on
                    plain = ds.load()
                live = live_dataset(path)
                seen.append((int(np.isfinite(plain["t"].values).sum()), int(np.isfinite(live["t"]).sum())))
                # live: every point recorded so far (each journaled at this pace), at its place
                n = i * 200 + j + 1
                assert int(np.isfinite(live["t"].values).sum()) == n
                assert live["R"].values[i, j] == i * 1000.0 + j
                assert live["R"].attrs["units"] == "Ohm" and list(live["x"].values[:3]) == [0.0, 1.0, 2.0]
                # plain xarray: a subset, the same numbers where it has them
                mask = np.isfinite(plain["t"].values)
                assert np.array_equal(plain["R"].values[mask], live["R"].values[mask])
    store.close()
    # xarray alone sees the points folded so far: more and more of them, all of them at the end
    plain_counts = [p for p, _ in seen]
    assert plain_counts == sorted(plain_counts) and plain_counts[-1] == 600
    assert plain_counts[0] < seen[0][1]  # it lags the journal while the run goes


# -- SIGKILL of a real writer ---------------------------------------------------------------------------
WRITER = """
import os, signal, sys
import numpy as np
from qbs_lab.store.run_store import RunStore

path, step, kill_at, n = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
store = RunStore.create(path, [("x", np.arange(n, dtype=float), {})], {"R": {}, "t": {}})
for j in range(n):
    store.record((j,), (float(j), (j + 1) * step))
    if j == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize(("step", "kill_at"), [(4.0, 1234), (4.0, 63), (1e-3, 7777), (0.7, 2500)])
def test_sigkill_in_a_long_line_loses_at_most_the_last_seconds(
    tmp_path: Path, step: float, kill_at: int
) -> None:
    path = tmp_path / "line.zarr"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.run(
        [sys.executable, str(script), str(path), str(step), str(kill_at), "20000"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    live = live_dataset(path)
    t, R = live["t"].values, live["R"].values
    kept = np.isfinite(t)
    t_kill = (kill_at + 1) * step
    # a prefix of the line, everything up to flush_seconds (2 s) of run time before the kill
    m = int(kept.sum())
    assert kept[:m].all() and not kept[m:].any()
    assert t_kill - (m * step) <= 2.0 + step, (m, t_kill)
    assert np.array_equal(R[:m], np.arange(m, dtype=float))
    if step >= 2.0:  # at the fridge's pace: nothing lost at all
        assert m == kill_at + 1
    # a writer that opens it again folds the journal in and goes on from there
    store = RunStore.open(path)
    assert int(store.measured().sum()) == m
    store.record((m,), (float(m), t_kill + step))
    store.close()
    with xr.open_zarr(path) as ds:
        assert int(np.isfinite(ds["t"].values).sum()) == m + 1
        assert np.array_equal(ds["R"].values[: m + 1], np.arange(m + 1, dtype=float))


def test_a_torn_journal_record_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    store = make(path, (2, 100))
    for j in range(10):
        store.record((0, j), (1.0, 2.0, 4.0 * (j + 1)))
    journal = path / JOURNAL
    raw = journal.read_bytes()
    assert len(raw) == 10 * (len(raw) // 10)  # ten whole records
    journal.write_bytes(raw[:-7])  # the last one torn (a kill in the middle of a write)
    assert int(live_dataset(path)["t"].notnull().sum()) == 9
    record = bytearray(raw[: len(raw) // 10 * 3])
    record[len(raw) // 10 + 5] ^= 0xFF  # the second record damaged: its CRC no longer matches
    journal.write_bytes(bytes(record))
    assert live_dataset(path)["t"].notnull().values[0].tolist()[:3] == [True, False, True]


# -- damaged chunks -------------------------------------------------------------------------------------
def test_damage_is_named_and_its_points_are_not_measured(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    store = make(path, (4, 30))  # one chunk of 4 lines
    for i in range(4):
        for j in range(30):
            store.record((i, j), (1.0, 2.0, 1.0 + 30 * i + j))
    store.close()
    assert RunStore.open(path).damage() == []
    chunk = path / "R" / "0.0"
    raw = bytearray(chunk.read_bytes())
    raw[100] ^= 0x01  # one flipped bit
    chunk.write_bytes(bytes(raw))
    (d,) = RunStore.open(path).damage()
    assert (d.variable, d.key, d.points) == ("R", "0.0", 120)
    assert d.describe() == "variable R, chunk 0.0 (checksum mismatch): 120 points, y[0:4] x x[0:30]"
    assert not RunStore.open(path).measured().any()  # t is whole, but the points are not trusted
    with pytest.raises(Exception, match=r"(?i)checksum"), xr.open_zarr(path) as ds:
        ds["R"].load()  # xarray's own read fails too: the damage cannot pass unseen
    chunk.write_bytes(raw[:50])  # truncated
    (d,) = RunStore.open(path).damage()
    assert d.reason == "50 bytes, not 964"


SMALL = ["--set", "temperatures=0.06,0.24", "--set", "num=5"]


def cli(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("damage", ["random t", "flipped R"])
def test_resume_measures_damaged_points_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    data = tmp_path / "data"
    code, out, err = cli(
        "run", "field_isotherms", "--sim", "--station", str(STATION), "--data", str(data),
        "--no-progress", *SMALL, capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    (record,) = Catalog(data).runs()
    path = Path(record.path)
    with xr.open_zarr(path) as ds:
        before = ds.load()
    var = "t" if damage == "random t" else "R"
    chunk = path / var / "0.0"
    raw = bytearray(chunk.read_bytes())
    if damage == "random t":  # random bytes of the right size: a garbage t must not read as measured
        raw = bytearray(np.random.default_rng(1).bytes(len(raw)))
    else:
        raw[8] ^= 0x10
    chunk.write_bytes(bytes(raw))
    # export refuses the damaged points in one line each, with the way out
    code, out, err = cli("export", record.run_id, "--netcdf", "--data", str(data), capsys=capsys)
    assert code != 0 and "Traceback" not in err
    assert f"run {record.run_id}: damaged chunk, variable {var}, chunk 0.0 (checksum mismatch)" in err
    assert f"qbs-lab resume {record.run_id} measures them again" in err
    assert not path.with_suffix(".nc").exists()

    code, out, err = cli("resume", record.run_id, "--data", str(data), "--no-progress", capsys=capsys)
    assert code == 0, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "damaged" in line]
    assert lines == [
        f"run {record.run_id}: damaged chunk, variable {var}, chunk 0.0 (checksum mismatch):"
        " 10 points, T[0:2] x B[0:5]: measured again"
    ], err
    assert f"run {record.run_id} completed" in out and "10/10 points" in out
    store = RunStore.open(path)
    assert store.damage() == []
    with xr.open_zarr(path) as ds:
        after = ds.load()
    assert np.isfinite(after["R"].values).all()
    # every point of the damaged chunk (here the whole grid) was measured again, from the first; the
    # twin (same seed, t from 0 again: no trusted point is left) measures the same numbers
    resumed = json.loads(after.attrs["resumed"])
    assert resumed[-1]["from_point"] == 0
    log = path.with_suffix(".log").read_text()
    assert re.search(rf"run {record.run_id}: damaged chunk, variable {var}", log)
    assert re.search(rf"run {record.run_id} field_isotherms: from point 0 of 10", log)
    assert f"run {record.run_id} completed at point 10 of 10" in log.splitlines()[-1]
    for v in before.data_vars:
        assert np.allclose(after[v].values, before[v].values, rtol=1e-9, atol=0), v
    # a second resume: complete, nothing damaged, refused in one line
    code, out, err = cli("resume", record.run_id, "--data", str(data), "--no-progress", capsys=capsys)
    assert code != 0 and "complete" in err and "Traceback" not in err


def test_the_live_view_shows_the_journals_newest_points(tmp_path: Path) -> None:
    """At the fridge's pace the newest points are in the journal, not yet in their chunk: the live
    view's reader shows them (and notices each one), as xarray alone does not."""
    from test_view_reader import _run

    from qbs_lab.view.reader import DataReader

    run_id, path = _run(tmp_path, (4, 200), name="slow")
    store = RunStore.open(path)
    reader = DataReader(tmp_path)
    for j in range(30):
        store.record((0, j), (1000.0 + j, 4.0 * (j + 1)))
        if j in (0, 29):
            assert reader.runs()[0]["points_done"] == j + 1
    with xr.open_zarr(path) as ds:
        assert int(np.isfinite(ds["t"].values).sum()) < 30  # not folded yet
    data = reader.run_data(run_id)
    assert data is not None
    run = reader.run(run_id)
    assert run["now"]["readings"]["R"]["value"] == pytest.approx(1029.0)
