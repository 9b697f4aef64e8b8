"""``--view``: the page started beside a run, as a separate process that only reads the data directory.

A separate process (not a thread of the run) keeps the reader away from the acquisition: the page can
be slow, or fail, without touching the run; and the queue's estimates, which open a simulated twin with
its own virtual clock, cannot meet the run's lab in the same process. The page never blocks the run:
if it cannot start, one line says so and the run goes on.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from qbs_lab.view.server import DEFAULT_HOST, DEFAULT_PORT, port_problem

__all__ = ["view_beside"]


@contextlib.contextmanager
def view_beside(data_dir: str | Path, station: str | Path, port: int = DEFAULT_PORT) -> Iterator[None]:
    """Serve the live view of ``data_dir`` on 127.0.0.1:``port`` while the block runs."""
    problem = port_problem(DEFAULT_HOST, port)
    if problem:
        print(f"qbs-lab: warning: no live view: {problem}; the run goes on", file=sys.stderr)
        yield
        return
    cmd = [sys.executable, "-m", "qbs_lab.view", "--data", str(data_dir), "--port", str(port)]
    proc = subprocess.Popen([*cmd, "--station", str(station), "--quiet"], stdin=subprocess.DEVNULL)
    print(f"live view: http://{DEFAULT_HOST}:{port}/  (read-only; stops with this command)", file=sys.stderr)
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
