"""One run's data: a zarr store preallocated on the plan's grid, and a small journal of its newest points.

The store is zarr format 2, written as xarray writes it (coordinates, CF attributes, consolidated
metadata; float64, NaN as the fill value so that no chunk exists until a point of it is measured), so
``xarray.open_zarr`` reads it at any moment, even while the run is writing. Every chunk carries a CRC32C
checksum (the numcodecs codec, named in its ``.zarray``): a damaged chunk is detected by every reader,
named by :meth:`RunStore.damage` (run, variable, points), and its points count as not measured, so a
resumed run measures them again.

Writing costs the same per point whatever the line's length:

- each point goes into an in-memory buffer of its chunk and is appended to the journal
  (``<store>/.journal``, a few dozen bytes a point with their own CRC32) once ``flush_seconds`` of run
  time have passed since the last append: at the fridge's pace every point, at in-memory pace a batch
  every couple of seconds. A process killed at any moment loses at most those seconds.
- the chunk itself is rewritten (atomically: a temporary file renamed over the old one) only when it
  is complete, when the run moves on to another chunk, or when the points not yet in it are at least as
  many as those already in it (and at least :data:`FOLD_MIN`, and ``flush_seconds`` after the last
  fold): a chunk is rewritten a handful of times (doublings), never once a point, and an in-memory
  sweep writes it once. The journal is emptied after each such fold.

Chunks hold whole inner lines of at most :data:`CHUNK_POINTS` points (as many lines as fit), longer
lines are split along the inner axis. ``xarray.open_zarr`` sees the folded points; :func:`live_dataset`
(and :meth:`RunStore.dataset`) adds the journal's, for a live view; :func:`journal_points` gives just
those, for a reader that reads the chunks its own way. A point counts as measured when its
``t`` is a number; :meth:`RunStore.measured` gives that mask (journal included, damaged chunks
excluded), from which a resumed run finds where to continue.

Write errors (a full disk: ``OSError`` ENOSPC) are raised to the caller as they come.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from numcodecs import CRC32C

from qbs_lab.plan import AXIS_KINDS, Plan

__all__ = [
    "CHUNK_POINTS",
    "FOLD_MIN",
    "JOURNAL",
    "Damage",
    "RunStore",
    "RunStoreError",
    "journal_points",
    "live_dataset",
]

#: the most points a chunk holds (32 KiB of float64 a variable)
CHUNK_POINTS = 4096
#: the fewest new points worth rewriting a chunk for, before it is complete
FOLD_MIN = 64
#: the journal of points not yet folded into their chunk, inside the store
JOURNAL = ".journal"

_CODEC = CRC32C()


class RunStoreError(Exception):
    """A run store that cannot be created, opened or written."""


@dataclass(frozen=True)
class Damage:
    """A chunk whose checksum (or size) is wrong: its variable, chunk key and the grid points it holds."""

    variable: str
    key: str
    region: tuple[slice, ...]
    dims: tuple[str, ...]
    reason: str

    @property
    def points(self) -> int:
        return math.prod(s.stop - s.start for s in self.region)

    def describe(self) -> str:
        where = " x ".join(f"{d}[{s.start}:{s.stop}]" for d, s in zip(self.dims, self.region, strict=True))
        return f"variable {self.variable}, chunk {self.key} ({self.reason}): {self.points} points, {where}"


class RunStore:
    """The zarr store of one run. Make it with :meth:`create` or :meth:`open`, then :meth:`record`."""

    def __init__(self, path: Path, flush_seconds: float = 2.0) -> None:
        self.path = Path(path)
        self.flush_seconds = flush_seconds
        try:
            attrs = json.loads((self.path / ".zattrs").read_text())
            self.dims: tuple[str, ...] = tuple(json.loads(attrs["dims"]))
            self.variables: tuple[str, ...] = tuple(json.loads(attrs["variables"]))
            t_meta = json.loads((self.path / "t" / ".zarray").read_text())
        except (OSError, KeyError, ValueError) as err:
            raise RunStoreError(f"{self.path}: not a run store ({type(err).__name__}: {err})") from None
        self.shape: tuple[int, ...] = tuple(t_meta["shape"])
        self.chunks: tuple[int, ...] = tuple(t_meta["chunks"])
        # stores written before chunks carried a checksum are read (and resumed) as they are
        self._codec = _CODEC if (t_meta.get("compressor") or {}).get("id") == "crc32c" else None
        self._dirty = False  # points recorded since the chunk was last written
        self._t_row = self.variables.index("t")
        self._journal_dtype = _journal_dtype(len(self.shape), len(self.variables))
        self._block: tuple[int, ...] | None = None
        self._buf = np.full((len(self.variables), *self.chunks), np.nan)
        self._filled = 0  # points of the current chunk in the buffer
        self._in_chunk = 0  # of those, how many its file on disk holds
        # points of the current chunk not yet in the journal: (grid index, index into the buffer)
        self._queue: list[tuple[tuple[int, ...], tuple[Any, ...]]] = []
        self._queue_t = -math.inf  # the newest t recorded [s]
        self._last_journal_t = self._last_fold_t = -math.inf  # t when the journal, a chunk was written
        self._recovered = False  # the journal a crash left has been folded in (writers only)

    # -- making one ------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | Path,
        coords: Sequence[tuple[str, Sequence[float], Mapping[str, str]]],
        variables: Mapping[str, Mapping[str, str]],
        *,
        scalar_coords: Mapping[str, tuple[float, Mapping[str, str]]] | None = None,
        attrs: Mapping[str, Any] | None = None,
        flush_seconds: float = 2.0,
    ) -> RunStore:
        """Preallocate a store: ``coords`` are the dimensions outermost first, (name, values, attrs);
        ``variables`` maps each data variable to its attrs (``units``, ``long_name``); ``t`` must be one."""
        path = Path(path)
        if path.exists():
            raise RunStoreError(f"{path}: exists already; a run never overwrites another's data")
        if "t" not in variables:
            raise RunStoreError("a run store needs the variable t (its measured-point marker)")
        dims = tuple(name for name, _, _ in coords)
        shape = tuple(len(values) for _, values, _ in coords)
        scalars = dict(scalar_coords or {})
        group_attrs = {**(attrs or {}), "dims": json.dumps(dims), "variables": json.dumps(list(variables))}
        meta: dict[str, Any] = {".zgroup": {"zarr_format": 2}, ".zattrs": group_attrs}
        chunks: dict[str, bytes] = {}
        for name, values, a in coords:
            data = np.asarray(values, dtype="<f8")
            meta[f"{name}/.zarray"] = _zarray(data.shape, data.shape)
            meta[f"{name}/.zattrs"] = {**a, "_ARRAY_DIMENSIONS": [name]}
            chunks[f"{name}/0"] = _encode(data)
        for name, (value, a) in scalars.items():
            meta[f"{name}/.zarray"] = _zarray((), ())
            meta[f"{name}/.zattrs"] = {**a, "_ARRAY_DIMENSIONS": []}
            chunks[f"{name}/0"] = _encode(np.asarray(value, dtype="<f8"))
        line_chunk = _chunk_shape(shape)
        for name, a in variables.items():
            meta[f"{name}/.zarray"] = _zarray(shape, line_chunk)
            extra = {"coordinates": " ".join(scalars)} if scalars else {}
            meta[f"{name}/.zattrs"] = {**a, **extra, "_ARRAY_DIMENSIONS": list(dims)}
        # zarr format 2 written as xarray writes it (metadata JSON, consolidated in .zmetadata); the
        # variables' chunks do not exist yet, which zarr reads as the fill value, NaN
        path.mkdir(parents=True)
        for key, value in meta.items():
            (path / key).parent.mkdir(exist_ok=True)
            (path / key).write_text(json.dumps(value, indent=2, allow_nan=False))
        for key, data in chunks.items():
            (path / key).write_bytes(data)
        _write_consolidated(path, meta)
        return cls(path, flush_seconds)

    @classmethod
    def for_plan(
        cls,
        path: str | Path,
        plan: Plan,
        variables: Mapping[str, Mapping[str, str]],
        attrs: Mapping[str, Any] | None = None,
        flush_seconds: float = 2.0,
    ) -> RunStore:
        """The store of ``plan``'s grid: its axes as dimensions, its fixed setpoints as scalar coordinates."""
        coords = [(a.name, a.values, {"units": a.units, "long_name": a.long_name}) for a in plan.axes]
        scalars = {
            name: (value, {"units": AXIS_KINDS[name][0], "long_name": AXIS_KINDS[name][1]})
            for name, value in plan.fixed.items()
        }
        return cls.create(
            path, coords, variables, scalar_coords=scalars, attrs=attrs, flush_seconds=flush_seconds
        )

    @classmethod
    def open(cls, path: str | Path, flush_seconds: float = 2.0) -> RunStore:
        """Open a store to read it, or to write more points into it (a resumed run).

        Opening writes nothing (a running store may be opened by a reader); the first :meth:`record`
        folds in the journal a killed writer left.
        """
        path = Path(path)
        if not path.is_dir():
            raise RunStoreError(f"{path}: no such run store")
        return cls(path, flush_seconds)

    # -- writing -----------------------------------------------------------------------------------
    def record(self, index: Sequence[int], values: Sequence[float]) -> None:
        """Put one point (``values`` in :attr:`variables` order) at grid ``index``."""
        if not self._recovered:
            self._recover()
        chunks = self.chunks
        if len(chunks) == 2:  # the common grid, spelled out: this runs once a point
            (i, j), (ci, cj) = index, chunks
            block, within = (i // ci, j // cj), (slice(None), i % ci, j % cj)
        else:
            block = tuple([i // c for i, c in zip(index, chunks, strict=True)])
            within = (slice(None), *[i % c for i, c in zip(index, chunks, strict=True)])
        if block != self._block:
            self.flush()
            self._load_block(block)
        point = self._buf[within]  # a view: the point's values in the chunk's buffer
        if point[self._t_row] != point[self._t_row]:  # NaN: a new point of this chunk
            self._filled += 1
        point[:] = values
        self._dirty = True
        self._queue.append((index, within))
        t = self._queue_t = float(values[self._t_row])  # a run's t only grows
        unfolded = self._filled - self._in_chunk
        if self._filled == self._block_size or (
            unfolded >= max(FOLD_MIN, self._in_chunk) and t - self._last_fold_t >= self.flush_seconds
        ):
            self._fold()
        elif t - self._last_journal_t >= self.flush_seconds:
            self._append_journal()

    def flush(self) -> None:
        """Put every point recorded so far into its chunk (the journal is then empty)."""
        if self._dirty:
            self._fold()

    def close(self) -> None:
        self.flush()

    def _append_journal(self) -> None:
        rec = np.zeros(len(self._queue), self._journal_dtype)
        rec["i"] = [i for i, _ in self._queue]
        rec["v"] = [self._buf[w] for _, w in self._queue]
        for r in rec:  # each record its own CRC: a torn or damaged record is dropped on replay
            r["crc"] = zlib.crc32(r.tobytes()[:-4])
        with open(self.path / JOURNAL, "ab") as f:
            f.write(rec.tobytes())
        self._last_journal_t = self._queue_t
        self._queue.clear()

    def _fold(self) -> None:
        """Write the current chunk of every variable (atomically, one file each), then empty the journal."""
        if self._block is None:
            return
        key = _key(self._block)
        for row, name in enumerate(self.variables):
            _atomic_write(self.path / name / key, _encode(self._buf[row], self._codec))
        journal = self.path / JOURNAL
        if journal.exists() and journal.stat().st_size:
            os.truncate(journal, 0)  # every point it held is in the chunk now
        self._in_chunk, self._dirty = self._filled, False
        self._last_journal_t = self._last_fold_t = self._queue_t  # nothing is at risk now
        self._queue.clear()

    def _recover(self) -> None:
        """Fold the points a killed writer left in the journal into their chunks."""
        self._recovered = True
        idx, vals = _read_journal(self.path / JOURNAL, self._journal_dtype)
        if len(idx):
            for block in sorted({self._locate(i)[0] for i in idx}):
                self._load_block(block)
                for i, v in zip(idx, vals, strict=True):
                    b, within = self._locate(i)
                    if b == block:
                        self._buf[(slice(None), *within)] = v
                key = _key(block)
                for row, name in enumerate(self.variables):
                    _atomic_write(self.path / name / key, _encode(self._buf[row], self._codec))
            self._block = None
        journal = self.path / JOURNAL
        if journal.exists():
            os.truncate(journal, 0)

    def _locate(self, index: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        block = tuple(int(i) // c for i, c in zip(index, self.chunks, strict=True))
        within = tuple(int(i) % c for i, c in zip(index, self.chunks, strict=True))
        return block, within

    def _load_block(self, block: tuple[int, ...]) -> None:
        """Start a chunk's buffer: what is on disk for it (a resumed run), else NaN. A damaged chunk of
        any variable leaves the whole block unmeasured: its points are measured again."""
        self._block = block
        key = _key(block)
        rows = [_read_chunk(self.path / name / key, self.chunks, self._codec) for name in self.variables]
        damaged = any(isinstance(r, str) for r in rows)
        for row, data in enumerate(rows):
            self._buf[row] = np.nan if damaged or data is None or isinstance(data, str) else data
        self._block_size = math.prod(s.stop - s.start for s in _region(block, self.chunks, self.shape))
        self._filled = self._in_chunk = int(np.isfinite(self._buf[self._t_row]).sum())

    # -- reading and metadata ------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """Every variable on the grid as stored now: chunks, then the journal's points over them (and
        this writer's own points not yet written); damaged chunks are NaN in every variable."""
        return self._read()[0]

    def _read(self) -> tuple[dict[str, np.ndarray], list[Damage]]:
        # the journal first: a fold between the two reads then leaves its points in the chunk we read
        idx, vals = _read_journal(self.path / JOURNAL, self._journal_dtype)
        out: dict[str, np.ndarray] = {}
        found: list[Damage] = []
        for name in self.variables:
            out[name], damaged = _read_array(self.path / name, self.shape, self.chunks, self._codec)
            for key, reason in damaged.items():
                block = tuple(int(b) for b in key.split("."))
                found.append(Damage(name, key, _region(block, self.chunks, self.shape), self.dims, reason))
        for d in found:
            for a in out.values():
                a[d.region] = np.nan
        pending = [(i, self._buf[w]) for i, w in self._queue]
        for i, v in [*zip(idx, vals, strict=True), *pending]:
            for row, name in enumerate(self.variables):
                out[name][tuple(i)] = v[row]
        return out, found

    def measured(self) -> np.ndarray:
        """Boolean mask on the grid: True where a point is stored (its ``t`` is a number, in a chunk
        whose every variable is undamaged, or in the journal)."""
        return np.isfinite(self.arrays()["t"])

    def damage(self) -> list[Damage]:
        """Every damaged chunk (checksum mismatch, wrong size), one entry per variable and chunk."""
        return self._read()[1]

    def attrs(self) -> dict[str, Any]:
        return json.loads((self.path / ".zattrs").read_text())

    def update_attrs(self, **attrs: Any) -> None:
        """Set global attributes (and the consolidated metadata, which readers open first)."""
        zattrs = json.loads((self.path / ".zattrs").read_text())
        zattrs.update(attrs)
        _atomic_write(self.path / ".zattrs", json.dumps(zattrs, indent=2).encode())
        consolidated = json.loads((self.path / ".zmetadata").read_text())
        consolidated["metadata"][".zattrs"] = zattrs
        _atomic_write(self.path / ".zmetadata", json.dumps(consolidated, indent=2).encode())

    def dataset(self) -> xr.Dataset:
        """The run as an xarray Dataset, in memory, as stored now (journal included, damaged points NaN)."""
        return _dataset(self.path, self.arrays())


def live_dataset(path: str | Path) -> xr.Dataset:
    """A run store as it is this moment, for a live view: ``xarray.open_zarr``'s dataset with the
    journal's newest points folded in and damaged chunks as NaN (reads only; safe while a run writes)."""
    store = RunStore.open(path)
    return _dataset(store.path, store.arrays())


def journal_points(path: str | Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The points of a store's journal, not yet folded into their chunks (what ``xarray.open_zarr``
    does not show yet): their grid indices, shape (n, ndim), and each variable's n values, in the order
    recorded (a point recorded twice: the later one last). Reads only."""
    store = RunStore.open(path)
    idx, vals = _read_journal(store.path / JOURNAL, store._journal_dtype)
    index = np.asarray(idx, dtype=int).reshape(len(idx), len(store.shape))
    return index, {name: np.asarray(vals[:, k], dtype=float) for k, name in enumerate(store.variables)}


def _dataset(path: Path, arrays: dict[str, np.ndarray]) -> xr.Dataset:
    with xr.open_zarr(path) as ds:
        out = ds.drop_vars(list(arrays)).load()
        for name, values in arrays.items():
            out[name] = (ds[name].dims, values, ds[name].attrs)
    return out


# -- chunks and journal ------------------------------------------------------------------------------
def _chunk_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Whole inner lines of at most CHUNK_POINTS points (as many as fit); longer lines split."""
    inner = min(shape[-1], CHUNK_POINTS)
    if len(shape) == 1:
        return (inner,)
    k = max(1, min(shape[-2], CHUNK_POINTS // inner))
    return (1,) * (len(shape) - 2) + (k, inner)


def _key(block: tuple[int, ...]) -> str:
    return ".".join(str(i) for i in block)


def _region(block: tuple[int, ...], chunks: tuple[int, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    """The grid points a chunk holds (an edge chunk is cut at the grid's end)."""
    return tuple(slice(b * c, min((b + 1) * c, n)) for b, c, n in zip(block, chunks, shape, strict=True))


def _encode(data: np.ndarray, codec: CRC32C | None = _CODEC) -> bytes:
    raw = np.ascontiguousarray(data, dtype="<f8").tobytes()
    return bytes(codec.encode(raw)) if codec is not None else raw


def _read_chunk(file: Path, chunks: tuple[int, ...], codec: CRC32C | None) -> np.ndarray | str | None:
    """A chunk's values; None when it does not exist; the reason (text) when it is damaged."""
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        return None
    expected = 8 * math.prod(chunks) + (4 if codec is not None else 0)
    if len(raw) != expected:
        return f"{len(raw)} bytes, not {expected}"
    if codec is not None:
        try:
            raw = codec.decode(raw)
        except Exception:  # numcodecs raises RuntimeError on a checksum mismatch
            return "checksum mismatch"
    return np.frombuffer(raw, dtype="<f8").reshape(chunks)


def _read_array(
    folder: Path, shape: tuple[int, ...], chunks: tuple[int, ...], codec: CRC32C | None
) -> tuple[np.ndarray, dict[str, str]]:
    """A variable on the grid from its chunk files, and its damaged chunks (key -> reason)."""
    out = np.full(shape, np.nan)
    damaged: dict[str, str] = {}
    for file in folder.iterdir():
        name = file.name
        if name.startswith("."):
            continue
        try:
            block = tuple(int(b) for b in name.split("."))
        except ValueError:
            continue
        if len(block) != len(shape):
            continue
        data = _read_chunk(file, chunks, codec)
        if isinstance(data, str):
            damaged[name] = data
        elif data is not None:
            region = _region(block, chunks, shape)
            out[region] = data[tuple(slice(0, s.stop - s.start) for s in region)]
    return out, damaged


def _journal_dtype(ndim: int, nvars: int) -> np.dtype:
    return np.dtype([("i", "<i4", (ndim,)), ("v", "<f8", (nvars,)), ("crc", "<u4")])


def _read_journal(file: Path, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The journal's whole records whose CRC matches (a torn last record is left out)."""
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raw = b""
    n = len(raw) // dtype.itemsize
    rec = np.frombuffer(raw[: n * dtype.itemsize], dtype=dtype)
    ok = [zlib.crc32(r.tobytes()[:-4]) == int(r["crc"]) for r in rec]
    good = rec[np.asarray(ok, dtype=bool)] if n else rec
    return good["i"], good["v"]


def _zarray(shape: tuple[int, ...], chunks: tuple[int, ...]) -> dict[str, Any]:
    """A zarr v2 array's metadata: float64, CRC32C-checksummed, NaN fill, '.'-separated chunk keys."""
    return {
        "shape": list(shape),
        "chunks": list(chunks),
        "dtype": "<f8",
        "fill_value": "NaN",
        "order": "C",
        "filters": None,
        "dimension_separator": ".",
        "compressor": _CODEC.get_config(),
        "zarr_format": 2,
    }


def _write_consolidated(path: Path, meta: dict[str, Any]) -> None:
    consolidated = {"metadata": meta, "zarr_consolidated_format": 1}
    _atomic_write(path / ".zmetadata", json.dumps(consolidated, indent=2).encode())


def _atomic_write(final: Path, data: bytes) -> None:
    """Write to a temporary file beside ``final``, then rename it over: readers see old or new, whole."""
    tmp = final.with_name(f".{final.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, final)
