"""Memory of an emulator over 10 million commands: the bounded command log against an unbounded list.

A long dry run sends an instrument tens of millions of commands; an emulator that kept each one grew a
process past 1 GB after 3.8 million. This drives a Keithley 2400 emulator with a gate sweep's mix of
commands (level writes, level and current queries, a compliance write, a refused command) through its
message handler, and prints the process's resident memory at 1, 2, 5 and 10 million commands; then
the same traffic into a log that keeps every command (the old behaviour) for ``--list-max`` commands.
It also checks what the bounded log still proves: the command count and the extremes of the levels
sent. Takes a few minutes. Run:

    python benchmarks/command_log_soak.py [--n 10000000] [--list-max 1000000]
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

import numpy as np

from qbs_lab.clock import VirtualClock
from qbs_lab.sim.emulators.command_log import CommandLog
from qbs_lab.sim.emulators.keithley2400 import Keithley2400Emulator
from qbs_lab.sim.lab_state import LabState
from qbs_lab.sim.sample import scenario_params

CHECKPOINTS = (1_000_000, 2_000_000, 5_000_000, 10_000_000)
LEVEL_KEY = ":SOURce#:VOLTage[:LEVel][:IMMediate][:AMPLitude]"


def rss_mb() -> float:
    """Resident memory of this process [MB] (Linux /proc)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 1e6


def commands(n: int) -> list[str]:
    """One block of a gate sweep's traffic: a level, its read-back, a reading, now and then a refusal."""
    out = []
    for i in range(n):
        v = -5.0 + 10.0 * (i % 1000) / 999
        out += [f":SOUR:VOLT {v:.6f}", ":SOUR:VOLT?", ":SENS:CURR:PROT 1e-6", ":SENS:CURR:PROT?"]
    out[-1] = ":SOUR:VOLT 300"  # refused (-222): still logged, still counted in the extremes
    return out


def soak(emu: Keithley2400Emulator, n: int, checkpoints: list[int], report: bool) -> list[float]:
    """Send ``n`` commands; the process's RSS [MB] at each checkpoint (printed if ``report``)."""
    block = commands(250)  # 1000 commands
    sent, t0, out = 0, time.perf_counter(), []
    for mark in checkpoints:
        while sent < min(mark, n):
            for message in block:
                emu.handle(message)
            sent += len(block)
        gc.collect()
        out.append(rss_mb())
        if report:
            rate = sent / (time.perf_counter() - t0)
            print(f"{sent:>12,} {out[-1]:>13.0f} MB {out[-1] - out[0]:>+8.1f} MB {rate:>9.0f}/s")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000, help="commands to send")
    ap.add_argument("--list-max", type=int, default=1_000_000, help="commands for the unbounded log")
    a = ap.parse_args()
    state = LabState(VirtualClock(), scenario_params("clean"))
    emu = Keithley2400Emulator("gate", state, np.random.default_rng(0))
    checkpoints = [c for c in CHECKPOINTS if c <= a.n] or [a.n]
    print(f"Keithley 2400 emulator, {a.n:,} commands; the bounded log keeps the last {emu.log.keep:,}")
    print(f"{'commands':>12} {'RSS':>16} {'since 1st':>11} {'rate':>11}")
    soak(emu, a.n, checkpoints, report=True)
    log = emu.log
    lo, hi = log.extremes[LEVEL_KEY]
    print(
        f"log: len {len(log):,} (every command counted), {len(log.recent):,} in memory, "
        f"{log.error_count:,} refused; {len(log.counts)} distinct commands counted"
    )
    print(f"level extremes over the whole run: {lo:+.3f} V .. {hi:+.3f} V (the refused 300 V included)")

    # the old behaviour beside it: every command kept (a log that never drops one)
    old = Keithley2400Emulator("old", state, np.random.default_rng(0))
    old.log = CommandLog(keep=a.n + 1)  # type: ignore[assignment]
    before, after = soak(old, a.list_max, [0, a.list_max], report=False)
    per_million = (after - before) * 1e6 / a.list_max
    print(
        f"unbounded log (every command kept): {after - before:+.0f} MB after {a.list_max:,} commands, "
        f"{per_million:.0f} MB per million: {per_million * a.n / 1e9:.1f} GB projected at {a.n:,}"
    )


if __name__ == "__main__":
    main()
