"""The live view on a run of 10^6 points: what one redraw costs the server and the page.

A 1000 x 1000 store (V_g x B) is written with zarr in a temporary directory, 600 lines measured, and a
real ``qbs-lab view`` process serves it on 127.0.0.1. Timed over HTTP (median of ``--repeat``, min-max
beside it): the plot data (``/api/runs/1/data``) and the run's detail (``/api/runs/1``), each right after
a new line was written (the reader reads the store again) and again with nothing new (cached). Beside
them, the same data without thinning: every measured R and t as JSON, as a page that plots every point
would need it per redraw. Run from the repository root:

    python benchmarks/view_large_run.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import xarray as xr
import zarr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qbs_lab.store import Catalog, RunStore
from tests.view_support import free_port, view_server

SHAPE = (1000, 1000)


def fetch(port: int, path: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as r:
        body = r.read()
    return time.perf_counter() - t0, len(body)


def fmt(times: list[float]) -> str:
    ms = [1e3 * t for t in times]
    return f"{statistics.median(ms):8.1f} ms ({min(ms):.1f}-{max(ms):.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        catalog = Catalog(data)
        run_id = catalog.new_run(
            procedure="big",
            source=None,
            points=SHAPE[0] * SHAPE[1],
            station="station.yaml",
            sim=True,
            scenario="clean",
            seed=0,
            parameters={},
        )
        path = data / "1-big.zarr"
        coords = [
            ("V_g", np.linspace(-20, 20, SHAPE[0]), {"units": "V", "long_name": "gate voltage"}),
            ("B", np.linspace(0, 0.03, SHAPE[1]), {"units": "T", "long_name": "field"}),
        ]
        variables = {
            k: {"units": u, "long_name": k}
            for k, u in (("R", "Ohm"), ("T_mc", "K"), ("I_leak", "A"), ("t", "s"))
        }
        RunStore.create(path, coords, variables, attrs={"run_id": run_id})
        catalog.update(run_id, path=str(path))
        R = zarr.open_array(str(path / "R"), mode="r+")
        t = zarr.open_array(str(path / "t"), mode="r+")
        rows = 600
        R[:rows] = 10 ** rng.uniform(2, 4.5, size=(rows, SHAPE[1]))
        t[:rows] = np.arange(rows * SHAPE[1], dtype=float).reshape(rows, -1)
        port = free_port()
        fresh: dict[str, list[float]] = {"data": [], "run": []}
        cached: dict[str, list[float]] = {"data": [], "run": []}
        sizes = {}
        with view_server(data, port):
            fetch(port, "/api/runs")  # warm up imports
            for k in range(args.repeat):
                row = rows + k  # a new line arrives: the next request reads the store again
                R[row] = 10 ** rng.uniform(2, 4.5, size=SHAPE[1])
                t[row] = np.arange(SHAPE[1], dtype=float) + row * SHAPE[1]
                time.sleep(0.05)
                for name, route in (("data", "/api/runs/1/data"), ("run", "/api/runs/1")):
                    dt, size = fetch(port, route)
                    fresh[name].append(dt)
                    dt, size = fetch(port, route)
                    cached[name].append(dt)
                    sizes[name] = size
        # without thinning: every measured point as JSON, as a plot-every-point page would fetch it
        naive = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            with xr.open_zarr(path, chunks=None) as ds:
                Rv, tv = ds["R"].values, ds["t"].values
            keep = np.isfinite(tv)
            body = json.dumps({"R": Rv[keep].tolist(), "t": tv[keep].tolist()}).encode()
            naive.append(time.perf_counter() - t0)
    measured = int((rows + args.repeat) * SHAPE[1])
    print(f"live view on a 1000 x 1000 run, {measured} points measured; {args.repeat} repeats")
    print(f"{'what':<44} {'after a new line':>28} {'cached':>28} {'bytes':>10}")
    print(
        f"{'GET /api/runs/1/data (heat map, cuts, thinned)':<44} {fmt(fresh['data']):>28}"
        f" {fmt(cached['data']):>28} {sizes['data']:>10}"
    )
    print(
        f"{'GET /api/runs/1 (progress, readings, log)':<44} {fmt(fresh['run']):>28}"
        f" {fmt(cached['run']):>28} {sizes['run']:>10}"
    )
    print(f"{'every point as JSON, no thinning (in-process)':<44} {fmt(naive):>28} {'':>28} {len(body):>10}")


if __name__ == "__main__":
    main()
