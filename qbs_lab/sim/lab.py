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
import yaml

from qbs_lab.clock import Clock, ClockInUseError, VirtualClock, patch_driver_time
from qbs_lab.sim.cryostat import CryostatParams
from qbs_lab.sim.emulators import EMULATORS, emulator_for_driver
from qbs_lab.sim.emulators.base import Emulator, LoggedCommand
from qbs_lab.sim.lab_state import LabState
from qbs_lab.sim.sample import scenario_params
from qbs_lab.sim.tcp_server import InstrumentServer
from qbs_lab.sim.visa_backend import canonical, register_lab, unregister_lab

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
        channels: dict[int, str | float] = dict(CryostatParams().channels)
        mc = int(thermo.get("mixing_chamber", 6))
        sample = int(thermo.get("sample", 8))
        channels = {k: v for k, v in channels.items() if v not in ("mc", "sample")}
        channels[mc], channels[sample] = "mc", "sample"
        try:
            params = scenario_params(scenario, **(sample_overrides or {}))
        except (KeyError, TypeError) as err:
            raise SimLabError(f"{source}: sim: {err}") from None
        self.state = LabState(
            self.clock,
            params,
            CryostatParams(channels=channels),
            bias_resistor=float(measurement.get("bias_resistor", 10e6)),
            scenario=scenario,
        )
        self.state.fridge.control_channel = mc
        if "excitation" in measurement:
            self.state.lockin.amplitude = float(measurement["excitation"])
        self._emulators: dict[str, Emulator] = {}
        self._addresses: dict[str, str] = {}
        for name, spec in instruments.items():
            driver = str((spec or {}).get("type", ""))
            cls = emulator_for_driver(driver)
            if cls is None:
                continue
            address = (spec or {}).get("address")
            if not address:
                raise SimLabError(f"{source}: instruments.{name}.address is missing")
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
            self._emulators[name] = cls(name, self.state, rng)
            try:
                self._addresses[name] = canonical(str(address))
            except Exception:
                raise SimLabError(
                    f"{source}: instruments.{name}.address {address!r} is not a VISA resource name"
                ) from None
        self.state.sync()
        self._by_address = {addr: self._emulators[n] for n, addr in self._addresses.items()}
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
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except OSError as err:
            raise SimLabError(f"{path}: cannot read the station file ({err.strerror})") from None
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise SimLabError(f"{path}:{where} not valid YAML ({problem})") from None
        instruments = doc.get("instruments")
        if not isinstance(instruments, dict) or not instruments:
            raise SimLabError(f"{path}: instruments: is missing or empty")
        sim = doc.get("sim") or {}
        roles = doc.get("roles") or {}
        thermometry = roles.get("thermometry") if isinstance(roles.get("thermometry"), dict) else {}
        return cls(
            instruments,
            seed=seed,
            scenario=scenario or sim.get("scenario", "clean"),
            clock=clock,
            thermometry=thermometry,
            measurement=doc.get("measurement") or {},
            sample_overrides=sim.get("sample") or {},
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

    def command_log(self, name: str) -> list[LoggedCommand]:
        """Every command instrument ``name`` received, in order, with time, reply and error."""
        return list(self.emulator(name).log)

    @property
    def truth(self) -> dict[str, Any]:
        """Ground truth of the sample at the gate voltage now applied (see ``LabState.truth``)."""
        with self.state.lock:
            self.state.sync()
            return self.state.truth(self.state.gate.output_voltage())

    def truth_at(self, V_g: float) -> dict[str, Any]:
        """Ground truth of the sample at gate voltage ``V_g`` [V]."""
        return self.state.truth(V_g)

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
            self._tcp = InstrumentServer(self._emulators, self.io_tick, ports)
        return self._tcp.addresses()

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


__all__ += ["EMULATORS"]
