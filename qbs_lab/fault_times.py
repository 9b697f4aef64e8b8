"""A fault schedule over a dry run: which faults each run's simulated lab gets, and which ever fired.

Each run has its own simulated lab whose clock starts at zero. A schedule's ``at_time`` counts either
from each run's start (``"run"``: every run gets the whole schedule) or from the queue's start
(``"queue"``, the default of ``qbs-lab queue run --faults``): then the fridge time of the runs before
(their labs' clocks at the end) is subtracted, a fault whose time fell in an earlier run is not given
again, and a command-count fault (``at_command``) goes to each run until one fires it.

At the end, :meth:`FaultTimeline.report` says which faults fired, when and in which run, and warns
about those that never did (a schedule longer than the night, an instrument never talked to).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from qbs_lab.sim.faults import Fault, FaultSchedule

__all__ = ["FaultTimeline"]


@dataclass
class FaultTimeline:
    schedule: FaultSchedule
    count_from: str = "queue"  # or "run"
    elapsed: float = 0.0  # fridge time [s] of the runs so far (their labs' clocks)
    fired: dict[int, tuple[float, str]] = field(default_factory=dict)  # index -> (queue time, run id)
    _given: list[int] = field(default_factory=list)  # schedule index of each fault given to the lab
    _resolved: dict[int, Fault] = field(default_factory=dict)  # with the instrument a lab chose

    def __post_init__(self) -> None:
        if self.count_from not in ("queue", "run"):
            raise ValueError(f"fault times count from 'queue' or 'run', not {self.count_from!r}")

    def for_run(self) -> FaultSchedule:
        """The faults for the next run's lab, with times on its clock."""
        given: list[tuple[int, Fault]] = []
        for i, fault in enumerate(self.schedule):
            if self.count_from == "run":
                given.append((i, fault))
            elif fault.at_time is not None:
                t = fault.at_time - self.elapsed
                if t >= 0:
                    given.append((i, replace(fault, at_time=t)))
            elif i not in self.fired:
                given.append((i, fault))
        self._given = [i for i, _ in given]
        return FaultSchedule([f for _, f in given], self.schedule.source)

    def record(self, run_id: str, faults: dict[str, Any]) -> None:
        """Note a run's fault record (``RunOutcome.faults``: its lab's ``events`` and ``lab_time``)."""
        for j, entry in enumerate(faults.get("scheduled", [])):
            if j < len(self._given):
                i = self._given[j]
                at = self.schedule.faults[i].at_time
                self._resolved.setdefault(i, replace(Fault.from_dict(entry), at_time=at))
        for event in faults.get("events", []):
            j = int(event["index"])
            if event["event"] == "fired" and j < len(self._given):
                i = self._given[j]
                self.fired.setdefault(i, (self.elapsed + float(event["time"]), run_id))
        if self.count_from == "queue":
            self.elapsed += float(faults.get("lab_time", 0.0))

    def report(self) -> tuple[list[str], list[str]]:
        """(lines on what fired, warnings on what never did)."""
        n = len(self.schedule)
        origin = "the queue's start" if self.count_from == "queue" else "its run's start"
        lines = [f"faults: {len(self.fired)} of {n} fired (times from {origin})"]
        faults = [self._resolved.get(i, f) for i, f in enumerate(self.schedule)]
        for i, fault in enumerate(faults):
            if i in self.fired:
                t, run_id = self.fired[i]
                lines.append(f"  fired in run {run_id} at t = {t:.0f} s: {fault.describe()}")
        warnings = [
            f"fault never fired: {fault.describe()}" for i, fault in enumerate(faults) if i not in self.fired
        ]
        if warnings and self.count_from == "queue":
            warnings.append(f"the runs took {self.elapsed:.0f} s of fridge time")
        return lines, warnings
