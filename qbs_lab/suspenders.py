"""Suspenders: conditions watched while a run goes, each with its policy (station file ``suspenders:``).

Lab instruments on GPIB/VISA push nothing, so the suspenders poll the roles: the runner asks
:meth:`Suspenders.check` after every point (before the point is stored) and :meth:`Suspenders.on_error`
about any exception raised while setting or reading. A tripped condition answers with a
:class:`~qbs_lab.trips.Trip` whose policy is the condition's:

``pause``
    wait on the clock until the condition has recovered (with hysteresis) continuously for ``hold``
    seconds, reading every ``poll`` seconds, for at most ``timeout`` seconds; the runner then redoes the
    current line (a timeout aborts the run). A condition that pauses more than ``max_pauses`` times in
    one run aborts it instead.
``abort``
    end the run; the instruments go to the station's safe state and the queue goes on.
``stop``
    as ``abort``, and the queue stops too.
``off``
    not watched.

Conditions (units K, A, s; ``every`` is the clock time between polls, 0: after every point; quench
defaults to every 10 s, the others to every point):

=================  =======  =====================================================================
condition          default  what trips it
=================  =======  =====================================================================
``quench``         abort    the magnet supply reports QUENCH (polled), or the magnet role raised
                            :class:`QuenchError`; a pause waits until the supply leaves QUENCH
``leakage``        abort    gate leakage above ``limit`` (default: ``safety.gate.leakage_limit``),
                            polled, or the gate role raised :class:`LeakageError`
``io``             abort    an instrument not answering (:func:`not_answering`: VISA I/O errors,
                            timeouts, lost connections, ``InstrumentNotAnswering``); a pause reads
                            the role(s) cheaply every ``poll`` s until they answer
``mixing_chamber`` off      T_mc above ``ceiling`` [K], or (heater on) further than ``band`` (a
                            fraction) from the active setpoint; default policy when named: pause
``lockin``         off      lock-in input overload or reference unlock; an output overload only when
                            it persists ``persist`` polls (the resistance meter autoranges it away);
                            default policy when named: pause
=================  =======  =====================================================================

With no ``suspenders:`` section the first three are on (quench, leakage: abort; io: abort) and the
last two off; a section overrides only what it names. Per condition (defaults in :data:`DEFAULTS`):
``policy``, ``every``, ``hold``, ``timeout``, ``poll``, ``max_pauses``; ``hysteresis`` (fraction: a
ceiling or limit recovers below ``(1 - hysteresis)`` of it, a band within ``(1 - hysteresis)`` of it);
``ceiling``, ``band`` (mixing_chamber), ``limit`` (leakage), ``persist`` (lockin). A condition may
also be given as just its policy (``quench: stop``) or ``off``.

Every wait is on the clock given (the station's: virtual in simulation, a guarded clock so that
Ctrl-C is honoured while paused).
"""

from __future__ import annotations

import contextlib
import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qbs_lab.clock import Clock
from qbs_lab.drivers.errors import LeakageError, QuenchError
from qbs_lab.drivers.protocols import MagnetStatus
from qbs_lab.trips import Trip, Tripped

__all__ = [
    "CONDITIONS",
    "DEFAULTS",
    "POLICIES",
    "Condition",
    "SuspenderError",
    "Suspenders",
    "not_answering",
    "validate_suspenders",
]

POLICIES = ("pause", "abort", "stop", "off")
#: in the order a check polls them: the most severe first
CONDITIONS = ("quench", "leakage", "mixing_chamber", "lockin", "io")
#: watched even when the station file does not name them
ON_BY_DEFAULT = ("quench", "leakage", "io")

_COMMON = {"policy": "abort", "every": 0.0, "hold": 0.0, "timeout": 600.0, "poll": 5.0, "max_pauses": 5}
#: every condition's settings and their defaults (``None``: see the condition's description)
DEFAULTS: dict[str, dict[str, Any]] = {
    # the magnet role watches for a quench during every ramp itself: between ramps a probe every 10 s of
    # fridge time is enough. Leakage stays at every point: it decides whether a point may be stored
    "quench": {**_COMMON, "every": 10.0, "hold": 60.0, "timeout": 3600.0, "poll": 10.0},
    "leakage": {**_COMMON, "limit": None, "hysteresis": 0.1, "hold": 10.0},
    "io": {k: v for k, v in _COMMON.items() if k != "every"} | {"poll": 10.0},
    "mixing_chamber": {
        **_COMMON,
        "policy": "pause",
        "ceiling": None,
        "band": None,
        "hysteresis": 0.1,
        "hold": 60.0,
        "timeout": 3600.0,
        "poll": 10.0,
    },
    "lockin": {**_COMMON, "policy": "pause", "persist": 2, "hold": 10.0, "poll": 2.0},
}
_POSITIVE = {"timeout", "poll", "ceiling", "limit"}  # > 0
_NONNEGATIVE = {"every", "hold"}  # >= 0
_INTEGERS = {"max_pauses": 0, "persist": 1}  # whole numbers >= the bound
_LONGEST = 7 * 86400.0  # s: the longest wait a setting may ask for


#: the conditions watched also while the run waits (stabilizing a temperature, paused for another)
HAZARDS = ("quench", "leakage")


class SuspenderError(ValueError):
    """A ``suspenders:`` section with problems, one ``suspenders.KEY.SUB: message`` each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Condition:
    """One watched condition with its settings (see the module docstring)."""

    name: str
    policy: str
    every: float = 0.0
    hold: float = 0.0
    timeout: float = 600.0
    poll: float = 5.0
    max_pauses: int = 5
    hysteresis: float = 0.0
    ceiling: float | None = None
    band: float | None = None
    limit: float | None = None
    persist: int = 1

    @property
    def on(self) -> bool:
        return self.policy != "off"


# -- validation ---------------------------------------------------------------------------------------
def _policy(value: Any) -> Any:
    return "off" if value is False else value  # YAML reads a bare `off` as false


def _number(value: Any) -> float | None:
    if isinstance(value, str):  # PyYAML reads 1.0e6 (no exponent sign) as text
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _settings(name: str, value: Any) -> dict[str, Any]:
    """A condition's entry as a mapping (``quench: stop`` is ``{policy: stop}``; ``None``: defaults)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    return {"policy": _policy(value)}


def validate_suspenders(section: Any) -> list[str]:
    """Every problem of a ``suspenders:`` section, one line each (``suspenders.KEY.SUB: message``)."""
    if section is None:
        return []
    if not isinstance(section, dict):
        return [f"suspenders: must be a mapping of conditions ({', '.join(CONDITIONS)}), not {section!r}"]
    problems: list[str] = []
    for name, entry in section.items():
        where = f"suspenders.{name}"
        if name not in DEFAULTS:
            close = difflib.get_close_matches(str(name), CONDITIONS, n=1)
            hint = f"did you mean {close[0]}?" if close else f"allowed: {', '.join(CONDITIONS)}"
            problems.append(f"{where}: unknown condition ({hint})")
            continue
        if entry is not None and not isinstance(entry, dict | str | bool):
            problems.append(f"{where}: must be a mapping of settings or a policy ({', '.join(POLICIES)})")
            continue
        if entry is True:
            problems.append(f"{where}: must be a mapping of settings or a policy ({', '.join(POLICIES)})")
            continue
        settings = _settings(name, entry)
        allowed = DEFAULTS[name]
        values: dict[str, Any] = {}
        for key, raw in settings.items():
            at = f"{where}.{key}"
            if key not in allowed:
                close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
                hint = f"did you mean {close[0]}?" if close else f"allowed: {', '.join(sorted(allowed))}"
                problems.append(f"{at}: unknown key ({hint})")
                continue
            if key == "policy":
                policy = _policy(raw)
                if policy not in POLICIES:
                    problems.append(f"{at}: must be one of {', '.join(POLICIES)}, not {raw!r}")
                else:
                    values[key] = policy
                continue
            if raw is None and allowed[key] is None:
                continue  # an explicit null: the default (no ceiling, no band, the station's limit)
            number = _number(raw)
            if number is None:
                problems.append(f"{at}: must be a number, not {raw!r}")
                continue
            if key in _INTEGERS:
                if number != int(number) or number < _INTEGERS[key]:
                    problems.append(f"{at}: must be a whole number >= {_INTEGERS[key]}, not {raw!r}")
                    continue
            elif key in _POSITIVE and number <= 0:
                problems.append(f"{at}: must be > 0, not {number:g}")
                continue
            elif key in _NONNEGATIVE and number < 0:
                problems.append(f"{at}: must be >= 0, not {number:g}")
                continue
            elif key == "band" and not 0 < number < 1:
                problems.append(f"{at}: must be a fraction of the setpoint between 0 and 1, not {number:g}")
                continue
            elif key == "hysteresis" and not 0 <= number < 1:
                problems.append(f"{at}: must be a fraction between 0 and 1 (0 included), not {number:g}")
                continue
            elif key == "poll" and number < 0.01:  # a wait polling every 1e-300 s never ends
                problems.append(f"{at}: must be at least 0.01 s, not {number:g}")
                continue
            elif key in ("timeout", "hold", "every") and number > _LONGEST:
                problems.append(f"{at}: must be at most {_LONGEST / 86400:g} days, not {number:g} s")
                continue
            values[key] = number
        merged = {**allowed, **values}
        if merged["policy"] == "off":
            continue
        bad = {
            k for k in ("ceiling", "band") if k in settings and k not in values and settings[k] is not None
        }
        if name == "mixing_chamber" and merged["ceiling"] is None and merged["band"] is None and not bad:
            problems.append(
                f"{where}: needs a ceiling [K] or a band (fraction of the setpoint), or policy: off"
            )
        if merged["policy"] == "pause" and merged["hold"] >= merged["timeout"]:
            problems.append(
                f"{where}.hold: {merged['hold']:g} s is not shorter than the timeout {merged['timeout']:g} s:"
                " a pause could never recover"
            )
    return problems


def conditions(section: Any, leakage_limit: float | None = None) -> dict[str, Condition]:
    """The section's conditions with every default filled in (raises :class:`SuspenderError`)."""
    problems = validate_suspenders(section)
    if problems:
        raise SuspenderError(problems)
    section = section or {}
    out: dict[str, Condition] = {}
    for name in CONDITIONS:
        if name not in section and name not in ON_BY_DEFAULT:
            out[name] = Condition(name, "off")
            continue
        settings = {
            k: _policy(v) if k == "policy" else v for k, v in _settings(name, section.get(name)).items()
        }
        merged = {**DEFAULTS[name], **{k: v for k, v in settings.items() if v is not None}}
        if name == "leakage" and merged["limit"] is None:
            merged["limit"] = leakage_limit
        for key, value in merged.items():
            if key != "policy" and value is not None:
                merged[key] = int(float(value)) if key in _INTEGERS else float(value)
        out[name] = Condition(name, **merged)
    return out


# -- errors that mean "not answering" -----------------------------------------------------------------
def _io_classes() -> tuple[type[BaseException], ...]:
    classes: list[type[BaseException]] = [TimeoutError, ConnectionError]
    try:
        from pyvisa.errors import VisaIOError

        classes.append(VisaIOError)
    except ImportError:  # pragma: no cover - pyvisa is a dependency
        pass
    return tuple(classes)


_IO_CLASSES = _io_classes()
_IO_NAMES = {"InstrumentNotAnswering", "VisaIOError"}


def not_answering(err: BaseException) -> bool:
    """True when ``err`` (or an error it came from) says an instrument did not answer: a VISA I/O error,
    a timeout, a lost connection, or the I/O retry proxy's ``InstrumentNotAnswering``."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, _IO_CLASSES) or any(c.__name__ in _IO_NAMES for c in type(e).__mro__):
            return True
        e = e.__cause__ or e.__context__
    return False


def _one_line(err: BaseException) -> str:
    """An error's message on one line (QCoDeS appends its context to the args: joined with "; ")."""
    args = err.args
    text = "; ".join(args) if len(args) > 1 and all(isinstance(a, str) for a in args) else str(err)
    return text.splitlines()[0] if text else ""


# -- the supervisor -----------------------------------------------------------------------------------
def _mk(kelvin: float) -> str:
    return f"{kelvin * 1e3:.4g} mK"


class Suspenders:
    """The :class:`~qbs_lab.runner.Supervisor` built from a station file's ``suspenders:`` section.

    Parameters
    ----------
    station : Station
        The roles to poll (thermometry, magnet, gate, lockin; rf only for the io condition).
    section : dict or None
        The ``suspenders:`` section (``StationConfig.suspenders``); None or {}: the defaults.
    clock : Clock
        What pauses wait on: the station's (a GuardedClock in a run, so Ctrl-C ends a pause).
    notify : callable, optional
        Called as ``notify("suspended", condition=, message=, policy=)`` when a pause begins and
        ``notify("resumed", condition=, message=, waited_s=)`` when it recovers (e.g. a
        :meth:`qbs_lab.notify.Notifier.send` with the run id bound). Its errors are swallowed.

    Raises :class:`SuspenderError` (every problem) for a bad section.
    """

    def __init__(
        self,
        station: Any,
        section: dict[str, Any] | None,
        clock: Clock,
        notify: Callable[..., Any] | None = None,
    ) -> None:
        self.station, self.clock, self.notify = station, clock, notify
        limit = station.config.gate.leakage_limit if station is not None else None
        self.conditions = conditions(section, limit)
        self.pauses = dict.fromkeys(CONDITIONS, 0)  # pauses per condition in this run
        self._last_poll: dict[str, float] = {}
        self._io_roles: list[str] | None = None  # the roles the last io error named
        self._output_overloads = 0  # consecutive polls with the lock-in's output overloaded
        self._probes: dict[str, Callable[[], str | None]] = {
            "quench": self._probe_quench,
            "leakage": self._probe_leakage,
            "mixing_chamber": self._probe_mixing_chamber,
            "lockin": self._probe_lockin,
        }

    def summary(self) -> list[str]:
        """One line per watched condition: its policy and thresholds (for the run log)."""
        lines = []
        for c in self.conditions.values():
            if not c.on:
                continue
            what = {
                "quench": "magnet quench",
                "leakage": f"gate leakage above {c.limit:.3g} A" if c.limit else "gate leakage",
                "io": "an instrument not answering",
                "lockin": "lock-in input overload or unlock",
                "mixing_chamber": " or ".join(
                    ([f"T_mc above {_mk(c.ceiling)}"] if c.ceiling else [])
                    + ([f"T_mc outside {100 * c.band:g} % of its setpoint"] if c.band else [])
                ),
            }[c.name]
            pause = f" (hold {c.hold:g} s, timeout {c.timeout:g} s)" if c.policy == "pause" else ""
            lines.append(f"{c.name}: {what}: {c.policy}{pause}")
        return lines

    # -- the Supervisor protocol ----------------------------------------------------------------------
    def check(self, only: tuple[str, ...] | None = None) -> Trip | None:
        """Poll every condition that is due (or those named in ``only``); the first that trips (most
        severe first), else None."""
        now = self.clock.now()
        for name, probe in self._probes.items():
            if only is not None and name not in only:
                continue
            cond = self.conditions[name]
            if not cond.on:
                continue
            last = self._last_poll.get(name)
            if last is not None and now - last < cond.every:
                continue
            self._last_poll[name] = now
            reason = probe()
            if reason is not None:
                return self._trip(cond, reason)
        return None

    def check_hazards(self) -> Trip | None:
        """Only the conditions that must not wait for the next point (quench, leakage): polled during a
        temperature stabilization, where the mixing chamber is off its setpoint by design."""
        return self.check(only=HAZARDS)

    def on_error(self, err: Exception) -> Trip | None:
        """The trip for a quench, a leakage or an instrument not answering; None for anything else."""
        if isinstance(err, QuenchError):
            cond, reason = self.conditions["quench"], f"magnet quench: {err}"
        elif isinstance(err, LeakageError):
            cond, reason = self.conditions["leakage"], str(err)
        elif not_answering(err):
            cond = self.conditions["io"]
            roles = self._roles_of(err)
            who = " and ".join(roles) if len(roles) < 3 else "an instrument"
            detail = _one_line(err)
            if "not answering" in detail:  # the I/O retry proxy's own sentence says it all
                reason = detail
            else:
                reason = f"{who} not answering ({type(err).__name__}{': ' + detail if detail else ''})"
            if cond.on:
                self._io_roles = roles
        else:
            return None
        if not cond.on:
            return None
        return self._trip(cond, reason)

    # -- trips and pauses -----------------------------------------------------------------------------
    def _trip(self, cond: Condition, reason: str) -> Trip:
        if cond.policy != "pause":
            return Trip(reason, cond.policy)
        self.pauses[cond.name] += 1
        n = self.pauses[cond.name]
        if n > cond.max_pauses:
            return Trip(
                f"{reason}; {cond.name} has paused this run {n} times (max_pauses {cond.max_pauses}):"
                " giving up",
                "abort",
            )
        recovered = self._recovery(cond)
        return Trip(reason, "pause", lambda: self._wait(cond, reason, recovered))

    def _wait(self, cond: Condition, reason: str, recovered: Callable[[], bool]) -> bool:
        """Wait until ``recovered()`` holds for ``hold`` s, reading every ``poll`` s; False on timeout."""
        clock = self.clock
        self._send("suspended", condition=cond.name, message=reason, policy="pause")
        t0 = clock.now()
        since: float | None = None
        while True:
            try:
                hazard = self.check_hazards() if cond.name not in HAZARDS else None
            except Exception as err:  # a hazard that cannot be read now is looked at again next poll
                if not not_answering(err):
                    raise
                hazard = None
            if hazard is not None:
                raise Tripped(hazard)  # a quench or a leak while paused for something else: act now
            try:
                ok = recovered()
            except Exception as err:  # an instrument that does not answer yet is "not recovered"
                if not not_answering(err):
                    raise
                ok = False
            now = clock.now()
            if ok:
                since = now if since is None else since
                if now - since >= cond.hold:
                    waited = now - t0
                    self._send(
                        "resumed",
                        condition=cond.name,
                        message=f"{cond.name} recovered after {waited:.0f} s; redoing the line",
                        waited_s=round(waited, 1),
                    )
                    self._output_overloads = 0
                    self._last_poll.clear()
                    return True
            else:
                since = None
            if now - t0 >= cond.timeout:
                return False
            step = cond.poll
            if since is not None:  # no need to read again before the hold can be over
                step = min(step, max(cond.hold - (now - since), 0.0)) or cond.poll
            clock.sleep(step)

    def _send(self, event: str, **fields: Any) -> None:
        if self.notify is None:
            return
        with contextlib.suppress(Exception):  # a notification never stops a run
            self.notify(event, **fields)

    def _recovery(self, cond: Condition) -> Callable[[], bool]:
        """What "recovered" means for ``cond`` (with its hysteresis)."""
        st, h = self.station, cond.hysteresis
        if cond.name == "quench":
            return lambda: st.magnet.status() is not MagnetStatus.QUENCH
        if cond.name == "leakage":
            limit = cond.limit or math.inf

            def leakage_ok() -> bool:
                current = st.gate.leakage()
                return not (math.isfinite(current) and abs(current) > (1 - h) * limit)

            return leakage_ok
        if cond.name == "mixing_chamber":
            return lambda: self._mixing_chamber_reason(cond, 1 - h) is None
        if cond.name == "lockin":

            def lockin_ok() -> bool:
                s = st.lockin.status()
                return not (s.input_overload or s.unlocked)  # the meter autoranges an output overload

            return lockin_ok
        roles = self._io_roles or self._all_roles()

        def answering() -> bool:
            for role in roles:
                self._cheap_read(role)
            return True

        return answering

    # -- probes: a sentence with the numbers when tripped, else None -----------------------------------
    def _probe_quench(self) -> str | None:
        magnet = self.station.magnet
        if magnet.status() is not MagnetStatus.QUENCH:
            return None
        try:
            field = f", field now {magnet.field():.4g} T"
        except Exception:
            field = ""
        return f"magnet quench: the supply reports QUENCH (the field is lost{field})"

    def _probe_leakage(self) -> str | None:
        limit = self.conditions["leakage"].limit
        gate = self.station.gate
        current = gate.leakage()
        if limit is None or not math.isfinite(current) or abs(current) <= limit:
            return None
        try:
            at = f" at {gate.voltage():.4g} V"
        except Exception:
            at = ""
        return f"gate leakage {current:.3g} A above the limit {limit:.3g} A{at}"

    def _probe_mixing_chamber(self) -> str | None:
        return self._mixing_chamber_reason(self.conditions["mixing_chamber"], 1.0)

    def _mixing_chamber_reason(self, cond: Condition, scale: float) -> str | None:
        """Why T_mc is out (ceiling and band scaled by ``scale``: 1 to trip, 1 - hysteresis to recover)."""
        thermo = self.station.thermometry
        T = thermo.temperature_mc()
        if cond.ceiling is not None and T > scale * cond.ceiling:
            return f"mixing chamber at {_mk(T)}, above the ceiling {_mk(scale * cond.ceiling)}"
        if cond.band is not None:
            adapter = thermo.adapter
            if adapter.heater_range() > 0:  # a setpoint is only active while the heater regulates
                sp = adapter.setpoint()
                if sp > 0 and abs(T - sp) > scale * cond.band * sp:
                    return (
                        f"mixing chamber at {_mk(T)}, {100 * abs(T - sp) / sp:.3g} % from its setpoint"
                        f" {_mk(sp)} (band ±{100 * scale * cond.band:.3g} %)"
                    )
        return None

    def _probe_lockin(self) -> str | None:
        lockin = self.station.lockin
        s = lockin.status()
        problem = None
        if s.input_overload:
            problem = "input overload"
        elif s.unlocked:
            problem = "reference unlocked"
        elif s.output_overload:
            self._output_overloads += 1
            if self._output_overloads >= self.conditions["lockin"].persist:
                problem = f"output overload on {self._output_overloads} polls in a row"
        if not s.output_overload:
            self._output_overloads = 0
        if problem is None:
            return None
        try:
            sens = f" at sensitivity {lockin.sensitivity():.3g} V full scale"
        except Exception:
            sens = ""
        return f"lock-in {problem}{sens}: the reading is not trustworthy"

    # -- roles for the io condition -------------------------------------------------------------------
    def _all_roles(self) -> list[str]:
        roles = ["lockin", "gate", "magnet", "thermometry"]
        return [*roles, "rf"] if getattr(self.station, "rf", None) is not None else roles

    def _roles_of(self, err: BaseException) -> list[str]:
        """The role(s) the error names (its ``role``, ``instrument`` or ``name`` attribute, or an error
        it came from), else every role."""
        config = self.station.config
        roles = self._all_roles()
        seen: set[int] = set()
        e: BaseException | None = err
        while e is not None and id(e) not in seen:
            seen.add(id(e))
            for attr in ("role", "instrument", "name"):
                value = getattr(e, attr, None)
                if not isinstance(value, str):
                    continue
                if value in roles:
                    return [value]
                named = [r for r in roles if config.role_instrument(r) == value]
                if named:
                    return named
            e = e.__cause__ or e.__context__
        return roles

    def _cheap_read(self, role: str) -> None:
        st = self.station
        if role == "lockin":
            st.lockin.time_constant()
        elif role == "gate":
            st.gate.voltage()
        elif role == "magnet":
            st.magnet.field()
        elif role == "thermometry":
            st.thermometry.temperature_mc()
        elif role == "rf" and st.rf is not None:
            st.rf.adapter.output()
