"""Reading runs and the queue as they are written, from another process, touching nothing.

The live view is a separate reader (plottr's lesson: a subscriber inside the acquisition process can
break it). It reads what the run writes anyway: the catalog (SQLite opened read-only, one short query,
no lock held: the URI ``file:...?mode=ro``), each run's zarr store (through ``xarray.open_zarr``, as
any reader would) and its text log. It never writes any of them. A point counts as measured where its
``t`` is a number, so chunks not yet written, or a last chunk still being filled, show as not measured.

Everything returned is JSON-ready (plain floats, None for a missing number), in SI units: seconds,
Ohm, K, T, V, A.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

from qbs_lab.store.run_store import JOURNAL, journal_points

__all__ = ["DataReader", "decimate_grid", "signature"]

#: the readings shown as "now", with their units (the store's variable names)
READINGS = {
    "R": "Ohm",
    "T_mc": "K",
    "T_sample": "K",
    "B_meas": "T",
    "V_g_meas": "V",
    "I_leak": "A",
}
#: at most this many cells of a heat map, and points per line cut, go to the page
MAX_CELLS = (160, 400)
MAX_CUTS = 12
MAX_CUT_POINTS = 600


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _json_attr(attrs: dict[str, Any], key: str, default: Any) -> Any:
    raw = attrs.get(key)
    if raw is None:
        return default
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return default


def _clean(obj: Any) -> Any:
    """NaN and infinities to None, numpy scalars to Python: JSON the browser can parse."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray) and obj.dtype.kind == "f":  # whole arrays at once: 1e5 cells
        out = obj.astype(object)
        out[~np.isfinite(obj)] = None
        return out.tolist()
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return _num(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _mtime(path: Path) -> int:
    try:
        st = path.stat()
    except OSError:
        return 0
    return st.st_mtime_ns ^ st.st_size


def signature(paths: list[Path]) -> tuple[int, ...]:
    """What changes when any of ``paths`` is written (a file replaced in a folder changes the folder)."""
    return tuple(_mtime(p) for p in paths)


def decimate_grid(values: np.ndarray, max_rows: int, max_cols: int) -> tuple[np.ndarray, slice, slice]:
    """A 2-D array thinned to at most ``max_rows`` x ``max_cols`` by block means over measured cells
    (a block with nothing measured stays NaN); the strides used, as slices of the original axes."""
    rows, cols = values.shape
    fr, fc = max(1, math.ceil(rows / max_rows)), max(1, math.ceil(cols / max_cols))
    if fr == 1 and fc == 1:
        return values, slice(None), slice(None)
    pr, pc = (-rows) % fr, (-cols) % fc
    padded = np.pad(values, ((0, pr), (0, pc)), constant_values=np.nan)
    blocks = padded.reshape(padded.shape[0] // fr, fr, padded.shape[1] // fc, fc)
    finite = np.isfinite(blocks)
    count = finite.sum(axis=(1, 3))
    total = np.where(finite, blocks, 0.0).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return mean, slice(None, None, fr), slice(None, None, fc)


@dataclass
class _StoreCache:
    sig: tuple[int, ...]
    data: dict[str, Any] = field(default_factory=dict)


class DataReader:
    """Read-only access to a data directory (``catalog.sqlite`` and the runs' stores and logs)."""

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir)
        self.catalog = self.data_dir / "catalog.sqlite"
        self._cache: dict[str, _StoreCache] = {}
        self._plots: dict[tuple[str, int | None], tuple[tuple[int, ...], dict[str, Any]]] = {}
        self._lock = threading.Lock()

    # -- the catalog ---------------------------------------------------------------------------------
    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows as dicts (whatever columns the table has now), from a read-only connection."""
        if not self.catalog.exists():
            return []
        uri = f"{self.catalog.resolve().as_uri()}?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=2.0)
        except sqlite3.Error:
            return []
        try:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute(sql, args).fetchall()]
        except sqlite3.Error:  # no such table yet, or busy: nothing to show this time
            return []
        finally:
            conn.close()

    def catalog_signature(self) -> tuple[int, ...]:
        c = self.catalog
        return signature([c, c.with_name(c.name + "-wal")])

    def _records(self) -> list[dict[str, Any]]:
        return self._query("SELECT * FROM runs ORDER BY run_id DESC")

    def _record(self, run_id: str) -> dict[str, Any] | None:
        if not str(run_id).isdigit():
            return None
        rows = self._query("SELECT * FROM runs WHERE run_id = ?", (int(run_id),))
        return rows[0] if rows else None

    def _store_path(self, rec: dict[str, Any]) -> Path | None:
        path = rec.get("path")
        if not path:
            return None
        p = Path(path)
        if p.exists():
            return p
        # a path relative to where the run was started: the store is data/<date>/<name>.zarr
        inside = self.data_dir / p.parent.name / p.name
        return inside if inside.exists() else p

    # -- one store -----------------------------------------------------------------------------------
    def store_signature(self, path: Path | None) -> tuple[int, ...]:
        """Changes when the run writes: its attributes, a chunk of ``t`` (replaced by a rename, which
        changes the folder), or a file beside the store (its log, a journal)."""
        if path is None:
            return ()
        beside = sorted(path.parent.glob(f"{path.stem}.*"))
        return signature([path / ".zattrs", path / "t", path / JOURNAL, *beside])

    def run_signature(self, run_id: str | None) -> tuple[Any, ...]:
        """Changes when the catalog or run ``run_id``'s files change (what the event stream watches)."""
        path = None
        if run_id is not None:
            rec = self._record(run_id)
            path = self._store_path(rec) if rec else None
        return (run_id, self.catalog_signature(), self.store_signature(path))

    def _load(self, path: Path) -> dict[str, Any]:
        """The store's arrays and attributes now (cached until a file changes)."""
        sig = self.store_signature(path)
        with self._lock:
            cached = self._cache.get(str(path))
            if cached is not None and cached.sig == sig:
                return cached.data
        data = self._read_store(path)
        if data is None:  # unreadable right now (a file being replaced): keep what was read before
            return cached.data if cached is not None else {}
        with self._lock:
            self._cache[str(path)] = _StoreCache(sig, data)
        return data

    @staticmethod
    def _read_store(path: Path) -> dict[str, Any] | None:
        """R and t in full (what the plots and progress need), the other variables only at the latest
        point (the "now" readings): a 1e6-point run costs two arrays per change, not eleven."""
        for attempt in range(3):
            try:
                with xr.open_zarr(path, chunks=None) as ds:
                    return _snapshot(ds, path)
            except (FileNotFoundError, KeyError):
                return None
            except Exception:  # a chunk being replaced as we read: try again shortly
                if attempt == 2:
                    return None
                time.sleep(0.05)
        return None

    # -- what the API returns ----------------------------------------------------------------------------
    def runs(self) -> list[dict[str, Any]]:
        """Every run, newest first, with its progress."""
        return [self._summary(rec) for rec in self._records()]

    def newest_running(self) -> str | None:
        for rec in self._records():
            if _state(rec) == "running":
                return str(rec["run_id"])
        records = self._records()
        return str(records[0]["run_id"]) if records else None

    def _summary(self, rec: dict[str, Any], data: dict[str, Any] | None = None) -> dict[str, Any]:
        state = _state(rec)
        path = self._store_path(rec)
        if data is None and path is not None:
            data = self._load(path)  # the catalog's count lags a running or killed run (cached)
        attrs = (data or {}).get("attrs", {})
        done = int(rec.get("done") or 0)
        fridge = None
        if data and "t" in data.get("arrays", {}):
            t = data["arrays"]["t"]
            done = int(np.isfinite(t).sum())
            fridge = _num(np.nanmax(t)) if done else 0.0
        phases = _json_attr(attrs, "phases", None)
        if state != "running" and phases:
            fridge = float(sum(phases.values()))  # parking included
        total = int(rec.get("points") or 0)
        return _clean(
            {
                "run_id": str(rec["run_id"]),
                "procedure": rec.get("procedure"),
                "status": state,
                "points_done": done,
                "points_total": total,
                "fridge_time_s": fridge,
                # what is left of a run that has not completed (an interrupted one: if it is resumed)
                "estimated_left_s": 0.0 if state == "completed" else _time_left(attrs, done, fridge, total),
                "created": rec.get("created"),
                "ended": rec.get("ended"),
                "sim": bool(rec.get("sim")),
                "path": str(path) if path else None,
            }
        )

    def run(self, run_id: str) -> dict[str, Any] | None:
        """One run: its summary, parameters, the latest online result, interruptions, phases, the
        current setpoints and readings, the environment checks and the tail of its log."""
        rec = self._record(run_id)
        if rec is None:
            return None
        path = self._store_path(rec)
        data = self._load(path) if path is not None else {}
        out = self._summary(rec, data)
        attrs = data.get("attrs", {})
        online = _json_attr(attrs, "online", [])
        estimate = _json_attr(attrs, "estimate", None)
        log = _read_log(path.with_suffix(".log")) if path is not None else []
        out.update(
            parameters=rec.get("parameters")
            if isinstance(rec.get("parameters"), dict)
            else _json_attr(rec, "parameters", {}),
            online=online[-1] if isinstance(online, list) and online else None,
            online_history=online if isinstance(online, list) else [],
            interruptions=_json_attr(attrs, "interruptions", []),
            suspensions_live=[e for e in log if e["message"].startswith(("suspended:", "resumed:"))],
            phases=_json_attr(attrs, "phases", None),
            phases_estimated=estimate.get("phases") if isinstance(estimate, dict) else None,
            estimated_total_s=estimate.get("total_s") if isinstance(estimate, dict) else None,
            stabilization=_json_attr(attrs, "stabilization", []),
            checks=_json_attr(attrs, "checks", None),
            message=rec.get("message"),
            truth=_json_attr(attrs, "truth", None),
            dims=data.get("dims", []),
            units=data.get("units", {}),
            fixed=data.get("fixed", {}),
            axes={
                d: {"min": _num(np.min(v)), "max": _num(np.max(v)), "n": len(v)}
                for d, v in data.get("coords", {}).items()
                if len(v)
            },
            now=_latest(data),
            log=log[-40:],
        )
        return _clean(out)

    def run_data(self, run_id: str, outer: int | None = None) -> dict[str, Any] | None:
        """What the plots need, thinned for the page: the heat map of R over the two inner axes (at
        outer index ``outer``, default the one being measured; ``log10_R``, 4 decimals), line cuts
        along the innermost axis, the collapse, and the time line of points. Cached until the store
        changes."""
        rec = self._record(run_id)
        if rec is None:
            return None
        path = self._store_path(rec)
        key = (str(run_id), outer)
        sig = self.store_signature(path)
        with self._lock:
            hit = self._plots.get(key)
        if hit is not None and hit[0] == sig:
            return hit[1]
        result = self._run_data(run_id, path, outer)
        with self._lock:
            self._plots[key] = (sig, result)
        return result

    def _run_data(self, run_id: str, path: Path | None, outer: int | None) -> dict[str, Any]:
        data = self._load(path) if path is not None else {}
        if not data or "R" not in data.get("arrays", {}):
            return {"run_id": str(run_id), "dims": data.get("dims", []), "kind": "none"}
        dims, coords, R, t = data["dims"], data["coords"], data["arrays"]["R"], data["arrays"]["t"]
        units = data["units"]
        out: dict[str, Any] = {"run_id": str(run_id), "dims": dims, "units": units}
        if len(dims) == 1:
            xs, xi, _ = _thin_1d(coords[dims[0]], R)
            out.update(kind="line", x=xs, R=xi)
            out["timeline"] = _timeline(t)
            return _clean(out)
        # the two inner axes; outer axes at the index of the latest point (or the one asked for)
        lead = R.ndim - 2
        latest = _latest_index(t)
        if lead:
            idx = list(latest[:lead]) if latest is not None else [0] * lead
            if outer is not None and lead == 1:
                idx[0] = min(max(outer, 0), R.shape[0] - 1)
            plane, tplane = R[tuple(idx)], t[tuple(idx)]
            out["outer"] = [
                {
                    "dim": dims[i],
                    "index": idx[i],
                    "value": _num(coords[dims[i]][idx[i]]),
                    "values": coords[dims[i]],
                    "measuring": latest[i] if latest is not None else None,
                }
                for i in range(lead)
            ]
        else:
            plane, tplane = R, t
        ydim, xdim = dims[-2], dims[-1]
        yv, xv = coords[ydim], coords[xdim]
        z, _, _ = decimate_grid(plane, *MAX_CELLS)
        out.update(
            kind="map",
            x_dim=xdim,
            y_dim=ydim,
            heat={
                "x": decimate_grid(xv[None, :], 1, MAX_CELLS[1])[0][0],  # block centres
                "y": decimate_grid(yv[None, :], 1, MAX_CELLS[0])[0][0],
                "log10_R": np.round(np.log10(np.where(z > 0, z, np.nan)), 4),  # R <= 0: no colour
            },
            measured_in_plane=int(np.isfinite(tplane).sum()),
        )
        # line cuts: each row of the plane (e.g. each isotherm), at most MAX_CUTS of them
        rows = [i for i in range(plane.shape[0]) if np.isfinite(plane[i]).any()]
        if len(rows) > MAX_CUTS:
            pick = np.linspace(0, len(rows) - 1, MAX_CUTS).round().astype(int)
            rows = [rows[i] for i in sorted(set(pick.tolist()))]
        cuts = []
        for i in rows:
            xs, rv, _ = _thin_1d(xv, plane[i])
            cuts.append({"value": _num(yv[i]), "x": xs, "R": rv})
        out["cuts"] = cuts
        out["collapse"] = _collapse(data["attrs"], ydim, xdim, yv, xv, plane)
        out["timeline"] = _timeline(t)
        return _clean(out)

    # -- the queue -----------------------------------------------------------------------------------
    def queue_items(self) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM queue ORDER BY position")
        items = []
        for r in rows:
            settings = _json_attr(r, "settings", [])
            items.append(
                {
                    "item_id": r.get("item_id"),
                    "position": r.get("position"),
                    "procedure": r.get("procedure"),
                    "settings": settings if isinstance(settings, list) else [],
                    "status": r.get("status"),
                    "run_id": str(r["run_id"]) if r.get("run_id") is not None else None,
                    "message": r.get("message"),
                }
            )
        return items


def _values(ds: xr.Dataset, path: Path, name: str) -> np.ndarray:
    """A variable in full; if a chunk cannot be read (cut short by a writer that does not replace
    files atomically), chunk by chunk, the unreadable ones as not measured (NaN)."""
    try:
        return np.asarray(ds[name].values, dtype=float)
    except Exception:
        arr = zarr.open_array(str(path / name), mode="r")
        out = np.full(arr.shape, np.nan)
        grid = [range(math.ceil(n / c)) for n, c in zip(arr.shape, arr.chunks, strict=True)]
        for block in itertools.product(*grid):
            sl = tuple(slice(i * c, (i + 1) * c) for i, c in zip(block, arr.chunks, strict=True))
            with contextlib.suppress(Exception):
                out[sl] = arr[sl]
        return out


def _snapshot(ds: xr.Dataset, path: Path) -> dict[str, Any]:
    dims = [str(d) for d in _json_attr(ds.attrs, "dims", list(ds["t"].dims))]
    t = np.array(_values(ds, path, "t"))
    # the newest points wait in the store's journal until folded into their chunks: shown too
    journal, journaled = np.zeros((0, t.ndim), dtype=int), {}
    with contextlib.suppress(Exception):
        journal, journaled = journal_points(path)
    if journal.shape[1:] != (t.ndim,):
        journal, journaled = np.zeros((0, t.ndim), dtype=int), {}
    at = tuple(journal.T)
    if "t" in journaled:
        t[at] = journaled["t"]
    measured = np.isfinite(t)
    arrays = {"t": t}
    if "R" in ds and ds["R"].shape == t.shape:
        R = np.array(_values(ds, path, "R"))
        if "R" in journaled:
            R[at] = journaled["R"]
        arrays["R"] = np.where(measured, R, np.nan)
    coords = {d: np.asarray(ds[d].values, dtype=float) for d in dims}
    units = {str(k): str(ds[k].attrs.get("units", "")) for k in (*ds.data_vars, *ds.coords)}
    fixed = {str(k): _num(ds[k].values) for k in ds.coords if ds[k].ndim == 0 and k not in dims}
    idx = _latest_index(t)
    latest = {}
    if idx is not None:
        in_journal = np.flatnonzero((journal == np.asarray(idx)).all(axis=1)) if len(journal) else []
        for name in READINGS:
            if len(in_journal) and name in journaled:
                latest[name] = _num(journaled[name][in_journal[-1]])
            elif name in ds and ds[name].shape == t.shape:
                with contextlib.suppress(Exception):  # a reading not readable now stays unknown
                    latest[name] = _num(ds[name][idx].values)
    return {
        "dims": dims,
        "coords": coords,
        "arrays": arrays,
        "latest": latest,
        "units": units,
        "fixed": fixed,
        "attrs": dict(ds.attrs),
    }


def _state(rec: dict[str, Any]) -> str:
    """``running`` told apart from ``crashed`` (its process is gone), as ``qbs-lab runs`` does."""
    status = str(rec.get("status"))
    if status == "running":
        pid = rec.get("pid")
        if pid is None:
            return "crashed"
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return "crashed"
        except (PermissionError, ValueError, OverflowError):
            pass
    return status


def _time_left(attrs: dict[str, Any], done: int, elapsed: float | None, total: int) -> float | None:
    """Fridge time left [s]: the stored estimate's schedule, scaled by how the run keeps up with it
    (as the progress line does); without an estimate, the mean time per point so far."""
    if elapsed is None or done <= 0:
        est = _json_attr(attrs, "estimate", None)
        return _num(est.get("total_s")) if isinstance(est, dict) else None
    est = _json_attr(attrs, "estimate", None)
    if isinstance(est, dict) and est.get("schedule"):
        sched = np.asarray(est["schedule"], dtype=float)
        expected_now = float(np.interp(done - 1, sched[:, 0], sched[:, 1]))
        t0 = float(sched[0, 1]) if sched[0, 0] > 0 else 0.0
        end = float(est.get("end_s") or est.get("total_s") or sched[-1, 1])
        predicted = expected_now - t0
        factor = (elapsed - t0) / predicted if predicted > 0 and elapsed > t0 else 1.0
        return max(0.0, (end - expected_now) * factor)
    return elapsed / done * max(total - done, 0)


def _latest_index(t: np.ndarray) -> tuple[int, ...] | None:
    if not np.isfinite(t).any():
        return None
    return tuple(int(i) for i in np.unravel_index(int(np.nanargmax(t)), t.shape))


def _latest(data: dict[str, Any]) -> dict[str, Any] | None:
    """The setpoints and readings of the last point measured, each with its unit."""
    arrays = data.get("arrays", {})
    t = arrays.get("t")
    if t is None:
        return None
    idx = _latest_index(t)
    if idx is None:
        return None
    units = data.get("units", {})
    setpoints = {
        d: {"value": _num(data["coords"][d][i]), "units": units.get(d, "")}
        for d, i in zip(data["dims"], idx, strict=False)
    }
    for k, v in data.get("fixed", {}).items():
        setpoints[k] = {"value": v, "units": units.get(k, "")}
    latest = data.get("latest", {})
    readings = {
        k: {"value": latest.get(k), "units": units.get(k, u)} for k, u in READINGS.items() if k in latest
    }
    return {"t_s": _num(t[idx]), "index": list(idx), "setpoints": setpoints, "readings": readings}


def _thin_1d(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Keep at most MAX_CUT_POINTS points (every n-th), the measured ones only."""
    step = max(1, math.ceil(len(x) / MAX_CUT_POINTS))
    xs, ys = np.asarray(x)[::step], np.asarray(y)[::step]
    keep = np.isfinite(ys)
    return xs[keep], ys[keep], step


def _timeline(t: np.ndarray, max_points: int = 800) -> dict[str, Any]:
    """Points measured against fridge time: a pause shows as a flat stretch."""
    times = np.sort(t[np.isfinite(t)].ravel())
    n = len(times)
    step = max(1, math.ceil(n / max_points))
    k = np.arange(1, n + 1)[::step]
    return {"t": times[::step], "points": k}


def _collapse(
    attrs: dict[str, Any], ydim: str, xdim: str, yv: np.ndarray, xv: np.ndarray, plane: np.ndarray
) -> dict[str, Any] | None:
    """The isotherms on the scaling variable u = (x - x_c) T^(-1/zν), R/R_c on the other axis, with
    the online result's x_c, R_c and z·ν (None until the online analysis has them)."""
    online = _json_attr(attrs, "online", [])
    if ydim != "T" or not isinstance(online, list) or not online:
        return None
    last = online[-1]
    x_c = _num(last.get("collapse_x_c")) or _num(last.get("x_c"))
    R_c, znu = _num(last.get("R_c")), _num(last.get("znu"))
    if x_c is None or R_c is None or znu is None or znu <= 0:
        return None
    curves = []
    for i, T in enumerate(yv):
        row = plane[i]
        if T <= 0 or not np.isfinite(row).all():
            continue  # only complete isotherms, as the analysis uses
        xs, rv, _ = _thin_1d(xv, row)
        curves.append({"value": _num(T), "u": (xs - x_c) * T ** (-1.0 / znu), "r": rv / R_c})
    return {"x_c": x_c, "R_c": R_c, "znu": znu, "curves": curves}


def _read_log(path: Path, max_bytes: int = 64 * 1024) -> list[dict[str, str]]:
    """The run log's last lines as (time, message)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    lines = text.splitlines()
    if size > max_bytes and lines:
        lines = lines[1:]  # the first may be cut
    out = []
    for line in lines:
        stamp, sep, message = line.partition("  ")
        if not sep:
            stamp, message = "", line
        out.append({"time": stamp, "message": message})
    return out
