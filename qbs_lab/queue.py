"""Tonight's plan: a persistent queue of procedures in SQLite, beside the run catalog.

Each item is a procedure with its ``key=value`` settings (checked when added: the procedure exists and
every setting parses). ``run`` takes the items in order: an item whose run was interrupted or killed is
resumed from its first unmeasured point, any other starts a new run. A completed run marks the item
``done``; an aborted one ``failed`` (its reason kept) and the queue goes on, unless a suspender with the
policy ``stop`` ended it; Ctrl-C stops the queue and leaves the item to be resumed. An item that cannot
run at all (outside the station's limits, its dry run fails, its file does not import) is marked
``failed`` with the reason, notified, and the queue goes on. Because the items, their run ids and the
runs' stores all live on disk, a queue runner that is killed and started again picks up where it was.
Items are claimed in one SQLite transaction (:meth:`Queue.claim`), so two runners never take the same
one; the data directory's lock (:mod:`qbs_lab.lock`) keeps a second runner from starting at all.

A plan file (``qbs-lab queue load FILE``)::

    items:
      - procedure: field_isotherms
        set: {V_g: 15, temperatures: [0.06, 0.12, 0.24]}
      - procedure: gate_isotherms
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from qbs_lab.procedure import ProcedureError, load_procedure, parse_settings
from qbs_lab.store.catalog import Catalog, CatalogError, _alive, connect, now_iso
from qbs_lab.yaml_file import YamlFileError, read_yaml

__all__ = ["Queue", "QueueError", "QueueItem", "run_queue", "settings_from_yaml"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    item_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    position  INTEGER NOT NULL,
    procedure TEXT NOT NULL,
    settings  TEXT NOT NULL,      -- JSON list of "key=value"
    status    TEXT NOT NULL,      -- pending, running, done, failed
    run_id    TEXT,
    added     TEXT NOT NULL,
    message   TEXT,
    pid       INTEGER             -- the queue runner that claimed it
)
"""
#: how a run stopped by a full disk begins its message (qbs_lab.store.space.DiskFull)
DISK_FULL = "no space left on device"
_COLUMNS = ("item_id", "position", "procedure", "settings", "status", "run_id", "added", "message")


class QueueError(Exception):
    """A queue request that cannot be done (unknown item, bad plan file); ``problems``, one per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class QueueItem:
    item_id: int
    position: int
    procedure: str
    settings: list[str]
    status: str
    run_id: str | None
    added: str
    message: str | None


class Queue:
    """The queue in ``data_dir/catalog.sqlite`` (table ``queue``)."""

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / "catalog.sqlite"

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with connect(self.path, _SCHEMA) as conn:
            if not getattr(self, "_has_pid", False):  # a queue made by an older version: add the column
                columns = {r[1] for r in conn.execute("PRAGMA table_info(queue)")}
                if "pid" not in columns:
                    conn.execute("ALTER TABLE queue ADD COLUMN pid INTEGER")
                self._has_pid = True
            yield conn

    # -- editing -------------------------------------------------------------------------------------
    def add(self, procedure: str, settings: Sequence[str] = ()) -> QueueItem:
        """Append a procedure (checked: it loads and its settings parse)."""
        _check(procedure, settings)
        with self._connect() as conn:
            top = conn.execute("SELECT COALESCE(MAX(position), 0) FROM queue").fetchone()[0]
            cur = conn.execute(
                "INSERT INTO queue (position, procedure, settings, status, added)"
                " VALUES (?, ?, ?, 'pending', ?)",
                (top + 1, procedure, json.dumps(list(settings)), now_iso()),
            )
            item_id = int(cur.lastrowid or 0)
        return self.get(item_id)

    def load(self, path: str | Path) -> list[QueueItem]:
        """Append every item of a plan file; nothing is added if any item has a problem."""
        entries = settings_from_yaml(path)
        return [self.add(procedure, settings) for procedure, settings in entries]

    def remove(self, item_id: int) -> None:
        item = self.get(item_id)
        if item.status == "running":
            raise QueueError([f"item {item_id} is running (run {item.run_id}); stop the queue first"])
        with self._connect() as conn:
            (pid,) = conn.execute("SELECT pid FROM queue WHERE item_id = ?", (item_id,)).fetchone()
        if item.status == "pending" and pid is not None and _alive(pid):
            raise QueueError([f"item {item_id} is being started by process {pid}; stop the queue first"])
        with self._connect() as conn:
            conn.execute("DELETE FROM queue WHERE item_id = ?", (item_id,))
        self._renumber()

    def move(self, item_id: int, position: int) -> None:
        """Put an item at ``position`` (1 = first) among the items."""
        self.get(item_id)
        ids = [i.item_id for i in self.items() if i.item_id != item_id]
        position = min(max(position, 1), len(ids) + 1)
        ids.insert(position - 1, item_id)
        with self._connect() as conn:
            for pos, iid in enumerate(ids, start=1):
                conn.execute("UPDATE queue SET position = ? WHERE item_id = ?", (pos, iid))

    def clear_finished(self) -> int:
        """Remove done and failed items; how many."""
        with self._connect() as conn:
            n = conn.execute("DELETE FROM queue WHERE status IN ('done', 'failed')").rowcount
        self._renumber()
        return n

    def _renumber(self) -> None:
        with self._connect() as conn:
            ids = [r[0] for r in conn.execute("SELECT item_id FROM queue ORDER BY position, item_id")]
            for pos, iid in enumerate(ids, start=1):
                conn.execute("UPDATE queue SET position = ? WHERE item_id = ?", (pos, iid))

    def update(self, item_id: int, **fields: Any) -> None:
        unknown = set(fields) - {"status", "run_id", "message"}
        if unknown:
            raise ValueError(f"no queue columns {sorted(unknown)}")
        assignments = ", ".join(f"{k} = ?" for k in fields)
        with self._connect() as conn:
            conn.execute(f"UPDATE queue SET {assignments} WHERE item_id = ?", (*fields.values(), item_id))

    # -- reading ---------------------------------------------------------------------------------------
    def items(self) -> list[QueueItem]:
        if not self.path.exists():
            return []
        with self._connect() as conn:
            rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM queue ORDER BY position").fetchall()
        return [_item(r) for r in rows]

    def get(self, item_id: int) -> QueueItem:
        with self._connect() as conn:
            row = conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM queue WHERE item_id = ?", (item_id,)
            ).fetchone()
        if row is None:
            raise QueueError([f"the queue has no item {item_id} (qbs-lab queue list)"])
        return _item(row)

    def next_item(self) -> QueueItem | None:
        """The first item still to run (an interrupted one first of all, as it is earlier in line)."""
        return next((i for i in self.items() if i.status in ("pending", "running")), None)

    def claim(self) -> QueueItem | None:
        """Take the first item still to run for this process, in one transaction: a pending one, or a
        running one whose runner is gone (to be resumed), with no live runner's pid on it. The status
        stays as it is (``running`` once the item's run exists). None when nothing is left. Two runners
        calling this at once never get the same item."""
        me = os.getpid()
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")  # the write lock from the look to the update
            rows = conn.execute(
                f"SELECT {', '.join(_COLUMNS)}, pid FROM queue"
                " WHERE status IN ('pending', 'running') ORDER BY position"
            ).fetchall()
            for row in rows:
                item, pid = _item(row[:-1]), row[-1]
                if pid is not None and (pid == me or _alive(pid)):
                    continue  # a runner is on it (this one too: a claim ends in release or a verdict)
                claimed = conn.execute(
                    "UPDATE queue SET pid = ? WHERE item_id = ? AND status = ? AND pid IS ?",
                    (me, item.item_id, item.status, pid),
                ).rowcount
                if claimed == 1:
                    return item
        return None

    def release(self, item: QueueItem) -> None:
        """Give a claimed item back (pending, or running to be resumed by the next runner)."""
        with self._connect() as conn:
            conn.execute("UPDATE queue SET pid = NULL WHERE item_id = ?", (item.item_id,))


def _item(row: tuple[Any, ...]) -> QueueItem:
    d = dict(zip(_COLUMNS, row, strict=True))
    d["settings"] = json.loads(d["settings"])
    return QueueItem(**d)


def _check(procedure: str, settings: Sequence[str]) -> None:
    try:
        proc = load_procedure(procedure)
        proc.plan(parse_settings(proc, settings))
    except ProcedureError as err:
        raise QueueError([str(err)]) from None


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return ",".join(_as_text(v) for v in value)
    return str(value)


def settings_from_yaml(path: str | Path) -> list[tuple[str, list[str]]]:
    """The items of a plan file as (procedure, ["key=value", ...]); every problem reported at once."""
    path = Path(path)
    try:
        doc, node = read_yaml(path, "plan file")
    except YamlFileError as err:
        raise QueueError([str(err)]) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list) or not doc["items"]:
        raise QueueError([f"{path}: expected a list of items under `items:`"])
    lines = _item_lines(node)
    problems: list[str] = []
    entries: list[tuple[str, list[str]]] = []
    for n, item in enumerate(doc["items"]):
        where = f"{path}:{lines.get(n, '?')}: items[{n}]"
        if not isinstance(item, dict) or not isinstance(item.get("procedure"), str):
            problems.append(f"{where}: each item needs `procedure: NAME` (and optionally `set:`)")
            continue
        extra = set(item) - {"procedure", "set"}
        if extra:
            problems.append(f"{where}: unknown key(s) {', '.join(sorted(extra))} (allowed: procedure, set)")
            continue
        values = item.get("set") or {}
        if not isinstance(values, dict):
            problems.append(f"{where}.set: expected a mapping of parameter: value")
            continue
        settings = [f"{k}={_as_text(v)}" for k, v in values.items()]
        try:
            _check(item["procedure"], settings)
        except QueueError as err:
            problems.extend(f"{where}: {p}" for p in err.problems)
            continue
        entries.append((item["procedure"], settings))
    if problems:
        raise QueueError(problems)
    return entries


def _item_lines(node: yaml.Node | None) -> dict[int, int]:
    """Line numbers (1-based) of the items under ``items:``."""
    if not isinstance(node, yaml.MappingNode):
        return {}
    for key, value in node.value:
        if getattr(key, "value", None) == "items" and isinstance(value, yaml.SequenceNode):
            return {n: child.start_mark.line + 1 for n, child in enumerate(value.value)}
    return {}


def run_queue(
    queue: Queue,
    start: Callable[[QueueItem, Callable[[str], None]], Any],
    resume: Callable[[QueueItem], Any],
    catalog: Catalog,
    notify: Callable[..., None] = lambda event, **fields: None,
    cannot_run: tuple[type[Exception], ...] = (QueueError, ProcedureError),
) -> str:
    """Run the queue's items in order until none is left, Ctrl-C, or a ``stop`` policy; how it ended
    (``"done"``, ``"interrupted"``, ``"stopped"``).

    ``start(item, on_created)`` runs a new item (calling ``on_created(run_id)`` once its run exists) and
    ``resume(item)`` continues an item's run; both return a RunOutcome. An item whose start or resume
    raises one of ``cannot_run`` (the item's own problem) is marked failed with the reason and the queue
    goes on; any other error (the station, the disk) stops the queue with the item left to run.
    """
    while (item := queue.claim()) is not None:

        def created(run_id: str, _item: QueueItem = item) -> None:
            queue.update(_item.item_id, status="running", run_id=run_id)

        try:
            outcome = _run_item(queue, item, start, resume, catalog, notify, created)
        except cannot_run as err:
            reason = "; ".join(getattr(err, "problems", None) or [str(err)])
            run_id = queue.get(item.item_id).run_id
            queue.update(item.item_id, status="failed", message=reason)
            notify("item_failed", item=item.item_id, run_id=run_id, procedure=item.procedure, message=reason)
            continue
        except BaseException:
            queue.release(item)
            raise
        if outcome is None:
            continue
        result = outcome.result
        if result.status == "completed":
            queue.update(item.item_id, status="done", message=None)
            notify("item_done", item=item.item_id, run_id=outcome.run_id, procedure=item.procedure)
        elif result.status == "interrupted":
            queue.update(item.item_id, message=result.message)
            queue.release(item)
            return "interrupted"
        elif (result.message or "").startswith(DISK_FULL):  # every item would fail: resumed next time
            queue.update(item.item_id, message=result.message)
            queue.release(item)
            notify(
                "item_failed",
                item=item.item_id,
                run_id=outcome.run_id,
                procedure=item.procedure,
                message=f"{result.message}; the queue stops, and resumes this item once space is freed",
            )
            return "stopped"
        else:
            queue.update(item.item_id, status="failed", message=result.message)
            notify(
                "item_failed",
                item=item.item_id,
                run_id=outcome.run_id,
                procedure=item.procedure,
                message=result.message,
            )
            if result.stop_queue:
                return "stopped"
    notify("queue_done")
    return "done"


def _run_item(
    queue: Queue,
    item: QueueItem,
    start: Callable[[QueueItem, Callable[[str], None]], Any],
    resume: Callable[[QueueItem], Any],
    catalog: Catalog,
    notify: Callable[..., None],
    created: Callable[[str], None],
) -> Any:
    """Start or resume one claimed item; None when it only needed marking (its run had ended)."""
    state = None
    if item.run_id is not None:
        try:
            state = catalog.get(item.run_id).state
        except CatalogError:
            state = None
    if state == "completed":  # the runner died after the run ended, before the queue heard
        queue.update(item.item_id, status="done")
        return None
    message = catalog.get(item.run_id).message if state == "aborted" and item.run_id else None
    disk_full = (message or "").startswith(DISK_FULL)
    if state == "aborted" and item.status == "running" and not disk_full:  # its policy; died before noted
        queue.update(item.item_id, status="failed", message=message)
        return None
    # "running" too: this runner has claimed the item, so whoever ran it is gone (or could not write
    # its end: a full disk); resume_run settles the records first
    if (state in ("interrupted", "crashed", "running") or disk_full) and item.status == "running":
        notify("resumed", item=item.item_id, run_id=item.run_id, procedure=item.procedure)
        return resume(item)
    return start(item, created)
