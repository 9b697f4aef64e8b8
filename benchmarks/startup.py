"""Start-up time of the ``qbs-lab`` command beside a bare Python start.

Times, as whole processes: ``python -c pass`` (the floor: the interpreter and site), ``python -c
"import qbs_lab"``, ``qbs-lab --version``, ``qbs-lab --help``, ``qbs-lab run --help``, and for scale
``python -c "import qcodes"`` and ``python -c "import xarray"`` (what the command used to import before
doing anything). Each figure is the median of ``--repeat`` runs (min-max beside it), the commands
interleaved so that load on the machine hits all alike. Run from the repository root:

    python benchmarks/startup.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path


def commands() -> dict[str, list[str]]:
    py = sys.executable
    entry = Path(py).parent / "qbs-lab"
    cli = [str(entry)] if entry.exists() else [py, "-m", "qbs_lab.cli"]
    return {
        "python -c pass": [py, "-c", "pass"],
        "python -c 'import qbs_lab'": [py, "-c", "import qbs_lab"],
        "qbs-lab --version": [*cli, "--version"],
        "qbs-lab --help": [*cli, "--help"],
        "qbs-lab run --help": [*cli, "run", "--help"],
        "python -c 'import xarray'": [py, "-c", "import xarray"],
        "python -c 'import qcodes'": [py, "-c", "import qcodes"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="runs of each command (default: %(default)s)")
    args = parser.parse_args()
    cmds = commands()
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for cmd in cmds.values():  # once each first: the file cache warm for everyone
        subprocess.run(cmd, capture_output=True, check=True)
    for _ in range(args.repeat):
        for name, cmd in cmds.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True)
            times[name].append(time.perf_counter() - t0)
    floor = statistics.median(times["python -c pass"])
    print(f"start-up, median of {args.repeat} runs (min-max) [ms], and beyond a bare Python start")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(
            f"  {name:<28} {1e3 * med:7.0f}  ({1e3 * min(ts):.0f}-{1e3 * max(ts):.0f})"
            f"  +{1e3 * (med - floor):6.0f}"
        )


if __name__ == "__main__":
    main()
