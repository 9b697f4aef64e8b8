"""The ``qbs-lab`` command.

    qbs-lab demo [--station PATH] [--scenario NAME] [--seed N]
        A short dry run on the simulated lab through the QCoDeS drivers, printing live readings.
    qbs-lab sim serve [--station PATH] [--scenario NAME] [--seed N] [--port-base N]
        Serve the station's emulated instruments on 127.0.0.1 (real time) until Ctrl-C.
    qbs-lab station check [PATH] [--sim [--scenario NAME] [--seed N]]
        Validate the station file, connect, and print every role's live reading and limits.
    qbs-lab analyze crossing PATH [--x B|V_g] [--over T] [--json]
        Crossing point and scaling collapse of R isotherms in a zarr or netCDF dataset, with plots.

A mistake a user can make (missing or broken station file, unknown scenario) ends in one line naming
the file and key and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import threading
import warnings
from collections.abc import Sequence

from qbs_lab import __version__
from qbs_lab.analysis.report import AnalysisInputError
from qbs_lab.clock import RealClock
from qbs_lab.drivers.errors import RoleError
from qbs_lab.sim.lab import SimLab, SimLabError
from qbs_lab.sim.sample import SCENARIOS
from qbs_lab.station import StationError

__all__ = ["main"]


def _seed(text: str) -> int:
    value = int(text) if text.lstrip("-").isdigit() else -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return value


def _port(text: str) -> int:
    value = int(text) if text.isdigit() else -1
    if not 1024 <= value <= 65000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port from 1024 to 65000")
    return value


def _add_lab_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--station", default="station.yaml", help="station file (default: %(default)s)")
    p.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        help="sample scenario (default: the station's sim.scenario)",
    )
    p.add_argument(
        "--seed", type=_seed, default=0, help="noise seed, a whole number >= 0 (default: %(default)s)"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qbs-lab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"qbs_lab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="dry-run R(B) isotherms on the simulated lab, printing live readings")
    _add_lab_options(demo)
    sim = sub.add_parser("sim", help="the simulated lab")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    serve = sim_sub.add_parser("serve", help="serve the emulated instruments on 127.0.0.1 until Ctrl-C")
    _add_lab_options(serve)
    serve.add_argument(
        "--port-base",
        type=_port,
        default=0,
        help="first TCP port (instruments take consecutive ports); default: free ports from the OS",
    )
    station = sub.add_parser("station", help="the station file and its instruments")
    station_sub = station.add_subparsers(dest="station_command", required=True)
    check = station_sub.add_parser("check", help="validate, connect, print every role's reading and limits")
    check.add_argument("path", nargs="?", default="station.yaml", help="station file (default: %(default)s)")
    check.add_argument("--sim", action="store_true", help="on the simulated lab instead of the instruments")
    check.add_argument("--scenario", choices=sorted(SCENARIOS), help="sample scenario, with --sim")
    check.add_argument("--seed", type=_seed, default=0, help="noise seed, with --sim (default: %(default)s)")
    analyze = sub.add_parser("analyze", help="analysis of stored datasets")
    analyze_sub = analyze.add_subparsers(dest="analyze_command", required=True)
    crossing = analyze_sub.add_parser("crossing", help="crossing point and scaling collapse of R isotherms")
    crossing.add_argument("path", help="a zarr store or netCDF file with R over two dimensions")
    crossing.add_argument("--x", default="B", help="the swept dimension: B or V_g (default: %(default)s)")
    crossing.add_argument("--over", default="T", help="the isotherms' dimension (default: %(default)s)")
    crossing.add_argument("--json", action="store_true", help="print one JSON object instead of a report")
    return parser


def _analyze_crossing(args: argparse.Namespace) -> int:
    import json

    from qbs_lab.analysis.report import analyze_crossing, format_report

    result, plots = analyze_crossing(args.path, x=args.x, over=args.over)
    print(json.dumps(result, allow_nan=False) if args.json else format_report(result, args.x, plots))
    return 0


def _station_check(args: argparse.Namespace) -> int:
    from qbs_lab.station import load_station
    from qbs_lab.station_check import print_station_check

    config = load_station(args.path)
    if not args.sim:
        with config.connect() as st:
            print(f"station {args.path}: the instruments")
            print_station_check(st)
        return 0
    with SimLab.from_station(args.path, seed=args.seed, scenario=args.scenario) as lab:
        st = config.connect(lab=lab)
        with st:
            print(f"station {args.path} on the simulated lab (scenario {lab.scenario!r}, seed {lab.seed})")
            print_station_check(st)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from qbs_lab.sim.demo import run_demo

    with SimLab.from_station(args.station, seed=args.seed, scenario=args.scenario) as lab:
        missing = {"lockin", "gate", "magnet", "fridge"} - set(lab.instruments)
        if missing:
            raise SimLabError(
                f"{args.station}: the demo needs instruments named {', '.join(sorted(missing))}"
            )
        run_demo(lab)
    return 0


def _serve(args: argparse.Namespace) -> int:
    lab = SimLab.from_station(args.station, seed=args.seed, scenario=args.scenario, clock=RealClock())
    ports = {name: args.port_base + i for i, name in enumerate(lab.instruments)} if args.port_base else None
    try:
        addresses = lab.serve_tcp(ports)
    except OSError as err:
        lab.close()
        raise SimLabError(f"cannot open the TCP ports ({err.strerror})") from None
    print(f"simulated lab from {args.station} (scenario {lab.scenario!r}, seed {lab.seed}); real time")
    width = max(len(n) for n in addresses)
    sockets = {n: lab.tcp_address(n, "socket") for n in addresses}
    col = max(len(a) for a in sockets.values())
    print(f"  {'':<{width}}  {'raw socket (set a read termination)':<{col}}  HiSLIP (END on every reply)")
    for name, default in addresses.items():
        hislip = lab.tcp_address(name, "hislip")
        marks = ("*" if default == sockets[name] else " ", "*" if default == hislip else " ")
        print(f"  {name:<{width}}  {sockets[name]:<{col - 1}}{marks[0]}  {hislip}{marks[1]}")
    print("* the instrument's usual LAN protocol; connect with visalib='@py'; Ctrl-C stops", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("stopped")
    finally:
        lab.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    # QCoDeS's SR830 driver warns about its own buffer parameters: nothing a user can act on
    warnings.filterwarnings("ignore", message=".*does not correctly pass kwargs.*")
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "sim" and args.sim_command == "serve":
            return _serve(args)
        if args.command == "station" and args.station_command == "check":
            return _station_check(args)
        if args.command == "analyze" and args.analyze_command == "crossing":
            return _analyze_crossing(args)
    except SimLabError as err:
        print(f"qbs-lab: error: {err}", file=sys.stderr)
        return 2
    except StationError as err:
        for problem in err.problems:
            print(f"qbs-lab: error: {problem}", file=sys.stderr)
        return 2
    except (RoleError, AnalysisInputError) as err:
        print(f"qbs-lab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qbs-lab: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
