"""Wall time of an overnight sequence on the simulated lab's virtual clock.

Temperature steps and magnet ramps through the QCoDeS AMI 430, Lakeshore 372 and SR830 drivers
(qbs_lab.sim.soak), with the AMI driver's own blocking ramp polling. Run:

    python benchmarks/virtual_overnight.py [--hours 8]
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings
from pathlib import Path

from qbs_lab.sim import SimLab
from qbs_lab.sim.soak import run_soak

STATION = Path(__file__).resolve().parent.parent / "station.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=8.0, help="virtual hours (default: %(default)s)")
    hours = parser.parse_args().hours
    warnings.filterwarnings("ignore", message=".*does not correctly pass kwargs.*")
    with SimLab.from_station(STATION, seed=0) as lab:
        t0 = time.perf_counter()
        rows = run_soak(lab, hours=hours)
        wall = time.perf_counter() - t0
        queries = sum(1 for name in lab.instruments for c in lab.command_log(name) if c.reply is not None)
        virtual = lab.clock.now()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"virtual time      {virtual / 3600:8.2f} h")
    print(f"wall time         {wall:8.2f} s   ({virtual / wall:,.0f}x real time)")
    print(f"instrument queries {queries:7d}   ({wall / queries * 1e6:.0f} us each, driver included)")
    print(f"readings          {len(rows):8d}")
    print(f"peak RSS          {peak_kib / 1024:8.1f} MiB (whole process, drivers included)")


if __name__ == "__main__":
    main()
