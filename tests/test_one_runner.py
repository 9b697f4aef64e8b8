"""One lab, one runner, with real processes: a second runner is refused at once with one line naming
the holder; a lock left by a killed process is taken over, and says so; queue items are claimed
atomically; two ``queue run`` run each item once; a second ``resume`` of one run is refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qbs_lab.cli import main
from qbs_lab.lock import LockError, data_lock, hold, station_lock
from qbs_lab.procedure import load_procedure, parse_settings
from qbs_lab.queue import Queue
from qbs_lab.runs import LabOptions, start_run
from qbs_lab.store import Catalog

STATION = Path(__file__).resolve().parent.parent / "station.yaml"
ENTRY = Path(sys.executable).parent / "qbs-lab"
QBS = [str(ENTRY)] if ENTRY.exists() else [sys.executable, "-m", "qbs_lab.cli"]

# a procedure whose points take real time (0.2 s each), so that a second process surely meets the first
SLOW = """\"\"\"Slow: a custom axis whose setter takes 0.2 s of wall time.\"\"\"
import time
from dataclasses import dataclass

from qbs_lab.plan import Axis, Plan
from qbs_lab.procedure import param


@dataclass(frozen=True)
class Parameters:
    num: int = param(10, "", "points")


def plan(p: Parameters) -> Plan:
    return Plan("slow", axes=(Axis("x", tuple(range(p.num)), setter=lambda v: time.sleep(0.2)),))
"""


@pytest.fixture
def slow(tmp_path: Path) -> str:
    path = tmp_path / "slow.py"
    path.write_text(SLOW)
    return str(path)


HOLDER = """
import sys
from qbs_lab.lock import hold, set_command
from pathlib import Path
set_command(sys.argv[2])
with hold(Path(sys.argv[1]), "the lab"):
    print("held", flush=True)
    sys.stdin.read()
"""


def holder(path: Path, command: str) -> subprocess.Popen[str]:
    """A process holding the lock at ``path`` until its stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def wait_for(condition, what: str, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_second_holder_is_refused_at_once_naming_pid_command_and_since(tmp_path: Path) -> None:
    path = data_lock(tmp_path / "data")
    other = holder(path, "qbs-lab queue run --sim")
    try:
        with pytest.raises(LockError) as err, hold(path, "the data directory data"):
            pass
        message = str(err.value)
        assert "\n" not in message
        assert (
            f"the data directory data is in use by process {other.pid} (qbs-lab queue run --sim) since 20"
            in message
        )
    finally:
        other.communicate("")
    with hold(path, "the data directory data"):  # released when it ended: free again, nothing to say
        pass


def test_a_lock_left_by_a_killed_process_is_taken_over_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = station_lock(tmp_path / "station.yaml")
    assert path == tmp_path / ".station.yaml.lock"
    other = holder(path, "qbs-lab run gate_sweep")
    other.send_signal(signal.SIGKILL)
    other.wait()
    with hold(path, "the station station.yaml"):
        note = capsys.readouterr().err
        record = json.loads(path.read_text())
    assert f"took over the lock left by process {other.pid} (qbs-lab run gate_sweep)" in note
    assert "which is gone" in note
    assert record["pid"] == os.getpid()


def test_the_lock_is_reentrant_within_one_process(tmp_path: Path) -> None:
    path = data_lock(tmp_path)
    with hold(path, "the data"), hold(path, "the data"):  # queue run, then each of its runs
        pass
    with hold(path, "the data"):
        pass


CLAIMER = """
import sys
from qbs_lab.queue import Queue
q = Queue(sys.argv[1])
got = []
while (item := q.claim()) is not None:
    got.append(item.item_id)
print(" ".join(map(str, got)), flush=True)
sys.stdin.read()  # alive until all have claimed: a dead claimer's items would be taken over
"""


def test_queue_items_are_claimed_atomically_by_concurrent_processes(tmp_path: Path) -> None:
    q = Queue(tmp_path)
    ids = [q.add("gate_sweep", ["num=3"]).item_id for _ in range(40)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, str(tmp_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    claimed: list[int] = []
    for p in procs:
        assert p.stdout is not None
        claimed += [int(x) for x in p.stdout.readline().split()]
    assert q.claim() is None  # every item is claimed by a live runner
    for p in procs:
        p.communicate("")
    assert sorted(claimed) == ids  # every item once, none twice
    assert {i.status for i in q.items()} == {"pending"}  # claimed, no run yet
    assert q.claim() is not None  # the claimers are gone: their items can be taken over


def test_two_queue_runs_on_one_queue_run_each_item_once(tmp_path: Path, slow: str) -> None:
    data = tmp_path / "data"
    q = Queue(data)
    for n in (8, 9, 10):
        q.add(slow, [f"num={n}"])
    cmd = [*QBS, "queue", "run", "--sim", "--station", str(STATION), "--data", str(data), "--no-progress"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(i.run_id for i in q.items()), "the first runner to start item 1")
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        _out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert second.returncode == 2, second.stderr
    (line,) = second.stderr.strip().splitlines()
    assert line.startswith(f"qbs-lab: error: the data directory {data} is in use by process {first.pid}")
    assert "queue run" in line and " since 20" in line
    runs = Catalog(data).runs()
    assert sorted(r.points for r in runs) == [8, 9, 10]  # three runs, one per item
    items = q.items()
    assert [i.status for i in items] == ["done"] * 3
    assert len({i.run_id for i in items}) == 3


def test_a_second_resume_of_one_run_is_refused(tmp_path: Path, slow: str) -> None:
    data = tmp_path / "data"
    proc = load_procedure(slow)

    def stop_after_two(k: int, index: tuple[int, ...], values: object) -> None:
        if k == 1:
            raise RuntimeError("stopped for the test")

    first = start_run(
        proc,
        parse_settings(proc, ["num=30"]),
        LabOptions(STATION, True, None, 0, data),
        progress=False,
        estimate=False,
        subscribers=[stop_after_two],
    )
    assert first.result.status == "aborted"
    cmd = [*QBS, "resume", first.run_id, "--data", str(data), "--no-progress"]
    resume = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: Catalog(data).get(first.run_id).pid == resume.pid, "the first resume to start")
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        _out, err = resume.communicate(timeout=300)
    assert resume.returncode == 0, err[-2000:]
    assert second.returncode == 2
    (line,) = second.stderr.strip().splitlines()
    assert f"is in use by process {resume.pid} (qbs-lab resume {first.run_id}" in line
    record = Catalog(data).get(first.run_id)
    assert record.state == "completed" and record.done == 30
    attrs = json.loads((Path(record.path or "") / ".zattrs").read_text())
    assert len(json.loads(attrs["resumed"])) == 1  # only one resume wrote into the store


def test_station_check_on_the_instruments_is_refused_while_a_run_holds_the_station(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    station = tmp_path / "station.yaml"
    station.write_text(STATION.read_text())
    other = holder(station_lock(station), "qbs-lab run field_isotherms")
    try:
        for argv in (
            ["station", "check", str(station)],
            ["run", "gate_sweep", "--station", str(station), "--data", str(tmp_path / "d")],
        ):
            code = main(argv)
            err = capsys.readouterr().err
            assert code == 2
            (line,) = err.strip().splitlines()
            assert (
                f"the station {station} is in use by process {other.pid} (qbs-lab run field_isotherms)"
                in line
            )
        # on the simulated lab nothing drives the station: allowed
        assert main(["station", "check", str(station), "--sim"]) == 0
    finally:
        other.communicate("")
