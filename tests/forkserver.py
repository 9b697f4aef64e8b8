"""The client side of the fork servers that test_resume.py and test_overnight.py run.

A fork server is a small script (each test file writes its own: what it patches to kill a run at a
chosen moment differs) that imports qbs_lab once and then calls :func:`serve`, which forks one child per
job read from its stdin, so a job costs a fork instead of a new interpreter; it answers each job with the
child's pid and exit code (-9 for a SIGKILL). The script finds this module on PYTHONPATH, which
:class:`ForkServer` sets.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Job:
    returncode: int
    pid: int
    stdout: str
    stderr: str


class ForkServer:
    def __init__(self, script: Path, timeout: float) -> None:
        here = str(Path(__file__).resolve().parent)  # the server script imports serve() from here
        path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
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


# -- the server side (runs in the fork server's process) ------------------------------------------------
def serve(prepare: Callable[[dict[str, Any]], None], log: Callable[[], Any]) -> None:
    """Answer jobs from stdin until it closes: ``prepare(job)`` in the child (the script's kill trigger),
    then ``qbs_lab.cli.main(job["argv"])`` with its output in the job's files; ``log()`` is written to
    the job's log file when the child ends (unless it was killed)."""
    for line in sys.stdin:
        j = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _child(j, prepare, log)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"pid": pid, "returncode": os.waitstatus_to_exitcode(status)}), flush=True)


def _child(j: dict[str, Any], prepare: Callable[[dict[str, Any]], None], log: Callable[[], Any]) -> None:
    from qbs_lab import cli

    signal.alarm(int(j["timeout"]))  # a run that hangs ends (SIGALRM) instead of hanging the tests
    prepare(j)
    os.chdir(j["cwd"])
    for fd, name in ((1, j["stdout"]), (2, j["stderr"])):
        os.dup2(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    code = 3
    try:
        code = cli.main(j["argv"])
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else 2
    except BaseException:
        traceback.print_exc()
    finally:
        if j["log"]:
            with open(j["log"], "w") as f:
                json.dump(log(), f)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
