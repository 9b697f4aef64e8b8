"""Rohde & Schwarz SGS100A SGMA RF source.

SCPI (R&S SGS100A user manual, chapter "Remote Control Commands"), replies end with LF, errors go to
the SCPI error queue (``SYSTem:ERRor?``). Commands:

- ``[:SOURce]:FREQuency[:CW|:FIXed]`` 1 MHz .. 12.75 GHz (the SGS-B112 frequency option), ``Hz``/
  ``kHz``/``MHz``/``GHz`` suffixes, ``MIN``/``MAX``; ``[:SOURce]:POWer[:LEVel][:IMMediate]
  [:AMPLitude]`` -120 .. +25 dBm; ``[:SOURce]:PHASe`` -720 .. 720 deg; ``OUTPut[:STATe]``
- I/Q: ``[:SOURce]:IQ:STATe``, ``[:SOURce]:IQ:IMPairment[:STATe]``, ``...:LEAKage:I|Q`` (%),
  ``...:IQRatio[:MAGNitude]`` (dB), ``...:QUADrature[:ANGLe]`` (deg)
- pulse modulation ``[:SOURce]:PULM:...``: ``STATe``, ``SOURce``, ``MODE``, ``PERiod``, ``WIDTh``,
  ``DELay``, ``DOUBle:DELay|WIDTh``, ``POLarity``, ``TRIGger:MODE``, ``TRIGger:EXTernal:SLOPe|
  IMPedance|GATE:POLarity``
- reference and LO: ``[:SOURce]:ROSCillator:SOURce``, ``...:OUTPut:FREQuency``,
  ``...:EXTernal:FREQuency``, ``[:SOURce]:LOSCillator:SOURce``, ``CONNector:REFLo:OUTPut``,
  ``CONNector:TRIGger:OMODe``, ``[:SOURce]:OPMode``

A value out of range raises -222 "Data out of range" and is not applied; an unknown choice -224; a
number with a wrong unit -131. Queries of choices answer the short form (``INT``, ``NORM``, ...).
Physics: frequency, level and RF output state are ``lab.rf.frequency`` [Hz], ``lab.rf.power`` [dBm]
and ``lab.rf.output_on``; everything else is front-panel state.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from qbs_lab.sim.emulators.base import CommandError, ScpiEmulator, command, to_bool

__all__ = ["SGS100AEmulator"]

FREQ_RANGE = (1e6, 12.75e9)  # Hz
POWER_RANGE = (-120.0, 25.0)  # dBm
PHASE_RANGE = (-720.0, 720.0)  # deg

#: unit suffixes each kind of number accepts (upper case) -> multiplier
FREQ_UNITS = {"": 1.0, "HZ": 1.0, "KHZ": 1e3, "MHZ": 1e6, "MAHZ": 1e6, "GHZ": 1e9}
TIME_UNITS = {"": 1.0, "S": 1.0, "MS": 1e-3, "US": 1e-6, "NS": 1e-9}
POWER_UNITS = {"": 1.0, "DBM": 1.0}
DEG_UNITS = {"": 1.0, "DEG": 1.0}
DB_UNITS = {"": 1.0, "DB": 1.0}
PCT_UNITS = {"": 1.0, "PCT": 1.0}

_NUMBER = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)\Z")

#: choice parameters: (short form, long form) of each value, as the manual spells them
SOURCES = (("INT", "INTERNAL"), ("EXT", "EXTERNAL"))
POLARITIES = (("NORM", "NORMAL"), ("INV", "INVERTED"))
PULSE_MODES = (("SING", "SINGLE"), ("DOUB", "DOUBLE"))
SLOPES = (("NEG", "NEGATIVE"), ("POS", "POSITIVE"))
TRIGGER_MODES = (("AUTO", "AUTO"), ("EXT", "EXTERNAL"), ("EGAT", "EGATE"))
IMPEDANCES = (("G50", "G50"), ("G10K", "G10K"))
REF_FREQUENCIES = (("10MHZ", "10MHZ"), ("100MHZ", "100MHZ"), ("1000MHZ", "1000MHZ"))
REFLO_OUTPUTS = (("REF", "REF"), ("LO", "LO"), ("OFF", "OFF"))
TRIGGER_OUTPUTS = (
    ("SVAL", "SVALID"),
    ("SNVA", "SNVALID"),
    ("PVO", "PVOUT"),
    ("PET", "PETRIGGER"),
    ("PEMS", "PEMSOURCE"),
)
OP_MODES = (("NORM", "NORMAL"), ("BBBY", "BBBYPASS"))


def _one(args: list[str]) -> str:
    if not args:
        raise CommandError(-109, "Missing parameter")
    if len(args) > 1:
        raise CommandError(-108, "Parameter not allowed")
    return args[0]


def _number(arg: str, units: dict[str, float], lo: float, hi: float) -> float:
    """A numeric parameter with an optional unit suffix, or MINimum/MAXimum; range-checked."""
    word = arg.strip().upper()
    if word in ("MIN", "MINIMUM"):
        return lo
    if word in ("MAX", "MAXIMUM"):
        return hi
    m = _NUMBER.match(arg.strip())
    if m is None:
        raise CommandError(-104, "Data type error")
    unit = m.group(2).upper()
    if unit not in units:
        raise CommandError(-131, "Invalid suffix")
    value = float(m.group(1)) * units[unit]
    if not (math.isfinite(value) and lo <= value <= hi):
        raise CommandError(-222, "Data out of range")
    return value


def _choice(arg: str, choices: tuple[tuple[str, str], ...]) -> str:
    """A character parameter: a choice's short form, long form, or an abbreviation in between."""
    word = arg.strip().upper()
    for short, long_ in choices:
        if word.startswith(short) and long_.startswith(word):
            return short
    raise CommandError(-224, "Illegal parameter value")


def _fmt(value: float) -> str:
    """R&S number format: no trailing zeros (``1000000000``, ``-30``, ``2e-06``)."""
    return f"{value:.12g}"


def _setting(
    pattern: str, attr: str, parse: Callable[[str], object], fmt: Callable[[object], str] = str
) -> tuple[Callable[..., None], Callable[..., str]]:
    """Set and query handlers of one front-panel setting stored in ``self.<attr>``."""

    @command(pattern)
    def setter(self: SGS100AEmulator, args: list[str], n: tuple[int, ...]) -> None:
        setattr(self, attr, parse(_one(args)))

    @command(pattern + "?")
    def getter(self: SGS100AEmulator, args: list[str], n: tuple[int, ...]) -> str:
        if args:
            raise CommandError(-108, "Parameter not allowed")
        return fmt(getattr(self, attr))

    return setter, getter


def _flag(value: object) -> str:
    return "1" if value else "0"


def _num(units: dict[str, float], lo: float, hi: float) -> Callable[[str], float]:
    return lambda arg: _number(arg, units, lo, hi)


def _pick(choices: tuple[tuple[str, str], ...]) -> Callable[[str], str]:
    return lambda arg: _choice(arg, choices)


class SGS100AEmulator(ScpiEmulator):
    """R&S SGS100A on the simulated RF line (see the module docstring)."""

    model = "R&S SGS100A"
    idn = "Rohde&Schwarz,SGS100A,1416.0505k02/114000,4.2.76.0-4.30.046.295"
    options = "SGS-B106V"  # *OPT?: the installed options (here: 6 GHz, I/Q modulation)
    reply_termination = "\n"

    def reset(self) -> None:
        """Front-panel *RST values (frequency, level and RF state are applied by ``*RST``)."""
        super().reset()
        self.phase = 0.0
        self.iq_state = False
        self.iq_impairments = False
        self.leak_i = self.leak_q = self.iq_ratio = self.quad_angle = 0.0
        self.pulm_state = False
        self.pulm_source = "INT"
        self.pulm_mode = "SING"
        self.pulm_period = 10e-6
        self.pulm_width = 2e-6
        self.pulm_delay = 0.0
        self.pulm_double_delay = 3e-6
        self.pulm_double_width = 2e-6
        self.pulm_polarity = "NORM"
        self.pulm_trig_mode = "AUTO"
        self.pulm_slope = "POS"
        self.pulm_impedance = "G50"
        self.pulm_gate_polarity = "NORM"
        self.rosc_source = "INT"
        self.rosc_out_freq = "10MHZ"
        self.rosc_ext_freq = "10MHZ"
        self.losc_source = "INT"
        self.reflo_output = "REF"
        self.trigger_output = "SVAL"
        self.op_mode = "NORM"

    @command("*RST")
    def _rst(self, args: list[str], n: tuple[int, ...]) -> None:
        self.reset()
        self.lab.rf.frequency, self.lab.rf.power, self.lab.rf.output_on = 1e9, -30.0, False

    # -- RF: frequency, level, output (lab.rf) -----------------------------------------------------
    @staticmethod
    def _limits_query(args: list[str], lo: float, hi: float) -> str | None:
        """``FREQ? MIN``-style queries of a numeric setting's limits (None for a plain query)."""
        if not args:
            return None
        word = _one(args).strip().upper()
        if word in ("MIN", "MINIMUM"):
            return _fmt(lo)
        if word in ("MAX", "MAXIMUM"):
            return _fmt(hi)
        raise CommandError(-224, "Illegal parameter value")

    @command("[:SOURce]:FREQuency[:CW]")
    @command("[:SOURce]:FREQuency:FIXed")
    def _freq(self, args: list[str], n: tuple[int, ...]) -> None:
        self.lab.rf.frequency = round(_number(_one(args), FREQ_UNITS, *FREQ_RANGE), 3)

    @command("[:SOURce]:FREQuency[:CW]?")
    @command("[:SOURce]:FREQuency:FIXed?")
    def _freq_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return self._limits_query(args, *FREQ_RANGE) or _fmt(self.lab.rf.frequency)

    @command("[:SOURce]:POWer[:LEVel][:IMMediate][:AMPLitude]")
    def _power(self, args: list[str], n: tuple[int, ...]) -> None:
        self.lab.rf.power = round(_number(_one(args), POWER_UNITS, *POWER_RANGE), 2)

    @command("[:SOURce]:POWer[:LEVel][:IMMediate][:AMPLitude]?")
    def _power_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return self._limits_query(args, *POWER_RANGE) or _fmt(self.lab.rf.power)

    @command("[:SOURce]:PHASe")
    def _phase(self, args: list[str], n: tuple[int, ...]) -> None:
        self.phase = round(_number(_one(args), DEG_UNITS, *PHASE_RANGE), 2)

    @command("[:SOURce]:PHASe?")
    def _phase_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return self._limits_query(args, *PHASE_RANGE) or _fmt(self.phase)

    @command("OUTPut[:STATe]")
    @command("OUTPut:MASTer[:STATe]")
    def _output(self, args: list[str], n: tuple[int, ...]) -> None:
        self.lab.rf.output_on = to_bool(_one(args))

    @command("OUTPut[:STATe]?")
    @command("OUTPut:MASTer[:STATe]?")
    def _output_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return _flag(self.lab.rf.output_on)

    # -- I/Q modulation ----------------------------------------------------------------------------
    _iq, _iq_q = _setting("[:SOURce]:IQ:STATe", "iq_state", to_bool, _flag)
    _imp, _imp_q = _setting("[:SOURce]:IQ:IMPairment[:STATe]", "iq_impairments", to_bool, _flag)
    _leak_i, _leak_i_q = _setting(
        "[:SOURce]:IQ:IMPairment:LEAKage:I", "leak_i", _num(PCT_UNITS, -10, 10), _fmt
    )
    _leak_q, _leak_q_q = _setting(
        "[:SOURce]:IQ:IMPairment:LEAKage:Q", "leak_q", _num(PCT_UNITS, -10, 10), _fmt
    )
    _iqr, _iqr_q = _setting(
        "[:SOURce]:IQ:IMPairment:IQRatio[:MAGNitude]", "iq_ratio", _num(DB_UNITS, -1, 1), _fmt
    )
    _quad, _quad_q = _setting(
        "[:SOURce]:IQ:IMPairment:QUADrature[:ANGLe]", "quad_angle", _num(DEG_UNITS, -8, 8), _fmt
    )

    # -- pulse modulation --------------------------------------------------------------------------
    _pulm, _pulm_q = _setting("[:SOURce]:PULM:STATe", "pulm_state", to_bool, _flag)
    _pulm_src, _pulm_src_q = _setting("[:SOURce]:PULM:SOURce", "pulm_source", _pick(SOURCES))
    _pulm_mode, _pulm_mode_q = _setting("[:SOURce]:PULM:MODE", "pulm_mode", _pick(PULSE_MODES))
    _pulm_per, _pulm_per_q = _setting(
        "[:SOURce]:PULM:PERiod", "pulm_period", _num(TIME_UNITS, 100e-9, 100), _fmt
    )
    _pulm_wid, _pulm_wid_q = _setting(
        "[:SOURce]:PULM:WIDTh", "pulm_width", _num(TIME_UNITS, 20e-9, 100), _fmt
    )
    _pulm_del, _pulm_del_q = _setting("[:SOURce]:PULM:DELay", "pulm_delay", _num(TIME_UNITS, 0, 100), _fmt)
    _pulm_ddel, _pulm_ddel_q = _setting(
        "[:SOURce]:PULM:DOUBle:DELay", "pulm_double_delay", _num(TIME_UNITS, 40e-9, 100), _fmt
    )
    _pulm_dwid, _pulm_dwid_q = _setting(
        "[:SOURce]:PULM:DOUBle:WIDTh", "pulm_double_width", _num(TIME_UNITS, 20e-9, 100), _fmt
    )
    _pulm_pol, _pulm_pol_q = _setting("[:SOURce]:PULM:POLarity", "pulm_polarity", _pick(POLARITIES))
    _pulm_trig, _pulm_trig_q = _setting("[:SOURce]:PULM:TRIGger:MODE", "pulm_trig_mode", _pick(TRIGGER_MODES))
    _pulm_slope, _pulm_slope_q = _setting(
        "[:SOURce]:PULM:TRIGger:EXTernal:SLOPe", "pulm_slope", _pick(SLOPES)
    )
    _pulm_imp, _pulm_imp_q = _setting(
        "[:SOURce]:PULM:TRIGger:EXTernal:IMPedance", "pulm_impedance", _pick(IMPEDANCES)
    )
    _pulm_gate, _pulm_gate_q = _setting(
        "[:SOURce]:PULM:TRIGger:EXTernal:GATE:POLarity", "pulm_gate_polarity", _pick(POLARITIES)
    )

    # -- reference oscillator, LO, connectors, operating mode --------------------------------------
    _rosc, _rosc_q = _setting("[:SOURce]:ROSCillator:SOURce", "rosc_source", _pick(SOURCES))
    _rosc_out, _rosc_out_q = _setting(
        "[:SOURce]:ROSCillator:OUTPut:FREQuency", "rosc_out_freq", _pick(REF_FREQUENCIES)
    )
    _rosc_ext, _rosc_ext_q = _setting(
        "[:SOURce]:ROSCillator:EXTernal:FREQuency", "rosc_ext_freq", _pick(REF_FREQUENCIES)
    )
    _losc, _losc_q = _setting("[:SOURce]:LOSCillator:SOURce", "losc_source", _pick(SOURCES))
    _reflo, _reflo_q = _setting("CONNector:REFLo:OUTPut", "reflo_output", _pick(REFLO_OUTPUTS))
    _omod, _omod_q = _setting("CONNector:TRIGger:OMODe", "trigger_output", _pick(TRIGGER_OUTPUTS))
    _opmode, _opmode_q = _setting("[:SOURce]:OPMode", "op_mode", _pick(OP_MODES))
