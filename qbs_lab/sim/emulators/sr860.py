"""Stanford Research Systems SR860 500 kHz DSP lock-in amplifier.

The SR860 speaks SRS's mnemonic language with the SR86x syntax (manual, chapter 4 "Programming"): a
mnemonic, then at least one space, then comma-separated arguments (``SCAL 9``, ``OUTP? 0``); a query
appends ``?`` to the mnemonic with no space. Mnemonics and tokens are case-insensitive; enumerated
arguments may be sent as an integer or a token (``OUTP? X``, ``CAPTURECFG XY``; short or long form,
e.g. ``THeta``). Commands chain with ``;`` and the replies of chained queries come back in one line,
separated by ``;``; every reply ends with a line feed. There is no error queue: an unknown command
sets the CMD bit (5) of the Standard Event Status Byte, a bad or out-of-range parameter the EXE bit (4);
``*ESR?`` reads and clears them.

Commands (manual names):

- reference: ``FREQ`` (1 mHz..500 kHz, 6 digits or 0.1 mHz), ``FREQINT?``, ``FREQEXT?``,
  ``FREQDET?``, ``PHAS`` (deg, shown within +-180), ``HARM`` (1..99, harmonic x f <= 500 kHz),
  ``SLVL`` (sine out, 0..2 V rms, 1 nV steps), ``SOFF`` (DC level, +-5 V), ``RSRC`` (INT, EXT, DUAL,
  CHOP), ``RTRG``, ``REFZ``
- signal and filter: ``IVMD`` (voltage/current), ``ISRC`` (A, A-B), ``ICPL``, ``IGND``, ``IRNG``
  (1 V..10 mV), ``ICUR`` (1 MOhm, 100 MOhm), ``SCAL`` (0..27 = 1 V..1 nV, or 1 uA..1 fA), ``ILVL?``,
  ``OFLT`` (0..21 = 1 us..30 ks), ``OFSL`` (0..3 = 6..24 dB/oct), ``SYNC``, ``ADVFILT``, ``ENBW?``
- auto: ``ARNG``, ``ASCL``, ``APHS``
- outputs: ``OUTP?`` (0..3 = X, Y, R, theta), ``COFP`` (offset, % of full scale), ``CEXP``, ``OAUX?``,
  ``AUXV``, ``CDSP``, ``SNAP?`` (2 or 3 of the 17 parameters, one instant), ``SNAPD?``
- capture buffer: ``CAPTURELEN`` (kB, even, 1..4096), ``CAPTURECFG`` (X, XY, RT, XYRT),
  ``CAPTURERATEMAX?``, ``CAPTURERATE`` (max/2**n, n = 0..20; the query answers Hz), ``CAPTURESTART``
  (ONE|CONT, IMM|TRIG|SAMP), ``CAPTURESTOP``, ``CAPTURESTAT?``, ``CAPTUREBYTES?``, ``CAPTUREPROG?``,
  ``CAPTUREGET?`` (offset and length in kB, at most 64: an IEEE-488.2 definite-length block of
  little-endian float32, sent without a terminator)
- status: ``*IDN?``, ``*RST``, ``*CLS``, ``*ESE``, ``*ESR?``, ``*SRE``, ``*STB?``, ``*PSC``,
  ``*OPC``, ``*OPC?``, ``*WAI``, ``ERRE``, ``ERRS?``, ``LIAE``, ``LIAS?`` (a bit number as argument
  reads, and clears, that bit); ``OVRM``

Physics: X and Y come from ``lab.lockin.read_xy`` (one call per instant, so ``SNAP?`` is coherent);
sine out, frequency, phase, harmonic, sensitivity, time constant, slope, sync filter and aux outputs are
``lab.lockin``'s, converted between index and SI value. The LIA status bits latch each time the
instrument is addressed: 0 input overload (the input, peak, above the input range ``IRNG``, or
``lab.lockin.force_overload``: the SR860 has no dynamic reserve), 2 output overload (``|X|`` or ``|Y|``
above full scale, ``lab.lockin.output_overload()`` on the voltage input), 3 reference unlock (an
external reference source is selected and nothing drives Ref In). Offsets apply to ``OUTP?``, ``SNAP?``
and the capture buffer.

Simplifications: the current input reads the input voltage divided by the transimpedance gain
(``ICUR``); bits 1 and 4-7 of the LIA status are never set; the capture's trigger inputs are not wired
(``CAPTURESTART ...,TRIG``/``SAMP`` arm and wait); ``CAPTURERATEMAX?`` is modelled as 1.25 MHz / 2**n,
the fastest rate not above 16 / time constant; captured points are sampled with independent noise
when the lab clock jumps; ``ILVL?`` thresholds (1 %, 10 %, 50 % of the input range) are the emulator's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from qbs_lab.filters import ENBW_FACTOR, stages
from qbs_lab.sim.emulators.base import CommandError, Emulator, command, float_arg, int_arg
from qbs_lab.sim.scpi import split_header

__all__ = ["PARAMETERS", "SENSITIVITIES", "TIME_CONSTANTS", "SR860Emulator"]

#: SCAL index -> full scale [V rms] (current input: the same numbers times 1e-6, in A)
SENSITIVITIES: tuple[float, ...] = (
    1.0, 500e-3, 200e-3, 100e-3, 50e-3, 20e-3, 10e-3, 5e-3, 2e-3, 1e-3,
    500e-6, 200e-6, 100e-6, 50e-6, 20e-6, 10e-6, 5e-6, 2e-6, 1e-6,
    500e-9, 200e-9, 100e-9, 50e-9, 20e-9, 10e-9, 5e-9, 2e-9, 1e-9,
)  # fmt: skip
#: OFLT index -> time constant [s]
TIME_CONSTANTS: tuple[float, ...] = (
    1e-6, 3e-6, 10e-6, 30e-6, 100e-6, 300e-6, 1e-3, 3e-3, 10e-3, 30e-3, 100e-3, 300e-3,
    1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1e3, 3e3, 10e3, 30e3,
)  # fmt: skip
SLOPES = (6, 12, 18, 24)  # OFSL index -> dB/oct
INPUT_RANGES = (1.0, 0.3, 0.1, 0.03, 0.01)  # IRNG index -> V (peak)
CURRENT_GAINS = (1e6, 1e8)  # ICUR index -> V/A
F_MAX = 500e3  # Hz, highest detection frequency
#: OUTP?/SNAP?/CDSP parameter tokens by index (manual notation: upper case is the short form)
PARAMETERS = ("X", "Y", "R", "THeta", "IN1", "IN2", "IN3", "IN4", "XNOise", "YNOise", "OUT1", "OUT2",
              "PHAse", "SAMp", "LEVel", "FInt", "FExt")  # fmt: skip
CAPTURE_CONFIGS = ("X", "XY", "RT", "XYRT")  # CAPTURECFG index -> captured parameters
CAPTURE_VARS = ((0,), (0, 1), (2, 3), (0, 1, 2, 3))  # ... as PARAMETERS indices
CAPTURE_MAX_RATE = 1.25e6  # Hz
# LIA status bits
INPUT_OVERLOAD, OUTPUT_OVERLOAD, UNLOCK = 1, 4, 8
CMD_ERROR, EXE_ERROR = 1 << 5, 1 << 4  # Standard Event Status Byte bits
# CAPTURESTAT? bits
CAP_ARMED, CAP_ACQUIRING, CAP_DONE, CAP_WRAPPED = 1, 2, 4, 8

Handler = Callable[[Any, list[str], tuple[int, ...]], "str | None"]


def _num(value: float) -> str:
    """An SR860 reading: up to 11 significant digits (``2.3346669042e-09``, ``19.749698639``)."""
    return f"{value:.11g}"


def _nearest(table: tuple[float, ...], value: float) -> int:
    """Index of the table entry closest to ``value`` on a log scale."""
    return min(range(len(table)), key=lambda i: abs(math.log(table[i] / max(value, 1e-30))))


def _token_matches(arg: str, token: str) -> bool:
    """``arg`` is the token (long or short form, any case), or one of its ``|``-separated spellings."""
    for spelling in token.split("|"):
        short = "".join(c for c in spelling if c.isupper() or c.isdigit() or c == "-")
        if arg.upper() in (spelling.upper(), short):
            return True
    return False


def choice_arg(args: list[str], i: int, tokens: tuple[str, ...]) -> int:
    """Argument ``i`` as an index into ``tokens``, given as an integer or as a token (any case)."""
    if len(args) <= i or not args[i]:
        raise CommandError(-109, "Missing parameter")
    for k, token in enumerate(tokens):
        if _token_matches(args[i], token):
            return k
    return int_arg(args, i, 0, len(tokens) - 1)


def _setting(attr: str, name: str, tokens: tuple[str, ...]) -> tuple[Handler, Handler]:
    """Set and query handlers of a front-panel setting ``name i|token`` kept in ``attr``."""

    @command(name)
    def set_(self: SR860Emulator, args: list[str], n: tuple[int, ...]) -> None:
        setattr(self, attr, choice_arg(args, 0, tokens))

    @command(name + "?")
    def query(self: SR860Emulator, args: list[str], n: tuple[int, ...]) -> str:
        return str(getattr(self, attr))

    return set_, query


class SR860Emulator(Emulator):
    """The SR860 lock-in on the simulated lab's ``lab.lockin`` (see the module docstring)."""

    model: ClassVar[str] = "SR860"
    idn: ClassVar[str] = "Stanford_Research_Systems,SR860,003217,v1.51"
    reply_termination: ClassVar[str] = "\n"
    lan_protocol: ClassVar[str] = "socket"  # its QCoDeS driver sets "\n" as the read termination

    # -- state -----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Power on: front-panel defaults, cleared status (the physical settings stay the lab's)."""
        super().reset()
        self.ese = self.sre = self.erre = self.liae = 0
        self.psc = 1
        self.lias = self.errs = 0
        self.ovrm = 1
        self._defaults()

    def _defaults(self) -> None:
        """The ``*RST`` front panel."""
        self.soff = 0.0
        self.rsrc = self.rtrg = self.refz = 0
        self.ivmd = self.isrc = self.icpl = self.ignd = self.irng = self.icur = 0
        self.advfilt = 1
        self.cofp = {0: 0.0, 1: 0.0, 2: 0.0}  # %
        self.cexp = {0: 0, 1: 0, 2: 0}
        self.cdsp = {0: 0, 1: 1, 2: 2, 3: 3}  # data channels show X, Y, R, theta
        self.capture_len = 256  # kB
        self.capture_cfg = 1  # X,Y
        self.capture_n = 0  # rate = max / 2**n
        self._reset_capture()

    def _physical_defaults(self) -> None:
        li = self.lab.lockin
        li.amplitude, li.frequency, li.phase, li.harmonic = 0.0, 1000.0, 0.0, 1
        li.sensitivity, li.time_constant, li.slope, li.sync_filter = 1.0, 0.1, 12, False
        li.aux_out[:] = [0.0, 0.0, 0.0, 0.0]

    def _reset_capture(self) -> None:
        self.capture_state = "idle"  # idle, armed (waiting for a trigger), acquiring, done
        self.capture_mode = 0  # 0 one shot, 1 continuous
        self.capture_data = np.zeros(self.capture_len * 256, dtype="<f4")
        self.capture_samples = 0  # samples taken since the start
        self._next_sample = 0.0

    # -- message handling ------------------------------------------------------------------------
    def _run(self, part: str, previous_path: str) -> tuple[str | None, str | None, str]:
        self._latch_status()
        self._advance_capture()
        header, argtext = split_header(part)
        return super()._run(f"{header} {argtext}".strip(), "")

    def report_error(self, code: int, text: str) -> None:
        """No error queue: an illegal command sets CMD (bit 5), anything else EXE (bit 4) in ESR."""
        self.errors.append((code, text))  # kept for diagnostics only; the SR860 cannot report it
        self.esr |= CMD_ERROR if -199 <= code <= -100 else EXE_ERROR

    def query_interrupted(self) -> None:
        self.esr |= 1 << 2  # QRY: output queue overflow / interrupted query

    # -- readings --------------------------------------------------------------------------------
    def _scale(self) -> float:
        """Reading units per volt at the input: 1 (voltage input) or 1/gain (current input)."""
        return 1.0 if self.ivmd == 0 else 1.0 / CURRENT_GAINS[self.icur]

    def _sens_index(self) -> int:
        return _nearest(SENSITIVITIES, self.lab.lockin.sensitivity)

    def _full_scale(self) -> float:
        """Full scale in the reading's units (V, or A on the current input)."""
        return SENSITIVITIES[self._sens_index()] * (1.0 if self.ivmd == 0 else 1e-6)

    def _aux_in(self, i: int) -> float:
        """Aux input ``i`` (0..3) [V], 0.1 mV resolution."""
        return round(self.lab.lockin.aux_in(i), 4)

    def _offsets(self) -> tuple[float, float, float]:
        fs = self._full_scale()
        return self.cofp[0] / 100.0 * fs, self.cofp[1] / 100.0 * fs, self.cofp[2] / 100.0 * fs

    def _instant(self) -> list[float]:
        """The 17 SNAP? parameters at one instant (indices as :data:`PARAMETERS`)."""
        li = self.lab.lockin
        x, y = (v * self._scale() for v in li.read_xy(self.rng))  # one call: X and Y at one instant
        ox, oy, orr = self._offsets()
        noise = li.noise_rms() * self._scale()
        return [
            x - ox,
            y - oy,
            math.hypot(x, y) - orr,
            math.degrees(math.atan2(y, x)),
            *(self._aux_in(i) for i in range(4)),
            noise,
            noise,
            li.aux_out[0],
            li.aux_out[1],
            li.phase,
            li.amplitude,
            self.soff,
            li.frequency,
            0.0,  # FExt: nothing drives Ref In
        ]

    # -- status ----------------------------------------------------------------------------------
    def _input_overload(self) -> bool:
        li = self.lab.lockin
        limit = INPUT_RANGES[self.irng] if self.ivmd == 0 else 1.0  # current input: 1 uA / 10 nA
        return li.force_overload or abs(li.input) * math.sqrt(2.0) > limit

    def _output_overload(self) -> bool:
        li = self.lab.lockin
        if self.ivmd == 0:
            return li.output_overload()
        z = li.output() * self._scale()
        return max(abs(z.real), abs(z.imag)) > self._full_scale()

    def _latch_status(self) -> None:
        if self._input_overload():
            self.lias |= INPUT_OVERLOAD
        if self._output_overload():
            self.lias |= OUTPUT_OVERLOAD
        if self.rsrc != 0:  # EXT, DUAL and CHOP need a signal at Ref In
            self.lias |= UNLOCK

    def _read_register(self, attr: str, args: list[str], bits: int) -> str:
        """Read (and clear) a status register, or only bit ``args[0]`` of it."""
        value = getattr(self, attr)
        if args:
            bit = int_arg(args, 0, 0, bits - 1)
            setattr(self, attr, value & ~(1 << bit))
            return str((value >> bit) & 1)
        setattr(self, attr, 0)
        return str(value)

    def _set_enable(self, attr: str, args: list[str], bits: int) -> None:
        """``XXXE i`` sets the enable register to i; ``XXXE i,j`` sets its bit i to j."""
        if len(args) >= 2:
            bit = int_arg(args, 0, 0, bits - 1)
            on = int_arg(args, 1, 0, 1)
            value = getattr(self, attr)
            setattr(self, attr, value | (1 << bit) if on else value & ~(1 << bit))
        else:
            setattr(self, attr, int_arg(args, 0, 0, (1 << bits) - 1))

    def _query_enable(self, attr: str, args: list[str], bits: int) -> str:
        value = getattr(self, attr)
        return str((value >> int_arg(args, 0, 0, bits - 1)) & 1) if args else str(value)

    def status_byte(self) -> int:
        """The serial poll status byte: ERR (2), LIA (3), ESB (5), SRQ (6)."""
        stb = 4 if self.errs & self.erre else 0
        stb |= 8 if self.lias & self.liae else 0
        stb |= 32 if self.esr & self.ese else 0
        stb |= 64 if stb & self.sre else 0
        return stb

    @command("*RST")
    def _rst(self, args: list[str], n: tuple[int, ...]) -> None:
        self._defaults()
        self._physical_defaults()

    @command("*CLS")
    def _cls(self, args: list[str], n: tuple[int, ...]) -> None:
        self.esr = self.lias = self.errs = 0
        self.errors.clear()

    @command("*ESE")
    def _ese(self, args: list[str], n: tuple[int, ...]) -> None:
        self._set_enable("ese", args, 8)

    @command("*ESE?")
    def _ese_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return self._query_enable("ese", args, 8)

    @command("*ESR?")
    def _esr_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return self._read_register("esr", args, 8)

    @command("*SRE")
    def _sre(self, args: list[str], n: tuple[int, ...]) -> None:
        self._set_enable("sre", args, 8)

    @command("*SRE?")
    def _sre_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return self._query_enable("sre", args, 8)

    @command("*STB?")
    def _stb_q(self, args: list[str], n: tuple[int, ...]) -> str:
        stb = self.status_byte()
        return str((stb >> int_arg(args, 0, 0, 7)) & 1) if args else str(stb)

    _psc, _psc_q = _setting("psc", "*PSC", ("0", "1"))
    _ovrm, _ovrm_q = _setting("ovrm", "OVRM", ("OFF", "ON"))

    @command("ERRE")
    def _erre(self, args: list[str], n: tuple[int, ...]) -> None:
        self._set_enable("erre", args, 8)

    @command("ERRE?")
    def _erre_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return self._query_enable("erre", args, 8)

    @command("ERRS?")
    def _errs_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return self._read_register("errs", args, 8)

    @command("LIAE")
    def _liae(self, args: list[str], n: tuple[int, ...]) -> None:
        self._set_enable("liae", args, 16)

    @command("LIAE?")
    def _liae_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return self._query_enable("liae", args, 16)

    @command("LIAS?")
    def _lias_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return self._read_register("lias", args, 16)

    # -- reference -------------------------------------------------------------------------------
    @command("FREQ")
    def _freq(self, args: list[str], n: tuple[int, ...]) -> None:
        value = float_arg(args, 0, 1e-3, F_MAX)
        step = max(10.0 ** (math.floor(math.log10(value)) - 5), 1e-4)  # 6 digits or 0.1 mHz
        value = float(f"{round(value / step) * step:.10g}")
        if value * self.lab.lockin.harmonic > F_MAX * (1 + 1e-12):
            raise CommandError(-222, "Data out of range: harmonic x frequency > 500 kHz")
        self.lab.lockin.frequency = value

    @command("FREQ?")
    @command("FREQINT?")
    def _freq_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(self.lab.lockin.frequency)

    @command("FREQEXT?")
    def _freqext_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(0.0)  # nothing drives Ref In

    @command("FREQDET?")
    def _freqdet_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(self.lab.lockin.frequency * self.lab.lockin.harmonic)

    @command("HARM")
    def _harm(self, args: list[str], n: tuple[int, ...]) -> None:
        value = int_arg(args, 0, 1, 99)
        if value * self.lab.lockin.frequency > F_MAX * (1 + 1e-12):
            raise CommandError(-222, "Data out of range: harmonic x frequency > 500 kHz")
        self.lab.lockin.harmonic = value

    @command("HARM?")
    def _harm_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(int(self.lab.lockin.harmonic))

    @command("PHAS")
    def _phas(self, args: list[str], n: tuple[int, ...]) -> None:
        value = float_arg(args, 0, -360e3, 360e3)
        self.lab.lockin.phase = round((value + 180.0) % 360.0 - 180.0, 7)

    @command("PHAS?")
    def _phas_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(self.lab.lockin.phase)

    @command("SLVL")
    def _slvl(self, args: list[str], n: tuple[int, ...]) -> None:
        self.lab.lockin.amplitude = round(float_arg(args, 0, 0.0, 2.0), 9)

    @command("SLVL?")
    def _slvl_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(self.lab.lockin.amplitude)

    @command("SOFF")
    def _soff(self, args: list[str], n: tuple[int, ...]) -> None:
        self.soff = round(float_arg(args, 0, -5.0, 5.0), 4)

    @command("SOFF?")
    def _soff_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(self.soff)

    _rsrc, _rsrc_q = _setting("rsrc", "RSRC", ("INT", "EXT", "DUAL", "CHOP"))
    _rtrg, _rtrg_q = _setting("rtrg", "RTRG", ("SINe", "POSttl", "NEGttl"))
    _refz, _refz_q = _setting("refz", "REFZ", ("50|50OHMS", "1M|1MEG"))

    # -- signal input ----------------------------------------------------------------------------
    _ivmd, _ivmd_q = _setting("ivmd", "IVMD", ("VOLTage", "CURRent"))
    _isrc, _isrc_q = _setting("isrc", "ISRC", ("A", "A-B"))
    _icpl, _icpl_q = _setting("icpl", "ICPL", ("AC", "DC"))
    _ignd, _ignd_q = _setting("ignd", "IGND", ("FLOat", "GROund"))
    _irng, _irng_q = _setting("irng", "IRNG", ("1VOLT", "300MV", "100MV", "30MV", "10MV"))
    _icur, _icur_q = _setting("icur", "ICUR", ("1MEG", "100MEG"))
    _advfilt, _advfilt_q = _setting("advfilt", "ADVFILT", ("OFF", "ON"))

    @command("ILVL?")
    def _ilvl_q(self, args: list[str], n: tuple[int, ...]) -> str:
        """Signal strength 0..4 (4: the input overloads its range)."""
        if self._input_overload():
            return "4"
        limit = INPUT_RANGES[self.irng] if self.ivmd == 0 else 1.0
        fraction = abs(self.lab.lockin.input) * math.sqrt(2.0) / limit
        return str(sum(fraction >= level for level in (0.01, 0.1, 0.5)))

    @command("SCAL")
    def _scal(self, args: list[str], n: tuple[int, ...]) -> None:
        self.lab.lockin.sensitivity = SENSITIVITIES[int_arg(args, 0, 0, len(SENSITIVITIES) - 1)]

    @command("SCAL?")
    def _scal_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(self._sens_index())

    # -- filter ----------------------------------------------------------------------------------
    @command("OFLT")
    def _oflt(self, args: list[str], n: tuple[int, ...]) -> None:
        self.lab.lockin.time_constant = TIME_CONSTANTS[int_arg(args, 0, 0, len(TIME_CONSTANTS) - 1)]

    @command("OFLT?")
    def _oflt_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(_nearest(TIME_CONSTANTS, self.lab.lockin.time_constant))

    @command("OFSL")
    def _ofsl(self, args: list[str], n: tuple[int, ...]) -> None:
        self.lab.lockin.slope = SLOPES[choice_arg(args, 0, ("6DB", "12DB", "18DB", "24DB"))]

    @command("OFSL?")
    def _ofsl_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(SLOPES.index(self.lab.lockin.slope))

    @command("SYNC")
    def _sync(self, args: list[str], n: tuple[int, ...]) -> None:
        self.lab.lockin.sync_filter = bool(choice_arg(args, 0, ("OFF", "ON")))

    @command("SYNC?")
    def _sync_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(int(bool(self.lab.lockin.sync_filter)))

    @command("ENBW?")
    def _enbw_q(self, args: list[str], n: tuple[int, ...]) -> str:
        li = self.lab.lockin
        return _num(ENBW_FACTOR[stages(li.slope)] / li.time_constant)

    # -- auto functions --------------------------------------------------------------------------
    @command("ARNG")
    def _arng(self, args: list[str], n: tuple[int, ...]) -> None:
        """Auto range: the smallest input range that holds the input's peak."""
        peak = abs(self.lab.lockin.input) * math.sqrt(2.0)
        fits = [i for i, r in enumerate(INPUT_RANGES) if peak < 0.9 * r]
        self.irng = fits[-1] if fits else 0

    @command("ASCL")
    def _ascl(self, args: list[str], n: tuple[int, ...]) -> None:
        """Auto scale: the most sensitive full scale that keeps R below 80 % of it."""
        r = abs(self.lab.lockin.output())
        fits = [i for i, s in enumerate(SENSITIVITIES) if r < 0.8 * s]
        self.lab.lockin.sensitivity = SENSITIVITIES[fits[-1] if fits else 0]

    @command("APHS")
    def _aphs(self, args: list[str], n: tuple[int, ...]) -> None:
        x, y = self.lab.lockin.read_xy(self.rng)
        phase = self.lab.lockin.phase + math.degrees(math.atan2(y, x))
        self.lab.lockin.phase = round((phase + 180.0) % 360.0 - 180.0, 7)

    # -- outputs, offsets, aux, data channels ---------------------------------------------------
    @command("OUTP?")
    def _outp_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(self._instant()[choice_arg(args, 0, PARAMETERS[:4])])

    @command("SNAP?")
    def _snap_q(self, args: list[str], n: tuple[int, ...]) -> str:
        if not 2 <= len(args) <= 3:
            raise CommandError(-109, "SNAP? takes 2 or 3 parameters")
        keys = [choice_arg(args, k, PARAMETERS) for k in range(len(args))]
        values = self._instant()  # every value from one instant
        return ",".join(_num(values[k]) for k in keys)

    @command("SNAPD?")
    def _snapd_q(self, args: list[str], n: tuple[int, ...]) -> str:
        values = self._instant()
        return ",".join(_num(values[self.cdsp[ch]]) for ch in range(4))

    @command("COFP")
    def _cofp(self, args: list[str], n: tuple[int, ...]) -> None:
        i = choice_arg(args, 0, PARAMETERS[:3])
        self.cofp[i] = round(float_arg(args, 1, -999.99, 999.99), 2)

    @command("COFP?")
    def _cofp_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(self.cofp[choice_arg(args, 0, PARAMETERS[:3])])

    @command("CEXP")
    def _cexp(self, args: list[str], n: tuple[int, ...]) -> None:
        i = choice_arg(args, 0, PARAMETERS[:3])
        self.cexp[i] = choice_arg(args, 1, ("OFF", "X10", "X100"))

    @command("CEXP?")
    def _cexp_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(self.cexp[choice_arg(args, 0, PARAMETERS[:3])])

    @command("OAUX?")
    def _oaux_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(self._aux_in(choice_arg(args, 0, ("IN1", "IN2", "IN3", "IN4"))))

    @command("AUXV")
    def _auxv(self, args: list[str], n: tuple[int, ...]) -> None:
        i = choice_arg(args, 0, ("OUT1", "OUT2", "OUT3", "OUT4"))
        self.lab.lockin.aux_out[i] = round(float_arg(args, 1, -10.5, 10.5), 3)

    @command("AUXV?")
    def _auxv_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(self.lab.lockin.aux_out[choice_arg(args, 0, ("OUT1", "OUT2", "OUT3", "OUT4"))])

    @command("CDSP")
    def _cdsp(self, args: list[str], n: tuple[int, ...]) -> None:
        ch = choice_arg(args, 0, ("DAT1", "DAT2", "DAT3", "DAT4"))
        self.cdsp[ch] = choice_arg(args, 1, PARAMETERS)

    @command("CDSP?")
    def _cdsp_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(self.cdsp[choice_arg(args, 0, ("DAT1", "DAT2", "DAT3", "DAT4"))])

    # -- capture buffer --------------------------------------------------------------------------
    def _rate_max(self) -> float:
        """CAPTURERATEMAX?: 1.25 MHz / 2**n, the fastest not above 16 / time constant."""
        ratio = CAPTURE_MAX_RATE * self.lab.lockin.time_constant / 16.0
        n = min(max(math.ceil(math.log2(ratio)), 0), 20) if ratio > 1.0 else 0
        return CAPTURE_MAX_RATE / 2**n

    def _rate(self) -> float:
        return self._rate_max() / 2**self.capture_n

    def _capacity(self) -> int:
        """Samples (of every captured parameter) the buffer holds."""
        return self.capture_len * 256 // len(CAPTURE_VARS[self.capture_cfg])

    def _stored(self) -> int:
        return min(self.capture_samples, self._capacity())

    def _capture(self, count: int) -> None:
        """Take ``count`` samples now (independent noise on each), wrapping in continuous mode."""
        capacity = self._capacity()
        if self.capture_mode == 0:
            count = min(count, capacity - self.capture_samples)
        skipped = max(count - capacity, 0)  # continuous: only the last `capacity` samples survive
        self.capture_samples += skipped
        count -= skipped
        if count > 0:
            li = self.lab.lockin
            z, s = li.output() * self._scale(), li.noise_rms() * self._scale()
            x = z.real + self.rng.normal(0.0, s, count)
            y = z.imag + self.rng.normal(0.0, s, count)
            ox, oy, orr = self._offsets()
            columns = {0: x - ox, 1: y - oy, 2: np.hypot(x, y) - orr, 3: np.degrees(np.arctan2(y, x))}
            block = np.column_stack([columns[k] for k in CAPTURE_VARS[self.capture_cfg]]).ravel()
            width = len(CAPTURE_VARS[self.capture_cfg])
            start = (self.capture_samples % capacity) * width
            positions = (start + np.arange(block.size)) % (capacity * width)
            self.capture_data[positions] = block
            self.capture_samples += count
        if self.capture_mode == 0 and self.capture_samples >= capacity:
            self.capture_state = "done"

    def _advance_capture(self) -> None:
        if self.capture_state != "acquiring":
            return
        now, rate = self.lab.clock.now(), self._rate()
        if now < self._next_sample:
            return
        count = int((now - self._next_sample) * rate) + 1
        self._next_sample += count / rate
        self._capture(count)

    @command("CAPTURELEN")
    def _capturelen(self, args: list[str], n: tuple[int, ...]) -> None:
        if self.capture_state in ("armed", "acquiring"):
            raise CommandError(-221, "Settings conflict: capture in progress")
        value = int_arg(args, 0, 1, 4096)
        self.capture_len = value + value % 2  # whole 2 kB blocks
        self.capture_data = np.zeros(self.capture_len * 256, dtype="<f4")
        self.capture_samples = 0

    @command("CAPTURELEN?")
    def _capturelen_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(self.capture_len)

    @command("CAPTURECFG")
    def _capturecfg(self, args: list[str], n: tuple[int, ...]) -> None:
        if self.capture_state in ("armed", "acquiring"):
            raise CommandError(-221, "Settings conflict: capture in progress")
        self.capture_cfg = choice_arg(args, 0, CAPTURE_CONFIGS)

    @command("CAPTURECFG?")
    def _capturecfg_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(self.capture_cfg)

    @command("CAPTURERATEMAX?")
    def _capturemax_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(self._rate_max())

    @command("CAPTURERATE")
    def _capturerate(self, args: list[str], n: tuple[int, ...]) -> None:
        self.capture_n = int_arg(args, 0, 0, 20)

    @command("CAPTURERATE?")
    def _capturerate_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(self._rate())

    @command("CAPTURESTART")
    def _capturestart(self, args: list[str], n: tuple[int, ...]) -> None:
        mode = choice_arg(args, 0, ("ONE", "CONTinuous"))
        trigger = choice_arg(args, 1, ("IMMediate", "TRIGstart", "SAMPpertrig"))
        self.capture_data = np.zeros(self.capture_len * 256, dtype="<f4")
        self.capture_samples, self.capture_mode = 0, mode
        if trigger == 0:
            self.capture_state = "acquiring"
            self._next_sample = self.lab.clock.now()
            self._advance_capture()
        else:
            self.capture_state = "armed"  # the trigger input is not wired in the simulated lab

    @command("CAPTURESTOP")
    def _capturestop(self, args: list[str], n: tuple[int, ...]) -> None:
        if self.capture_state in ("armed", "acquiring"):
            self.capture_state = "done"

    @command("CAPTURESTAT?")
    def _capturestat_q(self, args: list[str], n: tuple[int, ...]) -> str:
        """Bits: 0 armed or acquiring, 1 acquiring, 2 done, 3 wrapped (continuous)."""
        state = self.capture_state
        bits = CAP_ARMED if state in ("armed", "acquiring") else 0
        bits |= CAP_ACQUIRING if state == "acquiring" else 0
        bits |= CAP_DONE if state == "done" else 0
        bits |= CAP_WRAPPED if self.capture_mode == 1 and self.capture_samples > self._capacity() else 0
        return str(bits)

    @command("CAPTUREBYTES?")
    def _capturebytes_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(self._stored() * len(CAPTURE_VARS[self.capture_cfg]) * 4)

    @command("CAPTUREPROG?")
    def _captureprog_q(self, args: list[str], n: tuple[int, ...]) -> str:
        kb = self._stored() * len(CAPTURE_VARS[self.capture_cfg]) * 4 / 1024
        return str(min(2 * math.ceil(kb / 2), self.capture_len))

    @command("CAPTUREGET?")
    def _captureget_q(self, args: list[str], n: tuple[int, ...]) -> str:
        offset = int_arg(args, 0, 0, 4095)
        length = int_arg(args, 1, 1, 64)
        captured_kb = 2 * math.ceil(self._stored() * len(CAPTURE_VARS[self.capture_cfg]) / 512)
        if offset > captured_kb or length > captured_kb:
            raise CommandError(-222, "Data out of range: past the captured data")
        words = self.capture_data  # read on past the end wraps to the start
        data = words[(offset * 256 + np.arange(length * 256)) % words.size].tobytes()
        size = str(len(data))
        self.last_reply_binary = True
        return (f"#{len(size)}{size}".encode() + data).decode("latin-1")
