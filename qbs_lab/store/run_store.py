"""One run's data: a zarr store preallocated on the plan's grid, written line by line as the run goes.

The store is created with xarray (coordinates, CF attributes, every data variable all-NaN, zarr format
2, uncompressed, one chunk per inner line), so ``xarray.open_zarr`` reads it at any moment, even while
the run is writing. Points go into an in-memory buffer of the current inner line; the line's chunks are
written when the line completes, or sooner when ``flush_seconds`` of wall time have passed since the
last write, so that a long line risks only seconds of data. Each chunk is written to a temporary file
and renamed over the old one (an atomic replace on POSIX): a process killed mid-write leaves the
previous version of the chunk, never a torn one.

A point counts as measured when its ``t`` is a number; :meth:`RunStore.measured` gives that mask, from
which a resumed run finds where to continue.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

from qbs_lab.plan import AXIS_KINDS, Plan

__all__ = ["RunStore", "RunStoreError"]


class RunStoreError(Exception):
    """A run store that cannot be created, opened or written."""


class RunStore:
    """The zarr store of one run. Make it with :meth:`create` or :meth:`open`, then :meth:`record`."""

    def __init__(self, path: Path, flush_seconds: float = 2.0) -> None:
        self.path = Path(path)
        self.flush_seconds = flush_seconds
        try:
            group = zarr.open_group(str(self.path), mode="r")
        except Exception as err:
            raise RunStoreError(f"{self.path}: not a run store ({type(err).__name__})") from None
        attrs = dict(group.attrs)
        self.dims: tuple[str, ...] = tuple(json.loads(attrs["dims"]))
        self.variables: tuple[str, ...] = tuple(json.loads(attrs["variables"]))
        self.shape = tuple(int(group[d].shape[0]) for d in self.dims)
        self._t_row = self.variables.index("t")
        self._line: tuple[int, ...] | None = None
        self._buf = np.full((len(self.variables), self.shape[-1]), np.nan)
        self._filled = 0
        self._dirty = False
        self._last_flush = time.monotonic()

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
        chunks = (1,) * (len(shape) - 1) + (shape[-1],)
        data = {
            name: (dims, np.full(shape, np.nan), dict(var_attrs)) for name, var_attrs in variables.items()
        }
        coord_vars: dict[str, Any] = {
            name: (name, np.asarray(values, dtype=float), dict(a)) for name, values, a in coords
        }
        for name, (value, a) in (scalar_coords or {}).items():
            coord_vars[name] = ((), float(value), dict(a))
        ds = xr.Dataset(data, coords=coord_vars)
        ds.attrs.update(attrs or {})
        ds.attrs["dims"] = json.dumps(dims)
        ds.attrs["variables"] = json.dumps(list(variables))
        encoding = {name: {"chunks": chunks, "compressors": None, "_FillValue": np.nan} for name in variables}
        path.parent.mkdir(parents=True, exist_ok=True)
        # all-NaN chunks equal the fill value, so only metadata and coordinates reach the disk here
        ds.to_zarr(path, zarr_format=2, encoding=encoding, consolidated=True, mode="w-")
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
        line = tuple(index[:-1])
        if line != self._line:
            self.flush()
            self._load_line(line)
        j = index[-1]
        if self._buf[self._t_row, j] != self._buf[self._t_row, j]:  # NaN: a new point
            self._filled += 1
        self._buf[:, j] = values
        self._dirty = True
        if self._filled == self.shape[-1] or time.monotonic() - self._last_flush > self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the current line's chunks (atomically, one file per variable)."""
        if not self._dirty or self._line is None:
            return
        key = ".".join(str(i) for i in (*self._line, 0))
        for row, name in enumerate(self.variables):
            final = self.path / name / key
            tmp = final.with_name(f".{key}.tmp")
            with open(tmp, "wb") as f:
                f.write(self._buf[row].astype("<f8", copy=False).tobytes())
            os.replace(tmp, final)
        self._dirty = False
        self._last_flush = time.monotonic()

    def _load_line(self, line: tuple[int, ...]) -> None:
        """Start a line's buffer: what is on disk for it (a resumed or partly written line), else NaN."""
        self._line = line
        key = ".".join(str(i) for i in (*line, 0))
        for row, name in enumerate(self.variables):
            chunk = self.path / name / key
            if chunk.exists():
                self._buf[row] = np.fromfile(chunk, dtype="<f8")
            else:
                self._buf[row] = np.nan
        self._filled = int(np.isfinite(self._buf[self._t_row]).sum())
        self._dirty = False

    # -- reading and metadata ------------------------------------------------------------------------
    def measured(self) -> np.ndarray:
        """Boolean mask on the grid: True where a point is stored (its ``t`` is a number)."""
        self.flush()
        return np.isfinite(zarr.open_array(str(self.path / "t"), mode="r")[...])

    def attrs(self) -> dict[str, Any]:
        return dict(zarr.open_group(str(self.path), mode="r").attrs)

    def update_attrs(self, **attrs: Any) -> None:
        """Set global attributes (and refresh the consolidated metadata readers open first)."""
        group = zarr.open_group(str(self.path), mode="r+")
        group.attrs.update(attrs)
        zarr.consolidate_metadata(str(self.path), zarr_format=2)

    def dataset(self) -> xr.Dataset:
        """The run as an xarray Dataset (lazy, as stored now)."""
        self.flush()
        return xr.open_zarr(self.path)

    def close(self) -> None:
        self.flush()
