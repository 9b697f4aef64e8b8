"""Query round-trip times through PyVISA: our in-process backend and TCP server, beside pyvisa-sim.

pyvisa-sim (the static-reply simulator QCoDeS ships YAML files for) answers the same Lakeshore 372
query from QCoDeS's own lakeshore_model372.yaml; ours answers from the physics model. Run:

    python benchmarks/transport_roundtrip.py [--n 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from importlib.resources import as_file, files
from pathlib import Path

import pyvisa

from qbs_lab.sim import SimLab

STATION = Path(__file__).resolve().parent.parent / "station.yaml"
QUERIES = ("*IDN?", "KRDG? 6")


def _time_queries(resource: pyvisa.resources.MessageBasedResource, query: str, n: int) -> list[float]:
    for _ in range(20):  # warm up
        resource.query(query)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        resource.query(query)
        out.append(time.perf_counter() - t0)
    return out


def _row(label: str, query: str, samples: list[float]) -> str:
    us = sorted(s * 1e6 for s in samples)
    p95 = us[int(0.95 * (len(us) - 1))]
    return f"{label:<34} {query:<9} {statistics.mean(us):9.1f} {us[len(us) // 2]:9.1f} {p95:9.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="queries per row (default: %(default)s)")
    n = parser.parse_args().n
    print(f"{n} queries per row, Lakeshore 372; times in microseconds")
    print(f"{'transport':<34} {'query':<9} {'mean':>9} {'median':>9} {'p95':>9}")
    with SimLab.from_station(STATION, seed=0) as lab:
        rm = pyvisa.ResourceManager(lab.visalib)
        res = rm.open_resource(lab.address("fridge"), read_termination="\r\n", write_termination="\r\n")
        for q in QUERIES:
            print(_row("qbs_lab in-process (@qbslab)", q, _time_queries(res, q, n)), flush=True)
        res.close()
        addresses = lab.serve_tcp()
        rm_py = pyvisa.ResourceManager("@py")
        res = rm_py.open_resource(addresses["fridge"], read_termination="\r\n", write_termination="\r\n")
        for q in QUERIES:
            print(_row("qbs_lab TCP socket (pyvisa-py)", q, _time_queries(res, q, n)), flush=True)
        res.close()
        res = rm_py.open_resource(lab.tcp_address("fridge", "hislip"), read_termination="\r\n")
        for q in QUERIES:
            print(_row("qbs_lab HiSLIP (pyvisa-py)", q, _time_queries(res, q, n)), flush=True)
        res.close()
    try:
        import pyvisa_sim  # noqa: F401
    except ImportError:
        print("pyvisa-sim is not installed: pip install pyvisa-sim for the peer's figures")
        return
    with as_file(files("qcodes.instrument.sims") / "lakeshore_model372.yaml") as yaml_path:
        rm_sim = pyvisa.ResourceManager(f"{yaml_path}@sim")
        res = rm_sim.open_resource("GPIB::3::INSTR", read_termination="\r\n", write_termination="\r\n")
        for q in QUERIES:
            print(_row("pyvisa-sim (static YAML replies)", q, _time_queries(res, q, n)), flush=True)


if __name__ == "__main__":
    main()
