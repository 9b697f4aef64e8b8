"""Overnight (issue 6, "Done when"): a night of faults, and a queue runner killed again and again.

1. A queue of six procedures, over seven hours of fridge time as estimated, runs with a random fault
   schedule (``FaultSchedule.random``) that hits every fault kind, through ``qbs-lab queue run --sim
   --faults FILE`` with the station's ``suspenders:`` (pause on the mixing chamber, the lock-in and an
   instrument not answering; abort on a quench and on gate leakage). Every item must end done with
   every point measured, or failed with its reason, and in both cases with the instruments' safe state
   proven from what the emulated instruments received (their command logs): the last gate level 0 V,
   the last field target 0 T and the supply holding there (or latched in QUENCH with no field), RF off,
   and after a failure the heater off; no gate level outside +-40 V or a step above 0.5 V, ever. Every
   fault kind fired; every retry and every suspension is explained by a fault, and every fault the
   instruments' traffic met left its mark (a retry, a pause, an abort); no stored point saw a fault.
   The same night also shows whether a quench or a lasting gate leakage is acted on within seconds
   while a run waits (stabilizing, or paused for another condition), and whether each run's phases
   add up to the fridge time it took.

2. A smaller queue (three items, a fixed fault schedule of transient faults and pauses) runs once
   uninterrupted (the reference), then again, SIGKILLed at one of a dozen moments each time (while a
   temperature stabilizes, in the middle of a line, in a suspender's pause, in an I/O retry's back-off,
   while parking, between two items at every step of the hand-over), and ``qbs-lab queue run`` started
   again must complete everything with the reference's data: the items done before the kill and the
   ones run after it bit for bit; the killed item resumed in its own run, keeping every point stored
   before the kill bit for bit and measuring the rest as the reference did within the noise.

The fault schedule restarts with each run's lab (``--fault-times run``: fault times are on the lab's
clock, which starts at zero for every item and again for a resumed item), as ``--faults`` documents.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from queue import SimpleQueue
from typing import Any

import numpy as np
import pytest
import xarray as xr
import yaml
from forkserver import ForkServer, Job

from qbs_lab import cli
from qbs_lab.queue import Queue, QueueItem
from qbs_lab.runner import Runner, RunResult
from qbs_lab.sim.emulators.base import LoggedCommand
from qbs_lab.sim.faults import IO_KINDS, KINDS, FaultSchedule
from qbs_lab.sim.lab import SimLab
from qbs_lab.sim.scpi import Pattern
from qbs_lab.station import load_station
from qbs_lab.store.catalog import Catalog, RunRecord
from qbs_lab.store.run_store import live_dataset

ROOT = Path(__file__).resolve().parent.parent
STATION = ROOT / "station.yaml"
CONFIG = load_station(STATION)
GATE = CONFIG.gate
LEAK_LIMIT = GATE.leakage_limit  # 1 nA
CEILING = 0.9  # K, the mixing chamber's ceiling in these tests (above every setpoint: 0.7 K at most)
BAND = 0.1  # the mixing chamber's band around an active setpoint

SUSPENDERS: dict[str, Any] = {
    "mixing_chamber": {"policy": "pause", "ceiling": CEILING, "band": BAND, "timeout": 3600},
    "lockin": {"policy": "pause"},
    "io": {"policy": "pause", "timeout": 1800},
    "quench": "abort",
    # a leak spike is transient: wait until the leakage has stayed under its limit, then redo the line
    "leakage": {"policy": "pause", "hold": 10, "timeout": 600},
}

# the commands that move what the safe state is about, as the instruments read them
GATE_LEVEL = Pattern("[:SOURce#]:VOLTage[:LEVel][:IMMediate][:AMPLitude]")
GATE_CURRENT = Pattern(":MEASure?")  # the 2450 measures its sense function (current) into a buffer
FIELD_TARGET = Pattern("CONFigure:FIELD:TARGet")
FIELD_QUERY = Pattern("FIELD:MAGnet?")
MAGNET_STATE = Pattern("STATE?")
RF_OUTPUT = (Pattern("OUTPut[:STATe]"), Pattern("OUTPut:MASTer[:STATe]"))
HEATER_RANGE = Pattern("RANGE")
HOLDING, QUENCH = 2, 7  # AMI 430 STATE? codes


def write_station(path: Path) -> Path:
    """The reference station with a ``suspenders:`` section."""
    doc = yaml.safe_load(STATION.read_text())
    doc["suspenders"] = SUSPENDERS
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def queue_run_argv(station: Path, faults: Path, data: Path) -> list[str]:
    return [
        "queue",
        "run",
        "--sim",
        "--faults",
        str(faults),
        "--fault-times",  # (the default counts from the queue's start)
        "run",
        "--station",
        str(station),
        "--data",
        str(data),
        "--no-progress",
    ]


# -- what the command logs prove ------------------------------------------------------------------------
def writes(log: list[LoggedCommand], *patterns: Pattern) -> list[LoggedCommand]:
    """The commands (not queries) of ``log`` whose header matches one of ``patterns``."""
    return [c for c in log if "?" not in c.header and any(p.match(c.header) is not None for p in patterns)]


def queries(log: list[LoggedCommand], pattern: Pattern) -> list[LoggedCommand]:
    return [c for c in log if c.reply is not None and pattern.match(c.header) is not None]


def check_gate_log(log: list[LoggedCommand]) -> None:
    """Every gate level within the station's limits, no step above max_step (the source starts at 0 V),
    and the last level the safe value."""
    levels = [float(c.args[0]) for c in writes(log, GATE_LEVEL)]
    assert levels, "the gate never received a level"
    assert all(GATE.min <= v <= GATE.max for v in levels), (min(levels), max(levels))
    steps = np.abs(np.diff([0.0, *levels]))
    assert steps.max() <= GATE.max_step + 1e-9, f"a gate step of {steps.max():g} V"
    assert levels[-1] == GATE.safe_value, f"the last gate level is {levels[-1]} V"


def check_magnet_log(log: list[LoggedCommand], quench_at: float | None) -> None:
    """The last field target 0 T and the supply holding there after it; or, after a quench, the supply
    latched in QUENCH or holding, with no field (it cannot be ramped while latched; the field is gone)."""
    targets = writes(log, FIELD_TARGET)
    last_state = int(queries(log, MAGNET_STATE)[-1].reply or -1)
    if quench_at is None:
        assert targets and float(targets[-1].args[0]) == 0.0, [c.command for c in targets[-3:]]
        after = [c for c in queries(log, MAGNET_STATE) if c.time >= targets[-1].time]
        assert after and int(after[-1].reply or -1) == HOLDING, [c.reply for c in after[-3:]]
    else:
        assert last_state in (HOLDING, QUENCH)
        # whatever the supply said of its field after the quench: nothing left (the lab's state is
        # checked too; the supply need not be asked, its QUENCH state says the field has collapsed)
        fields = [c for c in queries(log, FIELD_QUERY) if c.time >= quench_at]
        assert all(abs(float(c.reply or "nan")) < 1e-9 for c in fields), fields[-3:]


def check_rf_log(log: list[LoggedCommand]) -> None:
    """RF output off at the end, and never switched on (no procedure of the queue uses it)."""
    outputs = writes(log, *RF_OUTPUT)
    assert outputs, "the RF output was never switched off"
    assert all(c.args[0].strip().upper() in ("0", "OFF") for c in outputs), [c.command for c in outputs]


def check_heater_off(log: list[LoggedCommand]) -> None:
    """The sample heater's (output 0) last range command is 0: off."""
    ranges = [c for c in writes(log, HEATER_RANGE) if c.args and c.args[0] == "0"]
    assert ranges and ranges[-1].args[1] == "0", [c.command for c in ranges[-3:]]


# ======================================================================================================
# 1. An overnight queue with a random fault schedule that hits every fault kind
# ======================================================================================================
OVERNIGHT = [
    {"procedure": "gate_sweep", "set": {"T": 0.1, "num": 121}},
    {"procedure": "field_isotherms", "set": {"hold": 600}},
    {"procedure": "gate_isotherms", "set": {"temperatures": [0.06, 0.09, 0.12, 0.18, 0.24], "hold": 600}},
    {"procedure": "phase_diagram", "set": {"hold": 900}},
    {"procedure": "temperature_sweep", "set": {"hold": 1200}},
    {"procedure": "field_sweep", "set": {"T": 0.06, "num": 121}},
]
# The schedule spreads its faults over the first two hours of every item's run (the short sweeps take
# 12 minutes, the others one to three hours). Seed 167 draws ten faults, the quench last: a 46 s leak
# spike at 383 s, lock-in overloads at 430, 700 and 2270 s, a gate that does not answer for 121 s from
# 680 s, short disconnects at 1104 and 2999 s, a heater runaway at 3211 s (478 s), garbled replies from
# 3495 s (272 s) and the quench at 4235 s. The leakage and the rest pause a run, which recovers and
# redoes its line; the quench aborts every item still running then (a quench ends an item, so with
# one schedule for every item it has to come last for the night to meet every kind).
FAULT_SEED, FAULT_SPAN = 167, 7200.0
ESTIMATED = re.compile(r"fridge time [^(]*\(estimated (\d+):(\d\d):(\d\d)\)")


@dataclass
class Item:
    """One queue item after the night: the queue row, its run in the catalog, its dataset, its lab (the
    emulators' command logs), and its run's span on the lab's clock (origin of t, end after parking)."""

    queue: QueueItem
    record: RunRecord
    ds: xr.Dataset
    lab: SimLab
    origin: float
    end: float

    @property
    def name(self) -> str:
        return f"item {self.queue.item_id} {self.queue.procedure}"

    def attr(self, key: str) -> Any:
        return json.loads(self.ds.attrs[key])

    def fired(self) -> list[dict[str, Any]]:
        return [e for e in self.attr("faults") if e["event"] == "fired"]

    def window(self, event: dict[str, Any]) -> tuple[float, float]:
        """When a fired fault was active on the lab's clock (until the lab closed if it never ended)."""
        ends = [
            e["time"] for e in self.attr("faults") if e["event"] == "ended" and e["index"] == event["index"]
        ]
        return event["time"], ends[0] if ends else self.lab.clock.now()

    def stored(self) -> np.ndarray:
        return np.isfinite(self.ds["t"].values)


@dataclass
class Night:
    returncode: int
    output: str
    schedule: FaultSchedule
    items: list[Item] = field(default_factory=list)


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> Night:
    """Load the plan file and run the queue in this process; the labs of the runs are kept (observed
    through ``SimLab.load_faults``, which only the runs' labs call, never the estimate's twin) and so
    is each run's time span on its lab's clock (observed around ``Runner.run``)."""
    base = tmp_path_factory.mktemp("overnight")
    station = write_station(base / "station.yaml")
    schedule = FaultSchedule.random(FAULT_SEED, FAULT_SPAN)
    assert schedule.kinds() == set(KINDS) and len(schedule) == 10
    faults = base / "faults.yaml"
    faults.write_text(yaml.safe_dump({"faults": schedule.to_list()}))
    plan = base / "tonight.yaml"
    plan.write_text(yaml.safe_dump({"items": OVERNIGHT}, sort_keys=False))
    data = base / "data"

    labs: list[SimLab] = []
    runs: list[tuple[float, float]] = []
    load_faults, run = SimLab.load_faults, Runner.run

    def keep_lab(self: SimLab, schedule: Any) -> Any:
        labs.append(self)
        return load_faults(self, schedule)

    def timed_run(self: Runner, start: int = 0, t_offset: float = 0.0) -> RunResult:
        t0 = self.clock.now()
        result = run(self, start, t_offset)
        if self.store is not None:  # a run, not the estimate's dry run on the twin
            runs.append((t0 - t_offset, self.clock.now()))
        return result

    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        mp.setattr(SimLab, "load_faults", keep_lab)
        mp.setattr(Runner, "run", timed_run)
        assert cli.main(["queue", "load", str(plan), "--data", str(data)]) == 0
        code = cli.main(queue_run_argv(station, faults, data))
    night = Night(code, out.getvalue(), schedule)
    items = Queue(data).items()
    assert len(items) == len(OVERNIGHT) == len(labs) == len(runs), (len(items), len(labs), len(runs))
    catalog = Catalog(data)
    for q, lab, (origin, end) in zip(items, labs, runs, strict=True):
        assert q.run_id is not None, q
        record = catalog.get(q.run_id)
        assert record.path is not None
        with xr.open_zarr(record.path) as ds:
            night.items.append(Item(q, record, ds.load(), lab, origin, end))
    return night


def test_overnight_queue_ends_with_every_item_done_with_full_data_or_failed_and_safe(night: Night) -> None:
    assert night.returncode == 0, night.output[-3000:]
    assert "queue done" in night.output
    # an overnight's worth: the items' estimates (each run's report) add up to more than six hours of
    # fridge time; the faults cut some items short, and the night still took hours on the labs' clocks
    estimates = [int(h) * 3600 + int(m) * 60 + int(s) for h, m, s in ESTIMATED.findall(night.output)]
    assert len(estimates) == len(OVERNIGHT), night.output[-3000:]
    assert sum(estimates) > 6 * 3600, estimates
    assert sum(i.lab.clock.now() for i in night.items) > 3 * 3600  # hazards end items within seconds
    statuses = [i.queue.status for i in night.items]
    assert set(statuses) == {"done", "failed"}, statuses  # both outcomes happen this night

    for item in night.items:
        ds, stored = item.ds, item.stored()
        variables = list(ds.data_vars)
        if item.queue.status == "done":
            assert item.record.state == "completed", item.name
            assert ds.attrs["status"] == "completed" and ds.attrs["message"] == "", item.name
            assert item.queue.message is None, item.name
            for v in variables:  # full data: every point of every variable
                assert np.isfinite(ds[v].values).all(), f"{item.name}: {v} has unmeasured points"
            assert item.record.done == item.record.points == ds["t"].size
        else:
            assert item.queue.status == "failed"
            reason = item.queue.message
            assert reason and reason == item.record.message == ds.attrs["message"], item.name
            assert item.record.state == ds.attrs["status"] == "aborted", item.name
            assert ":" in reason and reason.split(":")[0] in ("SuspendAbort", "StabilizationTimeout"), reason
            if reason.startswith("SuspendAbort"):  # the interruption that ended it, recorded as such
                last = item.attr("interruptions")[-1]
                assert last["outcome"] == "aborted" and last["policy"] == "abort", last
                assert reason == f"SuspendAbort: {last['reason']}", (reason, last)
            # whatever was measured is whole: every variable at every stored point
            for v in variables:
                assert np.isfinite(ds[v].values[stored]).all(), f"{item.name}: {v}"
                assert np.isnan(ds[v].values[~stored]).all(), f"{item.name}: {v}"
            assert item.record.done == int(stored.sum())

        # the safe state, from what the instruments received
        quench = [e["time"] for e in item.fired() if e["fault"]["kind"] == "quench"]
        check_gate_log(item.lab.command_log("gate"))
        check_magnet_log(item.lab.command_log("magnet"), quench[0] if quench else None)
        check_rf_log(item.lab.command_log("rf"))
        if item.queue.status == "failed":
            check_heater_off(item.lab.command_log("fridge"))
        # and the lab's physical state agrees
        state = item.lab.state
        with state.lock:
            state.sync()
            assert state.gate.output_voltage() == pytest.approx(0.0, abs=1e-9), item.name
            assert abs(state.magnet.field()) < 1e-9, item.name
            assert not state.rf.output_on, item.name
            if item.queue.status == "failed":
                assert state.fridge.heater_range == 0, item.name
        # park failures are reported, and only a latched quench may make one (the magnet cannot ramp)
        for failure in item.attr("park_failures"):
            assert failure.startswith("magnet to 0 T: QuenchError"), (item.name, failure)
            assert quench, item.name


def test_every_fault_kind_fired_and_every_one_that_met_the_traffic_left_its_mark(night: Night) -> None:
    fired = {e["fault"]["kind"] for item in night.items for e in item.fired()}
    assert fired == set(KINDS), set(KINDS) - fired
    met_io, suspended_by = 0, set()
    for item in night.items:
        # the dataset's record of the faults is the lab's own log
        assert item.attr("faults") == [e.to_dict() for e in item.lab.fault_log], item.name
        events = item.fired()
        retries = item.attr("io_retries")
        interruptions = item.attr("interruptions")

        # every retry is explained by an I/O fault of its instrument that fired before it
        for r in retries:
            causes = [
                e
                for e in events
                if e["fault"]["kind"] in IO_KINDS and e["fault"]["instrument"] == r["instrument"]
            ]
            assert any(e["time"] <= r["time"] for e in causes), (item.name, r)
        # every I/O fault that the instrument's traffic met was retried: a query while a lost or garbled
        # reply was due, any command after a disconnect (its sessions are dead)
        for e in events:
            kind, name = e["fault"]["kind"], e["fault"]["instrument"]
            if kind not in IO_KINDS:
                continue
            t0, t1 = item.window(e)
            log = item.lab.command_log(name)
            if kind == "disconnect":
                met = any(c.time >= t1 for c in log)
            else:
                met = any(t0 <= c.time <= t1 and c.reply is not None for c in log)
            if met:
                met_io += 1
                assert any(r["instrument"] == name and r["time"] >= t0 for r in retries), (item.name, e)

        # every suspension is explained by a fault that fired before it, of the kind its reason names
        causes_of = {
            "not answering": IO_KINDS,
            "lock-in": ("overload",),
            "mixing chamber": ("runaway",),
            "gate leakage": ("leak_spike",),
            "quench": ("quench",),
        }
        for entry in interruptions:
            t_lab = item.origin + entry["t"]
            words, kinds = next((w, k) for w, k in causes_of.items() if w in entry["reason"])
            suspended_by.add(words)
            assert any(e["fault"]["kind"] in kinds and e["time"] <= t_lab for e in events), (item.name, entry)
            if entry["policy"] == "pause":
                assert entry["outcome"] in ("recovered", "not recovered in time: aborted"), entry
        # a leakage the gate source reported above the limit, or a supply that reported QUENCH, ended
        # the item by its policy (abort)
        leaks = [
            c
            for c in queries(item.lab.command_log("gate"), GATE_CURRENT)
            if abs(float(c.reply or 0)) > LEAK_LIMIT
        ]
        quenched = [
            c for c in queries(item.lab.command_log("magnet"), MAGNET_STATE) if c.reply == str(QUENCH)
        ]
        if quenched:
            assert item.queue.status == "failed", item.name
            assert "quench" in (item.queue.message or ""), item.queue.message
        if leaks:  # paused by its policy (and recovered, or aborted when it lasted beyond the timeout)
            assert any("gate leakage" in i["reason"] for i in interruptions), item.name

        # no stored point saw a fault: no leakage above the limit, no mixing chamber above its ceiling,
        # none measured while the lock-in's input was overloaded
        stored = item.stored()
        assert np.all(np.abs(item.ds["I_leak"].values[stored]) <= LEAK_LIMIT), item.name
        assert np.all(item.ds["T_mc"].values[stored] <= CEILING), item.name
        t_lab = item.origin + item.ds["t"].values[stored]
        for e in events:
            if e["fault"]["kind"] == "overload":
                t0, t1 = item.window(e)
                assert not np.any((t_lab >= t0) & (t_lab <= t1)), (item.name, e)
    # this night: the traffic met several I/O faults, and the suspenders acted on every kind of trouble
    # but the lock-in's (its overloads came while the runs were stabilizing or paused: nothing read)
    assert met_io >= 5, met_io
    # (which kinds a run meets depends on what it is doing then: a leak spike on an unbiased gate, an
    # overload while nothing is read, a runaway during a stabilization go unseen and harm nothing)
    assert {"not answering", "gate leakage", "quench"} <= suspended_by, suspended_by


REACTION = 30.0  # s: the stabilizer reads every 5 s, a paused run polls every 2 to 10 s


def test_a_quench_or_a_lasting_leak_ends_the_item_within_seconds_also_while_it_waits(night: Night) -> None:
    """A quench, or a gate leakage above the limit that lasts, is acted on by its policy (the quench
    aborts, the leakage pauses) within REACTION seconds, also when it comes while the temperature
    stabilizes (the longer items spend most of the night there: holds of 10 to 20 minutes) or while the
    run is paused for another condition: nobody is watching at night, and the gate stays biased until
    the run reacts."""
    late = []
    words = {"quench": "quench", "leak_spike": "gate leakage"}
    for item in night.items:
        for e in item.fired():
            kind = e["fault"]["kind"]
            if kind not in words:
                continue
            aborted_at = [  # when the run acted on it: aborted (quench) or paused (leakage), per policy
                item.origin + i["t"] for i in item.attr("interruptions") if words[kind] in i["reason"]
            ]
            t0, t1 = item.window(e)
            lasting = kind == "quench" or (
                kind == "leak_spike" and e["fault"]["current"] > LEAK_LIMIT and t1 - t0 > REACTION
            )
            if not lasting or t0 + REACTION > item.end:  # it came as the run was ending anyway
                continue
            if kind == "leak_spike" and not any(  # an unbiased gate (output still off) leaks nothing
                c.command.upper().replace(" ", "") == ":OUTP1" and c.time <= t0 + REACTION
                for c in item.lab.command_log("gate")
            ):
                continue
            if not any(t0 <= t <= t0 + REACTION for t in aborted_at):
                after = [round(t - t0) for t in aborted_at if t >= t0]
                when = f"the item was aborted {after[0]} s later" if after else "never acted on"
                late.append(f"{item.name}: {kind} at t = {t0:.0f} s on its lab's clock: {when}")
    assert not late, late


def test_each_runs_phases_account_for_its_fridge_time(night: Night) -> None:
    """The fridge time a run reports (its phases: ramps, stabilization, settling, measuring, suspended,
    parking; the dataset's ``phases`` and the "fridge time" line) is the time its run took on the
    lab's clock, also when a move (a stabilization, a ramp) was cut short by an error or a fault."""
    wrong = {}
    for item in night.items:
        took = item.end - item.origin
        phases = item.attr("phases")
        if not math.isclose(sum(phases.values()), took, rel_tol=1e-6, abs_tol=1e-3):
            wrong[item.name] = (round(sum(phases.values()), 1), round(took, 1))
    assert not wrong, f"phases total vs time on the lab's clock [s]: {wrong}"


# ======================================================================================================
# 2. The queue runner SIGKILLed at a dozen moments, then started again
# ======================================================================================================
KILL_PLAN = [
    {"procedure": "gate_sweep", "set": {"T": 0.1, "V_stop": 10.0, "num": 21}},
    {"procedure": "field_isotherms", "set": {"temperatures": [0.06, 0.12], "num": 9}},
    {
        "procedure": "phase_diagram",
        "set": {"temperatures": [0.08], "V_start": 10.0, "V_stop": 20.0, "V_num": 2, "B_num": 5},
    },
]
# Faults every run recovers from (times on each run's lab clock, from its start): lost and garbled
# replies and a short disconnect that the retries bridge, a lock-in overload that pauses the run, and a
# magnet that stops answering for 150 s, longer than the retries bridge: the io suspender pauses the run.
KILL_FAULTS = [
    {"kind": "no_reply", "instrument": "lockin", "at_time": 100, "count": 2},
    {"kind": "garbage", "instrument": "fridge", "at_time": 130, "count": 1},
    {"kind": "disconnect", "instrument": "gate", "at_time": 160, "duration": 2},
    {"kind": "overload", "instrument": "lockin", "at_time": 200, "duration": 20},
    {"kind": "no_reply", "instrument": "magnet", "at_time": 260, "duration": 150},
]
KILL_SEED = 3
TIMEOUT = 120

# A fork server (as in test_resume.py): it imports qbs_lab once, then for each job read from stdin forks
# a child that runs ``qbs_lab.cli.main(argv)`` (stdout, stderr to files) and reports the child's pid
# and exit code (-9 when killed). The child SIGKILLs itself at the job's ``spec``:
#   t=PROC@SECONDS       once the run time of the run of procedure PROC (not its estimate's dry run on
#                        the twin) passes SECONDS, measured from the run's origin exactly as the stored
#                        t is; checked after every sleep of that run's lab clock (the roles' waits, the
#                        suspenders' polls, the retries' back-off, every instrument message's I/O tick)
#   twin=PROC            as the estimate's dry run of PROC begins (the item's run does not exist yet)
#   queue=STATUS@ITEM    right after the queue noted STATUS for item ITEM (running: its run was created)
#   catalog=STATUS@PROC  right after the catalog noted STATUS for the run of PROC (before the queue did)
#   never                no signal (the reference, and the queue run started again)
# Before the signal it prints FIRED, where it was (the call stack's qualified names), the run and its
# run time. With a log path the child writes every recorded point as [procedure, index, values (t last),
# run time when the record call returned], and every run's origin on its lab's clock.
SERVER = """
import json, os, signal, sys, traceback

from forkserver import serve
from qbs_lab import cli, clock, runner
from qbs_lab.queue import Queue
from qbs_lab.store import run_store
from qbs_lab.store.catalog import Catalog

job = {}
state = {}
log = []
origins = {}


def fire():
    state["fired"] = True
    names, f = [], sys._getframe()
    while f is not None:
        names.append(f.f_code.co_qualname)
        f = f.f_back
    info = {"where": names[::-1], "proc": state.get("proc"), "recorded": len(log)}
    if "clock" in state:
        info["t"] = run_time()
    print("FIRED " + json.dumps(info), file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def run_time():
    return state["clock"].now() - state["origin"]


_run = runner.Runner.run


def run(self, start=0, t_offset=0.0):
    proc = self.plan.procedure
    if self.store is not None:  # the item's run (a start or a resume), on its lab's clock
        state["clock"] = getattr(self.clock, "clock", self.clock)
        state["origin"] = self.clock.now() - t_offset
        state["proc"] = proc
        origins[proc] = state["origin"]
    elif job.get("kind") == "twin" and job["proc"] == proc and not state.get("fired"):
        fire()
    return _run(self, start, t_offset)


_sleep = clock.VirtualClock.sleep


def sleep(self, seconds):
    _sleep(self, seconds)
    if job.get("kind") == "t" and self is state.get("clock") and not state.get("fired"):
        if state["proc"] == job["proc"] and run_time() >= job["at"]:
            fire()


_queue_update = Queue.update


def queue_update(self, item_id, **fields):
    _queue_update(self, item_id, **fields)
    if job.get("kind") == "queue" and not state.get("fired"):
        if fields.get("status") == job["status"] and item_id == job["item"]:
            fire()


_catalog_update = Catalog.update


def catalog_update(self, run_id, **fields):
    _catalog_update(self, run_id, **fields)
    if job.get("kind") == "catalog" and not state.get("fired"):
        if fields.get("status") == job["status"] and state.get("proc") == job["proc"]:
            fire()


_record = run_store.RunStore.record


def record(self, index, values):
    _record(self, index, values)
    log.append([state.get("proc"), [int(i) for i in index], [float(v) for v in values], run_time()])


runner.Runner.run = run
clock.VirtualClock.sleep = sleep
Queue.update = queue_update
Catalog.update = catalog_update
run_store.RunStore.record = record


def prepare(j):
    job.update(j)
    kind, _, arg = j["spec"].partition("=")
    job["kind"] = kind
    if kind == "t":
        proc, _, at = arg.partition("@")
        job["proc"], job["at"] = proc, float(at)
    elif kind == "twin":
        job["proc"] = arg
    elif kind == "queue":
        status, _, item = arg.partition("@")
        job["status"], job["item"] = status, int(item)
    elif kind == "catalog":
        status, _, proc = arg.partition("@")
        job["status"], job["proc"] = status, proc


serve(prepare, lambda: {"points": log, "origins": origins})
"""


def setup_queue(base: Path) -> tuple[list[str], Path]:
    """A station with suspenders, the fault schedule, and the queue loaded; the argv of `queue run`."""
    base.mkdir(parents=True, exist_ok=True)
    station = write_station(base / "station.yaml")
    faults = base / "faults.yaml"
    faults.write_text(yaml.safe_dump({"faults": KILL_FAULTS}, sort_keys=False))
    plan = base / "tonight.yaml"
    plan.write_text(yaml.safe_dump({"items": KILL_PLAN}, sort_keys=False))
    data = base / "data"
    Queue(data).load(plan)
    return [*queue_run_argv(station, faults, data), "--seed", str(KILL_SEED)], data


PROCS = [entry["procedure"] for entry in KILL_PLAN]


@dataclass
class Record:
    """A point as the run recorded it: grid index, values (t last) and the run time the record returned."""

    index: tuple[int, ...]
    values: list[float]
    r: float

    @property
    def t(self) -> float:
        return self.values[-1]


@dataclass
class Reference:
    """The uninterrupted queue: per procedure its dataset, its records in order, its run's origin on its
    lab's clock, and its retries and interruptions (retry times on the lab's clock)."""

    ds: dict[str, xr.Dataset]
    records: dict[str, list[Record]]
    origin: dict[str, float]
    retries: dict[str, list[dict[str, Any]]]
    interruptions: dict[str, list[dict[str, Any]]]

    def first_t(self, proc: str) -> float:
        return self.records[proc][0].t

    def last_r(self, proc: str) -> float:
        return self.records[proc][-1].r


def read_datasets(data: Path) -> dict[str, tuple[RunRecord, xr.Dataset | None]]:
    """Every run of the catalog with its dataset (None: the run's store was never made)."""
    out: dict[str, tuple[RunRecord, xr.Dataset | None]] = {}
    for record in Catalog(data).runs():
        assert record.path is not None
        if not Path(record.path).exists():
            out[record.procedure] = (record, None)
            continue
        # as it is, with the journal's newest points (a killed run's last seconds)
        out[record.procedure] = (record, live_dataset(record.path))
    return out


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ForkServer]]:
    script = tmp_path_factory.mktemp("server") / "fork_server.py"
    script.write_text(SERVER)
    started = [ForkServer(script, TIMEOUT) for _ in range(2)]
    yield started
    for s in started:
        s.close()


@pytest.fixture(scope="module")
def reference(servers: list[ForkServer], tmp_path_factory: pytest.TempPathFactory) -> Reference:
    base = tmp_path_factory.mktemp("reference")
    argv, data = setup_queue(base)
    log = base / "log.json"
    job = servers[0].run(argv, base, log=str(log))
    assert job.returncode == 0, job.stderr[-3000:]
    assert [i.status for i in Queue(data).items()] == ["done"] * len(PROCS)
    runs = {p: ds for p, (_, ds) in read_datasets(data).items() if ds is not None}
    assert sorted(runs) == sorted(PROCS)
    entries = json.loads(log.read_text())
    records: dict[str, list[Record]] = {p: [] for p in PROCS}
    for proc, index, values, r in entries["points"]:
        records[proc].append(Record(tuple(index), values, r))
    ref = Reference(
        runs,
        records,
        entries["origins"],
        {p: json.loads(runs[p].attrs["io_retries"]) for p in PROCS},
        {p: json.loads(runs[p].attrs["interruptions"]) for p in PROCS},
    )
    for p in PROCS:
        ds = ref.ds[p]
        assert all(np.isfinite(ds[v].values).all() for v in ds.data_vars), p
        # every fault fired in every run; each run retried, and paused twice: a lock-in overload and the
        # magnet not answering (each time the line in progress is redone)
        fired = [e["fault"]["kind"] for e in json.loads(ds.attrs["faults"]) if e["event"] == "fired"]
        assert fired == [f["kind"] for f in KILL_FAULTS], (p, fired)
        reasons = [i["reason"] for i in ref.interruptions[p]]
        assert len(reasons) == 2 and "lock-in input overload" in reasons[0], (p, reasons)
        assert "'magnet' is not answering" in reasons[1], (p, reasons)
        assert {i["outcome"] for i in ref.interruptions[p]} == {"recovered"}
        assert {r["instrument"] for r in ref.retries[p]} >= {"fridge", "lockin", "magnet"}, p
        assert len(records[p]) >= ds["t"].size
    # the gate sweep is 1-D: after a pause only the tripped point (never stored) is measured again
    assert len(records[PROCS[0]]) == ref.ds[PROCS[0]]["t"].size
    return ref


def _t(proc: str, f: Callable[[Reference], float]) -> Callable[[Reference], str]:
    return lambda ref: f"t={proc}@{f(ref)!r}"


def _backoff(proc: str, n: int) -> Callable[[Reference], float]:
    """In the back-off before the n-th retry (a retry's record has the time after its back-off): the
    wait is one sleep of the clock, so the kill comes as it ends, before the reconnect and the retry."""

    def at(ref: Reference) -> float:
        r = ref.retries[proc][n]
        return r["time"] - r["wait"] / 2 - ref.origin[proc]

    return at


def _paused(proc: str, n: int) -> Callable[[Reference], float]:
    """Half way through the n-th pause (an interruption's t is when the suspender tripped)."""

    def at(ref: Reference) -> float:
        i = ref.interruptions[proc][n]
        return i["t"] + i["waited_s"] / 2

    return at


@dataclass(frozen=True)
class Moment:
    name: str
    proc: str  # the item the queue was at
    spec: Callable[[Reference], str]
    where: str | None  # a function on the call stack when the kill came


GS, FI, PD = PROCS
MOMENTS = [
    Moment("first-stabilization", GS, _t(GS, lambda ref: ref.first_t(GS) / 2), "TemperatureStabilizer.move"),
    Moment("retry-back-off", GS, _t(GS, _backoff(GS, 3)), "RetryingAdapter._retry"),
    Moment("lock-in-overload-pause", GS, _t(GS, _paused(GS, 0)), "Suspenders._wait"),
    Moment("settling-mid-line", GS, _t(GS, lambda ref: ref.records[GS][12].t - 1.0), None),
    Moment("parking-after-last-point", GS, _t(GS, lambda ref: ref.last_r(GS) + 1e-6), "park"),
    Moment("run-completed-before-the-queue-knew", GS, lambda ref: f"catalog=completed@{GS}", "_finish"),
    Moment("between-items", GS, lambda ref: "queue=done@1", "run_queue"),
    Moment("estimate-of-the-next-item", FI, lambda ref: f"twin={FI}", "estimate_plan"),
    Moment("run-just-created", FI, lambda ref: "queue=running@2", "run_queue.<locals>.created"),
    Moment("field-step-in-line-0", FI, _t(FI, lambda ref: ref.records[FI][3].r + 0.3), "MagnetRole.ramp_to"),
    Moment(
        "right-after-line-0",
        FI,
        _t(FI, lambda ref: ref.records[FI][8].r + 1e-6),
        "TemperatureStabilizer.move",
    ),
    Moment("magnet-not-answering-pause", FI, _t(FI, _paused(FI, 1)), "Suspenders._wait"),
    Moment(
        "reading-in-the-last-item",
        PD,
        _t(PD, lambda ref: ref.records[PD][5].t + 0.01),
        "station_measurements.<locals>.read",
    ),
    Moment("parking-the-last-item", PD, _t(PD, lambda ref: ref.last_r(PD) + 1e-6), "park"),
]


@dataclass
class Outcome:
    spec: str
    kill: Job
    fired: dict[str, Any]
    after_kill: list[QueueItem]  # the queue right after the kill
    killed: dict[str, tuple[RunRecord, xr.Dataset | None]]  # the runs as the kill left them
    restart: Job
    final_queue: list[QueueItem]
    final: dict[str, tuple[RunRecord, xr.Dataset | None]]


def _fired(stderr: str) -> dict[str, Any]:
    lines = [line for line in stderr.splitlines() if line.startswith("FIRED ")]
    assert len(lines) == 1, stderr[-3000:]
    return json.loads(lines[0][len("FIRED ") :])


def _kill_and_restart(server: ForkServer, base: Path, moment: Moment, ref: Reference) -> Outcome:
    argv, data = setup_queue(base)
    spec = moment.spec(ref)
    kill = server.run(argv, base, spec)
    after_kill = Queue(data).items()
    killed = read_datasets(data)
    restart = server.run(argv, base)
    return Outcome(
        spec, kill, _fired(kill.stderr), after_kill, killed, restart, Queue(data).items(), read_datasets(data)
    )


@pytest.fixture(scope="module")
def outcomes(
    servers: list[ForkServer], reference: Reference, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[Outcome]]]:
    """Every kill and its restart, two at a time in the background (one per fork server)."""
    free: SimpleQueue[ForkServer] = SimpleQueue()
    for s in servers:
        free.put(s)

    def task(moment: Moment, base: Path) -> Outcome:
        server = free.get()
        try:
            return _kill_and_restart(server, base, moment, reference)
        finally:
            free.put(server)

    pool = ThreadPoolExecutor(max_workers=len(servers))
    futures = {m.name: pool.submit(task, m, tmp_path_factory.mktemp(m.name)) for m in MOMENTS}
    yield futures
    for f in futures.values():
        f.cancel()
    pool.shutdown(wait=True)


IDENTICAL_ATTRS = ("faults", "io_retries", "interruptions", "stabilization", "phases", "parameters", "truth")


def assert_identical(ds: xr.Dataset, ref: xr.Dataset, what: str) -> None:
    """Bit for bit: every variable and coordinate, and what the run recorded of its faults and pauses."""
    assert set(ds.data_vars) == set(ref.data_vars), what
    for name in [*ds.data_vars, *ds.coords]:
        assert np.array_equal(ds[name].values, ref[name].values, equal_nan=True), f"{what}: {name}"
    for key in IDENTICAL_ATTRS:
        assert ds.attrs[key] == ref.attrs[key], f"{what}: attribute {key}"


def run_order(ds: xr.Dataset, records: list[Record]) -> list[tuple[int, ...]]:
    """The grid indices in run order (each once, in the order first recorded)."""
    return list(dict.fromkeys(r.index for r in records))


def assert_resumed_within_noise(ds: xr.Dataset, ref: xr.Dataset, after: np.ndarray, what: str) -> None:
    """The points measured after the restart, against the reference's.

    They cannot be the same numbers: the resumed run has a new simulated lab (the fridge starts again
    from base and stabilizes again, every instrument's noise generator starts again from the seed, so
    each point draws other noise), and the fault schedule starts again from the resumed run's start,
    so the faults hit other points and other lines are redone. What must agree is the physics:

    - R within the noise of two readings plus the temperature's share: one reading's noise is read off
      the quadrature Y, which carries only noise for this resistive sample, sigma_R = std(Y / I)
      (5 to 25 Ohm here); a difference of two readings has sqrt(2) sigma_R, of which 6 are allowed
      (seen: below 2). On top, 1 % of R: both runs measured with the sample within the stabilizer's
      2 % of the setpoint (checked below; seen: within 0.6 %), and |dlnR/dlnT| < 1 on these grids.
    - the temperatures within the stabilizer's tolerance (2 % of the setpoint), the sample's and the
      mixing chamber's (which the heater regulates to the same setpoint);
    - the field and the gate voltage as the supplies read them back, the excitation current.
    """
    sigma_R = float(np.std(ref["Y"].values / ref["I"].values))
    R_new, R_ref = ds["R"].values[after], ref["R"].values[after]
    tol = 6 * np.sqrt(2) * sigma_R + 0.01 * np.abs(R_ref)
    assert np.all(np.abs(R_new - R_ref) <= tol), (what, float(np.max(np.abs(R_new - R_ref) / tol)))
    T_set = ds["T"].broadcast_like(ds["t"]).values[after]
    for name in ("T_sample", "T_mc"):
        deviation = np.abs(ds[name].values[after] / T_set - 1)
        assert np.all(deviation <= 0.02), (what, name, float(deviation.max()))
    assert np.allclose(ds["B_meas"].values[after], ref["B_meas"].values[after], rtol=0, atol=1e-6), what
    assert np.allclose(ds["V_g_meas"].values[after], ref["V_g_meas"].values[after], rtol=0, atol=1e-3), what
    assert np.allclose(ds["I"].values[after], ref["I"].values[after], rtol=1e-3), what


@pytest.mark.parametrize("moment", MOMENTS, ids=[m.name for m in MOMENTS])
def test_queue_killed_then_started_again_completes_with_the_reference_data(
    moment: Moment, reference: Reference, outcomes: dict[str, Future[Outcome]]
) -> None:
    ref = reference
    o = outcomes[moment.name].result(timeout=600)
    assert o.kill.returncode == -9, (o.spec, o.kill.stderr[-3000:])
    k = PROCS.index(moment.proc)
    if moment.where is not None:  # the kill landed where it was meant to
        assert moment.where in o.fired["where"], o.fired["where"]
    if o.spec.startswith("t="):  # in the intended item's run
        assert o.fired["proc"] == moment.proc, o.fired

    # right after the kill: the items before are done, the one it was at is running (if its run was
    # created) or pending, the ones after are pending
    statuses = [i.status for i in o.after_kill]
    assert statuses[:k] == ["done"] * k, statuses
    assert statuses[k] in ("pending", "running", "done"), statuses
    assert statuses[k + 1 :] == ["pending"] * (len(PROCS) - k - 1), statuses
    killed_run = o.after_kill[k].run_id
    assert (killed_run is None) == (statuses[k] == "pending"), o.after_kill[k]

    # started again: everything completes, each item in its run
    assert o.restart.returncode == 0, o.restart.stderr[-3000:]
    assert "queue done" in o.restart.stdout
    assert [i.status for i in o.final_queue] == ["done"] * len(PROCS), o.final_queue
    assert len(o.final) == len(PROCS), "an item got a second run"
    if killed_run is not None:  # resumed, not restarted: the same run
        assert o.final_queue[k].run_id == killed_run

    for j, proc in enumerate(PROCS):
        record, ds = o.final[proc]
        what = f"{moment.name}: {proc}"
        assert ds is not None, what
        assert record.state == "completed" and ds.attrs["status"] == "completed", what
        assert all(np.isfinite(ds[v].values).all() for v in ds.data_vars), what
        if j != k:
            # done before the kill, untouched; or run after it from the start, exactly as the reference
            # (a new lab, the same seed, the same faults from the run's start)
            assert "resumed" not in ds.attrs, what
            assert_identical(ds, ref.ds[proc], what)
            continue
        killed_record, killed_ds = o.killed.get(proc, (None, None))
        if killed_record is None or killed_record.state == "completed":
            # killed before the run existed (it starts afresh), or after it completed (the queue only
            # has to note it): the reference's run
            assert "resumed" not in ds.attrs, what
            assert_identical(ds, ref.ds[proc], what)
            continue
        assert killed_record.state == "crashed", (what, killed_record)
        if killed_ds is None:
            # killed after the run was created, before its store was: nothing was measured, so it runs
            # from its first point, in the same run, as the reference's run did
            assert_identical(ds, ref.ds[proc], what)
            continue
        resumed = json.loads(ds.attrs["resumed"])
        stored = np.isfinite(killed_ds["t"].values)
        assert len(resumed) == 1 and resumed[0]["from_point"] == int(stored.sum()), (what, resumed)
        # what the kill left is what the reference had recorded by then (a point redone after a pause
        # holds its latest values), and the restart kept it bit for bit
        t_kill = o.fired.get("t", math.inf)
        latest = {r.index: r.values for r in ref.records[proc] if r.r <= t_kill}
        variables = [*ds.data_vars]
        order = run_order(ref.ds[proc], ref.records[proc])
        assert [idx for idx in order if stored[idx]] == order[: int(stored.sum())], "not a run-order prefix"
        for idx in zip(*np.nonzero(stored), strict=True):
            values = [float(killed_ds[v].values[idx]) for v in variables[:-1]] + [
                float(killed_ds["t"].values[idx])
            ]
            assert values == latest[tuple(int(i) for i in idx)], (what, idx)
        for v in variables:
            assert np.array_equal(ds[v].values[stored], killed_ds[v].values[stored]), (what, v)
        # the rest measured once each after the kill, and as the reference within the noise
        t = ds["t"].values
        t_order = np.array([t[idx] for idx in order])
        assert np.all(np.diff(t_order) > 0), what
        assert_resumed_within_noise(ds, ref.ds[proc], ~stored, what)
        if not stored.any():
            # nothing was kept: the resumed run starts where the reference's did, on a lab just like
            # its (same seed, same faults from the run's start), and is the reference's run exactly
            assert_identical(ds, ref.ds[proc], what)
