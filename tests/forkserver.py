"""The client side of the fork servers that test_resume.py and test_overnight.py run.

A fork server is a small script (each test file writes its own: what it patches to kill a run at a
chosen moment differs) that imports qbs_lab once and then forks one child per job read from its stdin,
so a job costs a fork instead of a new interpreter; it answers each job with the child's pid and exit
code (-9 for a SIGKILL).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Job:
    returncode: int
    pid: int
    stdout: str
    stderr: str


class ForkServer:
    def __init__(self, script: Path, timeout: float) -> None:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.timeout = timeout
        self.n = 0

    def run(
        self, argv: list[str], cwd: Path, spec: str = "never", signal: str = "SIGKILL", log: str = ""
    ) -> Job:
        """Run ``qbs_lab.cli.main(argv)`` in a forked child that sends itself ``signal`` when ``spec``
        (the server script's trigger) says so; its output is kept in files under ``cwd``."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.n += 1
        out, err = cwd / f"job{self.n}.out", cwd / f"job{self.n}.err"
        job = {
            "argv": argv,
            "cwd": str(cwd),
            "spec": spec,
            "signal": signal,
            "log": log,
            "stdout": str(out),
            "stderr": str(err),
            "timeout": self.timeout,
        }
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        assert reply, "the fork server died"
        r = json.loads(reply)
        return Job(r["returncode"], r["pid"], out.read_text(), err.read_text())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
