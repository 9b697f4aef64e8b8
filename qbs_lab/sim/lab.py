"""SimLab: the simulated lab behind a station file.

>>> from qbs_lab.sim import SimLab
>>> from qcodes.instrument_drivers.stanford_research import SR830
>>> lab = SimLab.from_station("station.yaml", seed=1, scenario="clean")  # doctest: +SKIP
>>> lockin = SR830("lockin", lab.address("lockin"), visalib=lab.visalib)  # doctest: +SKIP
>>> lab.command_log("lockin")[-1].command  # doctest: +SKIP
'OUTP? 1'

Every instrument of the station's ``instruments:`` section whose driver the simulator knows gets an
emulator at the station's own address. ``lab.visalib`` is the value to pass as QCoDeS's ``visalib=`` or
PyMeasure's ``visa_library=``: the unmodified drivers then talk to the emulators in-process.
:meth:`SimLab.serve_tcp` serves the same emulators on 127.0.0.1 for drivers that connect through
pyvisa-py (``visalib="@py"``).

Faults (:mod:`qbs_lab.sim.faults`) are scheduled on ``lab.faults`` (``lab.faults.add(Fault(...))``,
``lab.load_faults(schedule or path)``) and act in the transports and on the physical state; every fault
fired or ended is in ``lab.fault_log``.

With a :class:`~qbs_lab.clock.VirtualClock` (the default), the drivers' own ``time.sleep`` calls advance
the simulation (see :func:`qbs_lab.clock.patch_driver_time`) while the lab is open: close the lab (or use
it as a context manager) to give the drivers real time back.
"""

from __future__ import annotations

import contextlib
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from qbs_lab.clock import Clock, ClockInUseError, VirtualClock, patch_driver_time
from qbs_lab.sim.cryostat import CryostatParams
from qbs_lab.sim.emulators import emulator_for_driver
from qbs_lab.sim.emulators.base import Emulator
from qbs_lab.sim.emulators.command_log import LogView
from qbs_lab.sim.faults import Fault, FaultEvent, FaultInjector, FaultSchedule
from qbs_lab.sim.lab_state import LabState
from qbs_lab.sim.sample import SCENARIOS, scenario_params
from qbs_lab.sim.tcp_server import InstrumentServer
from qbs_lab.sim.visa_backend import canonical, register_lab, unregister_lab
from qbs_lab.yaml_file import YamlFileError, read_yaml

__all__ = ["SimLab", "SimLabError"]


class SimLabError(Exception):
    """A station file the simulated lab cannot build (names the file and key)."""


class SimLab:
    """Emulated instruments on a shared physical state, reachable through PyVISA.

    Parameters
    ----------
    instruments : dict
        The station's ``instruments:`` section (QCoDeS station format).
    seed : int
        Seed of every instrument's noise (each instrument derives its own stream from it and its name).
    scenario : str
        A named sample scenario (:data:`qbs_lab.sim.sample.SCENARIOS`).
    clock : Clock, optional
        The lab's clock; a new :class:`~qbs_lab.clock.VirtualClock` by default.
    thermometry : dict, optional
        The ``roles.thermometry`` section: which input channel is the mixing chamber and which the sample.
    measurement : dict, optional
        The ``measurement:`` section (``bias_resistor`` [Ohm], ``excitation`` [V rms]).
    sample_overrides : dict, optional
        Overrides of :class:`~qbs_lab.sim.sample.SampleParams` fields.
    """

    def __init__(
        self,
        instruments: dict[str, Any],
        *,
        seed: int = 0,
        scenario: str = "clean",
        clock: Clock | None = None,
        thermometry: dict[str, Any] | None = None,
        measurement: dict[str, Any] | None = None,
        sample_overrides: dict[str, Any] | None = None,
        source: str = "<station>",
    ) -> None:
        self.clock: Clock = clock if clock is not None else VirtualClock()
        self.seed = seed
        self.scenario = scenario
        measurement = measurement or {}
        thermo = thermometry or {}
        if seed < 0:
            raise SimLabError(f"the seed must be a whole number >= 0, not {seed}")
        mc = _number(thermo, "mixing_chamber", 6, source, "roles.thermometry.", integer=True, lo=1, hi=16)
        sample = _number(thermo, "sample", 8, source, "roles.thermometry.", integer=True, lo=1, hi=16)
        if mc == sample:
            raise SimLabError(
                f"{source}: roles.thermometry.sample is channel {sample}, the mixing chamber's too"
            )
        bias = _number(measurement, "bias_resistor", 10e6, source, "measurement.", lo=1.0)
        channels: dict[int, str | float] = dict(CryostatParams().channels)
        channels = {k: v for k, v in channels.items() if v not in ("mc", "sample")}
        channels[int(mc)], channels[int(sample)] = "mc", "sample"
        try:
            params = scenario_params(scenario, **(sample_overrides or {}))
        except (KeyError, TypeError) as err:
            raise SimLabError(f"{source}: sim: {err}") from None
        self.state = LabState(
            self.clock,
            params,
            CryostatParams(channels=channels),
            bias_resistor=bias,
            scenario=scenario,
        )
        self.state.fridge.control_channel = int(mc)
        if "excitation" in measurement:
            self.state.lockin.amplitude = _number(
                measurement, "excitation", 0.01, source, "measurement.", lo=0.004, hi=5.0
            )
        self._emulators: dict[str, Emulator] = {}
        self._addresses: dict[str, str] = {}
        self._types: dict[str, str] = {}
        for name, spec in instruments.items():
            if not isinstance(spec, dict):
                raise SimLabError(f"{source}: instruments.{name} must be a mapping with type: and address:")
            driver = str(spec.get("type", ""))
            cls = emulator_for_driver(driver)
            if cls is None:
                continue
            address = spec.get("address")
            if not address:
                raise SimLabError(f"{source}: instruments.{name}.address is missing")
            if "port" in spec and "::" not in str(address):
                # QCoDeS's IP instruments (raw sockets, e.g. an Oxford Triton): host plus port
                address = f"TCPIP0::{address}::{spec['port']}::SOCKET"
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
            self._emulators[name] = cls(name, self.state, rng)
            self._types[name] = driver
            try:
                self._addresses[name] = canonical(str(address))
            except Exception:
                raise SimLabError(
                    f"{source}: instruments.{name}.address {address!r} is not a VISA resource name"
                ) from None
        self.state.sync()
        self._by_address = {addr: self._emulators[n] for n, addr in self._addresses.items()}
        #: the lab's faults (see :mod:`qbs_lab.sim.faults`): ``lab.faults.add(Fault(...))``
        self.faults = FaultInjector(self)
        self._id = register_lab(self)
        self._tcp: InstrumentServer | None = None
        self._patch = contextlib.ExitStack()
        if getattr(self.clock, "virtual", False):
            try:
                self._patch.enter_context(patch_driver_time(self.clock))
            except ClockInUseError:
                unregister_lab(self._id)
                raise SimLabError(
                    "another simulated lab with its own virtual clock is open in this process; the "
                    "drivers' sleeps can follow only one clock: close it first, or share its clock "
                    "(SimLab.from_station(..., clock=other_lab.clock))"
                ) from None

    @classmethod
    def from_station(
        cls,
        path: str | Path,
        *,
        seed: int = 0,
        scenario: str | None = None,
        clock: Clock | None = None,
    ) -> SimLab:
        """Build the simulated lab of a station file (scenario: the argument, else ``sim.scenario``)."""
        path = Path(path)
        try:  # the station file's reader: duplicate keys, aliases, binary files are one line each
            doc = read_yaml(path, "station file", aliases=False)[0] or {}
        except YamlFileError as err:
            raise SimLabError(str(err)) from None
        if not isinstance(doc, dict):
            raise SimLabError(f"{path}: the top level must be a mapping of sections (instruments:, ...)")
        instruments = doc.get("instruments")
        if not isinstance(instruments, dict) or not instruments:
            raise SimLabError(f"{path}: instruments: is missing or empty")
        sim = _section(doc, "sim", path)
        roles = _section(doc, "roles", path)
        scenario = scenario or sim.get("scenario", "clean")
        if scenario not in SCENARIOS:
            raise SimLabError(f"{path}: sim.scenario {scenario!r} is not one of {', '.join(SCENARIOS)}")
        return cls(
            instruments,
            seed=seed,
            scenario=scenario,
            clock=clock,
            thermometry=_section(roles, "thermometry", path, "roles."),
            measurement=_section(doc, "measurement", path),
            sample_overrides=_section(sim, "sample", path, "sim."),
            source=str(path),
        )

    # -- what drivers need ------------------------------------------------------------------------
    @property
    def visalib(self) -> str:
        """The PyVISA library string of this lab (QCoDeS ``visalib=``, PyMeasure ``visa_library=``)."""
        return f"{self._id}@qbslab"

    def address(self, name: str) -> str:
        """The VISA resource name of instrument ``name`` (its station address, canonical form)."""
        self._check(name)
        return self._addresses[name]

    @property
    def instruments(self) -> list[str]:
        """Names of the emulated instruments."""
        return list(self._emulators)

    def emulator(self, name: str) -> Emulator:
        self._check(name)
        return self._emulators[name]

    def command_log(self, name: str) -> LogView:
        """The commands instrument ``name`` received, in order, with time, reply and error.

        A snapshot indexed by arrival (``len()`` counts every command ever received). Memory keeps
        the most recent ones (see :class:`~qbs_lab.sim.emulators.command_log.CommandLog`); the whole
        run's counts and limit extremes are on ``lab.emulator(name).log``.
        """
        return self.emulator(name).log.snapshot()

    @property
    def truth(self) -> dict[str, Any]:
        """Ground truth of the sample at the gate voltage now applied (see ``LabState.truth``)."""
        with self.state.lock:
            self.state.sync()
            return self.state.truth(self.state.gate.output_voltage())

    def truth_at(self, V_g: float) -> dict[str, Any]:
        """Ground truth of the sample at gate voltage ``V_g`` [V]."""
        return self.state.truth(V_g)

    def role_of(self, name: str) -> str | None:
        """The role instrument ``name``'s driver can play (lockin, gate, magnet, thermometry, rf)."""
        from qbs_lab.drivers.adapters import role_of

        self._check(name)
        return role_of(self._types[name])

    # -- faults ------------------------------------------------------------------------------------
    def load_faults(self, schedule: FaultSchedule | list[Fault] | str | Path) -> list[Fault]:
        """Schedule faults: a :class:`~qbs_lab.sim.faults.FaultSchedule`, a list of faults, or the path
        of a schedule file (YAML). Every fault is checked against the lab before any is added."""
        if isinstance(schedule, str | Path):
            schedule = FaultSchedule.from_yaml(schedule)
        return self.faults.load(schedule)

    @property
    def fault_log(self) -> list[FaultEvent]:
        """Every fault fired or ended so far, in order, with its time on the lab's clock."""
        self.faults.update()
        return list(self.faults.log)

    def _check(self, name: str) -> None:
        if name not in self._emulators:
            known = ", ".join(self._emulators) or "none"
            raise KeyError(f"no emulated instrument {name!r} (emulated: {known})")

    # -- the visa backend's view -----------------------------------------------------------------
    def emulator_at(self, resource_name: str) -> Emulator | None:
        return self._by_address.get(resource_name)

    def resource_names(self) -> list[str]:
        return list(self._by_address)

    def io_tick(self) -> None:
        tick = getattr(self.clock, "tick", None)
        if tick is not None:
            tick()

    def wait(self, seconds: float) -> None:
        self.clock.sleep(seconds)

    # -- TCP ---------------------------------------------------------------------------------------
    def serve_tcp(self, ports: dict[str, int] | None = None) -> dict[str, str]:
        """Serve every emulator on 127.0.0.1; return name -> ``TCPIP0::127.0.0.1::PORT::SOCKET``."""
        if self._tcp is None:
            self._tcp = InstrumentServer(self._emulators, self.io_tick, ports, self.faults)
        return self._tcp.addresses()

    def tcp_port(self, name: str) -> int:
        """The raw-socket port of ``name`` on the TCP server (for drivers that take host and port)."""
        self._check(name)
        if self._tcp is None:
            raise RuntimeError("the TCP server is not running: call serve_tcp() first")
        return self._tcp.port(name)

    def tcp_address(self, name: str, protocol: str | None = None) -> str:
        """Address of ``name`` on the TCP server: ``protocol`` "socket" or "hislip" (default: the
        instrument's own, see :meth:`InstrumentServer.address`)."""
        self._check(name)
        if self._tcp is None:
            raise RuntimeError("the TCP server is not running: call serve_tcp() first")
        return self._tcp.address(name, protocol)

    # -- lifetime ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the TCP server, give the drivers real time back, and forget the lab's VISA id."""
        if self._tcp is not None:
            self._tcp.close()
            self._tcp = None
        self._patch.close()
        unregister_lab(self._id)

    def __enter__(self) -> SimLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"SimLab(scenario={self.scenario!r}, seed={self.seed}, clock={self.clock!r}, "
            f"instruments={self.instruments})"
        )


def _section(doc: dict[str, Any], key: str, path: Path, prefix: str = "") -> dict[str, Any]:
    """``doc[key]`` as a mapping ({} when absent), or a clear error naming the file and key."""
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SimLabError(f"{path}: {prefix}{key}: must be a mapping of keys, not {value!r}")
    return value


def _number(
    section: dict[str, Any],
    key: str,
    default: float,
    source: str,
    prefix: str,
    *,
    integer: bool = False,
    lo: float | None = None,
    hi: float | None = None,
) -> float:
    """A numeric setting, checked: a clear error names the file, the key and what is allowed."""
    value = section.get(key, default)
    if isinstance(value, str):  # PyYAML reads 10.0e6 (no exponent sign) as text: take it as meant
        with contextlib.suppress(ValueError):
            value = float(value)
    kind = "a whole number" if integer else "a number"
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and integer:
        ok = float(value).is_integer()
    if not ok:
        raise SimLabError(f"{source}: {prefix}{key} must be {kind}, not {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        span = f"from {lo:g} to {hi:g}" if lo is not None and hi is not None else f">= {lo:g}"
        raise SimLabError(f"{source}: {prefix}{key} = {value!r} is outside the allowed range ({span})")
    return float(value)
