"""The station file: instruments (QCoDeS's format), roles, safety limits, measurement chain, sample.

:func:`load_station` reads and validates a station file and returns a :class:`StationConfig`; every
problem is reported once, as ``file:line: key.path: what is wrong`` (:class:`StationError` holds them
all). :meth:`StationConfig.connect` then creates the instruments with QCoDeS's own station loader
(``qcodes.Station``, given the ``instruments:`` section), binds them to adapters and returns a
:class:`Station` of safe roles. With a :class:`~qbs_lab.sim.SimLab` the same drivers reach the
emulated instruments.

Sections (units SI)::

    instruments:   QCoDeS station format (type:, address:, init:, parameters:, ...)
    roles:         lockin: NAME, gate: NAME, magnet: NAME, rf: NAME (optional),
                   thermometry: {instrument: NAME, mixing_chamber: CH, sample: CH, heater: OUTPUT}
    safety:        gate: {min, max, max_step, max_rate, leakage_limit, safe_value, current_limit}
                   magnet: {max_field, max_rate, poll}   thermometry: {max_temperature, max_heater_range}
                   rf: {max_power}
    measurement:   bias_resistor [Ohm], excitation [V rms], settle_residual (fraction, default 1e-3)
    sample:        name, and any description
    sim:           scenario, sample (overrides of the simulated device; only with --sim)
    safe_state:    gate: zero|hold, magnet: zero|hold, heater: off|hold, rf: off|hold (see SafeState)
    suspenders:    conditions watched while a run goes, each with its policy (qbs_lab.suspenders)
    notify:        command: and/or webhook: called on queue events (qbs_lab.notify)
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from qbs_lab.clock import Clock, RealClock
from qbs_lab.station_limits import excitation_problem, limit_problems
from qbs_lab.yaml_file import YamlFileError, read_yaml

if TYPE_CHECKING:
    from qbs_lab.sim import SimLab
from qbs_lab.drivers.adapters import ADAPTERS, adapter_for, role_of
from qbs_lab.drivers.resistance import ResistanceMeter
from qbs_lab.drivers.retry import RetryingAdapter, RetryRecord
from qbs_lab.drivers.roles import (
    GateLimits,
    GateRole,
    MagnetLimits,
    MagnetRole,
    RfLimits,
    RfRole,
    ThermometryLimits,
    ThermometryRole,
)

__all__ = ["SafeState", "Station", "StationConfig", "StationError", "load_station"]

ROLES = ("lockin", "gate", "magnet", "thermometry", "rf")
REQUIRED_ROLES = ("lockin", "gate", "magnet", "thermometry")
QCODES_INSTRUMENT_KEYS = {
    "type",
    "address",
    "port",
    "enable_forced_reconnect",
    "init",
    "parameters",
    "add_parameters",
}
TOP_LEVEL = {
    "instruments",
    "roles",
    "safety",
    "measurement",
    "sample",
    "sim",
    "safe_state",
    "suspenders",
    "notify",
}
#: safe_state: role -> the choices (first is the default)
SAFE_STATE_CHOICES = {
    "gate": ("zero", "hold"),
    "magnet": ("zero", "hold", "persistent"),
    "heater": ("off", "hold"),
    "rf": ("off", "hold"),
}

# key -> (required, lower bound or None); bounds are checked after the types
_LIMIT_KEYS: dict[str, dict[str, tuple[bool, float | None]]] = {
    "gate": {
        "min": (True, None),
        "max": (True, None),
        "max_step": (True, 0.0),
        "max_rate": (True, 0.0),
        "leakage_limit": (True, 0.0),
        "safe_value": (False, None),
        "current_limit": (False, 0.0),
    },
    "magnet": {"max_field": (True, 0.0), "max_rate": (True, 0.0), "poll": (False, 0.0)},
    "thermometry": {"max_temperature": (True, 0.0), "max_heater_range": (True, 0.0)},
    "rf": {"max_power": (True, None)},
}


class StationError(Exception):
    """A station file with problems; ``problems`` lists them, one ``file:line: key: message`` each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class SafeState:
    """Where each role goes when a run ends or faults (station file ``safe_state:``).

    gate: ``zero`` (ramp to ``safety.gate.safe_value``) or ``hold``; magnet: ``zero``, ``hold`` or
    ``persistent`` (switch heater off, supply to zero: the coil keeps its field; a magnet without a
    persistent switch holds instead, reported as a park failure); heater: ``off`` (after a fault or an
    interruption) or ``hold``; rf: ``off`` or ``hold``.
    """

    gate: str = "zero"
    magnet: str = "zero"
    heater: str = "off"
    rf: str = "off"


@dataclass
class StationConfig:
    """A validated station file."""

    path: Path
    instruments: dict[str, dict[str, Any]]
    roles: dict[str, Any]
    gate: GateLimits
    magnet: MagnetLimits
    thermometry: ThermometryLimits
    rf: RfLimits | None
    bias_resistor: float
    excitation: float
    settle_residual: float
    sample: dict[str, Any]
    sim: dict[str, Any] = field(default_factory=dict)
    safe_state: SafeState = field(default_factory=SafeState)
    suspenders: dict[str, Any] = field(default_factory=dict)
    notify: dict[str, Any] = field(default_factory=dict)

    def role_instrument(self, role: str) -> str | None:
        binding = self.roles.get(role)
        return binding.get("instrument") if isinstance(binding, dict) else binding

    def connect(
        self, *, visalib: str | None = None, clock: Clock | None = None, lab: SimLab | None = None
    ) -> Station:
        """Create the instruments (QCoDeS's station loader) and the roles on them.

        ``lab``: a :class:`~qbs_lab.sim.SimLab` to run on (its ``visalib`` and clock; QCoDeS's raw-socket
        IP instruments, such as the Oxford Triton, are pointed at its TCP server). ``visalib``: the
        PyVISA library for every VISA instrument. Raises :class:`StationError` naming the instrument and
        address when one cannot be reached.
        """
        import qcodes
        from qcodes.instrument import IPInstrument

        if lab is not None:
            visalib, clock = lab.visalib, clock or lab.clock

        qc_station = qcodes.Station()
        qcodes_instruments = {
            n: spec for n, spec in self.instruments.items() if not spec["type"].startswith("pymeasure.")
        }
        qc_station.load_config(yaml.safe_dump({"instruments": qcodes_instruments}))
        drivers: dict[str, Any] = {}
        extra = {"visalib": visalib} if visalib else {}
        try:
            for role in ROLES:
                name = self.role_instrument(role)
                if name is None or name in drivers:
                    continue
                try:
                    cls = _driver_class(self.instruments[name]["type"])
                    if name in qcodes_instruments and issubclass(cls, IPInstrument):
                        # a raw socket, no VISA: on the simulated lab, its server on 127.0.0.1
                        ip = {}
                        if lab is not None:
                            lab.serve_tcp()
                            ip = {"address": "127.0.0.1", "port": lab.tcp_port(name)}
                        drivers[name] = qc_station.load_instrument(name, update_snapshot=False, **ip)
                    elif name in qcodes_instruments:
                        drivers[name] = qc_station.load_instrument(name, update_snapshot=False, **extra)
                    else:  # QCoDeS's loader cannot build PyMeasure instruments: same keys, done here
                        drivers[name] = _pymeasure_instrument(self.instruments[name], visalib)
                except Exception as err:  # any driver failure to connect ends here, with its reason
                    address = self.instruments[name].get("address")
                    raise StationError(
                        [
                            f"{self.path}:{_line(self, 'instruments', name, 'address')}: "
                            f"instruments.{name}.address: cannot reach {address} "
                            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
                        ]
                    ) from None
            return Station(self, drivers, clock or RealClock())
        except BaseException:
            for driver in drivers.values():
                driver.close()
            raise


class Station:
    """The lab's roles, with its safety limits applied; made by :meth:`StationConfig.connect`.

    Every adapter is wrapped in a :class:`~qbs_lab.drivers.retry.RetryingAdapter`: a transient I/O
    error (timeout, lost connection, unreadable reply) is retried up to 3 times after 0.5, 2 and 8 s
    on the station's clock, with a reconnect, before ``InstrumentNotAnswering``; every retry is
    appended to :attr:`io_retries` and passed to each callable in :attr:`on_retry`.
    """

    def __init__(self, config: StationConfig, drivers: dict[str, Any], clock: Clock) -> None:
        self.config, self.drivers, self.clock = config, drivers, clock
        #: every I/O retry made through the roles' adapters, in order
        self.io_retries: list[RetryRecord] = []
        #: callables told of each retry as it happens (e.g. a run's log)
        self.on_retry: list[Any] = []

        def retried(record: RetryRecord) -> None:
            self.io_retries.append(record)
            for callback in list(self.on_retry):
                callback(record)

        def adapter(role: str) -> Any:
            name = config.role_instrument(role)
            _, cls = adapter_for(config.instruments[name]["type"])  # type: ignore[misc]
            heater = config.roles["thermometry"].get("heater") if role == "thermometry" else None
            # the heater's name is the driver's own (sample_heater on a 372, H1 on a Triton)
            inner = cls(drivers[name], heater=heater) if heater else cls(drivers[name])
            return RetryingAdapter(inner, clock, name=name, on_retry=retried)

        self.lockin = adapter("lockin")
        self.lockin.set_amplitude(config.excitation)
        self.resistance = ResistanceMeter(self.lockin, config.bias_resistor, clock, config.settle_residual)
        self.gate = GateRole(adapter("gate"), config.gate, clock)
        self.magnet = MagnetRole(adapter("magnet"), config.magnet, clock)
        thermo = config.roles["thermometry"]
        self.thermometry = ThermometryRole(
            adapter("thermometry"), config.thermometry, int(thermo["mixing_chamber"]), int(thermo["sample"])
        )
        self.rf = RfRole(adapter("rf"), config.rf) if config.rf and config.role_instrument("rf") else None

    def close(self) -> None:
        for driver in self.drivers.values():
            driver.close()

    def __enter__(self) -> Station:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- loading and validation ---------------------------------------------------------------------------
def load_station(path: str | Path) -> StationConfig:
    """Read and validate a station file; raise :class:`StationError` listing every problem."""
    path = Path(path)
    try:
        doc, node = read_yaml(path, "station file", aliases=False)
    except YamlFileError as err:
        raise StationError([str(err)]) from None
    v = _Validator(path, _key_lines(node))
    config = v.validate(doc)
    if v.problems:
        raise StationError(v.problems)
    assert config is not None
    return config


def _key_lines(node: yaml.Node | None, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    """Line (1-based) of every key path in a composed YAML document."""
    lines: dict[tuple[str, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*prefix, str(key.value))
            lines[path] = key.start_mark.line + 1
            lines.update(_key_lines(value, path))
    return lines


def _line(config: StationConfig, *keys: str) -> int | str:
    node = yaml.compose(config.path.read_text())
    return _key_lines(node).get(keys, "?")


class _Validator:
    def __init__(self, path: Path, lines: dict[tuple[str, ...], int]) -> None:
        self.path, self.lines = path, lines
        self.problems: list[str] = []
        self.misspelt: set[tuple[str, ...]] = set()  # keys reported as misspelt, not again as missing
        self.bad_drivers: set[str] = set()  # instruments whose driver was already reported
        self.bad_limits: set[tuple[str, ...]] = set()  # limits already reported (not again as implausible)

    def problem(self, keys: tuple[str, ...], message: str) -> None:
        line = next((self.lines[keys[:n]] for n in range(len(keys), 0, -1) if keys[:n] in self.lines), None)
        where = f"{self.path}:{line}:" if line else f"{self.path}:"
        self.problems.append(f"{where} {'.'.join(keys)}: {message}" if keys else f"{where} {message}")

    def mapping(self, value: Any, keys: tuple[str, ...], required: bool = True) -> dict[str, Any]:
        if value is None:
            if required:
                self.problem(keys, "is missing")
            return {}
        if not isinstance(value, dict):
            self.problem(keys, f"must be a mapping of keys, not {type(value).__name__} {value!r}")
            return {}
        return value

    def number(
        self, section: dict[str, Any], key: str, keys: tuple[str, ...], required: bool
    ) -> float | None:
        if key not in section:
            if required and (*keys, key) not in self.misspelt:
                self.problem((*keys, key), "is missing")
            return None
        value = section[key]
        if isinstance(value, str):  # PyYAML reads 1.0e6 (no exponent sign) as text
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.problem((*keys, key), f"must be a number, not {value!r}")
            return None
        return float(value)

    def unknown(self, section: dict[str, Any], allowed: set[str], keys: tuple[str, ...]) -> None:
        for key in section:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
                if close:  # a misspelt key: one problem, not also "missing"
                    self.misspelt.add((*keys, close[0]))
                    self.problem((*keys, str(key)), f"unknown key: did you mean {close[0]}?")
                else:
                    self.problem((*keys, str(key)), f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def validate(self, doc: Any) -> StationConfig | None:
        if not isinstance(doc, dict):
            self.problem((), "the top level must be a mapping of sections (instruments:, roles:, ...)")
            return None
        self.unknown(doc, TOP_LEVEL, ())
        instruments = self._instruments(self.mapping(doc.get("instruments"), ("instruments",)))
        roles = self._roles(self.mapping(doc.get("roles"), ("roles",)), instruments)
        safety = self.mapping(doc.get("safety"), ("safety",))
        self.unknown(safety, set(_LIMIT_KEYS), ("safety",))
        limits = {role: self._limits(safety, role, required=role in roles) for role in _LIMIT_KEYS}
        measurement = self.mapping(doc.get("measurement"), ("measurement",))
        self.unknown(measurement, {"bias_resistor", "excitation", "settle_residual"}, ("measurement",))
        bias = self.number(measurement, "bias_resistor", ("measurement",), True)
        exc = self.number(measurement, "excitation", ("measurement",), True)
        residual = self.number(measurement, "settle_residual", ("measurement",), False)
        for key, value in (("bias_resistor", bias), ("excitation", exc)):
            if value is not None and value <= 0:
                self.problem(("measurement", key), f"must be > 0, not {value:g}")
        if exc is not None and exc > 0:
            why = excitation_problem(self.driver_type(instruments, roles, "lockin"), exc)
            if why:
                self.problem(("measurement", "excitation"), why)
        for role, values in limits.items():  # what the instrument can do, and physical sense
            self.plausible(role, values, self.driver_type(instruments, roles, role))
        if residual is not None and not 0 < residual < 0.5:
            self.problem(("measurement", "settle_residual"), f"must be between 0 and 0.5, not {residual:g}")
        sample = self.mapping(doc.get("sample"), ("sample",))
        if sample and not isinstance(sample.get("name"), str):
            self.problem(("sample", "name"), "must be the sample's name (text)")
        sim = self.mapping(doc.get("sim"), ("sim",), required=False)
        safe = self.mapping(doc.get("safe_state"), ("safe_state",), required=False)
        self.unknown(safe, set(SAFE_STATE_CHOICES), ("safe_state",))
        # YAML reads a bare `off` as false
        safe = {k: "off" if v is False else v for k, v in safe.items()}
        for role, choices in SAFE_STATE_CHOICES.items():
            if role in safe and safe[role] not in choices:
                self.problem(("safe_state", role), f"must be one of {', '.join(choices)}, not {safe[role]!r}")
        suspenders = self.mapping(doc.get("suspenders"), ("suspenders",), required=False)
        notify = self.mapping(doc.get("notify"), ("notify",), required=False)
        from qbs_lab.notify import validate_notify  # late: both modules import this one
        from qbs_lab.suspenders import validate_suspenders

        for problem in validate_suspenders(suspenders) + validate_notify(notify):
            key, _, message = problem.partition(": ")
            self.problem(tuple(key.split(".")), message)
        if self.problems:
            return None
        return StationConfig(
            path=self.path,
            instruments=instruments,
            roles=roles,
            gate=GateLimits(**limits["gate"]),
            magnet=MagnetLimits(**limits["magnet"]),
            thermometry=ThermometryLimits(**limits["thermometry"]),
            rf=RfLimits(**limits["rf"]) if limits["rf"] else None,
            bias_resistor=bias or 0.0,
            excitation=exc or 0.0,
            settle_residual=residual if residual is not None else 1e-3,
            sample=sample,
            sim=sim,
            safe_state=SafeState(**{k: str(v) for k, v in safe.items()}),
            suspenders=suspenders,
            notify=notify,
        )

    @staticmethod
    def driver_type(instruments: dict[str, dict[str, Any]], roles: dict[str, Any], role: str) -> str | None:
        binding = roles.get(role)
        name = binding.get("instrument") if isinstance(binding, dict) else binding
        spec = instruments.get(name) if isinstance(name, str) else None
        driver = spec.get("type") if spec else None
        return driver if isinstance(driver, str) else None

    def plausible(self, role: str, values: dict[str, float], driver_type: str | None) -> None:
        keys = ("safety", role)
        good = {k: v for k, v in values.items() if (*keys, k) not in self.bad_limits}
        for key, message in limit_problems(role, good, driver_type):
            self.problem((*keys, key), message)
        if role == "gate" and values:
            compliance = good.get("current_limit", GateLimits.current_limit)
            if "current_limit" not in values:  # the default, checked against the instrument too
                for key, message in limit_problems(role, {"current_limit": compliance}, driver_type):
                    self.problem((*keys, key), f"is not given, and the default {message}")
            leak = good.get("leakage_limit")
            if leak is not None and leak > compliance:
                self.problem(
                    (*keys, "leakage_limit"),
                    f"{leak:g} A is above the compliance current_limit ({compliance:g} A): the source"
                    " caps the current below it, so the leakage check could never trip",
                )

    def _instruments(self, section: dict[str, Any]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, spec in section.items():
            keys = ("instruments", str(name))
            spec = self.mapping(spec, keys)
            if not spec:
                continue
            self.unknown(spec, QCODES_INSTRUMENT_KEYS, keys)
            driver = spec.get("type")
            if not isinstance(driver, str) or "." not in driver:
                self.problem(
                    (*keys, "type"), f"must be a driver class path such as qcodes...SR830, not {driver!r}"
                )
            elif not _importable(driver):
                self.problem((*keys, "type"), f"no driver class {driver!r} can be imported")
                self.bad_drivers.add(str(name))
            if not isinstance(spec.get("address"), str):
                self.problem((*keys, "address"), "is missing (a VISA resource name)")
            out[str(name)] = spec
        if section and not out:
            self.problem(("instruments",), "has no usable instrument")
        return out

    def _roles(self, section: dict[str, Any], instruments: dict[str, dict[str, Any]]) -> dict[str, Any]:
        self.unknown(section, set(ROLES), ("roles",))
        for role in REQUIRED_ROLES:
            if role not in section:
                self.problem(
                    ("roles", role), "is missing: every station needs a lockin, gate, magnet and thermometry"
                )
        for role, binding in section.items():
            keys = ("roles", str(role))
            if role == "thermometry":
                binding = self.mapping(binding, keys)
                self.unknown(binding, {"instrument", "mixing_chamber", "sample", "heater"}, keys)
                name = binding.get("instrument")
                channels = []
                for ch_key in ("mixing_chamber", "sample"):
                    ch = binding.get(ch_key)
                    if isinstance(ch, bool) or not isinstance(ch, int) or not 1 <= ch <= 16:
                        self.problem((*keys, ch_key), f"must be an input channel 1..16, not {ch!r}")
                    channels.append(ch)
                if channels[0] == channels[1] and isinstance(channels[0], int):
                    self.problem((*keys, "sample"), "is the mixing chamber's channel too")
            else:
                name = binding
            if role not in ROLES:
                continue
            if not isinstance(name, str) or name not in instruments:
                known = ", ".join(instruments) or "none"
                key = (*keys, "instrument") if role == "thermometry" else keys
                self.problem(key, f"names no instrument of instruments: ({known}), got {name!r}")
                continue
            if name in self.bad_drivers:
                continue
            if role_of(str(instruments[name].get("type", ""))) != role:
                fits = [d for d, (r, _) in ADAPTERS.items() if r == role]
                self.problem(
                    keys,
                    f"instrument {name!r} ({instruments[name].get('type')}) cannot play the {role} role;"
                    f" drivers that can: {', '.join(fits)}",
                )
        return section

    def _limits(self, safety: dict[str, Any], role: str, required: bool) -> dict[str, float]:
        keys = ("safety", role)
        section = self.mapping(safety.get(role), keys, required=required)
        spec = _LIMIT_KEYS[role]
        self.unknown(section, set(spec), keys)
        out: dict[str, float] = {}
        for key, (needed, lower) in spec.items():
            value = self.number(section, key, keys, needed and bool(section or required))
            if value is None:
                continue
            if lower is not None and value <= lower:
                self.problem((*keys, key), f"must be > {lower:g}, not {value:g}")
                self.bad_limits.add((*keys, key))
            out[key] = value
        if role == "gate" and "min" in out and "max" in out:
            if out["min"] >= out["max"]:
                self.problem(
                    (*keys, "max"), f"is not above min ({out['min']:g} >= {out['max']:g}): inverted limits"
                )
            elif not out["min"] <= out.get("safe_value", 0.0) <= out["max"]:
                self.problem((*keys, "safe_value"), "lies outside [min, max]")
        return out


def _pymeasure_instrument(spec: dict[str, Any], visalib: str | None) -> Any:
    """A PyMeasure instrument from a station entry (``init:`` keys go to its constructor)."""
    module, _, cls = spec["type"].rpartition(".")
    kwargs = dict(spec.get("init") or {})
    if visalib:
        kwargs["visa_library"] = visalib
    instrument = getattr(importlib.import_module(module), cls)(spec["address"], **kwargs)
    instrument.close = instrument.adapter.close  # the roles close drivers as QCoDeS's are closed
    return instrument


def _driver_class(path: str) -> type:
    module, _, cls = path.rpartition(".")
    return getattr(importlib.import_module(module), cls)


def _importable(path: str) -> bool:
    module, _, cls = path.rpartition(".")
    try:
        return hasattr(importlib.import_module(module), cls)
    except ImportError:
        return False
