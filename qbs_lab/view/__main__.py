"""``python -m qbs_lab.view``: the page's server on its own (what ``qbs-lab run --view`` starts)."""

from __future__ import annotations

import argparse
import contextlib
import sys

from qbs_lab.view.server import DEFAULT_HOST, DEFAULT_PORT, host_warning, port_problem, serve


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m qbs_lab.view", description=__doc__)
    p.add_argument("--data", default="data")
    p.add_argument("--host", default=DEFAULT_HOST)
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--station", default="station.yaml")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    warning = host_warning(args.host, args.port)
    if warning:
        print(f"qbs-lab view: warning: {warning}", file=sys.stderr, flush=True)
    problem = port_problem(args.host, args.port)
    if problem:
        print(f"qbs-lab view: error: {problem}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.data, args.host, args.port, args.station, quiet=args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
