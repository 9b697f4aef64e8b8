"""Keithley 2400 SourceMeter emulator: the gate-voltage source, in the 2400's SCPI command set.

Follows the 2400 Series SourceMeter User's Manual (2400S-900-01), section 18 "SCPI command reference"
and appendix B "Status and error messages"; command names below are the manual's. What it covers, the
commands the QCoDeS ``Keithley2400`` driver sends and their neighbours:

- ``*IDN?``, ``*RST`` (also as ``:*RST``, which the driver's ``reset()`` sends), the IEEE-488.2 commands
- source: ``:SOURce[1]:FUNCtion[:MODE]``, ``:SOURce[1]:<function>[:LEVel][:IMMediate][:AMPLitude]``,
  ``:RANGe``, ``:RANGe:AUTO``, ``:SOURce[1]:CLEar``; ``:OUTPut[1][:STATe]``
- measure: ``[:SENSe[1]]:FUNCtion[:ON]``, ``:FUNCtion:OFF``, ``:OFF:ALL``, ``:FUNCtion:CONCurrent``,
  ``[:SENSe[1]]:<function>[:DC]:PROTection[:LEVel]`` (compliance), ``:PROTection:TRIPped?``,
  ``:RANGe[:UPPer]``, ``:RANGe:AUTO``, ``:NPLCycles``
- readings: ``:READ?``, ``:INITiate``, ``:FETCh?``, ``:FORMat:ELEMents``, ``:FORMat[:DATA]``,
  ``:TRIGger:COUNt``, ``:SYSTem:TIME:RESet``; the error queue ``:SYSTem:ERRor?``.

The ``:SOURce`` root is required here (the manual draws it optional; no driver omits it).

Physics: the source drives the back gate (``lab.gate``). Sourcing voltage, the level is
``voltage_setpoint`` and the current compliance is ``current_limit`` (or the full scale of a fixed
current measure range below it: the manual's "range compliance"); sourcing current, the gate sits at
the voltage that pushes that current through its leakage, at most the voltage compliance. Readings
follow the manual's data elements: VOLTage and CURRent carry the measurement when that function is
measured, else the programmed source value (for the sourced function) or NAN, +9.91e37; a reading
beyond a fixed range is the overflow +9.9e37. Numbers are sent as ``+1.050000E-04``.

Errors the manual names: :READ? and :INITiate with the output off raise +803 "Not permitted with
OUTPUT off" (no reply); a compliance below 0.1 % of the present measure range raises +822 "Too small
for sense range" and leaves the compliance unchanged; a fixed measure range above the compliance range
raises +824 "Cannot exceed compliance range". Not emulated: sweeps and lists, source memory, the
reading buffer (:TRACe), math, limits, the over-voltage protection, the power limit of the 210 V range.
"""

from __future__ import annotations

import math

from scipy.optimize import brentq

from qbs_lab.sim.emulators.base import CommandError, ScpiEmulator, command, function_commands, to_bool, to_int
from qbs_lab.sim.emulators.keithley2450 import keyword, number, one_arg, pick_range, short

__all__ = ["Keithley2400Emulator"]

#: source and measure ranges (full scale, the 5 % over-range included, as the 2400 reports them)
RANGES = {
    "VOLT": (0.21, 2.1, 21.0, 210.0),
    "CURR": (1.05e-6, 10.5e-6, 105e-6, 1.05e-3, 10.5e-3, 105e-3, 1.05),
}
LEVEL_MAX = {"VOLT": 210.0, "CURR": 1.05}  # largest |source level| and |compliance|
COMPLIANCE_DEFAULT = {"CURR": 105e-6, "VOLT": 21.0}  # *RST: current compliance, voltage compliance
NAN = 9.91e37  # a data element that is neither measured nor sourced
OVERFLOW = 9.9e37  # a reading beyond a fixed range
MAX_TRIGGERS = 2500
#: the data elements of :READ? / :FETCh?, always sent in this order whatever order they were given in
ELEMENTS = ("VOLTage", "CURRent", "RESistance", "TIME", "STATus")
#: :SENSe:FUNCtion names, as taken (quoted) and as :SENSe:FUNCtion? returns them
SENSE_NAMES = {
    "VOLT": ("VOLT", "VOLTAGE", "VOLT:DC", "VOLTAGE:DC"),
    "CURR": ("CURR", "CURRENT", "CURR:DC", "CURRENT:DC"),
    "RES": ("RES", "RESISTANCE"),
}
SENSE_REPLY = {"VOLT": '"VOLT:DC"', "CURR": '"CURR:DC"', "RES": '"RES"'}
VOLTAGE_NOISE = 5e-6  # rms voltage-measurement noise, as a fraction of the range
TIMER_WRAP = 100_000.0  # s: the relative timestamp starts over after 99,999.999 s
#: status word bits (manual, :FORMat:ELEMents STATus)
OFLO, FRONT, COMPLIANCE, V_MEAS, I_MEAS, R_MEAS, V_SOUR, I_SOUR, RANGE_COMPLIANCE = (
    1 << 0, 1 << 2, 1 << 3, 1 << 11, 1 << 12, 1 << 13, 1 << 14, 1 << 15, 1 << 16,
)  # fmt: skip

# -- function-specific commands: header template ({f} = the function's node), handler, forms ------
NODES = {"VOLT": "VOLTage", "CURR": "CURRent"}
FUNCTION_COMMANDS: tuple[tuple[str, dict[str, str], str, str], ...] = (
    (":SOURce#:{f}[:LEVel][:IMMediate][:AMPLitude]", NODES, "_source_level", "sq"),
    (":SOURce#:{f}:RANGe", NODES, "_source_range", "sq"),
    (":SOURce#:{f}:RANGe:AUTO", NODES, "_source_autorange", "sq"),
    ("[:SENSe#]:{f}[:DC]:PROTection[:LEVel]", NODES, "_compliance", "sq"),
    ("[:SENSe#]:{f}[:DC]:PROTection:TRIPped", NODES, "_tripped_q", "q"),
    ("[:SENSe#]:{f}[:DC]:RANGe[:UPPer]", NODES, "_sense_range", "sq"),
    ("[:SENSe#]:{f}[:DC]:RANGe:AUTO", NODES, "_sense_autorange", "sq"),
    ("[:SENSe#]:{f}[:DC]:NPLCycles", NODES, "_nplc", "sq"),
)


class Keithley2400Emulator(ScpiEmulator):
    """Keithley 2400 SourceMeter in its SCPI command set, sourcing the back gate."""

    model = "Keithley 2400"
    idn = "KEITHLEY INSTRUMENTS INC.,MODEL 2400,QBSLAB-SIM,C32   Oct  4 2010 14:20:11/A02  /S/K"
    reply_termination = "\n"
    function_handlers = function_commands(FUNCTION_COMMANDS)

    # -- state ------------------------------------------------------------------------------------
    def reset(self) -> None:
        """*RST defaults: source 0 V (autorange), compliance 105 uA, measure current, output off."""
        super().reset()
        self.source_function = "VOLT"
        self.level = {"VOLT": 0.0, "CURR": 0.0}
        self.source_auto = {"VOLT": True, "CURR": True}
        self.source_range = {"VOLT": 21.0, "CURR": 105e-6}
        self.compliance = dict(COMPLIANCE_DEFAULT)
        self.sense_auto = {"VOLT": True, "CURR": True}
        self.sense_fixed = {"VOLT": 21.0, "CURR": 105e-6}  # the range used when autorange is off
        self.sense_auto_range = {"VOLT": 21.0, "CURR": 105e-6}  # autorange's latest pick
        self.functions = {"CURR"}  # measure functions on
        self.concurrent = True
        self.nplc = 1.0  # global to all measure functions
        self.output = False
        self.trigger_count = 1
        self.elements = list(ELEMENTS)
        self.time_zero = self.lab.clock.now()
        self.latest: list[tuple[float, ...]] = []  # the readings :FETCh? returns
        self._push()

    def _push(self) -> None:
        """Drive the gate from the source settings (called after every change)."""
        gate = self.lab.gate
        gate.output_on = self.output
        gate.voltage_range = self._source_range_now("VOLT")
        if self.source_function == "VOLT":
            gate.voltage_setpoint = self.level["VOLT"]
            gate.current_limit = self._current_limit()
        else:
            gate.current_limit = RANGES["CURR"][-1]
            gate.voltage_setpoint = self._voltage_for_current(self.level["CURR"], self.compliance["VOLT"])

    def _current_limit(self) -> float:
        """The V-source's current limit: the compliance, or a lower fixed measure range's full scale."""
        if self.sense_auto["CURR"]:
            return self.compliance["CURR"]
        return min(self.compliance["CURR"], self.sense_fixed["CURR"])

    def _voltage_for_current(self, current: float, v_limit: float) -> float:
        """Gate voltage at which the leakage equals the sourced current, within +-compliance."""
        leak = self.lab.gate.leakage
        if abs(leak(math.copysign(v_limit, current))) <= abs(current):
            return math.copysign(v_limit, current)  # in voltage compliance
        if current == leak(0.0):
            return 0.0
        lo, hi = (0.0, v_limit) if current > leak(0.0) else (-v_limit, 0.0)
        return float(brentq(lambda v: leak(v) - current, lo, hi, xtol=1e-12))

    def _source_range_now(self, f: str) -> float:
        """The source range in use: the fixed one, or autorange's pick for the level."""
        return pick_range(RANGES[f], self.level[f]) if self.source_auto[f] else self.source_range[f]

    def _sense_range_now(self, f: str) -> float:
        """The measure range in use (the source range for the sourced function)."""
        if f == self.source_function:
            return self._source_range_now(f)
        return self.sense_auto_range[f] if self.sense_auto[f] else self.sense_fixed[f]

    def _in_compliance(self) -> bool:
        """The active source is held at its compliance."""
        if not self.output:
            return False
        gate = self.lab.gate
        if self.source_function == "VOLT":
            return gate.in_compliance()
        return abs(gate.leakage(gate.voltage_setpoint)) < abs(self.level["CURR"]) * (1 - 1e-9)

    # -- errors, numbers, lookup ------------------------------------------------------------------
    def report_error(self, code: int, text: str) -> None:
        """The 2400's own +800 errors are execution errors (ESR bit 4), as the SCPI -200s."""
        if 800 <= code < 900:
            self.errors.append((code, text))
            self.esr |= 1 << 4
            return
        super().report_error(code, text)

    @staticmethod
    def _fmt(value: float) -> str:
        return f"{value:+.6E}"

    # -- source -----------------------------------------------------------------------------------
    @command(":SOURce#:FUNCtion[:MODE]")
    def _source_function(self, args: list[str], n: tuple[int, ...]) -> None:
        self.source_function = short(keyword(one_arg(args), ("VOLTage", "CURRent")))
        self._push()

    @command(":SOURce#:FUNCtion[:MODE]?")
    def _source_function_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return self.source_function

    @command(":SOURce#:CLEar[:IMMediate]")
    def _source_clear(self, args: list[str], n: tuple[int, ...]) -> None:
        """Turns the output off."""
        self.output = False
        self._push()

    def _source_level(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str | None:
        top = LEVEL_MAX[f]
        if query:
            return self._fmt(number(args[0], -top, top, 0.0) if args else self.level[f])
        value = number(one_arg(args), -top, top, 0.0)
        if not self.source_auto[f] and abs(value) > self.source_range[f]:
            raise CommandError(-222, "Parameter data out of range")  # beyond the fixed range
        self.level[f] = value
        self._push()
        return None

    def _source_range(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str | None:
        ranges = RANGES[f]
        if query:
            return self._fmt(self._source_range_now(f))
        value = number(one_arg(args), -ranges[-1], ranges[-1], ranges[-1])
        new = pick_range(ranges, value)
        if abs(self.level[f]) > new:
            raise CommandError(-221, "Settings conflict")  # the level would not fit
        self.source_range[f], self.source_auto[f] = new, False
        self._push()
        return None

    def _source_autorange(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str | None:
        if query:
            return "1" if self.source_auto[f] else "0"
        self.source_range[f] = self._source_range_now(f)
        self.source_auto[f] = to_bool(one_arg(args))
        self._push()
        return None

    @command(":OUTPut#[:STATe]")
    def _output(self, args: list[str], n: tuple[int, ...]) -> None:
        self.output = to_bool(one_arg(args))
        self._push()

    @command(":OUTPut#[:STATe]?")
    def _output_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return "1" if self.output else "0"

    # -- measure settings -------------------------------------------------------------------------
    def _function_names(self, args: list[str]) -> list[str]:
        if not args:
            raise CommandError(-109, "Missing parameter")
        names = [part.strip().upper() for arg in args for part in arg.split(",")]
        out = []
        for name in names:
            f = next((f for f, forms in SENSE_NAMES.items() if name in forms), None)
            if f is None:
                raise CommandError(-224, "Illegal parameter value")
            out.append(f)
        return out

    @command("[:SENSe#]:FUNCtion[:ON]")
    def _function_on(self, args: list[str], n: tuple[int, ...]) -> None:
        """With concurrent measurements on, adds functions; off, selects the one given."""
        names = self._function_names(args)
        if not self.concurrent:
            if len(names) > 1:
                raise CommandError(-108, "Parameter not allowed")
            self.functions = set()
        self.functions |= set(names)

    @command("[:SENSe#]:FUNCtion[:ON]?")
    def _function_on_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return ",".join(SENSE_REPLY[f] for f in SENSE_REPLY if f in self.functions) or '""'

    @command("[:SENSe#]:FUNCtion:OFF")
    def _function_off(self, args: list[str], n: tuple[int, ...]) -> None:
        self.functions -= set(self._function_names(args))

    @command("[:SENSe#]:FUNCtion:OFF:ALL")
    def _function_off_all(self, args: list[str], n: tuple[int, ...]) -> None:
        self.functions = set()

    @command("[:SENSe#]:FUNCtion:CONCurrent")
    def _concurrent(self, args: list[str], n: tuple[int, ...]) -> None:
        """Turning concurrent measurements off leaves one function on (the first)."""
        self.concurrent = to_bool(one_arg(args))
        if not self.concurrent and len(self.functions) > 1:
            self.functions = {next(f for f in SENSE_REPLY if f in self.functions)}

    @command("[:SENSe#]:FUNCtion:CONCurrent?")
    def _concurrent_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return "1" if self.concurrent else "0"

    def _compliance(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str | None:
        """The current compliance of the V-source (f CURR), the voltage compliance of the I-source."""
        top = LEVEL_MAX[f]
        if query:
            return self._fmt(
                number(args[0], -top, top, COMPLIANCE_DEFAULT[f]) if args else self.compliance[f]
            )
        value = abs(number(one_arg(args), -top, top, COMPLIANCE_DEFAULT[f]))
        own = pick_range(RANGES[f], value)  # the compliance range
        measure = own if self.sense_auto[f] or f == self.source_function else self.sense_fixed[f]
        if value < 1e-3 * measure:
            raise CommandError(822, "Too small for sense range")
        self.compliance[f] = value
        if not self.sense_auto[f] and self.sense_fixed[f] > own:
            self.sense_fixed[f] = own  # the measure range may not exceed the compliance range
        self.sense_auto_range[f] = min(self.sense_auto_range[f], own)
        self._push()
        return None

    def _tripped_q(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str:
        return "1" if self.source_function != f and self._in_compliance() else "0"

    def _sense_range(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str | None:
        ranges = RANGES[f]
        if query:
            return self._fmt(self._sense_range_now(f))
        value = number(one_arg(args), -ranges[-1], ranges[-1], ranges[-1])
        if f == self.source_function:
            raise CommandError(-221, "Settings conflict")  # the source range sets it
        new = pick_range(ranges, value)
        if new > pick_range(ranges, self.compliance[f]):
            raise CommandError(824, "Cannot exceed compliance range")
        self.sense_fixed[f], self.sense_auto[f] = new, False
        self._push()
        return None

    def _sense_autorange(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str | None:
        if query:
            return "1" if self.sense_auto[f] and f != self.source_function else "0"
        on = to_bool(one_arg(args))
        if on and f == self.source_function:
            raise CommandError(-221, "Settings conflict")
        if not on and self.sense_auto[f]:
            self.sense_fixed[f] = self.sense_auto_range[f]  # stays on autorange's pick
        self.sense_auto[f] = on
        self._push()
        return None

    def _nplc(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str | None:
        if query:
            return self._fmt(self.nplc)
        self.nplc = number(one_arg(args), 0.01, 10.0, 1.0)
        return None

    @command("[:SENSe#]:RESistance:NPLCycles")
    def _nplc_res(self, args: list[str], n: tuple[int, ...]) -> None:
        self._nplc("RES", args, n, False)

    @command("[:SENSe#]:RESistance:NPLCycles?")
    def _nplc_res_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return self._fmt(self.nplc)

    # -- readings ---------------------------------------------------------------------------------
    @command(":TRIGger[:SEQuence#]:COUNt")
    def _trigger_count(self, args: list[str], n: tuple[int, ...]) -> None:
        count = to_int(one_arg(args))
        if not 1 <= count <= MAX_TRIGGERS:
            raise CommandError(-222, "Parameter data out of range")
        self.trigger_count = count

    @command(":TRIGger[:SEQuence#]:COUNt?")
    def _trigger_count_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(self.trigger_count)

    @command(":FORMat:ELEMents[:SENSe#]")
    def _elements(self, args: list[str], n: tuple[int, ...]) -> None:
        if not args:
            raise CommandError(-109, "Missing parameter")
        chosen = {keyword(a, ELEMENTS) for a in args}
        self.elements = [e for e in ELEMENTS if e in chosen]

    @command(":FORMat:ELEMents[:SENSe#]?")
    def _elements_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return ",".join(short(e) for e in self.elements)

    @command(":FORMat[:DATA]")
    def _format(self, args: list[str], n: tuple[int, ...]) -> None:
        if not args:
            raise CommandError(-109, "Missing parameter")
        if keyword(args[0], ("ASCii", "REAL", "SREal")) != "ASCii":  # REAL takes a length: 32
            raise CommandError(-221, "Settings conflict;binary transfer is not emulated")

    @command(":FORMat[:DATA]?")
    def _format_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return "ASC"

    @command(":SYSTem:TIME:RESet")
    def _time_reset(self, args: list[str], n: tuple[int, ...]) -> None:
        self.time_zero = self.lab.clock.now()

    def _reading(self) -> tuple[float, ...]:
        """One source-measure cycle on the gate: (voltage, current, resistance, time, status)."""
        self._push()
        gate = self.lab.gate
        src = self.source_function
        amps = gate.measured_current(self.rng)
        volts = gate.output_voltage() + float(
            self.rng.normal(0.0, VOLTAGE_NOISE * self._sense_range_now("VOLT"))
        )
        status = FRONT | (V_SOUR if src == "VOLT" else I_SOUR)
        if self._in_compliance():
            limited_by_range = src == "VOLT" and self._current_limit() < self.compliance["CURR"]
            status |= RANGE_COMPLIANCE if limited_by_range else COMPLIANCE
        values: dict[str, float] = {}
        for f, measured, flag in (("VOLT", volts, V_MEAS), ("CURR", amps, I_MEAS)):
            if f in self.functions:
                values[f] = self._in_range(f, measured)
                status |= flag | (OFLO if values[f] == OVERFLOW else 0)
            else:
                values[f] = self.level[f] if f == src else NAN
        resistance = NAN
        if "RES" in self.functions:
            status |= R_MEAS
            resistance = volts / amps if amps else OVERFLOW
        t = (self.lab.clock.now() - self.time_zero) % TIMER_WRAP
        return values["VOLT"], values["CURR"], resistance, t, float(status)

    def _in_range(self, f: str, value: float) -> float:
        """Autorange's pick for the value (at most the compliance range), or the overflow reading."""
        ranges = RANGES[f]
        if f != self.source_function and self.sense_auto[f]:
            self.sense_auto_range[f] = min(pick_range(ranges, value), pick_range(ranges, self.compliance[f]))
            return value
        return OVERFLOW if abs(value) > self._sense_range_now(f) else value

    def _take_readings(self) -> None:
        if not self.output:
            raise CommandError(803, "Not permitted with OUTPUT off")
        self.latest = [self._reading() for _ in range(self.trigger_count)]

    def _format_readings(self) -> str:
        picked = [ELEMENTS.index(e) for e in self.elements]
        out = []
        for reading in self.latest:
            for i in picked:
                out.append(str(int(reading[i])) if ELEMENTS[i] == "STATus" else self._fmt(reading[i]))
        return ",".join(out)

    @command(":READ?")
    def _read(self, args: list[str], n: tuple[int, ...]) -> str:
        """:INITiate then :FETCh?: trigger-count readings, each with the chosen data elements."""
        self._take_readings()
        return self._format_readings()

    @command(":INITiate[:IMMediate]")
    def _initiate(self, args: list[str], n: tuple[int, ...]) -> None:
        self._take_readings()

    @command(":FETCh?")
    def _fetch(self, args: list[str], n: tuple[int, ...]) -> str:
        if not self.latest:
            raise CommandError(-230, "Data corrupt or stale")
        return self._format_readings()
