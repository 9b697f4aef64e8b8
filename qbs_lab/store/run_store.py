"""One run's data: a zarr store preallocated on the plan's grid, written line by line as the run goes.

The store is zarr format 2, written as xarray writes it (coordinates, CF attributes, consolidated
metadata; uncompressed float64, one chunk per inner line, NaN as the fill value so that no chunk exists
until its line is measured), so ``xarray.open_zarr`` reads it at any moment, even while the run is
writing. The metadata is written directly (a few small JSON files) rather than through ``to_zarr``,
which costs ~50 ms of checking empty chunks per run.

Points go into an in-memory buffer of the current chunk. A chunk holds one or more inner lines (as many
as fit in 64 KiB, so a fast sweep does not make thousands of tiny files). It is written when a line
completes, unless the last write is less than ``min_interval`` ago; and in any case once
``flush_seconds`` have passed since the last write, mid-line too. Times are the run's own (``t``, on the
run's clock), so what is at risk is at most ``flush_seconds`` of measuring: at the fridge, and in
simulation where a line takes minutes of fridge time, every completed line is on disk; an in-memory
sweep of thousands of points a second is written a few times a second. Each chunk is written to a
temporary file and renamed over the old one (an atomic replace on POSIX): a process killed mid-write
leaves the previous version of the chunk, never a torn one.

A point counts as measured when its ``t`` is a number; :meth:`RunStore.measured` gives that mask, from
which a resumed run finds where to continue.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

from qbs_lab.plan import AXIS_KINDS, Plan

__all__ = ["CHUNK_BYTES", "RunStore", "RunStoreError"]

#: the largest chunk made of several inner lines [bytes] (a single longer line is one chunk)
CHUNK_BYTES = 64 * 1024


class RunStoreError(Exception):
    """A run store that cannot be created, opened or written."""


class RunStore:
    """The zarr store of one run. Make it with :meth:`create` or :meth:`open`, then :meth:`record`."""

    def __init__(self, path: Path, flush_seconds: float = 2.0, min_interval: float = 0.5) -> None:
        self.path = Path(path)
        self.flush_seconds, self.min_interval = flush_seconds, min_interval
        try:
            attrs = json.loads((self.path / ".zattrs").read_text())
            self.dims: tuple[str, ...] = tuple(json.loads(attrs["dims"]))
            self.variables: tuple[str, ...] = tuple(json.loads(attrs["variables"]))
            t_meta = json.loads((self.path / "t" / ".zarray").read_text())
        except (OSError, KeyError, ValueError) as err:
            raise RunStoreError(f"{self.path}: not a run store ({type(err).__name__}: {err})") from None
        self.shape: tuple[int, ...] = tuple(t_meta["shape"])
        # lines per chunk (along the second-innermost axis); a 1-D run is one line
        self._k = int(t_meta["chunks"][-2]) if len(self.shape) > 1 else 1
        self._t_row = self.variables.index("t")
        self._block: tuple[int, ...] | None = None
        self._buf = np.full((len(self.variables), self._k, self.shape[-1]), np.nan)
        self._line_fill = np.zeros(self._k, dtype=int)
        self._dirty = False
        self._last_flush_t = -math.inf

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
            chunks[f"{name}/0"] = data.tobytes()
        for name, (value, a) in scalars.items():
            meta[f"{name}/.zarray"] = _zarray((), ())
            meta[f"{name}/.zattrs"] = {**a, "_ARRAY_DIMENSIONS": []}
            chunks[f"{name}/0"] = np.asarray(value, dtype="<f8").tobytes()
        if len(shape) > 1:  # as many inner lines per chunk as fit in CHUNK_BYTES
            k = max(1, min(shape[-2], CHUNK_BYTES // (8 * shape[-1])))
            line_chunk = (1,) * (len(shape) - 2) + (k, shape[-1])
        else:
            line_chunk = shape
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
        path = Path(path)
        if not path.is_dir():
            raise RunStoreError(f"{path}: no such run store")
        return cls(path, flush_seconds)

    # -- writing -----------------------------------------------------------------------------------
    def record(self, index: Sequence[int], values: Sequence[float]) -> None:
        """Put one point (``values`` in :attr:`variables` order) at grid ``index``; write when due."""
        if len(index) > 1:
            block, r = (*index[:-2], index[-2] // self._k), index[-2] % self._k
        else:
            block, r = (), 0
        if block != self._block:
            self.flush()
            self._load_block(block)
        j = index[-1]
        line_done = False
        if self._buf[self._t_row, r, j] != self._buf[self._t_row, r, j]:  # NaN: a new point
            self._line_fill[r] += 1
            line_done = self._line_fill[r] == self.shape[-1]
        self._buf[:, r, j] = values
        self._dirty = True
        since = values[self._t_row] - self._last_flush_t
        if since >= self.flush_seconds or (line_done and since >= self.min_interval):
            self.flush()

    def flush(self) -> None:
        """Write the current chunk of every variable (atomically, one file each)."""
        if not self._dirty or self._block is None:
            return
        key = self._key(self._block)
        for row, name in enumerate(self.variables):
            _atomic_write(self.path / name / key, self._buf[row].astype("<f8", copy=False).tobytes())
        self._dirty = False
        t = self._buf[self._t_row]
        self._last_flush_t = float(np.nanmax(t)) if np.isfinite(t).any() else -math.inf

    def _key(self, block: tuple[int, ...]) -> str:
        return ".".join(str(i) for i in (*block, 0))

    def _load_block(self, block: tuple[int, ...]) -> None:
        """Start a chunk's buffer: what is on disk for it (a resumed or partly written run), else NaN."""
        self._block = block
        key = self._key(block)
        for row, name in enumerate(self.variables):
            chunk = self.path / name / key
            if chunk.exists():
                self._buf[row] = np.fromfile(chunk, dtype="<f8").reshape(self._buf.shape[1:])
            else:
                self._buf[row] = np.nan
        self._line_fill = np.isfinite(self._buf[self._t_row]).sum(axis=1)
        self._dirty = False

    # -- reading and metadata ------------------------------------------------------------------------
    def measured(self) -> np.ndarray:
        """Boolean mask on the grid: True where a point is stored (its ``t`` is a number)."""
        self.flush()
        return np.isfinite(zarr.open_array(str(self.path / "t"), mode="r")[...])

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
        """The run as an xarray Dataset (lazy, as stored now)."""
        self.flush()
        return xr.open_zarr(self.path)

    def close(self) -> None:
        self.flush()


def _zarray(shape: tuple[int, ...], chunks: tuple[int, ...]) -> dict[str, Any]:
    """A zarr v2 array's metadata: float64, uncompressed, NaN fill, '.'-separated chunk keys."""
    return {
        "shape": list(shape),
        "chunks": list(chunks),
        "dtype": "<f8",
        "fill_value": "NaN",
        "order": "C",
        "filters": None,
        "dimension_separator": ".",
        "compressor": None,
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
