"""Keithley 2450 SourceMeter emulator: the gate-voltage source, in the 2450's own SCPI command set.

Follows the Model 2450 Reference Manual (2450-901-01), section 6 "SCPI command reference"; command
names below are the manual's. What it covers:

- ``*LANG?`` (the QCoDeS driver refuses to start unless it answers ``SCPI``), ``*IDN?``, ``*RST``...
- source: ``:SOURce[1]:FUNCtion``, ``:SOURce[1]:<function>[:LEVel][:IMMediate][:AMPLitude]``,
  ``:RANGe``, ``:RANGe:AUTO``, ``:VOLTage:ILIMit`` / ``:CURRent:VLIMit`` (``:TRIPped?``),
  ``:DELay``, ``:DELay:AUTO``, ``:DELay:USER<n>``, ``:READ:BACK``, ``:VOLTage:PROTection``,
  ``:SWEep:<function>:LINear``; ``:OUTPut[1][:STATe]``, ``:OUTPut[1][:<function>]:SMODe``
- measure: ``[:SENSe[1]]:FUNCtion``, ``:<function>:RANGe``, ``:RANGe:AUTO``, ``:NPLCycles``,
  ``:RSENse``, ``:AZERo``, ``:AVERage``, ``:DELay:USER<n>``, ``:COUNt``; ``:READ?``, ``:MEASure?``,
  ``:MEASure:<function>?``, ``:FETCh?``
- reading buffers: ``:TRACe:MAKE``, ``:DELete``, ``:POINts``, ``:ACTual?``, ``:CLEar``, ``:DATA?``,
  ``:TRIGger``, ``:STATistics``; ``:INITiate``, ``:ABORt``
- ``:ROUTe:TERMinals``, ``:SYSTem:LFRequency?``, ``:SYSTem:BEEPer``, ``:FORMat``, ``:STATus``.

Physics: the source drives the back gate (``lab.gate``). Sourcing voltage, the level is
``voltage_setpoint`` and ILIMit is ``current_limit``; sourcing current, the gate sits at the voltage
that pushes that current through its leakage (at most VLIMit). Readings come from ``lab.gate``
(``measured_current``, ``output_voltage``, ``in_compliance``), in the 2450's reply format
("1.000000E+00", overflow 9.9E+37). A level beyond the source range is refused with -222 and never
reaches the gate.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from scipy.optimize import brentq

from qbs_lab.sim.emulators.base import (
    CommandError,
    ScpiEmulator,
    command,
    function_commands,
    keyword,
    number,
    one_arg,
    short,
    to_bool,
    to_float,
)

__all__ = ["Keithley2450Emulator"]

#: fixed ranges (positive full scale); every range sources and measures up to 105 % of it
SOURCE_RANGES = {
    "VOLT": (20e-3, 200e-3, 2.0, 20.0, 200.0),
    "CURR": (10e-9, 100e-9, 1e-6, 10e-6, 100e-6, 1e-3, 10e-3, 100e-3, 1.0),
}
SENSE_RANGES = {**SOURCE_RANGES, "RES": (20.0, 200.0, 2e3, 20e3, 200e3, 2e6, 20e6, 200e6)}
OVERRANGE = 1.05
OVERFLOW = 9.9e37  # what a reading beyond its fixed range returns
#: source limits (magnitudes): ILIMit when sourcing voltage, VLIMit when sourcing current
LIMIT_BOUNDS = {"VOLT": (1e-9, 1.05), "CURR": (0.02, 210.0)}
LIMIT_DEFAULT = {"VOLT": 105e-6, "CURR": 21.0}
#: overvoltage protection levels (:SOURce:VOLTage:PROTection), None = NONE
PROTECTION = {f"PROT{v}": float(v) for v in (2, 5, 10, 20, 40, 60, 80, 100, 120, 140, 160, 180)}
UNITS = {"VOLT": "Volt DC", "CURR": "Amp DC", "RES": "Ohm"}
SYMBOLS = {"VOLT": "V", "CURR": "A", "RES": "Ohm"}
#: names of the sense functions as :SENSe:FUNCtion takes them (quoted) and returns them
SENSE_NAMES = {
    "CURR": ("CURR", "CURRENT", "CURR:DC", "CURRENT:DC"),
    "VOLT": ("VOLT", "VOLTAGE", "VOLT:DC", "VOLTAGE:DC"),
    "RES": ("RES", "RESISTANCE"),
}
SENSE_REPLY = {"CURR": '"CURR:DC"', "VOLT": '"VOLT:DC"', "RES": '"RES"'}
DEFAULT_BUFFERS = ("defbuffer1", "defbuffer2")
DEFAULT_BUFFER_SIZE = 100_000
MAX_BUFFER_SIZE = 6_875_000
#: the buffer elements of :READ?, :FETCh? and :TRACe:DATA?
ELEMENTS = (
    "DATE", "FORMatted", "FRACtional", "READing", "RELative", "SEConds", "SOURce",
    "SOURFORMatted", "SOURSTATus", "SOURUNIT", "STATus", "TIME", "TSTamp", "UNIT",
)  # fmt: skip
#: the emulated instrument's wall clock at lab time 0 (timestamps of readings and events)
EPOCH = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
VOLTAGE_NOISE = 5e-6  # rms voltage-measurement noise, as a fraction of the range


def pick_range(ranges: tuple[float, ...], value: float, overrange: float = 1.0) -> float:
    """The smallest range whose full scale (times ``overrange``) holds ``|value|``, else the top."""
    return next((r for r in ranges if abs(value) <= r * overrange), ranges[-1])


@dataclass
class Source:
    """Settings of one source function (VOLT or CURR), kept apart as the instrument does."""

    function: str
    level: float = 0.0
    range: float = 0.0
    auto_range: bool = True
    limit: float = 0.0
    delay: float = 0.0
    auto_delay: bool = True
    user_delay: list[float] = field(default_factory=lambda: [0.0] * 5)
    readback: bool = True
    off_mode: str = "NORMal"

    def __post_init__(self) -> None:
        self.range = SOURCE_RANGES[self.function][0]
        self.limit = LIMIT_DEFAULT[self.function]

    def max_level(self) -> float:
        """Largest |level| allowed now: 105 % of a fixed range, of the top range in autorange."""
        ranges = SOURCE_RANGES[self.function]
        return OVERRANGE * (ranges[-1] if self.auto_range else self.range)


@dataclass
class Sense:
    """Settings of one measure function (CURR, VOLT or RES)."""

    function: str
    range: float = 0.0
    auto_range: bool = True
    nplc: float = 1.0
    four_wire: bool = False
    auto_zero: bool = True
    user_delay: list[float] = field(default_factory=lambda: [0.0] * 5)
    average: bool = False
    average_count: int = 10
    average_type: str = "REPeat"

    def __post_init__(self) -> None:
        self.range = {"CURR": 100e-6, "VOLT": 20.0, "RES": 200e6}[self.function]


@dataclass(frozen=True)
class Reading:
    """One reading as a reading buffer stores it."""

    value: float
    function: str  # CURR, VOLT, RES
    source: float
    source_function: str  # VOLT, CURR
    time: float  # lab clock [s]
    source_status: int


@dataclass
class Buffer:
    """A reading buffer (``defbuffer1``, ``defbuffer2`` or one made with :TRACe:MAKE)."""

    capacity: int = DEFAULT_BUFFER_SIZE
    style: str = "STANdard"
    readings: deque[Reading] = field(default_factory=deque)

    def add(self, reading: Reading) -> None:
        self.readings.append(reading)
        while len(self.readings) > self.capacity:
            self.readings.popleft()  # fill mode CONTinuous: the oldest reading goes


@dataclass(frozen=True)
class Sweep:
    """A linear sweep set up by :SOURce:SWEep:<function>:LINear, run by :INITiate."""

    function: str
    points: tuple[float, ...]
    count: int
    range_type: str
    fail_abort: bool
    buffer: str


# -- function-specific commands: header template ({f} = the function's node), functions, kind ------
SOURCE_NODES = {"VOLT": "VOLTage", "CURR": "CURRent"}
SENSE_NODES = {"CURR": "CURRent[:DC]", "VOLT": "VOLTage[:DC]", "RES": "RESistance"}
#: (template, nodes, handler, forms): forms "sq" = set and query, "s" set only, "q" query only
FUNCTION_COMMANDS: tuple[tuple[str, dict[str, str], str, str], ...] = (
    (":SOURce#:{f}[:LEVel][:IMMediate][:AMPLitude]", SOURCE_NODES, "_source_level", "sq"),
    (":SOURce#:{f}:RANGe", SOURCE_NODES, "_source_range", "sq"),
    (":SOURce#:{f}:RANGe:AUTO", SOURCE_NODES, "_source_autorange", "sq"),
    (":SOURce#:VOLTage:ILIMit[:LEVel]", {"VOLT": ""}, "_source_limit", "sq"),
    (":SOURce#:CURRent:VLIMit[:LEVel]", {"CURR": ""}, "_source_limit", "sq"),
    (":SOURce#:VOLTage:ILIMit[:LEVel]:TRIPped", {"VOLT": ""}, "_source_tripped", "q"),
    (":SOURce#:CURRent:VLIMit[:LEVel]:TRIPped", {"CURR": ""}, "_source_tripped", "q"),
    (":SOURce#:{f}:DELay", SOURCE_NODES, "_source_delay", "sq"),
    (":SOURce#:{f}:DELay:AUTO", SOURCE_NODES, "_source_autodelay", "sq"),
    (":SOURce#:{f}:DELay:USER#", SOURCE_NODES, "_source_user_delay", "sq"),
    (":SOURce#:{f}:READ:BACK", SOURCE_NODES, "_source_readback", "sq"),
    (":SOURce#:SWEep:{f}:LINear", SOURCE_NODES, "_sweep_linear", "s"),
    (":OUTPut#:{f}:SMODe", SOURCE_NODES, "_output_off_mode", "sq"),
    ("[:SENSe#]:{f}:RANGe[:UPPer]", SENSE_NODES, "_sense_range", "sq"),
    ("[:SENSe#]:{f}:RANGe:AUTO", SENSE_NODES, "_sense_autorange", "sq"),
    ("[:SENSe#]:{f}:NPLCycles", SENSE_NODES, "_sense_nplc", "sq"),
    ("[:SENSe#]:{f}:RSENse", SENSE_NODES, "_sense_rsense", "sq"),
    ("[:SENSe#]:{f}:AZERo[:STATe]", SENSE_NODES, "_sense_azero", "sq"),
    ("[:SENSe#]:{f}:DELay:USER#", SENSE_NODES, "_sense_user_delay", "sq"),
    ("[:SENSe#]:{f}:AVERage[:STATe]", SENSE_NODES, "_sense_average", "sq"),
    ("[:SENSe#]:{f}:AVERage:COUNt", SENSE_NODES, "_sense_average_count", "sq"),
    ("[:SENSe#]:{f}:AVERage:TCONtrol", SENSE_NODES, "_sense_average_type", "sq"),
    (":MEASure:{f}", SENSE_NODES, "_measure_function", "q"),
)


class Keithley2450Emulator(ScpiEmulator):
    """Keithley 2450 SourceMeter in its SCPI command set, sourcing the back gate."""

    model = "Keithley 2450"
    idn = "KEITHLEY INSTRUMENTS,MODEL 2450,QBSLAB-SIM,1.7.12b"
    options = "0"  # *OPT?: accepted, answers 0 (no contact check; reference manual, appendix D)
    reply_termination = "\n"
    function_handlers = function_commands(FUNCTION_COMMANDS)
    language = "SCPI"  # *LANG? (QCoDeS needs SCPI; TSP and SCPI2400 are the others)
    line_frequency = 50  # Hz, :SYSTem:LFRequency? (the mains the instrument detected)

    # -- state ------------------------------------------------------------------------------------
    def reset(self) -> None:
        """*RST defaults: source 0 V (autorange, ILIMit 105 uA), measure current, output off."""
        super().reset()
        self.source_function = "VOLT"
        self.sense_function = "CURR"
        self.source = {f: Source(f) for f in SOURCE_RANGES}
        self.sense = {f: Sense(f) for f in SENSE_RANGES}
        self.auto_sense_range = {f: s.range for f, s in self.sense.items()}
        self.output = False
        self.protection: float | None = None  # overvoltage protection [V], None = NONE
        self.count = 1  # :SENSe:COUNt
        self.terminals = "FRONt"
        self.ascii_precision = 0  # :FORMat:ASCii:PRECision, 0 = automatic
        self.buffers = {name: Buffer() for name in DEFAULT_BUFFERS}
        self.sweep: Sweep | None = None
        self.pending_language = self.language
        self._push()

    def _push(self) -> None:
        """Drive the gate from the source settings (called after every change)."""
        gate = self.lab.gate
        src = self.source[self.source_function]
        gate.output_on = self.output
        gate.voltage_range = self._source_range_now("VOLT")
        if self.source_function == "VOLT":
            level = src.level
            if self.protection is not None:
                level = max(-self.protection, min(self.protection, level))
            gate.voltage_setpoint = level
            gate.current_limit = src.limit
        else:
            gate.current_limit = OVERRANGE * SOURCE_RANGES["CURR"][-1]
            gate.voltage_setpoint = self._voltage_for_current(src.level, src.limit)

    def _voltage_for_current(self, current: float, v_limit: float) -> float:
        """Gate voltage at which the leakage equals the sourced current, within +-VLIMit."""
        leak = self.lab.gate.leakage
        if self.protection is not None:
            v_limit = min(v_limit, self.protection)
        if abs(leak(math.copysign(v_limit, current))) <= abs(current):
            return math.copysign(v_limit, current)  # voltage limit: the source is in compliance
        if current == leak(0.0):
            return 0.0
        lo, hi = (0.0, v_limit) if current > leak(0.0) else (-v_limit, 0.0)
        return float(brentq(lambda v: leak(v) - current, lo, hi, xtol=1e-12))

    def _tripped(self) -> bool:
        """True when the active source is held at its limit (ILIMit or VLIMit)."""
        if not self.output:
            return False
        if self.source_function == "VOLT":
            return self.lab.gate.in_compliance()
        src = self.source["CURR"]
        return abs(self.lab.gate.leakage(self.lab.gate.voltage_setpoint)) < abs(src.level) * (1 - 1e-9)

    def _source_range_now(self, f: str) -> float:
        """The source range in use: the fixed one, or the autorange's pick for the level."""
        src = self.source[f]
        return pick_range(SOURCE_RANGES[f], src.level) if src.auto_range else src.range

    # -- errors, number format --------------------------------------------------------------------
    def report_error(self, code: int, text: str) -> None:
        """Errors are logged as ``<text>;<type>;<seconds> <nanoseconds>`` (type 1 = error)."""
        t = EPOCH + self.lab.clock.now()
        super().report_error(code, f"{text};1;{int(t)} {int((t % 1) * 1e9)}")

    @command("SYSTem:ERRor[:NEXT]?")
    def _err_q(self, args: list[str], n: tuple[int, ...]) -> str:
        if not self.errors:
            return '0,"No error;0;0 0"'
        code, text = self.errors.popleft()
        return f'{code},"{text}"'

    @command("SYSTem:ERRor:ALL?")
    def _err_all(self, args: list[str], n: tuple[int, ...]) -> str:
        if not self.errors:
            return '0,"No error;0;0 0"'
        out = ",".join(f'{code},"{text}"' for code, text in self.errors)
        self.errors.clear()
        return out

    @command(":SYSTem:CLEar")
    def _syst_clear(self, args: list[str], n: tuple[int, ...]) -> None:
        self.errors.clear()

    def _fmt(self, value: float) -> str:
        """A number as the 2450 sends it: 7 significant digits unless :FORMat:ASCii:PRECision."""
        digits = self.ascii_precision or 7
        return f"{value:.{digits - 1}E}"

    # -- common and system commands ---------------------------------------------------------------
    @command("*LANG?")
    def _lang_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return self.language

    @command("*LANG")
    def _lang(self, args: list[str], n: tuple[int, ...]) -> None:
        """The new command set takes effect at the next power cycle (as on the instrument)."""
        self.pending_language = keyword(one_arg(args), ("SCPI", "TSP", "SCPI2400"))

    @command("*TRG")
    def _trg(self, args: list[str], n: tuple[int, ...]) -> None:
        return None

    @command(":SYSTem:LFRequency?")
    def _lfr(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(self.line_frequency)

    @command(":SYSTem:BEEPer[:IMMediate]")
    def _beep(self, args: list[str], n: tuple[int, ...]) -> None:
        if len(args) < 2:
            raise CommandError(-109, "Missing parameter")
        if len(args) > 2:
            raise CommandError(-108, "Parameter not allowed")
        number(args[0], 20.0, 8000.0, 1000.0)
        number(args[1], 0.001, 100.0, 1.0)

    @command(":STATus:PRESet")
    def _stat_preset(self, args: list[str], n: tuple[int, ...]) -> None:
        return None

    @command(":STATus:CLEar")
    def _stat_clear(self, args: list[str], n: tuple[int, ...]) -> None:
        self.esr = 0

    @command(":ROUTe:TERMinals")
    def _terminals(self, args: list[str], n: tuple[int, ...]) -> None:
        """Changing terminals turns the output off."""
        terminals = keyword(one_arg(args), ("FRONt", "REAR"))
        if terminals != self.terminals:
            self.output = False
        self.terminals = terminals
        self._push()

    @command(":ROUTe:TERMinals?")
    def _terminals_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return short(self.terminals)

    @command(":FORMat[:DATA]")
    def _format(self, args: list[str], n: tuple[int, ...]) -> None:
        if keyword(one_arg(args), ("ASCii", "REAL", "SREal")) != "ASCii":
            raise CommandError(-221, "Settings conflict;binary transfer is not emulated")

    @command(":FORMat[:DATA]?")
    def _format_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return "ASC"

    @command(":FORMat:ASCii:PRECision")
    def _precision(self, args: list[str], n: tuple[int, ...]) -> None:
        value = number(one_arg(args), 0, 16, 0)
        if value != int(value):
            raise CommandError(-104, "Data type error")
        self.ascii_precision = int(value)

    @command(":FORMat:ASCii:PRECision?")
    def _precision_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(self.ascii_precision)

    # -- source -----------------------------------------------------------------------------------
    @command(":SOURce#:FUNCtion[:MODE]")
    def _source_function(self, args: list[str], n: tuple[int, ...]) -> None:
        """Changing the source function turns the output off."""
        f = short(keyword(one_arg(args), ("VOLTage", "CURRent")))
        if f != self.source_function:
            self.output = False
        self.source_function = f
        self._push()

    @command(":SOURce#:FUNCtion[:MODE]?")
    def _source_function_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return self.source_function

    @command(":SOURce#:VOLTage:PROTection[:LEVel]")
    def _protection(self, args: list[str], n: tuple[int, ...]) -> None:
        word = keyword(one_arg(args), (*PROTECTION, "NONE"))
        self.protection = PROTECTION.get(word)
        self._push()

    @command(":SOURce#:VOLTage:PROTection[:LEVel]?")
    def _protection_q(self, args: list[str], n: tuple[int, ...]) -> str:
        if self.protection is None:
            return "NONE"
        return f"PROT{int(self.protection)}"

    @command(":SOURce#:VOLTage:PROTection:TRIPped?")
    def _protection_tripped(self, args: list[str], n: tuple[int, ...]) -> str:
        src = self.source["VOLT"]
        clipped = self.protection is not None and abs(src.level) > self.protection
        return "1" if self.output and self.source_function == "VOLT" and clipped else "0"

    def _source_level(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str | None:
        src = self.source[f]
        top = OVERRANGE * SOURCE_RANGES[f][-1]
        if query:
            return self._fmt(number(args[0], -top, top, 0.0) if args else src.level)
        value = number(one_arg(args), -top, top, 0.0)
        if abs(value) > src.max_level():
            raise CommandError(-222, "Parameter data out of range")
        src.level = value
        if src.auto_range:
            src.range = pick_range(SOURCE_RANGES[f], value)
        self._push()
        return None

    def _source_range(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str | None:
        src = self.source[f]
        ranges = SOURCE_RANGES[f]
        if query:
            if args:
                return self._fmt(number(args[0], ranges[0], ranges[-1], ranges[-1]))
            return self._fmt(self._source_range_now(f))
        value = number(one_arg(args), -OVERRANGE * ranges[-1], OVERRANGE * ranges[-1], ranges[-1])
        new = pick_range(ranges, value)
        if abs(src.level) > OVERRANGE * new:
            raise CommandError(-221, "Settings conflict;source level exceeds the range")
        src.range, src.auto_range = new, False
        self._push()
        return None

    def _source_autorange(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str | None:
        src = self.source[f]
        if query:
            return "1" if src.auto_range else "0"
        src.auto_range = to_bool(one_arg(args))
        if src.auto_range:
            src.range = pick_range(SOURCE_RANGES[f], src.level)
        self._push()
        return None

    def _source_limit(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str | None:
        src = self.source[f]
        lo, hi = LIMIT_BOUNDS[f]
        if query:
            return self._fmt(number(args[0], lo, hi, LIMIT_DEFAULT[f]) if args else src.limit)
        # limits are magnitudes: -0.1 sets 0.1
        src.limit = number(one_arg(args), lo, hi, LIMIT_DEFAULT[f], magnitude=True)
        self._push()
        return None

    def _source_tripped(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str:
        return "1" if self.source_function == f and self._tripped() else "0"

    def _source_delay(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str | None:
        src = self.source[f]
        if query:
            return self._fmt(src.delay)
        src.delay = number(one_arg(args), 0.0, 1e4, 0.0)
        src.auto_delay = False  # a delay set by hand turns the auto delay off
        return None

    def _source_autodelay(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str | None:
        src = self.source[f]
        if query:
            return "1" if src.auto_delay else "0"
        src.auto_delay = to_bool(one_arg(args))
        return None

    def _source_user_delay(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str | None:
        return self._user_delay(self.source[f].user_delay, args, n[-1], query)

    def _source_readback(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str | None:
        src = self.source[f]
        if query:
            return "1" if src.readback else "0"
        src.readback = to_bool(one_arg(args))
        return None

    def _user_delay(self, delays: list[float], args: list[str], i: int, query: bool) -> str | None:
        if not 1 <= i <= len(delays):
            raise CommandError(-114, "Header suffix out of range")
        if query:
            return self._fmt(delays[i - 1])
        delays[i - 1] = number(one_arg(args), 0.0, 1e4, 0.0)
        return None

    # -- output -----------------------------------------------------------------------------------
    @command(":OUTPut#[:STATe]")
    def _output(self, args: list[str], n: tuple[int, ...]) -> None:
        self.output = to_bool(one_arg(args))
        self._push()

    @command(":OUTPut#[:STATe]?")
    def _output_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return "1" if self.output else "0"

    @command(":OUTPut#:SMODe")
    def _output_off_mode_all(self, args: list[str], n: tuple[int, ...]) -> None:
        """Without a function the output-off state is set for both source functions."""
        for f in SOURCE_NODES:
            self._output_off_mode(f, args, n, False)

    def _output_off_mode(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str | None:
        src = self.source[f]
        if query:
            return short(src.off_mode)
        src.off_mode = keyword(one_arg(args), ("NORMal", "HIMPedance", "ZERO", "GUARd"))
        return None

    # -- measure settings -------------------------------------------------------------------------
    @command("[:SENSe#]:FUNCtion[:ON]")
    def _sense_function(self, args: list[str], n: tuple[int, ...]) -> None:
        name = one_arg(args).strip().upper()
        for f, names in SENSE_NAMES.items():
            if name in names:
                self.sense_function = f
                return
        raise CommandError(-224, "Illegal parameter value")

    @command("[:SENSe#]:FUNCtion[:ON]?")
    def _sense_function_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return SENSE_REPLY[self.sense_function]

    @command("[:SENSe#]:COUNt")
    def _count(self, args: list[str], n: tuple[int, ...]) -> None:
        value = number(one_arg(args), 1, 300_000, 1)
        if value != int(value):
            raise CommandError(-104, "Data type error")
        self.count = int(value)

    @command("[:SENSe#]:COUNt?")
    def _count_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(self.count)

    @command("[:SENSe#]:AZERo:ONCE")
    def _azero_once(self, args: list[str], n: tuple[int, ...]) -> None:
        return None

    def _sense_range_now(self, f: str) -> float:
        """The measure range in use (the source range when measuring what is sourced)."""
        if f == self.source_function:
            return self._source_range_now(f)
        sense = self.sense[f]
        return self.auto_sense_range[f] if sense.auto_range else sense.range

    def _sense_range(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str | None:
        ranges = SENSE_RANGES[f]
        if query:
            if args:
                return self._fmt(number(args[0], ranges[0], ranges[-1], ranges[-1]))
            return self._fmt(self._sense_range_now(f))
        value = number(one_arg(args), -OVERRANGE * ranges[-1], OVERRANGE * ranges[-1], ranges[-1])
        self.sense[f].range = pick_range(ranges, value)
        self.sense[f].auto_range = False
        return None

    def _sense_autorange(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str | None:
        sense = self.sense[f]
        if query:
            return "1" if sense.auto_range else "0"
        sense.auto_range = to_bool(one_arg(args))
        if not sense.auto_range:
            sense.range = self.auto_sense_range[f]  # stays on the range autorange had picked
        return None

    def _sense_nplc(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str | None:
        if query:
            return self._fmt(self.sense[f].nplc)
        self.sense[f].nplc = number(one_arg(args), 0.01, 10.0, 1.0)
        return None

    def _sense_rsense(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str | None:
        """Switching between 2- and 4-wire sense turns the output off."""
        sense = self.sense[f]
        if query:
            return "1" if sense.four_wire else "0"
        four_wire = to_bool(one_arg(args))
        if four_wire != sense.four_wire:
            self.output = False
            self._push()
        sense.four_wire = four_wire
        return None

    def _sense_azero(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str | None:
        if query:
            return "1" if self.sense[f].auto_zero else "0"
        self.sense[f].auto_zero = to_bool(one_arg(args))
        return None

    def _sense_user_delay(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str | None:
        return self._user_delay(self.sense[f].user_delay, args, n[-1], query)

    def _sense_average(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str | None:
        if query:
            return "1" if self.sense[f].average else "0"
        self.sense[f].average = to_bool(one_arg(args))
        return None

    def _sense_average_count(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str | None:
        if query:
            return str(self.sense[f].average_count)
        value = number(one_arg(args), 1, 100, 10)
        if value != int(value):
            raise CommandError(-104, "Data type error")
        self.sense[f].average_count = int(value)
        return None

    def _sense_average_type(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str | None:
        if query:
            return short(self.sense[f].average_type)
        self.sense[f].average_type = keyword(one_arg(args), ("REPeat", "MOVing"))
        return None

    # -- measurements -----------------------------------------------------------------------------
    def _reading(self, source_level: float | None = None) -> Reading:
        """One source-measure cycle on the gate, in the present sense function and range."""
        self._push()
        gate = self.lab.gate
        f = self.sense_function
        volts = gate.output_voltage()
        amps = gate.measured_current(self.rng)
        v_range = self._sense_range_now("VOLT")
        v_meas = volts + float(self.rng.normal(0.0, VOLTAGE_NOISE * v_range))
        if f == "CURR":
            value = amps
        elif f == "VOLT":
            value = v_meas
        else:
            value = v_meas / amps if amps else OVERFLOW
        value = self._in_range(f, value)
        src = self.source[self.source_function]
        if src.readback:
            source = v_meas if self.source_function == "VOLT" else amps
        else:
            source = src.level if source_level is None else source_level
        status = (
            (0x01 if self.protection is not None and self.source_function == "VOLT" else 0)
            | (0x02 if src.readback else 0)
            | (0x08 if self._tripped() else 0)
            | (0x10 if self.sense[f].four_wire else 0)
            | (0x20 if self.output else 0)
        )
        return Reading(value, f, source, self.source_function, self.lab.clock.now(), status)

    def _in_range(self, f: str, value: float) -> float:
        """Autorange's pick for the value, or the overflow reading beyond a fixed range."""
        ranges = SENSE_RANGES[f]
        if f != self.source_function and self.sense[f].auto_range:
            if abs(value) > OVERRANGE * ranges[-1]:
                self.auto_sense_range[f] = ranges[-1]
                return OVERFLOW
            self.auto_sense_range[f] = pick_range(ranges, value, OVERRANGE)
            return value
        return OVERFLOW if abs(value) > OVERRANGE * self._sense_range_now(f) else value

    def _buffer(self, name: str) -> Buffer:
        try:
            return self.buffers[name]
        except KeyError:
            raise CommandError(-224, "Illegal parameter value;no such reading buffer") from None

    def _measure(self, args: list[str]) -> str:
        """Take :SENSe:COUNt readings into a buffer; reply with the last (in the elements asked)."""
        name = args[0] if args else "defbuffer1"
        buffer = self._buffer(name)
        elements = [keyword(a, ELEMENTS) for a in args[1:]]
        for _ in range(self.count):
            buffer.add(self._reading())
        return self._format_reading(buffer, buffer.readings[-1], elements)

    @command(":READ?")
    def _read(self, args: list[str], n: tuple[int, ...]) -> str:
        return self._measure(args)

    @command(":MEASure?")
    def _meas(self, args: list[str], n: tuple[int, ...]) -> str:
        return self._measure(args)

    def _measure_function(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str:
        """:MEASure:<function>? selects that measure function, then reads."""
        self.sense_function = f
        return self._measure(args)

    @command(":FETCh?")
    def _fetch(self, args: list[str], n: tuple[int, ...]) -> str:
        buffer = self._buffer(args[0] if args else "defbuffer1")
        if not buffer.readings:
            raise CommandError(-230, "Data corrupt or stale;the reading buffer is empty")
        elements = [keyword(a, ELEMENTS) for a in args[1:]]
        return self._format_reading(buffer, buffer.readings[-1], elements)

    def _format_reading(self, buffer: Buffer, r: Reading, elements: list[str]) -> str:
        """The buffer elements of one reading, comma separated (READing when none are asked)."""
        t = EPOCH + r.time
        stamp = datetime.fromtimestamp(t, UTC)
        nanos = f"{round((t % 1) * 1e9) % 1_000_000_000:09d}"
        values = {
            "DATE": stamp.strftime("%m/%d/%Y"),
            "FORMatted": _display(r.value, r.function),
            "FRACtional": self._fmt(t % 1),
            "READing": self._fmt(r.value),
            "RELative": self._fmt(r.time - buffer.readings[0].time),
            "SEConds": str(int(t)),
            "SOURce": self._fmt(r.source),
            "SOURFORMatted": _display(r.source, r.source_function),
            "SOURSTATus": str(r.source_status),
            "SOURUNIT": UNITS[r.source_function],
            "STATus": "0",
            "TIME": stamp.strftime("%H:%M:%S.") + nanos,
            "TSTamp": stamp.strftime("%m/%d/%Y %H:%M:%S.") + nanos,
            "UNIT": UNITS[r.function],
        }
        return ",".join(values[e] for e in elements or ["READing"])

    # -- reading buffers --------------------------------------------------------------------------
    @command(":TRACe:MAKE")
    def _trace_make(self, args: list[str], n: tuple[int, ...]) -> None:
        if len(args) < 2:
            raise CommandError(-109, "Missing parameter")
        name = args[0]
        if name in self.buffers or not name or len(name) > 31:
            raise CommandError(-224, "Illegal parameter value;buffer name exists or is invalid")
        size = int(number(args[1], 10, MAX_BUFFER_SIZE, DEFAULT_BUFFER_SIZE))
        words = ("STANdard", "COMPact", "FULL", "WRITable", "FULLWRITable")
        style = keyword(args[2], words) if len(args) > 2 and args[2] else "STANdard"
        self.buffers[name] = Buffer(size, style)

    @command(":TRACe:DELete")
    def _trace_delete(self, args: list[str], n: tuple[int, ...]) -> None:
        name = one_arg(args)
        self._buffer(name)
        if name in DEFAULT_BUFFERS:
            raise CommandError(-224, "Illegal parameter value;a default buffer cannot be deleted")
        del self.buffers[name]

    @command(":TRACe:POINts")
    def _trace_points(self, args: list[str], n: tuple[int, ...]) -> None:
        """Resizing a buffer clears it."""
        if not args:
            raise CommandError(-109, "Missing parameter")
        buffer = self._buffer(args[1] if len(args) > 1 else "defbuffer1")
        buffer.capacity = int(number(args[0], 10, MAX_BUFFER_SIZE, DEFAULT_BUFFER_SIZE))
        buffer.readings.clear()

    @command(":TRACe:POINts?")
    def _trace_points_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(self._buffer(args[0] if args else "defbuffer1").capacity)

    @command(":TRACe:ACTual?")
    def _trace_actual(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(len(self._buffer(args[0] if args else "defbuffer1").readings))

    @command(":TRACe:ACTual:STARt?")
    def _trace_start(self, args: list[str], n: tuple[int, ...]) -> str:
        return "1" if self._buffer(args[0] if args else "defbuffer1").readings else "0"

    @command(":TRACe:ACTual:END?")
    def _trace_end(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(len(self._buffer(args[0] if args else "defbuffer1").readings))

    @command(":TRACe:CLEar")
    def _trace_clear(self, args: list[str], n: tuple[int, ...]) -> None:
        self._buffer(args[0] if args else "defbuffer1").readings.clear()

    @command(":TRACe:TRIGger")
    def _trace_trigger(self, args: list[str], n: tuple[int, ...]) -> None:
        buffer = self._buffer(args[0] if args else "defbuffer1")
        for _ in range(self.count):
            buffer.add(self._reading())

    @command(":TRACe:DATA?")
    def _trace_data(self, args: list[str], n: tuple[int, ...]) -> str:
        """Readings ``start``..``end`` (1 = the oldest in the buffer), in the elements asked."""
        if len(args) < 2:
            raise CommandError(-109, "Missing parameter")
        buffer = self._buffer(args[2] if len(args) > 2 else "defbuffer1")
        start, end = to_float(args[0]), to_float(args[1])
        if start != int(start) or end != int(end):
            raise CommandError(-104, "Data type error")
        if not 1 <= start <= end <= len(buffer.readings):
            raise CommandError(-222, "Parameter data out of range;no such reading in the buffer")
        elements = [keyword(a, ELEMENTS) for a in args[3:]]
        readings = list(buffer.readings)[int(start) - 1 : int(end)]
        return ",".join(self._format_reading(buffer, r, elements) for r in readings)

    @command(":TRACe:STATistics:AVERage?")
    def _stat_average(self, args: list[str], n: tuple[int, ...]) -> str:
        return self._statistic(args, lambda v: sum(v) / len(v))

    @command(":TRACe:STATistics:MAXimum?")
    def _stat_max(self, args: list[str], n: tuple[int, ...]) -> str:
        return self._statistic(args, max)

    @command(":TRACe:STATistics:MINimum?")
    def _stat_min(self, args: list[str], n: tuple[int, ...]) -> str:
        return self._statistic(args, min)

    @command(":TRACe:STATistics:STDDev?")
    def _stat_stddev(self, args: list[str], n: tuple[int, ...]) -> str:
        def stddev(v: list[float]) -> float:
            mean = sum(v) / len(v)
            return math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0

        return self._statistic(args, stddev)

    def _statistic(self, args: list[str], stat: Callable[[list[float]], float]) -> str:
        values = [r.value for r in self._buffer(args[0] if args else "defbuffer1").readings]
        return self._fmt(stat(values)) if values else self._fmt(9.91e37)  # 9.91E+37: NaN

    # -- trigger model: sweeps --------------------------------------------------------------------
    def _sweep_linear(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> None:
        """Arguments: start, stop, points[, delay, count, rangeType, failAbort, dual, buffer]."""
        if len(args) < 3:
            raise CommandError(-109, "Missing parameter")
        if len(args) > 9:
            raise CommandError(-108, "Parameter not allowed")
        top = OVERRANGE * SOURCE_RANGES[f][-1]
        start, stop = number(args[0], -top, top, 0.0), number(args[1], -top, top, 0.0)
        points = number(args[2], 2, 1e6, 2)
        if points != int(points):
            raise CommandError(-104, "Data type error")
        delay = to_float(args[3]) if len(args) > 3 else -1.0
        if not (delay in (-1.0, 0.0) or 50e-6 <= delay <= 1e4):
            raise CommandError(-222, "Parameter data out of range")
        count = number(args[4], 1, 268_435_455, 1) if len(args) > 4 else 1  # 0 (forever) refused
        range_type = keyword(args[5], ("AUTO", "BEST", "FIXed")) if len(args) > 5 else "BEST"
        fail_abort = to_bool(args[6]) if len(args) > 6 else True
        dual = to_bool(args[7]) if len(args) > 7 else False
        name = args[8] if len(args) > 8 else "defbuffer1"
        self._buffer(name)
        step = (stop - start) / (int(points) - 1)
        sweep = tuple(start + i * step for i in range(int(points)))
        if range_type == "FIXed" and max(abs(start), abs(stop)) > self.source[f].max_level():
            raise CommandError(-222, "Parameter data out of range")
        if dual:
            sweep = sweep + sweep[::-1]
        self.sweep = Sweep(f, sweep, int(count), range_type, fail_abort, name)
        if f != self.source_function:
            self.output = False
        self.source_function = f
        self._push()

    @command(":INITiate[:IMMediate]")
    def _initiate(self, args: list[str], n: tuple[int, ...]) -> None:
        """Run the sweep set up: clear its buffer, turn the output on, one reading per point; the
        output stays on at the last level. With no sweep set up, take :SENSe:COUNt readings."""
        if self.sweep is None:
            self._trace_trigger([], n)
            return
        sweep, src = self.sweep, self.source[self.sweep.function]
        buffer = self._buffer(sweep.buffer)
        buffer.readings.clear()
        if sweep.range_type != "FIXed":
            src.auto_range = sweep.range_type == "AUTO"
            if not src.auto_range:
                src.range = pick_range(SOURCE_RANGES[sweep.function], max(map(abs, sweep.points)))
        self.output = True
        for _ in range(sweep.count):
            for level in sweep.points:
                src.level = level
                if src.auto_range:
                    src.range = pick_range(SOURCE_RANGES[sweep.function], level)
                reading = self._reading(level)
                buffer.add(reading)
                if sweep.fail_abort and reading.source_status & 0x08:
                    return

    @command(":ABORt")
    def _abort(self, args: list[str], n: tuple[int, ...]) -> None:
        return None


def _display(value: float, function: str) -> str:
    """A reading as the front panel shows it, e.g. ``+012.345 pA`` (``Overflow`` past range)."""
    if abs(value) >= OVERFLOW:
        return "Overflow"
    exponent = 0 if value == 0 else int(math.floor(math.log10(abs(value)) / 3) * 3)
    exponent = max(-15, min(12, exponent))
    prefixes = {-15: "f", -12: "p", -9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G"}
    prefix = prefixes.get(exponent, f"e{exponent}")
    return f"{value / 10**exponent:+08.3f} {prefix}{SYMBOLS[function]}"
