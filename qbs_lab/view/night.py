"""The queue as the page shows it: each item's fridge-time estimate and when the night will finish.

An item's estimate is the same dry run on the station's simulated twin as ``qbs-lab queue estimate``
(no instrument touched, nothing written). It takes about a second per item, so one worker thread of the
viewer computes them in the background, once per (procedure, settings, first point), and the page shows
"estimating" until it is there. The running item's time left is its run's (from the store).
"""

from __future__ import annotations

import contextlib
import io
import queue as queue_mod
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from qbs_lab.view.reader import DataReader

__all__ = ["NightView"]

_Key = tuple[str, tuple[str, ...], int]


class NightView:
    """Queue items with estimates, over a :class:`DataReader`; ``station`` is the station file the
    estimates are made for (None: no estimates)."""

    def __init__(self, reader: DataReader, station: Path | None) -> None:
        self.reader, self.station = reader, station
        self._estimates: dict[_Key, float | str] = {}
        self._todo: queue_mod.Queue[_Key] = queue_mod.Queue()
        self._asked: set[_Key] = set()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    def _estimate(self, key: _Key) -> float | str | None:
        """Seconds, an error text, or None while it is being computed."""
        if self.station is None or not self.station.exists():
            return "no station file for estimates"
        with self._lock:
            if key in self._estimates:
                return self._estimates[key]
            if key not in self._asked:
                self._asked.add(key)
                self._todo.put(key)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="queue-estimates", daemon=True)
                self._worker.start()
        return None

    def _work(self) -> None:
        from qbs_lab.procedure import load_procedure, parse_settings
        from qbs_lab.runs import estimate_plan
        from qbs_lab.station import load_station

        while True:
            key = self._todo.get()
            procedure, settings, start = key
            try:
                proc = load_procedure(procedure)
                plan = proc.plan(parse_settings(proc, list(settings)))
                assert self.station is not None
                with contextlib.redirect_stdout(io.StringIO()):
                    est = estimate_plan(plan, load_station(self.station), start=start)
                value: float | str = float(est.total)
            except Exception as err:  # shown on the page beside the item, never raised into a request
                value = f"no estimate ({type(err).__name__}: {err})"[:200]
            with self._lock:
                self._estimates[key] = value

    def queue(self) -> dict[str, Any]:
        """Items (position, procedure, status, run_id, estimate_s, left_s), the fridge time left in
        total and the clock time the night will finish (local, ISO 8601)."""
        items = self.reader.queue_items()
        runs = {r["run_id"]: r for r in self.reader.runs()} if items else {}
        total_left = 0.0
        complete = True
        for item in items:
            run = runs.get(item["run_id"]) if item["run_id"] else None
            item["estimate_s"], item["left_s"], item["estimate_note"] = None, None, None
            if run is not None and item["status"] in ("done", "failed"):
                item["estimate_s"], item["left_s"] = run["fridge_time_s"], 0.0
                continue
            if item["status"] in ("done", "failed"):
                item["left_s"] = 0.0
                continue
            if run is not None and run["status"] == "running":
                left = run["estimated_left_s"]
                item["left_s"] = left
                item["estimate_s"] = (run["fridge_time_s"] or 0.0) + left if left is not None else None
            else:
                start = run["points_done"] if run is not None else 0
                value = self._estimate((item["procedure"], tuple(item["settings"]), start))
                if isinstance(value, float):
                    item["estimate_s"] = item["left_s"] = value
                else:
                    item["estimate_note"] = value or "estimating"
            if item["left_s"] is None:
                complete = False
            else:
                total_left += item["left_s"]
        now = datetime.now().astimezone()
        finish = (now + timedelta(seconds=total_left)).isoformat(timespec="seconds") if complete else None
        return {
            "items": items,
            "left_s": total_left if complete else None,
            "now": now.isoformat(timespec="seconds"),
            "finish": finish if items else None,
        }
