"""The SQLite catalog of runs: one row per run, what it was, where its data is, how far it got.

Every call opens the database, does one short transaction and closes it again, in WAL mode: nothing
holds a lock between calls, so a run killed or interrupted never leaves the catalog locked (the QCoDeS
complaint), and ``qbs-lab runs`` can read it while a run writes.

The stores on disk are the truth, the catalog an index of them: a catalog SQLite cannot read (a bad
header, a damaged page) ends in one line that names the way out, ``qbs-lab runs --rebuild``
(:mod:`.rebuild`); a row whose JSON is damaged is listed as ``damaged`` and affects only its run. Store
paths are recorded absolute, so every command works from any directory; a relative path left by an
older version is found under the catalog's own directory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from qbs_lab.store.space import disk_full

__all__ = ["Catalog", "CatalogError", "RunRecord"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    procedure  TEXT NOT NULL,
    source     TEXT,              -- a user's procedure file, or NULL for a built-in one
    status     TEXT NOT NULL,     -- running, completed, aborted, interrupted
    path       TEXT,
    created    TEXT NOT NULL,
    ended      TEXT,
    points     INTEGER NOT NULL,
    done       INTEGER NOT NULL DEFAULT 0,
    station    TEXT NOT NULL,
    sim        INTEGER NOT NULL,  -- 1 on the simulated lab
    scenario   TEXT,
    seed       INTEGER,
    parameters TEXT NOT NULL,     -- JSON
    message    TEXT,
    pid        INTEGER            -- the process running it (to tell a live run from a killed one)
)
"""

_COLUMNS = (
    "run_id",
    "procedure",
    "source",
    "status",
    "path",
    "created",
    "ended",
    "points",
    "done",
    "station",
    "sim",
    "scenario",
    "seed",
    "parameters",
    "message",
    "pid",
)


class CatalogError(Exception):
    """A run id the catalog does not have, or a catalog that cannot be read."""


@dataclass(frozen=True)
class RunRecord:
    """One catalog row."""

    run_id: str
    procedure: str
    source: str | None
    status: str
    path: str | None
    created: str
    ended: str | None
    points: int
    done: int
    station: str
    sim: bool
    scenario: str | None
    seed: int | None
    parameters: dict[str, Any]
    message: str | None
    pid: int | None
    damaged: str | None = None  # what of the row cannot be read (bad JSON): only this run is affected

    @property
    def state(self) -> str:
        """The status, with ``running`` told apart from ``crashed`` (its process is gone)."""
        if self.damaged:
            return "damaged"
        if self.status == "running" and not _alive(self.pid):
            return "crashed"
        return self.status


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def connect(path: Path, schema: str) -> Iterator[sqlite3.Connection]:
    """One short transaction on the database at ``path`` (WAL mode, ``schema`` made if missing), closed
    after it: nothing holds a lock between calls."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(path, timeout=30.0)
    except sqlite3.Error as err:
        raise CatalogError(f"{path}: cannot open the catalog ({err})") from None
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(schema)
        with conn:
            yield conn
    except sqlite3.DatabaseError as err:
        raise _catalog_error(err, path) from None
    finally:
        conn.close()


_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


def _catalog_error(err: sqlite3.DatabaseError, path: Path) -> Exception:
    """A SQLite error as one line: a full disk, a damaged file (with the way out), or the error."""
    full = disk_full(err, path)
    if full is not None:
        return full
    code = getattr(err, "sqlite_errorcode", 0) & 0xFF
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or "malformed" in str(err):
        return CatalogError(
            f"{path}: the catalog is damaged ({err}); the run stores are the truth: rebuild it from them"
            f" with `qbs-lab runs --rebuild --data {path.parent}`"
        )
    return CatalogError(f"{path}: {err}")


def now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


class Catalog:
    """The catalog at ``data_dir/catalog.sqlite`` (created on first use)."""

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / "catalog.sqlite"

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return connect(self.path, _SCHEMA)

    def new_run(
        self,
        *,
        procedure: str,
        source: str | None,
        points: int,
        station: str,
        sim: bool,
        scenario: str | None,
        seed: int | None,
        parameters: dict[str, Any],
    ) -> str:
        """Add a run (status ``running``) and return its id."""
        with self._connect() as conn:
            cur = conn.execute(
                "INSERT INTO runs (procedure, source, status, created, points, station, sim, scenario,"
                " seed, parameters, pid) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    procedure,
                    source,
                    now_iso(),
                    points,
                    station,
                    int(sim),
                    scenario,
                    seed,
                    json.dumps(parameters),
                    os.getpid(),
                ),
            )
            return str(cur.lastrowid)

    def update(self, run_id: str, **fields: Any) -> None:
        """Set columns of a run (status, path, done, ended, message)."""
        unknown = set(fields) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"no catalog columns {sorted(unknown)}")
        assignments = ", ".join(f"{k} = ?" for k in fields)
        with self._connect() as conn:
            conn.execute(f"UPDATE runs SET {assignments} WHERE run_id = ?", (*fields.values(), int(run_id)))

    def get(self, run_id: str) -> RunRecord:
        if not str(run_id).isdigit():
            raise CatalogError(f"{run_id!r} is not a run id (a whole number, as `qbs-lab runs` lists)")
        if not self.path.exists():
            raise CatalogError(f"no run {run_id}: there is no catalog at {self.path} (is --data right?)")
        with self._connect() as conn:
            row = conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM runs WHERE run_id = ?", (int(run_id),)
            ).fetchone()
        if row is None:
            raise CatalogError(f"{self.path}: no run {run_id}")
        return self._record(row)

    def runs(self, limit: int | None = None) -> list[RunRecord]:
        """The runs, newest first."""
        if not self.path.exists():
            return []
        query = f"SELECT {', '.join(_COLUMNS)} FROM runs ORDER BY run_id DESC"
        with self._connect() as conn:
            rows = conn.execute(query + (f" LIMIT {int(limit)}" if limit else "")).fetchall()
        return [self._record(r) for r in rows]

    def _record(self, row: tuple[Any, ...]) -> RunRecord:
        d = dict(zip(_COLUMNS, row, strict=True))
        d["run_id"] = str(d["run_id"])
        d["sim"] = bool(d["sim"])
        try:
            d["parameters"] = json.loads(d["parameters"])
            if not isinstance(d["parameters"], dict):
                raise ValueError("not a mapping")
        except (TypeError, ValueError) as err:
            d["parameters"] = {}
            d["damaged"] = f"its parameters are not valid JSON ({err})"
        if d["path"]:
            d["path"] = str(self._store_path(d["path"]))
        return RunRecord(**d)

    def _store_path(self, recorded: str) -> Path:
        """A recorded store path as an absolute one. Older catalogs hold paths relative to wherever the
        run was started (``data/<date>/<run>.zarr``): the store is the one under this catalog's
        directory with the same date folder and name."""
        path = Path(recorded)
        if path.is_absolute():
            return path
        here = self.data_dir.resolve().joinpath(*path.parts[-2:])
        return here if here.exists() or not path.exists() else path.resolve()

    def insert(self, record: RunRecord) -> None:
        """Put a whole row back with its own run id (rebuilding the catalog from the stores)."""
        d = dataclasses.asdict(record)
        d["parameters"] = json.dumps(d["parameters"])
        d["sim"] = int(d["sim"])
        values = [d[c] for c in _COLUMNS]
        with self._connect() as conn:
            conn.execute(
                f"INSERT INTO runs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                values,
            )
