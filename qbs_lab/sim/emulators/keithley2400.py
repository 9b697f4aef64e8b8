"""Keithley 2400 SourceMeter emulator: the gate-voltage source, in the 2400's SCPI command set.

Follows the 2400 Series SourceMeter User's Manual (2400S-900-01), section 18 "SCPI command reference"
(its command summary tables 18-1 to 18-11 give the *RST defaults used here) and appendix B "Status and
error messages"; command names below are the manual's. Plain settings are declared in :data:`SETTINGS`
(path, type, range, reset value); handlers are written where the instrument has behaviour:

- IEEE-488.2: ``*IDN?``, ``*RST`` (also ``:*RST``), ``*CLS``, ``*ESE``, ``*ESR?``, ``*SRE``, ``*STB?``,
  ``*OPC``, ``*OPC?``, ``*OPT?`` (``0``: no contact-check option), ``*TRG``, ``*WAI``, ``*TST?``
- source: ``:SOURce[1]:FUNCtion[:MODE]``, ``:<function>[:LEVel][:IMMediate][:AMPLitude]``, ``:RANGe``,
  ``:RANGe:AUTO``, ``:CLEar[:IMMediate]``, ``:CLEar:AUTO[:MODE]``, ``:DELay``, ``:DELay:AUTO``;
  ``:OUTPut[1][:STATe]``, ``:OUTPut:SMODe``; ``:ROUTe:TERMinals``
- measure: ``[:SENSe[1]]:FUNCtion[:ON]``, ``:OFF``, ``:OFF:ALL``, ``:ALL``, ``:CONCurrent``,
  ``<function>:PROTection[:LEVel]`` (compliance), ``:PROTection:TRIPped?``, ``:RANGe[:UPPer]``,
  ``:RANGe:AUTO``, ``:NPLCycles``; ``:RESistance:MODE``, ``:OCOMpensated``, ``:RANGe``,
  ``:RANGe:AUTO``; ``:AVERage[:STATe]``, ``:TCONtrol``, ``:COUNt``
- readings: ``:READ?``, ``:INITiate``, ``:FETCh?``, ``:MEASure[:<function>]?``,
  ``:CONFigure:<function>``, ``:FORMat:ELEMents``, ``:FORMat[:DATA]``
- trigger model: ``:TRIGger:COUNt|DELay|SOURce|ILINe|OLINe|OUTPut|INPut|DIRection|CLEar``,
  ``:ARM:COUNt|TIMer|SOURce|ILINe|OLINe|OUTPut|DIRection``, ``:ABORt``
- system: ``:SYSTem:AZERo[:STATe]``, ``:LFRequency[:AUTO]``, ``:RSENse``, ``:PRESet``, ``:BEEPer``,
  ``:TIME?``, ``:TIME:RESet``, ``:ERRor?``; ``:DISPlay:ENABle``

The ``:SOURce`` root is required here (the manual draws it optional; no driver omits it).

Physics: the source drives the back gate (``lab.gate``). Sourcing voltage, the level is
``voltage_setpoint`` and the current compliance is ``current_limit`` (or the full scale of a fixed
current measure range below it: the manual's "range compliance"); sourcing current, the gate sits at
the voltage that pushes that current through its leakage, at most the voltage compliance. Readings
follow the manual's data elements: VOLTage and CURRent carry the measurement when that function is
measured, else the programmed source value (for the sourced function) or NAN, +9.91e37; a reading
beyond a fixed range is the overflow +9.9e37. Numbers are sent as ``+1.050000E-04``.

Errors the manual names: :READ? and :INITiate with the output off (and auto output-off disabled)
raise +803 "Not permitted with OUTPUT off" (no reply); a compliance below 0.1 % of the present measure
range raises +822 "Too small for sense range" and leaves the compliance unchanged; a measure range for
the sourced function raises +823 "Invalid with source read-back on" (its range is the source range);
a fixed measure range above the compliance range raises +824 "Cannot exceed compliance range"; an arm
count times trigger count above 2500 raises -222. Not emulated: sweeps and lists, source memory, the
reading buffer (:TRACe), math and limit tests, the digital filter's effect on noise (its settings are
kept), the over-voltage protection, the power limit of the 210 V range, waiting for trigger events.
"""

from __future__ import annotations

import math

from scipy.optimize import brentq

from qbs_lab.sim.emulators.base import (
    CommandError,
    ScpiEmulator,
    Setting,
    command,
    function_commands,
    keyword,
    number,
    one_arg,
    short,
    to_bool,
    to_int,
)
from qbs_lab.sim.emulators.keithley2450 import pick_range

__all__ = ["SETTINGS", "Keithley2400Emulator"]

#: source and measure ranges (full scale, the 5 % over-range included, as the 2400 reports them)
RANGES = {
    "VOLT": (0.21, 2.1, 21.0, 210.0),
    "CURR": (1.05e-6, 10.5e-6, 105e-6, 1.05e-3, 10.5e-3, 105e-3, 1.05),
}
OHMS_RANGES = (21.0, 210.0, 2.1e3, 21e3, 210e3, 2.1e6, 21e6, 210e6)  # auto-ohms ranges
LEVEL_MAX = {"VOLT": 210.0, "CURR": 1.05}  # largest |source level| and |compliance|
#: *RST (tables 18-6, 18-7): source ranges, measure ranges, compliances
RANGE_DEFAULT = {"VOLT": 21.0, "CURR": 105e-6}
COMPLIANCE_DEFAULT = {"CURR": 105e-6, "VOLT": 21.0}  # current compliance, voltage compliance
OHMS_RANGE_DEFAULT = 210e3
#: auto source delay by current range (manual table 3-4), s
AUTO_DELAY = {1.05e-6: 3e-3, 10.5e-6: 2e-3}
AUTO_DELAY_OTHER = 1e-3
NAN = 9.91e37  # a data element that is neither measured nor sourced
OVERFLOW = 9.9e37  # a reading beyond a fixed range
MAX_SAMPLES = 2500  # arm count x trigger count
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

#: settings *RST leaves alone (the power-on values stay until changed)
POWER_ON_ONLY = ("line_frequency", "line_frequency_auto", "display")
_TRIG = ":TRIGger[:SEQuence#]"
_ARM = ":ARM[:SEQuence#][:LAYer#]"
_TRIGGER_EVENTS = ("SOURce", "DELay", "SENSe", "NONE")
_RANGE_ERROR = (-222, "Parameter data out of range")

#: plain settings: (name, SCPI path, type or choices, *RST value [manual table], limits)
SETTINGS: tuple[Setting, ...] = (
    # table 18-4 OUTPut; 18-5 ROUTe
    Setting("output_off_mode", ":OUTPut#:SMODe", ("HIMPedance", "NORMal", "ZERO", "GUARd"), "NORMal"),
    Setting("terminals", ":ROUTe:TERMinals", ("FRONt", "REAR"), "FRONt"),
    # table 18-6 SENSe
    Setting("filter", "[:SENSe#]:AVERage[:STATe]", bool, False),
    Setting("filter_type", "[:SENSe#]:AVERage:TCONtrol", ("REPeat", "MOVing"), "REPeat"),
    Setting("filter_count", "[:SENSe#]:AVERage:COUNt", int, 10, 1, 100),
    Setting("ohms_mode", "[:SENSe#]:RESistance:MODE", ("MANual", "AUTO"), "AUTO"),
    Setting("ohms_offset_compensated", "[:SENSe#]:RESistance:OCOMpensated", bool, False),
    Setting("ohms_autorange", "[:SENSe#]:RESistance:RANGe:AUTO", bool, True),
    # table 18-7 SOURce
    Setting("auto_output_off", ":SOURce#:CLEar:AUTO", bool, False),
    Setting("auto_output_off_mode", ":SOURce#:CLEar:AUTO:MODE", ("ALWays", "TCOunt"), "ALWays"),
    Setting("source_delay_auto", ":SOURce#:DELay:AUTO", bool, True),
    # table 18-9 SYSTem (line frequency and sensing are not changed by *RST: power-on values)
    Setting("line_frequency", ":SYSTem:LFRequency", int, 60, 50, 60, allowed=(50, 60)),
    Setting("line_frequency_auto", ":SYSTem:LFRequency:AUTO", bool, True),
    Setting("four_wire", ":SYSTem:RSENse", bool, False),
    Setting("beeper", ":SYSTem:BEEPer:STATe", bool, True),
    # table 18-2 DISPlay
    Setting("display", ":DISPlay:ENABle", bool, True),
    Setting("display_digits", ":DISPlay:DIGits", int, 6, 4, 7),
    # table 18-11 TRIGger: the arm and trigger layers
    Setting("arm_source", _ARM + ":SOURce",
            ("IMMediate", "TLINk", "TIMer", "MANual", "BUS", "NSTest", "PSTest", "BSTest"), "IMMediate"),
    Setting("arm_timer", _ARM + ":TIMer", float, 0.1, 0.001, 99999.99),
    Setting("arm_direction", _ARM + "[:TCONfigure]:DIRection", ("SOURce", "ACCeptor"), "ACCeptor"),
    Setting("arm_input_line", _ARM + "[:TCONfigure]:ILINe", int, 1, 1, 4),
    Setting("arm_output_line", _ARM + "[:TCONfigure]:OLINe", int, 2, 1, 4),
    Setting("arm_output", _ARM + "[:TCONfigure]:OUTPut", ("TENTer", "TEXit", "NONE"), ("NONE",), many=True),
    Setting("trigger_delay", _TRIG + ":DELay", float, 0.0, 0.0, 999.9999),
    Setting("trigger_source", _TRIG + ":SOURce", ("IMMediate", "TLINk"), "IMMediate"),
    Setting("trigger_direction", _TRIG + "[:TCONfigure]:DIRection", ("SOURce", "ACCeptor"), "ACCeptor"),
    Setting("trigger_input_line", _TRIG + "[:TCONfigure]:ILINe", int, 1, 1, 4),
    Setting("trigger_output_line", _TRIG + "[:TCONfigure]:OLINe", int, 2, 1, 4),
    Setting("trigger_input", _TRIG + "[:TCONfigure]:INPut", _TRIGGER_EVENTS, ("NONE",), many=True),
    Setting("trigger_output", _TRIG + "[:TCONfigure]:OUTPut", _TRIGGER_EVENTS, ("NONE",), many=True),
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
    ("[:SENSe#]:{f}[:DC]:NPLCycles", {**NODES, "RES": "RESistance"}, "_nplc", "sq"),
    (":MEASure:{f}", {**NODES, "RES": "RESistance"}, "_measure", "q"),
    (":CONFigure:{f}", {**NODES, "RES": "RESistance"}, "_configure", "s"),
)


class Keithley2400Emulator(ScpiEmulator):
    """Keithley 2400 SourceMeter in its SCPI command set, sourcing the back gate."""

    model = "Keithley 2400"
    idn = "KEITHLEY INSTRUMENTS INC.,MODEL 2400,QBSLAB-SIM,C32   Oct  4 2010 14:20:11/A02  /S/K"
    reply_termination = "\n"
    function_handlers = function_commands(FUNCTION_COMMANDS)
    settings = SETTINGS
    options = "0"  # *OPT?: no contact-check option installed

    # -- state ------------------------------------------------------------------------------------
    def reset(self) -> None:
        """*RST defaults (manual tables 18-1 to 18-11): source 0 V on the 21 V range (autorange),
        compliance 105 uA, measure current, output off; the line frequency is kept."""
        kept = {k: self.setting[k] for k in POWER_ON_ONLY} if hasattr(self, "setting") else {}
        super().reset()
        self.setting.update(kept)
        self.source_function = "VOLT"
        self.level = {"VOLT": 0.0, "CURR": 0.0}
        self.source_auto = {"VOLT": True, "CURR": True}
        self.source_range = dict(RANGE_DEFAULT)  # autorange moves it when a level is set
        self.compliance = dict(COMPLIANCE_DEFAULT)
        self.sense_auto = {"VOLT": True, "CURR": True}
        self.sense_fixed = dict(RANGE_DEFAULT)  # the range used when autorange is off
        self.sense_auto_range = dict(RANGE_DEFAULT)  # autorange's latest pick
        self.ohms_range = OHMS_RANGE_DEFAULT
        self.functions = {"CURR"}  # measure functions on
        self.concurrent = True
        self.nplc = 1.0  # global to all measure functions
        self.output = False
        self.source_delay = 0.0
        self.autozero = True
        self.trigger_count = 1
        self.arm_count = 1
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
        """The source range in use (autorange picks it when a level is set)."""
        return self.source_range[f]

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

    def format_number(self, value: float) -> str:
        return self._fmt(value)

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
        if self.source_auto[f]:
            self.source_range[f] = pick_range(RANGES[f], value)
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
        on = to_bool(one_arg(args))
        if on and not self.source_auto[f]:
            self.source_range[f] = pick_range(RANGES[f], self.level[f])
        self.source_auto[f] = on
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
        value = number(one_arg(args), -ranges[-1], ranges[-1], RANGE_DEFAULT[f])
        if f == self.source_function:
            raise CommandError(823, "Invalid with source read-back on")  # the source range sets it
        new = pick_range(ranges, value)
        if new > pick_range(ranges, self.compliance[f]):
            raise CommandError(824, "Cannot exceed compliance range")
        self.sense_fixed[f], self.sense_auto[f] = new, False
        self._push()
        return None

    def _sense_autorange(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str | None:
        if query:
            return "1" if self.sense_auto[f] else "0"
        on = to_bool(one_arg(args))  # for the sourced function it takes effect once it is measured only
        if not on and self.sense_auto[f]:
            self.sense_fixed[f] = self.sense_auto_range[f]  # stays on autorange's pick
        self.sense_auto[f] = on
        self._push()
        return None

    def _nplc(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str | None:
        """The integration time, global to all functions (0.01 to 10 line cycles, *RST 1)."""
        if query:
            return self._fmt(number(args[0], 0.01, 10.0, 1.0) if args else self.nplc)
        self.nplc = number(one_arg(args), 0.01, 10.0, 1.0)
        return None

    @command("[:SENSe#]:FUNCtion:ALL")
    def _function_all(self, args: list[str], n: tuple[int, ...]) -> None:
        """Every measure function on (concurrent measurements)."""
        self.concurrent = True
        self.functions = set(SENSE_REPLY)

    @command("[:SENSe#]:RESistance:RANGe[:UPPer]")
    def _ohms_range(self, args: list[str], n: tuple[int, ...]) -> None:
        """The auto-ohms range for the expected resistance (0 to 2.1e8); autorange off."""
        value = number(one_arg(args), 0.0, OHMS_RANGES[-1], OHMS_RANGE_DEFAULT)
        self.ohms_range = pick_range(OHMS_RANGES, value)
        self.setting["ohms_autorange"] = False

    @command("[:SENSe#]:RESistance:RANGe[:UPPer]?")
    def _ohms_range_q(self, args: list[str], n: tuple[int, ...]) -> str:
        if args:
            return self._fmt(number(one_arg(args), 0.0, OHMS_RANGES[-1], OHMS_RANGE_DEFAULT))
        return self._fmt(self.ohms_range)

    # -- source delay -----------------------------------------------------------------------------
    def _auto_delay(self) -> float:
        """The auto source delay for the present current range (manual table 3-4)."""
        return AUTO_DELAY.get(self._sense_range_now("CURR"), AUTO_DELAY_OTHER)

    @command(":SOURce#:DELay")
    def _delay(self, args: list[str], n: tuple[int, ...]) -> None:
        """A manual source delay (0 to 999.9999 s) turns auto delay off."""
        self.source_delay = number(one_arg(args), 0.0, 999.9999, 0.0)
        self.setting["source_delay_auto"] = False

    @command(":SOURce#:DELay?")
    def _delay_q(self, args: list[str], n: tuple[int, ...]) -> str:
        """With auto delay on, the delay in use: what a 2400 answers after *RST is 1 ms, not 0."""
        if args:
            return self._fmt(number(one_arg(args), 0.0, 999.9999, 0.0))
        return self._fmt(self._auto_delay() if self.setting["source_delay_auto"] else self.source_delay)

    # -- trigger model ----------------------------------------------------------------------------
    def _count(self, args: list[str], other: int) -> int:
        """An arm or trigger count: 1 to 2500 (INFinite for the arm layer is not emulated); the
        product of the two counts may not exceed 2500."""
        arg = one_arg(args)
        count = MAX_SAMPLES if arg.strip().upper() in ("MAX", "MAXIMUM") else to_int(arg)
        if arg.strip().upper() in ("MIN", "MINIMUM", "DEF", "DEFAULT"):
            count = 1
        if not 1 <= count <= MAX_SAMPLES or count * other > MAX_SAMPLES:
            raise CommandError(-222, "Parameter data out of range")
        return count

    @command(":ARM[:SEQuence#][:LAYer#]:COUNt")
    def _arm_count(self, args: list[str], n: tuple[int, ...]) -> None:
        self.arm_count = self._count(args, self.trigger_count)

    @command(":ARM[:SEQuence#][:LAYer#]:COUNt?")
    def _arm_count_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(self.arm_count)

    @command(":ABORt")
    @command(":TRIGger[:SEQuence#]:CLEar")
    def _abort(self, args: list[str], n: tuple[int, ...]) -> None:
        """Back to idle / clear latched input triggers: the emulator is always idle between commands."""

    # -- system -----------------------------------------------------------------------------------
    @command(":SYSTem:AZERo[:STATe]")
    def _autozero(self, args: list[str], n: tuple[int, ...]) -> None:
        """ON, OFF, or ONCE (one zero now, the state unchanged)."""
        arg = one_arg(args)
        if arg.strip().upper() != "ONCE":
            self.autozero = to_bool(arg)

    @command(":SYSTem:AZERo[:STATe]?")
    def _autozero_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return "1" if self.autozero else "0"

    @command(":SYSTem:PRESet")
    def _preset(self, args: list[str], n: tuple[int, ...]) -> None:
        self.reset()

    @command(":SYSTem:BEEPer[:IMMediate]")
    def _beep(self, args: list[str], n: tuple[int, ...]) -> None:
        """A beep: frequency 65 Hz to 2 MHz, duration 0 to 7.9 s."""
        if len(args) != 2:
            raise CommandError(-109 if len(args) < 2 else -108, "Missing parameter")
        number(args[0], 65.0, 2e6, 65.0)
        number(args[1], 0.0, 7.9, 0.0)

    @command(":SYSTem:TIME?")
    def _time_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return self._fmt((self.lab.clock.now() - self.time_zero) % TIMER_WRAP)

    # -- readings ---------------------------------------------------------------------------------
    @command(":TRIGger[:SEQuence#]:COUNt")
    def _trigger_count(self, args: list[str], n: tuple[int, ...]) -> None:
        self.trigger_count = self._count(args, self.arm_count)

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
        """Arm count x trigger count source-measure cycles. With auto output-off the output turns on
        for them and off after; without, it must be on already."""
        auto_off = self.setting["auto_output_off"]
        if not self.output and not auto_off:
            raise CommandError(803, "Not permitted with OUTPUT off")
        self.output = True
        try:
            self.latest = [self._reading() for _ in range(self.arm_count * self.trigger_count)]
        finally:
            if auto_off:
                self.output = False
                self._push()

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

    def _configure(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> None:
        """:CONFigure:<function>: that function alone, measured (concurrent measurements off)."""
        self.concurrent = False
        self.functions = {f}
        if f != self.source_function:
            self.sense_auto[f] = True
        if f == "RES":
            self.setting["ohms_offset_compensated"] = False

    @command(":CONFigure?")
    def _configure_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return ",".join(SENSE_REPLY[f] for f in SENSE_REPLY if f in self.functions) or '""'

    def _measure(self, f: str, args: list[str], n: tuple[int, ...], query: bool) -> str:
        """:MEASure:<function>? = :CONFigure:<function>, output on (it stays on), :READ?."""
        self._configure(f, args, n, False)
        self.output = True
        self._push()
        return self._read(args, n)

    @command(":MEASure?")
    def _measure_q(self, args: list[str], n: tuple[int, ...]) -> str:
        self.output = True
        self._push()
        return self._read(args, n)

    @command(":FETCh?")
    def _fetch(self, args: list[str], n: tuple[int, ...]) -> str:
        if not self.latest:
            raise CommandError(-230, "Data corrupt or stale")
        return self._format_readings()
