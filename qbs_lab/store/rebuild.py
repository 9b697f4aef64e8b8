"""``qbs-lab runs --rebuild``: a new catalog made from the run stores on disk, which are the truth.

The old ``catalog.sqlite`` (damaged or not) is moved aside with its WAL files, never deleted. Every
store under ``data/<date>/<run_id>-<procedure>.zarr`` gives back its row from its own attributes (run id,
procedure and its file, parameters, station file, simulated lab, times, status and message) and its
measured points; a store that still says ``running`` and has an end record (:mod:`.end_record`) takes its
outcome from there. The queue table is copied over when the old file still yields it.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from qbs_lab.store.catalog import Catalog, RunRecord
from qbs_lab.store.end_record import EndRecord
from qbs_lab.store.run_store import RunStore, RunStoreError

__all__ = ["RebuildReport", "rebuild_catalog"]


@dataclass
class RebuildReport:
    """What a rebuild did: the runs found, the stores it could not read (with why), the old file."""

    runs: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    moved_aside: Path | None = None
    queue_items: int | None = None  # None: the old catalog's queue could not be read


def rebuild_catalog(data_dir: str | Path) -> RebuildReport:
    """Rebuild ``data_dir/catalog.sqlite`` from the stores (the caller holds the data directory's lock)."""
    data_dir = Path(data_dir).resolve()
    catalog = Catalog(data_dir)
    report = RebuildReport()
    queue = _salvage_queue(catalog.path)
    if catalog.path.exists():
        stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
        report.moved_aside = catalog.path.with_name(f"{catalog.path.name}.old-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            old = Path(f"{catalog.path}{suffix}")
            if old.exists():
                old.rename(Path(f"{report.moved_aside}{suffix}"))
    records: dict[int, RunRecord] = {}
    for path in sorted(data_dir.glob("*/*.zarr")):
        try:
            record = _record_from_store(path)
        except (RunStoreError, OSError, ValueError, KeyError, TypeError) as err:
            report.unreadable.append(f"{path}: {type(err).__name__}: {err}")
            continue
        if int(record.run_id) in records:
            report.unreadable.append(f"{path}: run id {record.run_id} is taken by another store; skipped")
            continue
        records[int(record.run_id)] = record
    for run_id in sorted(records):
        catalog.insert(records[run_id])
        report.runs.append(str(run_id))
    if queue is not None:
        report.queue_items = _restore_queue(catalog.path, *queue)
    return report


def _record_from_store(path: Path) -> RunRecord:
    attrs: dict[str, Any] = json.loads((path / ".zattrs").read_text())
    run_id = str(attrs.get("run_id") or path.name.split("-", 1)[0])
    if not run_id.isdigit():
        raise ValueError(f"no run id in its attributes or name {path.name!r}")
    store = RunStore.open(path)
    done = int(store.measured().sum())
    sim_info = json.loads(attrs.get("sim", "{}") or "{}")
    station = json.loads(attrs.get("station", "{}") or "{}")
    status, message, ended = (
        attrs.get("status", "running"),
        attrs.get("message") or None,
        attrs.get("end_time"),
    )
    end = EndRecord(path).read()
    if status == "running" and end is not None:
        status, message, ended = end.get("status", status), end.get("message"), end.get("ended", ended)
    return RunRecord(
        run_id=run_id,
        procedure=str(attrs.get("procedure") or path.stem.split("-", 1)[-1]),
        source=attrs.get("source") or None,
        status=str(status),
        path=str(path),
        created=str(attrs.get("start_time", "")),
        ended=ended,
        points=math.prod(store.shape),
        done=done,
        station=str(station.get("file", "")),
        sim=bool(int(attrs.get("simulated", 0))),
        scenario=sim_info.get("scenario"),
        seed=sim_info.get("seed"),
        parameters=json.loads(attrs.get("parameters", "{}")),
        message=message,
        pid=None,  # nobody runs it now (the rebuild holds the data directory's lock)
    )


def _salvage_queue(path: Path) -> tuple[str, list[tuple[Any, ...]]] | None:
    """The queue table's schema and rows from the old catalog ("" and none when it has no queue), or
    None if they cannot be read."""
    if not path.exists():
        return "", []
    try:
        conn = sqlite3.connect(path, timeout=5.0)
        try:
            row = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'queue'").fetchone()
            if row is None:
                return "", []
            return row[0], conn.execute("SELECT * FROM queue").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return None


def _restore_queue(path: Path, schema: str, rows: list[tuple[Any, ...]]) -> int:
    if not schema:
        return 0
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(schema)
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            conn.executemany(f"INSERT INTO queue VALUES ({marks})", rows)
    return len(rows)
