"""Fault injection in the simulated lab: scripted by time or by command count, logged as they happen.

A :class:`Fault` names a kind, an instrument and a trigger: ``at_time`` [s on the lab's clock] or
``at_command`` (the instrument's command count, as in its emulator's command log: the fault fires just
before the instrument would receive command number ``at_command + 1``). ``duration`` [s] ends it.

I/O faults act in the transport (:mod:`qbs_lab.sim.visa_backend`, the TCP server), so the unmodified
drivers see what a real line does:

============  =====================================================================================
disconnect    unreachable for ``duration`` (none: for good). Every read, write and device clear on a
              session that was open when it fired raises VI_ERROR_CONN_LOST, also after the fault
              ended: the session is dead and must be closed and opened again; opening during the fault
              raises VI_ERROR_RSRC_NFOUND. Over TCP the server cuts the connection.
no_reply      the next ``count`` queries (default 1), or every query for ``duration``: the instrument
              receives and executes the command, the reply is lost, the read times out after the
              session's timeout on the lab's clock (VI_ERROR_TMO).
garbage       the next ``count`` replies (default 1), or every reply for ``duration``, arrive as bytes
              that decode in neither ASCII nor UTF-8 (a line glitch), still terminated, so the read
              ends and the driver's decoding or parsing fails. Binary blocks pass untouched.
============  =====================================================================================

Physical faults use the lab state's own hooks, applied at the exact fault time (the state is brought
up to it first):

============  =====================================================================================
quench        the magnet quenches (``Magnet.quench``): field gone, the supply latched until reset.
              No duration.
leak_spike    extra gate leakage ``current`` [A] (default 1e-8) for ``duration`` (``Gate.leak_spike``).
runaway       the heater stuck at full output on its largest range for ``duration``
              (``Cryostat.stuck_heater``): the mixing chamber heats up.
overload      the lock-in's input overloaded for ``duration`` (``Lockin.force_overload``).
============  =====================================================================================

Physical faults name the instrument whose quantity they disturb (``quench`` the magnet supply,
``leak_spike`` the gate source, ``runaway`` the thermometry controller, ``overload`` the lock-in); left
out, the lab picks its instrument of that role.

>>> from qbs_lab.sim import SimLab                                               # doctest: +SKIP
>>> lab = SimLab.from_station("station.yaml")                                    # doctest: +SKIP
>>> lab.faults.add(Fault("no_reply", "lockin", at_command=40, params={"count": 2}))  # doctest: +SKIP
>>> lab.load_faults(FaultSchedule.from_yaml("tonight-faults.yaml"))              # doctest: +SKIP
>>> [(e.time, e.event, e.kind) for e in lab.fault_log]                           # doctest: +SKIP

A schedule file (YAML)::

    faults:
      - {kind: disconnect, instrument: lockin, at_time: 3600, duration: 5}
      - {kind: no_reply, instrument: gate, at_command: 200, count: 2}
      - {kind: garbage, instrument: fridge, at_time: 5400}
      - {kind: leak_spike, instrument: gate, at_time: 7200, duration: 60, current: 5.0e-9}
      - {kind: runaway, at_time: 9000, duration: 300}
      - {kind: quench, at_time: 12000}
"""

from __future__ import annotations

import difflib
import json
import math
import threading
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import yaml

from qbs_lab.yaml_file import YamlFileError, read_yaml

if TYPE_CHECKING:
    from qbs_lab.clock import Clock
    from qbs_lab.sim.emulators.base import Emulator
    from qbs_lab.sim.lab_state import LabState

__all__ = [
    "IO_KINDS",
    "KINDS",
    "PHYSICAL_KINDS",
    "Fault",
    "FaultError",
    "FaultEvent",
    "FaultInjector",
    "FaultSchedule",
]

IO_KINDS = ("disconnect", "no_reply", "garbage")
#: physical fault kind -> the role of the instrument whose quantity it disturbs
PHYSICAL_KINDS: dict[str, str] = {
    "quench": "magnet",
    "leak_spike": "gate",
    "runaway": "thermometry",
    "overload": "lockin",
}
KINDS = (*IO_KINDS, *PHYSICAL_KINDS)
#: the parameters each kind takes (besides kind, instrument, at_time, at_command, duration)
PARAMS: dict[str, tuple[str, ...]] = {
    "no_reply": ("count",),
    "garbage": ("count",),
    "leak_spike": ("current",),
}
DEFAULT_LEAK_CURRENT = 1e-8  # A
_COMMON = ("kind", "instrument", "at_time", "at_command", "duration")
#: the instruments random schedules use by default: role -> name in the reference station
DEFAULT_INSTRUMENTS: dict[str, str] = {
    "lockin": "lockin",
    "gate": "gate",
    "magnet": "magnet",
    "thermometry": "fridge",
}


class FaultError(ValueError):
    """A fault or a fault schedule that cannot be used; ``problems`` has one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# -- validation ---------------------------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_integer(value: Any) -> bool:
    return _is_number(value) and float(value).is_integer()


def _check(entry: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems of one fault given as a flat mapping (YAML's form): (key, message) pairs."""
    problems: list[tuple[str, str]] = []
    kind = entry.get("kind")
    if kind is None:
        return [("kind", f"is missing (one of {', '.join(KINDS)})")]
    if kind not in KINDS:
        close = difflib.get_close_matches(str(kind), KINDS, n=1)
        hint = f"did you mean {close[0]}?" if close else f"one of {', '.join(KINDS)}"
        return [("kind", f"unknown fault kind {kind!r}: {hint}")]
    allowed = (*_COMMON, *PARAMS.get(kind, ()))
    for key in entry:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean {close[0]}?" if close else f"allowed: {', '.join(allowed)}"
            problems.append((str(key), f"unknown key for a {kind} fault ({hint})"))
    instrument = entry.get("instrument")
    if instrument is None:
        if kind in IO_KINDS:
            problems.append(("instrument", f"is missing: a {kind} fault needs the instrument's name"))
    elif not isinstance(instrument, str) or not instrument:
        problems.append(("instrument", f"must be an instrument's name, not {instrument!r}"))
    at_time, at_command = entry.get("at_time"), entry.get("at_command")
    if at_time is None and at_command is None:
        problems.append(("at_time", "is missing: give at_time [s on the lab's clock] or at_command [count]"))
    elif at_time is not None and at_command is not None:
        problems.append(("at_command", "give at_time or at_command, not both"))
    if at_time is not None and not (_is_number(at_time) and at_time >= 0):
        problems.append(("at_time", f"must be a time >= 0 s, not {at_time!r}"))
    if at_command is not None and not (_is_integer(at_command) and at_command >= 0):
        problems.append(("at_command", f"must be a whole number of commands >= 0, not {at_command!r}"))
    duration = entry.get("duration")
    if duration is not None:
        if kind == "quench":
            problems.append(("duration", "a quench has no duration: the supply latches until it is reset"))
        elif not (_is_number(duration) and duration > 0):
            problems.append(("duration", f"must be a time > 0 s, not {duration!r}"))
    count = entry.get("count")
    if count is not None and "count" in allowed:
        if not (_is_integer(count) and count >= 1):
            problems.append(("count", f"must be a whole number >= 1, not {count!r}"))
        elif duration is not None:
            problems.append(("count", "give count or duration, not both"))
    current = entry.get("current")
    if current is not None and "current" in allowed and not (_is_number(current) and current > 0):
        problems.append(("current", f"must be a current > 0 A, not {current!r}"))
    return problems


@dataclass(frozen=True)
class Fault:
    """One scheduled fault (see the module docstring for the kinds and their parameters).

    ``params``: ``count`` (no_reply, garbage), ``current`` [A] (leak_spike). Raises :class:`FaultError`
    listing every problem.
    """

    kind: str
    instrument: str | None = None
    at_time: float | None = None
    at_command: int | None = None
    duration: float | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = _check(self.to_dict())
        if problems:
            raise FaultError([f"{self.kind} fault: {key}: {message}" for key, message in problems])
        if self.at_time is not None:
            object.__setattr__(self, "at_time", float(self.at_time))
        if self.at_command is not None:
            object.__setattr__(self, "at_command", int(self.at_command))
        if self.duration is not None:
            object.__setattr__(self, "duration", float(self.duration))
        object.__setattr__(self, "params", dict(self.params))

    @property
    def count(self) -> int | None:
        """no_reply, garbage: how many replies it takes (None: all within ``duration``)."""
        if self.kind not in ("no_reply", "garbage") or self.duration is not None:
            return None
        return int(self.params.get("count", 1))

    @property
    def current(self) -> float:
        """leak_spike: the extra leakage [A]."""
        return float(self.params.get("current", DEFAULT_LEAK_CURRENT))

    def to_dict(self) -> dict[str, Any]:
        """The flat form of the YAML file and of JSON (parameters beside the common keys)."""
        out: dict[str, Any] = {"kind": self.kind}
        for key in ("instrument", "at_time", "at_command", "duration"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out.update(self.params)
        return out

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> Fault:
        common = {k: v for k, v in entry.items() if k in _COMMON}
        params = {k: v for k, v in entry.items() if k not in _COMMON}
        return cls(**common, params=params)

    def describe(self) -> str:
        when = f"t = {self.at_time:g} s" if self.at_time is not None else f"command {self.at_command}"
        extra = "".join(
            f", {k} {v:g}" if isinstance(v, float) else f", {k} {v}" for k, v in self.params.items()
        )
        lasting = f" for {self.duration:g} s" if self.duration is not None else ""
        return f"{self.kind} on {self.instrument or '(its role)'} at {when}{lasting}{extra}"


@dataclass(frozen=True)
class FaultEvent:
    """A fault fired or ended: ``time`` on the lab's clock [s], ``event`` "fired" or "ended", the fault
    (with its instrument resolved), ``index`` (its number in the lab, in the order added) and what it
    did."""

    time: float
    event: str
    fault: Fault
    index: int
    detail: str = ""

    @property
    def kind(self) -> str:
        return self.fault.kind

    @property
    def instrument(self) -> str | None:
        return self.fault.instrument

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "event": self.event,
            "index": self.index,
            "detail": self.detail,
            "fault": self.fault.to_dict(),
        }


# -- schedules ----------------------------------------------------------------------------------------
@dataclass
class FaultSchedule:
    """A list of faults, from Python, a YAML file or a random draw; JSON-serialisable (:meth:`to_json`)."""

    faults: list[Fault] = field(default_factory=list)
    source: str = "<faults>"

    def __iter__(self) -> Iterator[Fault]:
        return iter(self.faults)

    def __len__(self) -> int:
        return len(self.faults)

    def kinds(self) -> set[str]:
        return {f.kind for f in self.faults}

    def to_list(self) -> list[dict[str, Any]]:
        return [f.to_dict() for f in self.faults]

    def to_json(self) -> str:
        return json.dumps({"faults": self.to_list()})

    @classmethod
    def from_list(cls, entries: Any, source: str = "<faults>") -> FaultSchedule:
        """A schedule from a list of flat mappings (the YAML/JSON form); :class:`FaultError` lists every
        problem as ``source: faults[i].key: message``."""
        return _parse(entries, source, {})

    @classmethod
    def from_json(cls, text: str, source: str = "<json>") -> FaultSchedule:
        doc = json.loads(text)
        return _parse(doc.get("faults") if isinstance(doc, dict) else doc, source, {})

    @classmethod
    def from_yaml(cls, path: str | Path) -> FaultSchedule:
        """Read a schedule file: a list of faults, or a mapping with the list under ``faults:``.

        Raises :class:`FaultError` with one line per problem, ``file:line: faults[i].key: message``.
        """
        path = Path(path)
        try:
            doc, node = read_yaml(path, "fault schedule")
        except YamlFileError as err:
            raise FaultError([str(err)]) from None
        lines: dict[tuple[Any, ...], int] = {}
        entries: Any = doc
        if isinstance(doc, dict):
            problems = [
                f"{path}:{_key_line(node, (str(k),))}: {k}: unknown key (the file has one key, faults:)"
                for k in doc
                if k != "faults"
            ]
            if problems:
                raise FaultError(problems)
            entries = doc.get("faults") or []
            node = _child(node, "faults")
        elif doc is None:
            entries = []
        _list_lines(node, lines)
        return _parse(entries, str(path), lines)

    @classmethod
    def random(
        cls,
        seed: int,
        duration: float,
        kinds: Iterable[str] = KINDS,
        instruments: Mapping[str, str] | Sequence[str] = DEFAULT_INSTRUMENTS,
        *,
        extra: int | None = None,
        long_fraction: float = 0.25,
    ) -> FaultSchedule:
        """A random schedule over ``[0, duration]`` s that hits every kind in ``kinds`` at least once.

        ``instruments``: role -> name (physical faults go to their role's instrument; I/O faults to any
        of them), or a list of names (I/O faults pick among them; physical faults leave the instrument
        to the lab). ``extra`` more faults of random kinds (default: a random number up to the number of
        kinds). A fraction ``long_fraction`` of the I/O faults last longer than the retries can bridge
        (60-600 s); the others are transient (a few seconds, or one or two replies). The same seed
        gives the same schedule.
        """
        kinds = list(dict.fromkeys(kinds))
        unknown = [k for k in kinds if k not in KINDS]
        if unknown or not kinds:
            raise FaultError([f"random schedule: kinds must be some of {', '.join(KINDS)}, not {unknown}"])
        if not duration > 0:
            raise FaultError([f"random schedule: duration must be > 0 s, not {duration!r}"])
        roles = dict(instruments) if isinstance(instruments, Mapping) else {}
        names = list(dict.fromkeys(roles.values() if roles else instruments))
        if any(k in IO_KINDS for k in kinds) and not names:
            raise FaultError(["random schedule: I/O faults need at least one instrument"])
        rng = np.random.default_rng([int(seed), zlib.crc32(b"qbs_lab faults")])
        n_extra = int(rng.integers(0, len(kinds) + 1)) if extra is None else int(extra)
        chosen = kinds + [kinds[int(i)] for i in rng.integers(0, len(kinds), n_extra)]
        rng.shuffle(chosen)
        times = np.sort(rng.uniform(0.02, 0.98, len(chosen))) * duration
        faults = []
        for kind, t in zip(chosen, times, strict=True):
            long = bool(rng.random() < long_fraction)
            spec: dict[str, Any] = {"kind": kind, "at_time": round(float(t), 3)}
            if kind in IO_KINDS:
                spec["instrument"] = names[int(rng.integers(0, len(names)))]
            elif roles.get(PHYSICAL_KINDS[kind]):
                spec["instrument"] = roles[PHYSICAL_KINDS[kind]]
            if kind == "disconnect":
                spec["duration"] = float(rng.uniform(60, 600) if long else rng.uniform(0.2, 5.0))
            elif kind in ("no_reply", "garbage"):
                if long:
                    spec["duration"] = float(rng.uniform(60, 600))
                elif rng.random() < 0.5:
                    spec["count"] = int(rng.integers(1, 3))
                else:
                    spec["duration"] = float(rng.uniform(0.5, 8.0))
            elif kind == "leak_spike":
                spec["duration"] = float(rng.uniform(5, 120))
                spec["current"] = float(f"{10 ** rng.uniform(-8.5, -7.5):.3g}")
            elif kind == "runaway":
                spec["duration"] = float(rng.uniform(30, 600))
            elif kind == "overload":
                spec["duration"] = float(rng.uniform(5, 120))
            if "duration" in spec:
                spec["duration"] = round(spec["duration"], 3)
            faults.append(Fault.from_dict(spec))
        return cls(faults, source=f"random(seed={seed})")


def _parse(entries: Any, source: str, lines: dict[tuple[Any, ...], int]) -> FaultSchedule:
    def where(*keys: Any) -> str:
        for n in range(len(keys), -1, -1):
            if keys[:n] in lines:
                return f"{source}:{lines[keys[:n]]}:"
        return f"{source}:"

    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise FaultError([f"{where()} faults: must be a list of faults, not {type(entries).__name__}"])
    problems: list[str] = []
    faults: list[Fault] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.append(f"{where(i)} faults[{i}]: must be a mapping (kind:, instrument:, at_time: ...)")
            continue
        entry = {k: _number_text(v) if k in _NUMERIC else v for k, v in entry.items()}
        found = _check(entry)
        if found:
            problems += [f"{where(i, key)} faults[{i}].{key}: {message}" for key, message in found]
            continue
        faults.append(Fault.from_dict(entry))
    if problems:
        raise FaultError(problems)
    return FaultSchedule(faults, source=source)


_NUMERIC = ("at_time", "at_command", "duration", "count", "current")


def _number_text(value: Any) -> Any:
    """PyYAML reads ``5e-9`` (no dot) as text: take a number written so as the number meant."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return (
            int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
        )
    return value


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == key:
                return v
    return None


def _key_line(node: yaml.Node | None, keys: tuple[str, ...]) -> int | str:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == keys[0]:
                return k.start_mark.line + 1 if len(keys) == 1 else _key_line(v, keys[1:])
    return "?"


def _list_lines(node: yaml.Node | None, lines: dict[tuple[Any, ...], int]) -> None:
    """Line (1-based) of each list entry, ``(i,)``, and of each key in it, ``(i, key)``."""
    if not isinstance(node, yaml.SequenceNode):
        return
    for i, item in enumerate(node.value):
        lines[(i,)] = item.start_mark.line + 1
        if isinstance(item, yaml.MappingNode):
            for k, _ in item.value:
                lines[(i, str(k.value))] = k.start_mark.line + 1


# -- the lab's fault engine ---------------------------------------------------------------------------
class _Armed:
    """A fault added to a lab, with its state: pending, active or over."""

    __slots__ = ("added", "ends_at", "fault", "index", "remaining", "start", "state")

    def __init__(self, fault: Fault, index: int, added: float) -> None:
        self.fault, self.index, self.added = fault, index, added
        self.state = "pending"
        self.start: float | None = None
        self.ends_at: float | None = None
        self.remaining: int | None = fault.count


class _At:
    """A clock stopped at one instant: brings the lab state up to a fault's time (see ``_sync_to``)."""

    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:  # pragma: no cover - never waited on
        raise RuntimeError("a fault's instant cannot wait")


class FaultTarget(Protocol):
    """What faults need of a simulated lab (:class:`~qbs_lab.sim.lab.SimLab` is one): a protocol, so
    this module does not import the lab that imports it."""

    seed: int
    clock: Clock
    state: LabState

    @property
    def instruments(self) -> list[str]: ...

    def emulator(self, name: str) -> Emulator: ...

    def role_of(self, name: str) -> str | None: ...


class FaultInjector:
    """The faults of one :class:`~qbs_lab.sim.lab.SimLab` (``lab.faults``): added, fired, ended, logged.

    The transports call :meth:`update` at every operation (open, write of each message, read, device
    clear), so faults fire when the lab's clock has passed their time, or when their instrument's
    command count has reached ``at_command`` (checked just before each message is delivered), and end
    after their duration. Each firing and end is in :attr:`log` (``lab.fault_log``).
    """

    def __init__(self, lab: FaultTarget) -> None:
        self._lab = lab
        self.log: list[FaultEvent] = []
        self._armed: list[_Armed] = []
        self._by_time: list[_Armed] = []  # pending, by at_time
        self._by_count: dict[str, list[_Armed]] = {}  # pending, by at_command, per instrument
        self._active: list[_Armed] = []
        #: per instrument, how many disconnects have fired: a session opened before the last one is dead
        self.epochs: dict[str, int] = {}
        self._lock = threading.RLock()
        self._rng = np.random.default_rng([int(lab.seed), zlib.crc32(b"qbs_lab garbage")])
        #: nothing pending or active: the transports skip the checks (the dead-session check stays)
        self.idle = True

    # -- scheduling ----------------------------------------------------------------------------------
    def add(self, fault: Fault | str, instrument: str | None = None, **kwargs: Any) -> Fault:
        """Add a fault: a :class:`Fault`, or its kind with the same keywords (``params`` keys may be
        given directly: ``lab.faults.add("no_reply", "gate", at_command=10, count=2)``). Returns the
        fault with its instrument resolved. Raises :class:`FaultError` for an instrument the lab does
        not have or that cannot suffer this kind of fault."""
        if isinstance(fault, str):
            common = {k: v for k, v in kwargs.items() if k in _COMMON}
            extra = {k: v for k, v in kwargs.items() if k not in _COMMON and k != "params"}
            fault = Fault(fault, instrument, **common, params={**kwargs.get("params", {}), **extra})
        elif instrument is not None or kwargs:
            raise TypeError("give a Fault, or a kind with its settings, not both")
        resolved, problem = self._resolve(fault)
        if problem:
            raise FaultError([problem])
        self._arm(resolved)
        return resolved

    def load(self, schedule: FaultSchedule | Iterable[Fault]) -> list[Fault]:
        """Add every fault of a schedule, after checking them all against the lab (one
        :class:`FaultError` lists every problem)."""
        source = getattr(schedule, "source", "<faults>")
        resolved, problems = [], []
        for i, fault in enumerate(schedule):
            r, problem = self._resolve(fault)
            if problem:
                problems.append(f"{source}: faults[{i}].instrument: {problem}")
            resolved.append(r)
        if problems:
            raise FaultError(problems)
        for r in resolved:
            self._arm(r)
        return resolved

    def _resolve(self, fault: Fault) -> tuple[Fault, str | None]:
        lab = self._lab
        known = lab.instruments
        role = PHYSICAL_KINDS.get(fault.kind)
        if fault.instrument is None:  # only physical faults may leave it out (checked by Fault)
            assert role is not None
            players = [n for n in known if lab.role_of(n) == role]
            if len(players) != 1:
                which = ", ".join(players) if players else "none"
                return (
                    fault,
                    f"a {fault.kind} fault needs the {role} instrument's name (the lab has: {which})",
                )
            return replace(fault, instrument=players[0]), None
        if fault.instrument not in known:
            return (
                fault,
                f"no emulated instrument {fault.instrument!r} (emulated: {', '.join(known) or 'none'})",
            )
        if role is not None and lab.role_of(fault.instrument) != role:
            return (
                fault,
                f"{fault.instrument!r} is not the {role} instrument: it cannot have a {fault.kind} fault",
            )
        return fault, None

    def _arm(self, fault: Fault) -> None:
        with self._lock:
            armed = _Armed(fault, len(self._armed), self._lab.clock.now())
            self._armed.append(armed)
            if fault.at_time is not None:
                self._by_time.append(armed)
                self._by_time.sort(key=lambda a: (a.fault.at_time, a.index))
            else:
                queue = self._by_count.setdefault(str(fault.instrument), [])
                queue.append(armed)
                queue.sort(key=lambda a: (a.fault.at_command, a.index))
            self.idle = False

    @property
    def faults(self) -> list[Fault]:
        """Every fault added, in order (instruments resolved)."""
        return [a.fault for a in self._armed]

    @property
    def pending(self) -> list[Fault]:
        return [a.fault for a in self._armed if a.state == "pending"]

    @property
    def active(self) -> list[Fault]:
        return [a.fault for a in self._armed if a.state == "active"]

    # -- firing and ending ---------------------------------------------------------------------------
    def update(self, instrument: str | None = None) -> None:
        """Fire and end what is due at the lab clock's present; with ``instrument``, also fire its
        command-count faults whose count its command log has reached."""
        if self.idle:
            return
        with self._lock:
            now = self._lab.clock.now()
            while True:
                fire = self._by_time[0] if self._by_time else None
                t_fire = max(fire.fault.at_time, fire.added) if fire else math.inf  # type: ignore[type-var]
                ending = min(
                    (a for a in self._active if a.ends_at is not None),
                    key=lambda a: (a.ends_at, a.index),
                    default=None,
                )
                t_end = ending.ends_at if ending is not None else math.inf
                if min(t_fire, t_end) > now:  # type: ignore[type-var]
                    break
                if ending is not None and t_end <= t_fire:  # type: ignore[operator]
                    self._end(ending, float(t_end))  # type: ignore[arg-type]
                else:
                    assert fire is not None
                    self._by_time.pop(0)
                    self._fire(fire, float(t_fire))  # type: ignore[arg-type]
            if instrument is not None and self._by_count.get(instrument):
                queue = self._by_count[instrument]
                n = len(self._lab.emulator(instrument).log)
                while queue and queue[0].fault.at_command <= n:  # type: ignore[operator]
                    self._fire(queue.pop(0), now)
            self.idle = not (self._by_time or self._active or any(self._by_count.values()))

    def _fire(self, armed: _Armed, t: float) -> None:
        fault = armed.fault
        armed.state, armed.start = "active", t
        armed.ends_at = t + fault.duration if fault.duration is not None else None
        detail = self._apply(fault, True, t)
        self.log.append(FaultEvent(t, "fired", fault, armed.index, detail))
        if fault.kind == "quench":  # instantaneous: the supply latches, nothing to end
            armed.state = "over"
        else:
            self._active.append(armed)

    def _end(self, armed: _Armed, t: float, detail: str | None = None) -> None:
        armed.state = "over"
        self._active.remove(armed)
        restored = self._apply(armed.fault, False, t)
        self.log.append(FaultEvent(t, "ended", armed.fault, armed.index, detail or restored))

    def _active_of(self, kind: str, instrument: str | None = None) -> list[_Armed]:
        return [
            a
            for a in self._active
            if a.fault.kind == kind and (instrument is None or a.fault.instrument == instrument)
        ]

    def _apply(self, fault: Fault, on: bool, t: float) -> str:
        """Start (``on``) or stop a fault's effect at time ``t``; returns what was done."""
        name = str(fault.instrument)
        if fault.kind == "disconnect":
            if on:
                self.epochs[name] = self.epochs.get(name, 0) + 1
                return f"{name} unreachable; its open sessions are dead"
            return f"{name} reachable again (sessions must be re-opened)"
        if fault.kind in ("no_reply", "garbage"):
            if not on:
                return ""
            if fault.count is None:
                return f"every reply for {fault.duration:g} s"
            return f"the next {fault.count} repl{'y' if fault.count == 1 else 'ies'}"
        state = self._lab.state
        with state.lock:
            self._sync_to(t)
            if fault.kind == "quench":
                state.magnet.quench()
                return "magnet quenched: field lost, supply latched in QUENCH"
            if fault.kind == "leak_spike":
                state.gate.leak_spike += fault.current if on else -fault.current
                if abs(state.gate.leak_spike) < 1e-18:
                    state.gate.leak_spike = 0.0
                return f"gate leakage {'+' if on else '-'}{fault.current:.3g} A"
            others = bool(self._active_of(fault.kind))  # overlapping faults of the kind (not this one)
            if fault.kind == "runaway":
                state.fridge.stuck_heater = on or others
                return "heater stuck at full output" if on else "heater released"
            if fault.kind == "overload":
                state.lockin.force_overload = on or others
                return "lock-in input overloaded" if on else "lock-in overload over"
        raise AssertionError(fault.kind)  # pragma: no cover

    def _sync_to(self, t: float) -> None:
        """Bring the physical state up to time ``t`` (<= now), so a fault acts at its own instant."""
        state = self._lab.state
        clock = state.clock
        state.clock = _At(t)  # type: ignore[assignment]
        try:
            state.sync()
        finally:
            state.clock = clock

    # -- what the transports ask -----------------------------------------------------------------------
    def unreachable(self, instrument: str) -> bool:
        """True while a disconnect of ``instrument`` is active (opening it fails)."""
        return not self.idle and bool(self._active_of("disconnect", instrument))

    def reply(self, instrument: str, emulator: Emulator, data: bytes) -> bytes | None:
        """The reply as it reaches the client: None when a no_reply fault takes it, garbled bytes when a
        garbage fault does, else ``data``."""
        if self.idle:
            return data
        with self._lock:
            for kind in ("no_reply", "garbage"):
                found = self._active_of(kind, instrument)
                if not found or (kind == "garbage" and emulator.last_reply_binary):
                    continue
                armed = found[0]
                now = self._lab.clock.now()
                if armed.remaining is not None:
                    armed.remaining -= 1
                    if armed.remaining <= 0:
                        self._end(
                            armed,
                            now,
                            f"after {armed.fault.count} repl{'y' if armed.fault.count == 1 else 'ies'}",
                        )
                        self.idle = not (self._by_time or self._active or any(self._by_count.values()))
                if kind == "no_reply":
                    return None
                return self._garbage(emulator)
        return data

    def _garbage(self, emulator: Emulator) -> bytes:
        # 0xFF and 0xFE are never valid in UTF-8, and nothing above 0x7F is ASCII
        noise = bytes(int(b) for b in self._rng.integers(0x80, 0x100, int(self._rng.integers(3, 10))))
        return b"\xff\xfe" + noise + emulator.reply_termination.encode()
