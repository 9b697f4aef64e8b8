"""Disk full in the middle of a run: the instruments park first, the run ends in one line, the catalog
and the store agree after the next command, and ``resume`` completes the grid once space is freed.

Two ways to fill the disk: an injected ENOSPC (store writes fail as a full disk makes them fail, the
catalog's SQLite says "database or disk is full") through the whole ``qbs-lab run`` command; and, where
the test may mount one (as root), a real 8 MiB tmpfs that a ballast file fills in the middle of the run.
Parking is proven from the emulators' command logs.
"""

from __future__ import annotations

import errno
import io
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

from qbs_lab.cli import main
from qbs_lab.procedure import load_procedure, parse_settings
from qbs_lab.queue import Queue
from qbs_lab.runs import LabOptions, start_run
from qbs_lab.sim.lab import SimLab
from qbs_lab.store import catalog as catalog_module
from qbs_lab.store import run_store
from qbs_lab.store.catalog import Catalog

STATION = Path(__file__).resolve().parent.parent / "station.yaml"
# gate to 20 V in 12 steps at 20 mT: at any moment the gate is far from 0 V and the magnet from 0 T
SWEEP = ["num=12", "V_stop=20", "B=0.02"]


@pytest.fixture
def labs(monkeypatch: pytest.MonkeyPatch) -> list[SimLab]:
    """Every simulated lab made while the test runs (the run's own one, for its command logs)."""
    made: list[SimLab] = []
    real = SimLab.from_station.__func__  # type: ignore[attr-defined]

    def from_station(cls: type[SimLab], *args: Any, **kwargs: Any) -> SimLab:
        lab = real(cls, *args, **kwargs)
        made.append(lab)
        return lab

    monkeypatch.setattr(SimLab, "from_station", classmethod(from_station))
    return made


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def gate_levels(lab: SimLab) -> list[float]:
    log = lab.command_log("gate")
    sets = [c for c in log if c.command.upper().startswith("SOUR:VOLT") and "?" not in c.command]
    return [float(c.args[0]) for c in sets]


def magnet_targets(lab: SimLab) -> list[float]:
    return [
        float(c.args[0])
        for c in lab.command_log("magnet")
        if c.command.upper().startswith("CONF:FIELD:TARG") and "?" not in c.command
    ]


def assert_parked(lab: SimLab, at_fill: dict[str, int]) -> None:
    """After the disk filled, the gate went to its safe value (0 V) and the magnet to 0 T."""
    gate = gate_levels(lab)
    assert max(gate) > 1.0  # it was up
    assert gate[-1] == 0.0, gate[-5:]
    assert len(lab.command_log("gate")) > at_fill["gate"]  # commands after the disk filled: the park
    targets = magnet_targets(lab)
    assert 0.02 in targets and targets[-1] == 0.0, targets
    assert [c.command for c in lab.command_log("rf")][-1].upper().startswith(":OUTP:STAT 0")


def assert_records_agree(data: Path, run_id: str, status: str, message: str | None) -> None:
    record = Catalog(data).get(run_id)
    assert (record.state, record.message) == (status, message)
    assert record.path is not None
    attrs = json.loads((Path(record.path) / ".zattrs").read_text())
    assert (attrs["status"], attrs["message"]) == (status, message or "")


def assert_resume_completes(data: Path, run_id: str) -> None:
    code, _out, err = cli("resume", run_id, "--data", str(data), "--no-progress")
    assert code == 0, err
    assert "Traceback" not in err
    record = Catalog(data).get(run_id)
    assert record.state == "completed" and record.done == 12
    with xr.open_zarr(record.path) as ds:
        assert np.isfinite(ds["R"].values).all()
        assert np.all(np.diff(ds["t"].values) > 0)
        assert np.allclose(ds["V_g_meas"].values, ds["V_g"].values, atol=1e-3)
        assert ds.attrs["status"] == "completed"


@pytest.fixture
def injected(monkeypatch: pytest.MonkeyPatch, labs: list[SimLab]) -> dict[str, Any]:
    """A disk that fills after the fifth point of the first gate sweep: from then on every store write
    fails as a full disk makes it fail (ENOSPC from the write, no file name) and every catalog write as
    SQLite's "database or disk is full", until the test sets ``full`` back to False."""
    disk: dict[str, Any] = {"full": False, "failed": 0, "at_fill": {}}
    real_write, real_update, real_record = run_store._atomic_write, Catalog.update, run_store.RunStore.record

    def atomic_write(final: Path, payload: bytes) -> None:
        if disk["full"]:
            disk["failed"] += 1
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(final, payload)

    def update(self: Catalog, run_id: str, **fields: Any) -> None:
        if disk["full"]:
            full = sqlite3.OperationalError("database or disk is full")
            raise catalog_module._catalog_error(full, self.path)
        real_update(self, run_id, **fields)

    def record(self: run_store.RunStore, index: Any, values: Any) -> None:
        real_record(self, index, values)
        if index[-1] == 4 and not disk["at_fill"]:
            disk["full"] = True
            disk["at_fill"]["gate"] = len(labs[-1].command_log("gate"))

    monkeypatch.setattr(run_store, "_atomic_write", atomic_write)
    monkeypatch.setattr(Catalog, "update", update)
    monkeypatch.setattr(run_store.RunStore, "record", record)
    return disk


def test_injected_enospc_parks_first_ends_in_one_line_and_resume_completes(
    tmp_path: Path, injected: dict[str, Any], labs: list[SimLab]
) -> None:
    data = tmp_path / "data"
    argv = ["run", "gate_sweep", "--sim", "--station", str(STATION), "--data", str(data), "--no-progress"]
    code, out, err = cli(*argv, *[a for s in SWEEP for a in ("--set", s)])
    assert code == 1, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    store = next(Path(data).glob("*/1-gate_sweep.zarr"))
    assert f"qbs-lab: run 1 aborted: no space left on device ({store})" in lines
    assert "OperationalError" not in err and "[Errno" not in err and "disk I/O" not in err
    assert injected["failed"] >= 2  # the flushes failed, and the final one came after the park
    assert_parked(labs[-1], injected["at_fill"])

    injected["full"] = False  # space is freed
    code, out, _ = cli("runs", "--data", str(data))
    assert code == 0 and "aborted" in out
    assert_records_agree(data, "1", "aborted", f"no space left on device ({store})")
    with xr.open_zarr(store) as ds:
        kept = int(np.isfinite(ds["t"].values).sum())
    assert kept < 12
    assert_resume_completes(data, "1")


def test_a_full_disk_stops_the_queue_which_resumes_the_item_once_space_is_freed(
    tmp_path: Path, injected: dict[str, Any], labs: list[SimLab]
) -> None:
    data = tmp_path / "data"
    q = Queue(data)
    first = q.add("gate_sweep", SWEEP)
    second = q.add("gate_sweep", ["num=3", "V_stop=2"])
    argv = ["queue", "run", "--sim", "--station", str(STATION), "--data", str(data), "--no-progress"]
    code, out, err = cli(*argv)
    assert code == 1, err  # stopped
    assert "Traceback" not in err
    assert "queue stopped" in out
    assert_parked(labs[-1], injected["at_fill"])
    items = {i.item_id: i for i in q.items()}
    assert items[first.item_id].status == "running"  # to be resumed, not failed
    assert items[second.item_id].status == "pending"  # the queue did not go on onto a full disk

    injected["full"] = False  # space is freed
    code, out, err = cli(*argv)
    assert code == 0, err
    assert "queue done" in out
    items = {i.item_id: i for i in q.items()}
    assert [items[i].status for i in (first.item_id, second.item_id)] == ["done", "done"]
    assert items[first.item_id].run_id == "1"  # the same run, resumed
    assert_records_agree(data, "1", "completed", None)
    assert len(Catalog(data).runs()) == 2


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs (needs root: mount)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the injected-ENOSPC test covers the same path")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_real_full_disk_parks_first_and_resume_completes_once_space_is_freed(
    small_disk: Path, labs: list[SimLab]
) -> None:
    data = small_disk / "data"
    ballast = small_disk / "ballast"
    at_fill: dict[str, int] = {}

    def fill(k: int, index: tuple[int, ...], values: Any) -> None:
        if k == 4 and not ballast.exists():  # something else fills the disk after the fifth point
            at_fill["gate"] = len(labs[-1].command_log("gate"))
            with open(ballast, "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError as err:
                    assert err.errno == errno.ENOSPC

    proc = load_procedure("gate_sweep")
    opts = LabOptions(STATION, True, None, 0, data)
    outcome = start_run(
        proc, parse_settings(proc, SWEEP), opts, progress=False, estimate=False, subscribers=[fill]
    )
    store = outcome.path
    assert outcome.result.status == "aborted"
    assert outcome.result.message == f"no space left on device ({store})"
    assert_parked(labs[-1], at_fill)

    ballast.unlink()  # space is freed
    code, _out, _ = cli("runs", "--data", str(data))
    assert code == 0
    assert_records_agree(data, outcome.run_id, "aborted", f"no space left on device ({store})")
    assert_resume_completes(data, outcome.run_id)


def test_a_run_that_would_not_fit_is_refused_before_it_starts(small_disk: Path) -> None:
    data = small_disk / "data"
    (small_disk / "ballast").write_bytes(b"\0" * (7 * 2**20 + 600 * 2**10))  # leaves ~0.4 MiB
    code, _out, err = cli(
        "run", "gate_sweep", "--sim", "--station", str(STATION), "--data", str(data), "--set", "num=61"
    )
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith(f"qbs-lab: error: {data}: ") and "MiB free, the run needs about" in line
    assert Catalog(data).runs() == []
