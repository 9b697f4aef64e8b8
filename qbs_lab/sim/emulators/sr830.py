"""Stanford Research Systems SR830 DSP lock-in amplifier.

The SR830 speaks SRS's four-letter mnemonic language (manual, chapter 5 "Remote Programming"), not
SCPI: ``OUTP? 1`` reads X, ``SENS 17`` sets the sensitivity by index. Spaces are ignored, so
``OUTP?1``, ``OUTP ? 1`` and ``SLVL0.500`` are all valid; several commands may be chained with
``;`` and each query's answer is sent on its own, terminated by a line feed (GPIB). There is no
error queue: an unknown command sets the CMD bit (5) of the Standard Event Status Byte, a parameter
out of range (or a command that cannot execute) the EXE bit (4); ``*ESR?`` reads and clears them.

Commands (manual names):

- reference: ``PHAS`` (deg, rounded to 0.01, wrapped to +-180), ``FMOD`` (0 external,
  1 internal), ``FREQ`` (Hz, 5 digits or 0.1 mHz), ``RSLP``, ``HARM``, ``SLVL`` (V rms, 2 mV steps)
- input and filter: ``ISRC``, ``IGND``, ``ICPL``, ``ILIN``, ``SENS`` (0..26 = 2 nV..1 V, or
  2 fA..1 uA with a current input), ``RMOD``, ``OFLT`` (0..19 = 10 us..30 ks), ``OFSL``
  (0..3 = 6..24 dB/oct), ``SYNC``
- display and offsets: ``DDEF``, ``FPOP``, ``OEXP``, ``AOFF``; aux: ``OAUX?``, ``AUXV``
- setup: ``OUTX``, ``OVRM``, ``LOCL``, ``KCLK``, ``ALRM``, ``SSET``, ``RSET``
- auto: ``AGAN``, ``ARSV``, ``APHS``, ``AOFF``
- data storage: ``SRAT``, ``SEND``, ``TRIG``, ``TSTR``, ``STRT``, ``PAUS``, ``REST``, ``FAST``,
  ``STRD``
- data transfer: ``OUTP?``, ``OUTR?``, ``SNAP?``, ``SPTS?``, ``TRCA?``, ``TRCB?``, ``TRCL?``
- status: ``*IDN?``, ``*RST``, ``*CLS``, ``*ESE``, ``*ESR?``, ``*SRE``, ``*STB?``, ``*PSC``,
  ``ERRE``, ``ERRS?``, ``LIAE``, ``LIAS?`` (a bit number as argument reads, and clears, that bit)

Physics: X and Y come from ``lab.lockin.read_xy`` (one call per instant, so ``SNAP?`` is
coherent); the reference and filter settings (SLVL, FREQ, PHAS, HARM, SENS, OFLT, OFSL, SYNC, AUXV)
are ``lab.lockin``'s, converted between index and SI value. The LIA status bits latch each time the
instrument is addressed: 0 input overload (``lab.lockin.input_overload()``), 2 output overload
(``output_overload()``), 3 reference unlock (external reference selected: nothing drives Ref In),
4 detection frequency crossed 200 Hz, 5 time constant changed indirectly (limited to 30 s above
200 Hz), 6 storage triggered. Offsets apply to ``OUTP?`` (as on the instrument), offset and expand
to the displays (``OUTR?``, the buffer).

Simplifications: the current inputs (``ISRC 2/3``) read the input voltage divided by 1 MOhm;
bit 1 (filter overload), the minimum time constant set by slope and reserve, and the reserve's
effect are not modelled; buffered points are sampled with independent noise when the lab clock
jumps. ``TRCB?`` and ``TRCL?`` answer binary data as a latin-1 string (one character per byte) and
set :attr:`SR830Emulator.last_reply_binary`: a transport must then encode the reply with latin-1
and send it without a terminator.
"""

from __future__ import annotations

import math
import struct
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar

from qbs_lab.sim.emulators.base import (
    CommandError,
    Emulator,
    LoggedCommand,
    command,
    float_arg,
    int_arg,
)
from qbs_lab.sim.scpi import split_message

__all__ = ["SENSITIVITIES", "TIME_CONSTANTS", "SR830Emulator"]

#: SENS index -> full scale [V rms] (current mode: the same numbers times 1e-6, in A)
SENSITIVITIES: tuple[float, ...] = (
    2e-9, 5e-9, 10e-9, 20e-9, 50e-9, 100e-9, 200e-9, 500e-9,
    1e-6, 2e-6, 5e-6, 10e-6, 20e-6, 50e-6, 100e-6, 200e-6, 500e-6,
    1e-3, 2e-3, 5e-3, 10e-3, 20e-3, 50e-3, 100e-3, 200e-3, 500e-3, 1.0,
)  # fmt: skip
#: OFLT index -> time constant [s]
TIME_CONSTANTS: tuple[float, ...] = (
    10e-6, 30e-6, 100e-6, 300e-6, 1e-3, 3e-3, 10e-3, 30e-3, 100e-3, 300e-3,
    1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1e3, 3e3, 10e3, 30e3,
)  # fmt: skip
SLOPES = (6, 12, 18, 24)  # OFSL index -> dB/oct
#: DDEF display 0/1 of CH1 and CH2 -> OUTP index of the quantity shown (1 X, 2 Y, 3 R, 4 theta)
DISPLAY_SOURCES = {1: (1, 3), 2: (2, 4)}
CURRENT_GAIN = 1e6  # V/A of the current input: a current reading is V_in / 1 MOhm here
BUFFER_SIZE = 16383  # points per channel
F_RANGE = 200.0  # Hz, detection frequency above which time constants > 30 s are not allowed
# LIA status bits
INPUT_OVERLOAD, OUTPUT_OVERLOAD, UNLOCK, RANGE, TC_CHANGED, TRIGGERED = 1, 4, 8, 16, 32, 64
#: what SSET saves: front-panel attributes of the emulator, and lab.lockin's
SETUP_ATTRS = ("fmod", "rslp", "isrc", "ignd", "icpl", "ilin", "rmod", "ddef", "fpop", "oexp",
               "kclk", "alrm", "srat", "send", "tstr")  # fmt: skip
SETUP_LAB = ("amplitude", "frequency", "phase", "harmonic", "sensitivity", "time_constant",
             "slope", "sync_filter")  # fmt: skip
CMD_ERROR, EXE_ERROR = 1 << 5, 1 << 4  # Standard Event Status Byte bits

Handler = Callable[[Any, list[str], tuple[int, ...]], "str | None"]


def _num(value: float) -> str:
    """An SR830 reading: 6 significant digits, three-digit exponent (``-4.17234e-007``)."""
    text = f"{value:.6g}"
    if "e" in text:
        mantissa, exp = text.split("e")
        text = f"{mantissa}e{exp[0]}{int(exp[1:]):03d}"
    return text


def _nearest(table: tuple[float, ...], value: float) -> int:
    """Index of the table entry closest to ``value`` on a log scale."""
    return min(range(len(table)), key=lambda i: abs(math.log(table[i] / max(value, 1e-30))))


def _int_setting(attr: str, hi: int, name: str) -> tuple[Handler, Handler]:
    """Set and query handlers of a front-panel setting ``name {0..hi}`` kept in ``attr``."""

    @command(name)
    def set_(self: SR830Emulator, args: list[str], n: tuple[int, ...]) -> None:
        setattr(self, attr, int_arg(args, 0, 0, hi))

    @command(name + "?")
    def query(self: SR830Emulator, args: list[str], n: tuple[int, ...]) -> str:
        return str(getattr(self, attr))

    return set_, query


class SR830Emulator(Emulator):
    """The SR830 lock-in on the simulated lab's ``lab.lockin`` (see the module docstring)."""

    #: the manual's status commands are *CLS, *ESE, *ESR?, *SRE, *STB?, *PSC (and *IDN?, *RST); its
    #: trigger is TRIG. It has no *OPC, *OPC?, *WAI, *TST?, *TRG or *OPT?: an unknown command to it.
    lacks = frozenset({"*OPC", "*OPC?", "*WAI", "*TST?", "*TRG"})

    model: ClassVar[str] = "SR830"
    idn: ClassVar[str] = "Stanford_Research_Systems,SR830,s/n00111,ver1.07"
    reply_termination: ClassVar[str] = "\n"
    # a GPIB instrument: over TCP it is reached like one behind a LAN gateway, with END on each reply
    lan_protocol: ClassVar[str] = "hislip"
    chain_replies: ClassVar[bool] = False

    # -- state -----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Power on: front-panel defaults, cleared status (the physical settings stay the lab's)."""
        super().reset()
        self.ese = self.sre = self.erre = self.liae = 0
        self.psc = 1
        self.lias = 0
        self.errs = 0
        self.outx = 1  # GPIB
        self.locl = 0
        self.ovrm = 0
        self.setups: dict[int, dict[str, Any]] = {}
        self.last_reply_binary = False
        self._defaults()

    def _defaults(self) -> None:
        """The *RST front panel (the communications setup is kept)."""
        self.fmod = 1
        self.rslp = 0
        self.isrc = 0
        self.ignd = 0
        self.icpl = 0
        self.ilin = 0
        self.rmod = 1
        self.ddef = {1: [0, 0], 2: [0, 0]}  # display, ratio
        self.fpop = {1: 0, 2: 0}
        self.oexp = {1: [0.0, 0], 2: [0.0, 0], 3: [0.0, 0]}  # offset %, expand index
        self.kclk = 1
        self.alrm = 1
        self.srat = 4  # 1 Hz
        self.send = 1  # loop
        self.tstr = 0
        self.fast = 0
        self._reset_buffer()

    def _physical_defaults(self) -> None:
        li = self.lab.lockin
        li.amplitude, li.frequency, li.phase, li.harmonic = 1.0, 1000.0, 0.0, 1
        li.sensitivity, li.time_constant, li.slope, li.sync_filter = 1.0, 0.1, 12, False
        li.aux_out[:] = [0.0, 0.0, 0.0, 0.0]

    def _reset_buffer(self) -> None:
        self.buffer: dict[int, deque[float]] = {1: deque(), 2: deque()}
        self.storing = False
        self._next_sample = 0.0

    # -- message handling ------------------------------------------------------------------------
    def handle(self, message: str) -> str | None:
        """Run one message; each query's answer is sent separately (joined by the terminator).

        After a ``TRCB?``/``TRCL?``, :attr:`last_reply_binary` is True: the reply is binary data
        (latin-1, one character per byte), which the instrument sends without a terminator.
        """
        with self.lock:
            self.lab.sync()
            self.last_reply_binary = False
            replies: list[str] = []
            for part in split_message(message.strip("\r\n")):
                self._matched = ""
                reply, error, _ = self._run(part, "")
                self.log.append(LoggedCommand(self.lab.clock.now(), part, reply, error), self._matched)
                if reply is not None:
                    replies.append(reply)
            return self.reply_termination.join(replies) if replies else None

    def _run(self, part: str, previous_path: str) -> tuple[str | None, str | None, str]:
        self._latch_status()
        self._advance_storage()
        text = "".join(part.split())  # the SR830 ignores spaces
        mnemonic, rest = text[:4], text[4:]
        if rest.startswith("?"):
            mnemonic, rest = mnemonic + "?", rest[1:]
        return super()._run(f"{mnemonic} {rest}".strip(), "")

    def report_error(self, code: int, text: str) -> None:
        """No error queue: an illegal command sets CMD (bit 5), anything else EXE (bit 4) in ESR."""
        self.errors.append((code, text))  # kept for diagnostics only; the SR830 cannot report it
        self.esr |= CMD_ERROR if -199 <= code <= -100 else EXE_ERROR

    # -- arguments -------------------------------------------------------------------------------
    # -- readings --------------------------------------------------------------------------------
    def _scale(self) -> float:
        """Reading units per volt at the input: 1 (voltage input) or 1/1 MOhm (current input)."""
        return 1.0 if self.isrc < 2 else 1.0 / CURRENT_GAIN

    def _sens(self) -> float:
        """Full scale in the reading's units (V or A)."""
        return SENSITIVITIES[self._sens_index()] * self._scale()

    def _sens_index(self) -> int:
        return _nearest(SENSITIVITIES, self.lab.lockin.sensitivity)

    def _aux_in(self, i: int) -> float:
        """Aux input ``i`` (1..4) [V], 1/3 mV resolution."""
        return round(self.lab.lockin.aux_in(i - 1) * 3000.0) / 3000.0

    def _instant(self) -> dict[int, float]:
        """All SNAP? can name, at one instant (1 X, 2 Y, 3 R, 4 theta, 5-8 aux, 9 f, 10-11 CH)."""
        x, y = self.lab.lockin.read_xy(self.rng)  # one call: X and Y at one instant
        x, y = x * self._scale(), y * self._scale()
        sens = self._sens()
        off = {i: self.oexp[i][0] / 100.0 * sens for i in (1, 2, 3)}
        values = {
            1: x - off[1],
            2: y - off[2],
            3: math.hypot(x, y) - off[3],
            4: math.degrees(math.atan2(y, x)),
            **{4 + i: self._aux_in(i) for i in (1, 2, 3, 4)},
            9: self.lab.lockin.frequency,
        }
        noise = self.lab.lockin.noise_rms() * self._scale()
        for ch in (1, 2):
            display, ratio = self.ddef[ch]
            if display in (0, 1):  # CH1: X or R, CH2: Y or theta; offset and expand apply
                key = DISPLAY_SOURCES[ch][display]
                value = values[key] * (10 ** self.oexp[key][1] if key != 4 else 1)
            elif display == 2:  # X noise / Y noise
                value = noise
            else:  # aux inputs 1, 2 (CH1) or 3, 4 (CH2)
                value = self._aux_in(2 * (ch - 1) + display - 2)
            if ratio:
                aux = self._aux_in(2 * (ch - 1) + ratio)
                value = value / aux if abs(aux) > 1e-12 else 0.0
            values[9 + ch] = value
        return values

    # -- status ----------------------------------------------------------------------------------
    def _latch_status(self) -> None:
        li = self.lab.lockin
        if li.input_overload():
            self.lias |= INPUT_OVERLOAD
        if li.output_overload():
            self.lias |= OUTPUT_OVERLOAD
        if self.fmod == 0:
            self.lias |= UNLOCK

    def _read_register(self, attr: str, args: list[str]) -> str:
        """Read (and clear) a status byte, or only bit ``args[0]`` of it."""
        value = getattr(self, attr)
        if args:
            bit = int_arg(args, 0, 0, 7)
            setattr(self, attr, value & ~(1 << bit))
            return str((value >> bit) & 1)
        setattr(self, attr, 0)
        return str(value)

    def _set_enable(self, attr: str, args: list[str]) -> None:
        """``XXXE i`` sets the enable byte to i; ``XXXE i,j`` sets its bit i to j."""
        if len(args) >= 2:
            bit = int_arg(args, 0, 0, 7)
            on = int_arg(args, 1, 0, 1)
            value = getattr(self, attr)
            setattr(self, attr, value | (1 << bit) if on else value & ~(1 << bit))
        else:
            setattr(self, attr, int_arg(args, 0, 0, 255))

    def _query_enable(self, attr: str, args: list[str]) -> str:
        value = getattr(self, attr)
        if args:
            return str((value >> int_arg(args, 0, 0, 7)) & 1)
        return str(value)

    def status_byte(self) -> int:
        """The SR830's status byte (SCN, IFC, ERR, LIA, ESB, SRQ)."""
        stb = 0 if self.storing else 1  # SCN: no scan in progress
        stb |= 2  # IFC: no command execution in progress
        stb |= 4 if self.errs & self.erre else 0
        stb |= 8 if self.lias & self.liae else 0
        stb |= 32 if self.esr & self.ese else 0
        stb |= 64 if stb & self.sre else 0
        return stb

    def query_interrupted(self) -> None:
        self.esr |= 1 << 2  # QRY: output queue overflow / interrupted query (the SR830 has no queue)

    @command("*IDN?")
    def _idn(self, args: list[str], n: tuple[int, ...]) -> str:
        return self.idn

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
        self._set_enable("ese", args)

    @command("*ESE?")
    def _ese_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return self._query_enable("ese", args)

    @command("*ESR?")
    def _esr_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return self._read_register("esr", args)

    @command("*SRE")
    def _sre(self, args: list[str], n: tuple[int, ...]) -> None:
        self._set_enable("sre", args)

    @command("*SRE?")
    def _sre_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return self._query_enable("sre", args)

    @command("*STB?")
    def _stb_q(self, args: list[str], n: tuple[int, ...]) -> str:
        stb = self.status_byte()
        return str((stb >> int_arg(args, 0, 0, 7)) & 1) if args else str(stb)

    _psc, _psc_q = _int_setting("psc", 1, "*PSC")

    @command("ERRE")
    def _erre(self, args: list[str], n: tuple[int, ...]) -> None:
        self._set_enable("erre", args)

    @command("ERRE?")
    def _erre_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return self._query_enable("erre", args)

    @command("ERRS?")
    def _errs_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return self._read_register("errs", args)

    @command("LIAE")
    def _liae(self, args: list[str], n: tuple[int, ...]) -> None:
        self._set_enable("liae", args)

    @command("LIAE?")
    def _liae_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return self._query_enable("liae", args)

    @command("LIAS?")
    def _lias_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return self._read_register("lias", args)

    # -- reference and phase ---------------------------------------------------------------------
    def _detection_frequency(self) -> float:
        return self.lab.lockin.frequency * self.lab.lockin.harmonic

    def _set_reference(self, frequency: float, harmonic: int) -> None:
        """Apply a new frequency/harmonic; flag a range change and limit the time constant."""
        li = self.lab.lockin
        before = self._detection_frequency()
        li.frequency, li.harmonic = frequency, harmonic
        after = self._detection_frequency()
        if (before < F_RANGE) != (after < F_RANGE):
            self.lias |= RANGE
        if after >= F_RANGE and li.time_constant > 30.0 * 1.01:
            li.time_constant = 30.0
            self.lias |= TC_CHANGED

    @command("PHAS")
    def _phas(self, args: list[str], n: tuple[int, ...]) -> None:
        value = round(float_arg(args, 0, -360.0, 729.99), 2)
        self.lab.lockin.phase = round((value + 180.0) % 360.0 - 180.0, 2)

    @command("PHAS?")
    def _phas_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(self.lab.lockin.phase)

    @command("FMOD")
    def _fmod(self, args: list[str], n: tuple[int, ...]) -> None:
        self.fmod = int_arg(args, 0, 0, 1)

    @command("FMOD?")
    def _fmod_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(self.fmod)

    @command("FREQ")
    def _freq(self, args: list[str], n: tuple[int, ...]) -> None:
        value = float_arg(args, 0, 1e-3, 102e3)
        if self.fmod != 1:
            raise CommandError(-221, "Settings conflict: FREQ needs the internal reference")
        step = max(10.0 ** (math.floor(math.log10(value)) - 4), 1e-4)
        value = float(f"{round(value / step) * step:.10g}")
        if value * self.lab.lockin.harmonic > 102e3:
            raise CommandError(-222, "Data out of range: harmonic x frequency > 102 kHz")
        self._set_reference(value, self.lab.lockin.harmonic)

    @command("FREQ?")
    def _freq_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(self.lab.lockin.frequency)

    _rslp, _rslp_q = _int_setting("rslp", 2, "RSLP")

    @command("HARM")
    def _harm(self, args: list[str], n: tuple[int, ...]) -> None:
        value = int_arg(args, 0, 1, 19999)
        if value * self.lab.lockin.frequency > 102e3:
            raise CommandError(-222, "Data out of range: harmonic x frequency > 102 kHz")
        self._set_reference(self.lab.lockin.frequency, value)

    @command("HARM?")
    def _harm_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(int(self.lab.lockin.harmonic))

    @command("SLVL")
    def _slvl(self, args: list[str], n: tuple[int, ...]) -> None:
        value = float_arg(args, 0, 0.004, 5.0)
        self.lab.lockin.amplitude = round(round(value / 0.002) * 0.002, 3)

    @command("SLVL?")
    def _slvl_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return f"{self.lab.lockin.amplitude:.3f}"

    # -- input and filter ------------------------------------------------------------------------
    @command("ISRC")
    def _isrc(self, args: list[str], n: tuple[int, ...]) -> None:
        self.isrc = int_arg(args, 0, 0, 3)
        if self.isrc == 3 and self._sens_index() > 20:  # above 10 nA the 1 MOhm gain is used
            self.isrc = 2

    @command("ISRC?")
    def _isrc_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(self.isrc)

    _ignd, _ignd_q = _int_setting("ignd", 1, "IGND")
    _icpl, _icpl_q = _int_setting("icpl", 1, "ICPL")
    _ilin, _ilin_q = _int_setting("ilin", 3, "ILIN")
    _rmod, _rmod_q = _int_setting("rmod", 2, "RMOD")

    @command("SENS")
    def _sens_set(self, args: list[str], n: tuple[int, ...]) -> None:
        index = int_arg(args, 0, 0, len(SENSITIVITIES) - 1)
        self.lab.lockin.sensitivity = SENSITIVITIES[index]
        if self.isrc == 3 and index > 20:
            self.isrc = 2

    @command("SENS?")
    def _sens_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(self._sens_index())

    @command("OFLT")
    def _oflt(self, args: list[str], n: tuple[int, ...]) -> None:
        index = int_arg(args, 0, 0, len(TIME_CONSTANTS) - 1)
        if TIME_CONSTANTS[index] > 31.0 and self._detection_frequency() >= F_RANGE:
            raise CommandError(-221, "Settings conflict: time constant > 30 s above 200 Hz")
        self.lab.lockin.time_constant = TIME_CONSTANTS[index]

    @command("OFLT?")
    def _oflt_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(_nearest(TIME_CONSTANTS, self.lab.lockin.time_constant))

    @command("OFSL")
    def _ofsl(self, args: list[str], n: tuple[int, ...]) -> None:
        self.lab.lockin.slope = SLOPES[int_arg(args, 0, 0, 3)]

    @command("OFSL?")
    def _ofsl_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(SLOPES.index(self.lab.lockin.slope))

    @command("SYNC")
    def _sync(self, args: list[str], n: tuple[int, ...]) -> None:
        self.lab.lockin.sync_filter = bool(int_arg(args, 0, 0, 1))

    @command("SYNC?")
    def _sync_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(int(bool(self.lab.lockin.sync_filter)))

    # -- display, offsets, aux -------------------------------------------------------------------
    @command("DDEF")
    def _ddef(self, args: list[str], n: tuple[int, ...]) -> None:
        ch = int_arg(args, 0, 1, 2)
        self.ddef[ch] = [int_arg(args, 1, 0, 4), int_arg(args, 2, 0, 2)]

    @command("DDEF?")
    def _ddef_q(self, args: list[str], n: tuple[int, ...]) -> str:
        display, ratio = self.ddef[int_arg(args, 0, 1, 2)]
        return f"{display},{ratio}"

    @command("FPOP")
    def _fpop(self, args: list[str], n: tuple[int, ...]) -> None:
        ch = int_arg(args, 0, 1, 2)
        self.fpop[ch] = int_arg(args, 1, 0, 1)

    @command("FPOP?")
    def _fpop_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(self.fpop[int_arg(args, 0, 1, 2)])

    @command("OEXP")
    def _oexp(self, args: list[str], n: tuple[int, ...]) -> None:
        i = int_arg(args, 0, 1, 3)
        offset = round(float_arg(args, 1, -105.0, 105.0), 2)
        self.oexp[i] = [offset, int_arg(args, 2, 0, 2)]

    @command("OEXP?")
    def _oexp_q(self, args: list[str], n: tuple[int, ...]) -> str:
        offset, expand = self.oexp[int_arg(args, 0, 1, 3)]
        return f"{offset:.2f},{expand}"

    @command("AOFF")
    def _aoff(self, args: list[str], n: tuple[int, ...]) -> None:
        i = int_arg(args, 0, 1, 3)
        x, y = (v * self._scale() for v in self.lab.lockin.read_xy(self.rng))
        raw = {1: x, 2: y, 3: math.hypot(x, y)}[i]
        offset = max(-105.0, min(105.0, round(raw / self._sens() * 100.0, 2)))
        self.oexp[i][0] = offset

    @command("OAUX?")
    def _oaux_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(self._aux_in(int_arg(args, 0, 1, 4)))

    @command("AUXV")
    def _auxv(self, args: list[str], n: tuple[int, ...]) -> None:
        i = int_arg(args, 0, 1, 4)
        self.lab.lockin.aux_out[i - 1] = round(float_arg(args, 1, -10.5, 10.5), 3)

    @command("AUXV?")
    def _auxv_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return f"{self.lab.lockin.aux_out[int_arg(args, 0, 1, 4) - 1]:.3f}"

    # -- setup -----------------------------------------------------------------------------------
    _outx, _outx_q = _int_setting("outx", 1, "OUTX")
    _ovrm, _ovrm_q = _int_setting("ovrm", 1, "OVRM")
    _locl, _locl_q = _int_setting("locl", 2, "LOCL")
    _kclk, _kclk_q = _int_setting("kclk", 1, "KCLK")
    _alrm, _alrm_q = _int_setting("alrm", 1, "ALRM")

    @command("SSET")
    def _sset(self, args: list[str], n: tuple[int, ...]) -> None:
        setup = {a: _copy(getattr(self, a)) for a in SETUP_ATTRS}
        setup.update({"lab." + a: getattr(self.lab.lockin, a) for a in SETUP_LAB})
        setup["lab.aux_out"] = list(self.lab.lockin.aux_out)
        self.setups[int_arg(args, 0, 1, 9)] = setup

    @command("RSET")
    def _rset(self, args: list[str], n: tuple[int, ...]) -> None:
        setup = self.setups.get(int_arg(args, 0, 1, 9))
        if setup is None:
            raise CommandError(-200, "Execution error: no setup saved there")
        for key, value in setup.items():
            if key == "lab.aux_out":
                self.lab.lockin.aux_out[:] = value
            elif key.startswith("lab."):
                setattr(self.lab.lockin, key[4:], value)
            else:
                setattr(self, key, _copy(value))

    # -- auto functions --------------------------------------------------------------------------
    @command("AGAN")
    def _agan(self, args: list[str], n: tuple[int, ...]) -> None:
        """Auto gain: the most sensitive range that keeps R below 80 % of full scale."""
        r = math.hypot(*self.lab.lockin.read_xy(self.rng))
        fits = [i for i, s in enumerate(SENSITIVITIES) if r < 0.8 * s]
        self.lab.lockin.sensitivity = SENSITIVITIES[fits[0] if fits else -1]

    @command("ARSV")
    def _arsv(self, args: list[str], n: tuple[int, ...]) -> None:
        return None  # the dynamic reserve is not modelled

    @command("APHS")
    def _aphs(self, args: list[str], n: tuple[int, ...]) -> None:
        x, y = self.lab.lockin.read_xy(self.rng)
        phase = self.lab.lockin.phase + math.degrees(math.atan2(y, x))
        self.lab.lockin.phase = round((phase + 180.0) % 360.0 - 180.0, 2)

    # -- data storage ----------------------------------------------------------------------------
    def _sample_rate(self) -> float | None:
        """Storage rate [Hz] of SRAT (0.0625 Hz * 2**i), None for triggered storage (14)."""
        return None if self.srat == 14 else 0.0625 * 2.0**self.srat

    def _store(self, count: int) -> None:
        """Store ``count`` new points of both displays (the buffer keeps at most 16383)."""
        for _ in range(count):
            if self.send == 0 and len(self.buffer[1]) >= BUFFER_SIZE:
                self.storing = False  # single shot: storage stops when the buffer is full
                return
            values = self._instant()
            for ch in (1, 2):
                self.buffer[ch].append(values[9 + ch])
                if len(self.buffer[ch]) > BUFFER_SIZE:
                    self.buffer[ch].popleft()

    def _advance_storage(self) -> None:
        rate = self._sample_rate()
        if not self.storing or rate is None:
            return
        now = self.lab.clock.now()
        if now < self._next_sample:
            return
        count = int((now - self._next_sample) * rate) + 1
        self._next_sample += count / rate
        self._store(min(count, BUFFER_SIZE))

    def _start(self) -> None:
        if not self.storing:
            self.storing = True
            self._next_sample = self.lab.clock.now()
            self._advance_storage()

    @command("SRAT")
    def _srat(self, args: list[str], n: tuple[int, ...]) -> None:
        self.srat = int_arg(args, 0, 0, 14)

    @command("SRAT?")
    def _srat_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(self.srat)

    _send, _send_q = _int_setting("send", 1, "SEND")
    _tstr, _tstr_q = _int_setting("tstr", 1, "TSTR")
    _fast, _fast_q = _int_setting("fast", 2, "FAST")

    @command("TRIG")
    def _trig(self, args: list[str], n: tuple[int, ...]) -> None:
        if self.tstr and not self.storing:
            self._start()
            self.lias |= TRIGGERED
        elif self.storing and self._sample_rate() is None:
            self._store(1)
            self.lias |= TRIGGERED

    @command("STRT")
    def _strt(self, args: list[str], n: tuple[int, ...]) -> None:
        self._start()

    @command("STRD")
    def _strd(self, args: list[str], n: tuple[int, ...]) -> None:
        self._start()  # fast transfer (streaming) is not emulated: storage starts as with STRT

    @command("PAUS")
    def _paus(self, args: list[str], n: tuple[int, ...]) -> None:
        self.storing = False

    @command("REST")
    def _rest(self, args: list[str], n: tuple[int, ...]) -> None:
        self._reset_buffer()

    # -- data transfer ---------------------------------------------------------------------------
    @command("OUTP?")
    def _outp_q(self, args: list[str], n: tuple[int, ...]) -> str:
        i = int_arg(args, 0, 1, 4)
        return _num(self._instant()[i])

    @command("OUTR?")
    def _outr_q(self, args: list[str], n: tuple[int, ...]) -> str:
        i = int_arg(args, 0, 1, 2)
        return _num(self._instant()[9 + i])

    @command("SNAP?")
    def _snap_q(self, args: list[str], n: tuple[int, ...]) -> str:
        if not 2 <= len(args) <= 6:
            raise CommandError(-109, "SNAP? takes 2 to 6 parameters")
        keys = [int_arg(args, k, 1, 11) for k in range(len(args))]
        values = self._instant()  # every value from one instant
        return ",".join(_num(values[k]) for k in keys)

    @command("SPTS?")
    def _spts_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(len(self.buffer[1]))

    def _trace(self, args: list[str]) -> list[float]:
        """Points ``j .. j+k-1`` of the channel ``i`` buffer (``TRCx? i,j,k``)."""
        ch = int_arg(args, 0, 1, 2)
        start = int_arg(args, 1, 0, BUFFER_SIZE - 1)
        count = int_arg(args, 2, 1, BUFFER_SIZE)
        data = self.buffer[ch]
        if start + count > len(data):
            raise CommandError(-222, "Data out of range: past the stored points")
        return [data[k] for k in range(start, start + count)]

    @command("TRCA?")
    def _trca_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return "".join(_exp(v) + "," for v in self._trace(args))

    @command("TRCB?")
    def _trcb_q(self, args: list[str], n: tuple[int, ...]) -> str:
        points = self._trace(args)
        self.last_reply_binary = True
        return struct.pack(f"<{len(points)}f", *points).decode("latin-1")

    @command("TRCL?")
    def _trcl_q(self, args: list[str], n: tuple[int, ...]) -> str:
        points = self._trace(args)
        self.last_reply_binary = True
        return b"".join(_lia_float(v) for v in points).decode("latin-1")


def _copy(value: Any) -> Any:
    """A copy of a front-panel setting (ints, or small dicts of lists)."""
    if isinstance(value, dict):
        return {k: list(v) if isinstance(v, list) else v for k, v in value.items()}
    return value


def _exp(value: float) -> str:
    """A TRCA? point: signed, 7 significant digits, three-digit exponent (``+7.654321e-009``)."""
    mantissa, exp = f"{value:+.6e}".split("e")
    return f"{mantissa}e{exp[0]}{int(exp[1:]):03d}"


def _lia_float(value: float) -> bytes:
    """A TRCL? point: int16 mantissa m and int16 exponent e, value = m * 2**(e - 124)."""
    if value == 0.0 or not math.isfinite(value):
        return struct.pack("<hh", 0, 124)
    fraction, power = math.frexp(value)  # value = fraction * 2**power, 0.5 <= |fraction| < 1
    return struct.pack("<hh", round(fraction * 2**14), power - 14 + 124)
