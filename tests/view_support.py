"""Helpers of the live-view tests: a real `qbs-lab view` process, a paced simulated run beside it, and
plain HTTP to 127.0.0.1 (urllib: what a lab's own script would use)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STATION = Path(__file__).resolve().parents[1] / "station.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def qbs_lab(*args: str) -> list[str]:
    return [sys.executable, "-m", "qbs_lab.cli", *args]


def http(port: int, path: str, method: str = "GET") -> tuple[int, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
            status = r.status
    except urllib.error.HTTPError as err:
        body, status = err.read(), err.code
    try:
        return status, json.loads(body) if body else None
    except ValueError:
        return status, body.decode(errors="replace")


def get(port: int, path: str) -> Any:
    status, body = http(port, path)
    assert status == 200, (path, status, body)
    return body


@contextlib.contextmanager
def view_server(data: Path, port: int, *extra: str) -> Iterator[subprocess.Popen[str]]:
    """`qbs-lab view` on 127.0.0.1:port, up when the block starts, stopped after it."""
    proc = subprocess.Popen(
        qbs_lab("view", "--data", str(data), "--port", str(port), "--station", str(STATION), *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for _ in range(300):  # bounded: 30 s at most
            if proc.poll() is not None:
                raise AssertionError(f"qbs-lab view ended: {proc.stdout.read() if proc.stdout else ''}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            time.sleep(0.1)
        else:
            raise AssertionError("qbs-lab view did not start listening")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def paced_run(data: Path, speed: float, *extra: str) -> subprocess.Popen[str]:
    """A simulated field_isotherms run (3 isotherms of 9 fields, ~11 min of fridge time) paced at
    ``speed`` times real time through the virtual clock (QBS_LAB_SIM_SPEED)."""
    env = {**os.environ, "QBS_LAB_SIM_SPEED": str(speed)}
    cmd = qbs_lab(
        "run",
        "field_isotherms",
        "--sim",
        "--station",
        str(STATION),
        "--data",
        str(data),
        "--set",
        "num=9",
        "--set",
        "temperatures=0.06,0.12,0.24",
        "--no-progress",
        *extra,
    )
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def listening_addresses(port: int) -> set[str]:
    """The local addresses with a socket listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local, state = fields[1], fields[3]
                address, port_hex = local.split(":")
                if state != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                    continue
                raw = bytes.fromhex(address)
                if v6:
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    found.add(socket.inet_ntop(socket.AF_INET6, words))
                else:
                    found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
    return found
