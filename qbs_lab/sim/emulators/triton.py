"""Oxford Instruments Triton dilution refrigerator: the control PC's remote interface (TCP socket).

The Triton speaks Oxford's Mercury-style language, ``<VERB>:<NOUN>:<NOUN>...`` with the value as the
last noun (Mercury iPS/iTC operator's manuals, "SCPI command structure"): ``READ:DEV:T6:TEMP:SIG:TEMP``
is answered ``STAT:DEV:T6:TEMP:SIG:TEMP:0.0152K``; ``SET:DEV:T6:TEMP:LOOP:TSET:0.1`` is answered
``STAT:SET:DEV:T6:TEMP:LOOP:TSET:0.1:VALID``. Every command gets exactly one reply (the QCoDeS driver
reads one after each write). Commands are case-sensitive. Errors are reported in the reply only (there
is no error queue): a term that cannot be interpreted, a read-only node set or a bad value ends the
reply with ``:INVALID``; a device UID that does not exist (``T17``, ``H3``) answers ``:NOT_FOUND``.
Replies end with LF.

Commands covered (what the unmodified QCoDeS ``OxfordTriton`` sends, plus the heater's signals):

- ``*IDN?`` -> ``IDN:OXFORD INSTRUMENTS:TRITON:<serial>:<firmware>``
- system: ``READ:SYS:TIME`` (``STAT:SYS:TIME:hh:mm:ss`` on the lab clock), ``READ:SYS:DR:ACTN``
  (``NONE``: no automation running), ``READ:SYS:DR:STATUS``, ``READ:SYS:DR:CHAN`` (the named
  channels) and ``READ:SYS:DR:CHAN:<name>`` (``...:MC:T6``, ``...:COOL:NONE``)
- ``READ:SYS:VRM:...``: ``INVALID`` (no magnet is run by this Triton; the driver then leaves out its
  magnet parameters)
- thermometry, channels T1..T16: ``TEMP:SIG:TEMP`` (K), ``TEMP:MEAS:ENAB`` (ON/OFF, settable)
- the temperature loop of each channel, all read/set: ``TEMP:LOOP:MODE`` (ON/OFF), ``LOOP:HTR``
  (``H1`` or ``NONE``: the heater the loop drives), ``LOOP:TSET`` (K), ``LOOP:P``, ``LOOP:I``,
  ``LOOP:D``, ``LOOP:RANGE`` (mA: 0.316, 1, 3.16, 10, 31.6, 100), ``LOOP:RAMP:ENAB``,
  ``LOOP:RAMP:RATE`` (K/min)
- the mixing-chamber heater H1: ``HTR:SIG:POWR`` (uW; set: the manual power), ``HTR:SIG:CURR``
  (mA), ``HTR:SIG:VOLT`` (V), ``HTR:RES`` (Ohm, read only)
- pumps: ``DEV:TURB1:PUMP:SIG:STATE``/``SIG:SPD`` (Hz), ``DEV:COMP:PUMP:SIG:STATE``; gauges
  ``DEV:P1..P6:PRES:SIG:PRES`` (mB)

Physics (``lab.fridge``, as the Lakeshore 372 emulator uses it): readings are the fridge's
temperatures with 0.2 % thermometer noise; a channel with no sensor is disabled and reads 0 K; a
disabled channel keeps its last reading. The loop that holds H1 *is* ``lab.fridge``'s heater: its
channel is the control channel, ``MODE:ON`` is closed loop on the fridge's PID with the loop's range
(0.316 mA .. 100 mA are the fridge's ranges 3..8), its TSET the setpoint (ramped at ``RAMP:RATE``
when ``RAMP:ENAB`` is ON). Loops of other channels keep their settings and act on nothing. With the
loop off the heater gives its manual power (``HTR:SIG:POWR``, open loop on the 100 mA range).

Assumptions (the Triton manual was not available; the reply formats follow the QCoDeS driver's
parsers and other groups' Triton clients): P is passed to the fridge's PID as is, I and D are in
minutes (Oxford's convention) and reach it in seconds; switching a loop off leaves the heater at the
power it was giving (bumpless transfer, as Oxford's Mercury controllers do on leaving automatic
control), so a client that wants the heater off must also set ``HTR:SIG:POWR:0``. The pumps and
gauges are front-panel state with no physics behind them. A blank line (the driver's magnet commands
end in an extra CR LF) gets no reply.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from qbs_lab.sim.cryostat import HEATER_RANGES
from qbs_lab.sim.emulators.base import Emulator, LoggedCommand

__all__ = ["TritonEmulator"]

N_CHANNELS = 16
NOISE = 0.002  # relative thermometer noise of a reading
#: loop ranges [mA] -> lab.fridge.heater_range index (HEATER_RANGES)
RANGES_MA: dict[float, int] = {0.316: 3, 1.0: 4, 3.16: 5, 10.0: 6, 31.6: 7, 100.0: 8}
OPEN_LOOP_RANGE = 8  # manual power is given on the largest range (100 mA)
HEATER = "H1"
PRESSURES_MB = {1: 0.0152, 2: 452.0, 3: 0.286, 4: 2.51, 5: 85.3, 6: 0.0012}  # circulating values
TURBO_HZ = 820.0
CLOCK_START = 12 * 3600.0  # the Triton's clock reads 12:00:00 at the lab's t = 0

_LOOP = "(MODE|HTR|TSET|P|I|D|RANGE|RAMP:ENAB|RAMP:RATE)"  # the loop's nodes
_Table = list[tuple[re.Pattern[str], Callable[..., str | None]]]


@dataclass
class _Loop:
    """One thermometer channel's temperature loop (``DEV:T<n>:TEMP:LOOP``)."""

    mode: bool = False
    heater: str = "NONE"
    tset: float = 0.0  # K
    p: float = 10.0
    i: float = 1.0  # min
    d: float = 0.0  # min
    range_ma: float = 1.0
    ramp_on: bool = False
    ramp_rate: float = 0.1  # K/min


class _Invalid(Exception):
    """A command the Triton answers with ``INVALID``."""


class _NotFound(Exception):
    """A device UID that does not exist: answered ``NOT_FOUND``."""


def _num(value: float, digits: int = 6) -> str:
    """A number as the Triton writes it: positional, never an exponent (the driver's regex needs it)."""
    return np.format_float_positional(value + 0.0, precision=digits, unique=False, fractional=False, trim="-")


def _fixed(value: float, decimals: int = 4) -> str:
    return f"{value + 0.0:.{decimals}f}"


def _on_off(value: str) -> bool:
    if value not in ("ON", "OFF"):
        raise _Invalid
    return value == "ON"


def _number(value: str, lo: float, hi: float) -> float:
    try:
        x = float(value)
    except ValueError:
        raise _Invalid from None
    if not (math.isfinite(x) and lo <= x <= hi):
        raise _Invalid
    return x


class TritonEmulator(Emulator):
    """An Oxford Triton's remote interface on the simulated fridge (see the module docstring)."""

    model = "Oxford Triton"
    idn = "IDN:OXFORD INSTRUMENTS:TRITON:SIM0001:2.4.3"
    reply_termination = "\n"

    def reset(self) -> None:
        super().reset()
        fridge = self.lab.fridge
        self.loops = {ch: _Loop() for ch in range(1, N_CHANNELS + 1)}
        self.loops[fridge.control_channel].heater = HEATER
        self.loops[fridge.control_channel].tset = fridge.setpoint
        self.enabled = {ch: ch in fridge.channels for ch in range(1, N_CHANNELS + 1)}
        self.last_reading = dict.fromkeys(range(1, N_CHANNELS + 1), 0.0)
        self.manual_power = 0.0  # W, the heater's power with its loop off
        self.pumps = {"TURB1": True, "COMP": True}
        self.names = self._dr_channel_names()

    def _dr_channel_names(self) -> dict[str, int | None]:
        """The Triton's named channels (``SYS:DR:CHAN``) on the lab's thermometers."""
        names: dict[str, int | None] = dict.fromkeys(("PT1", "PT2", "STIL", "MC", "COOL", "SORB"))
        for ch, stage in sorted(self.lab.fridge.channels.items()):
            if stage == "mc":
                names["MC"] = ch
            elif isinstance(stage, float | int):
                name = "PT1" if stage > 10 else "PT2" if stage > 1.5 else "STIL" if stage > 0.3 else None
                if name and names[name] is None:
                    names[name] = ch
        return names

    def report_error(self, code: int, text: str) -> None:
        """No error queue on the Triton: the reply says INVALID; kept here for inspection only."""
        self.errors.append((code, text))

    # -- messages ------------------------------------------------------------------------------------
    def handle(self, message: str) -> str | None:
        """One command, one reply (``STAT:...``); a blank line gets none."""
        text = message.strip("\r\n").strip()
        if not text:
            return None
        with self.lock:
            self.lab.sync()
            error = None
            try:
                reply = self._dispatch(text)
            except _NotFound:
                reply, error = self._stat(text) + ":NOT_FOUND", "NOT_FOUND"
            except _Invalid:
                reply, error = self._stat(text) + ":INVALID", "INVALID"
            if error:
                self.report_error(-100, f"{error}: {text}")
            self.log.append(LoggedCommand(self.lab.clock.now(), text, reply, error))
            return reply

    @staticmethod
    def _stat(text: str) -> str:
        """``READ:X`` -> ``STAT:X``; ``SET:X`` -> ``STAT:SET:X``; anything else is echoed."""
        if text.startswith("READ:"):
            return "STAT:" + text[5:]
        if text.startswith("SET:"):
            return "STAT:" + text
        return text

    def _dispatch(self, text: str) -> str:
        if text == "*IDN?":
            return self.idn
        verb, _, path = text.partition(":")
        table = {"READ": self._reads, "SET": self._sets}.get(verb)
        if table is None:
            raise _Invalid
        for pattern, handler in table:
            match = pattern.fullmatch(path)
            if match:
                value = handler(self, *match.groups())
                return f"STAT:{path}:{value}" if verb == "READ" else f"STAT:SET:{path}:VALID"
        uid = re.match(r"DEV:([^:]+):", path)
        if uid and not self._exists(uid.group(1)):
            raise _NotFound
        raise _Invalid

    @staticmethod
    def _exists(uid: str) -> bool:
        if m := re.fullmatch(r"T(\d+)", uid):
            return 1 <= int(m.group(1)) <= N_CHANNELS
        if m := re.fullmatch(r"P(\d+)", uid):
            return int(m.group(1)) in PRESSURES_MB
        return uid in (HEATER, "TURB1", "COMP")

    def _channel(self, n: str) -> int:
        ch = int(n)
        if not 1 <= ch <= N_CHANNELS:
            raise _NotFound
        return ch

    # -- the heater and its loop -------------------------------------------------------------------
    def _heater_channel(self) -> int | None:
        return next((ch for ch, loop in self.loops.items() if loop.heater == HEATER), None)

    def _apply(self) -> None:
        """Put the heater's state (the loop holding H1, or the manual power) into lab.fridge."""
        fridge = self.lab.fridge
        ch = self._heater_channel()
        if ch is not None:
            loop = self.loops[ch]
            fridge.control_channel = ch
            fridge.pid = (loop.p, loop.i * 60.0, loop.d * 60.0)
            if loop.mode:
                fridge.heater_mode, fridge.heater_range = "closed_loop", RANGES_MA[loop.range_ma]
                fridge.manual_output = 0.0
                return
        if self.manual_power > 0:
            full_scale = HEATER_RANGES[OPEN_LOOP_RANGE]
            fridge.heater_mode, fridge.heater_range = "open_loop", OPEN_LOOP_RANGE
            fridge.manual_output = (
                100.0 * math.sqrt(self.manual_power / fridge.heater_resistance) / full_scale
            )
        else:
            fridge.heater_mode, fridge.heater_range, fridge.manual_output = "off", 0, 0.0

    def _loop_on(self, ch: int) -> bool:
        """MODE as the instrument has it: the heater's loop follows lab.fridge (a trip turns it off)."""
        if self.loops[ch].heater == HEATER:
            return self.lab.fridge.heater_mode == "closed_loop"
        return self.loops[ch].mode

    def _heater_current(self) -> float:
        fridge = self.lab.fridge
        return math.sqrt(fridge.heater_power() / fridge.heater_resistance)

    # -- READ handlers (return the value part of the reply) -------------------------------------------
    def _r_time(self) -> str:
        t = int(CLOCK_START + self.lab.clock.now()) % 86400
        return f"{t // 3600:02d}:{t // 60 % 60:02d}:{t % 60:02d}"

    def _r_chan_list(self) -> str:
        return ":".join(self.names)

    def _r_chan(self, name: str) -> str:
        if name not in self.names:
            raise _Invalid
        ch = self.names[name]
        return "NONE" if ch is None else f"T{ch}"

    def _r_vrm(self, rest: str) -> str:
        raise _Invalid

    def _r_temp(self, n: str) -> str:
        ch = self._channel(n)
        fridge = self.lab.fridge
        if self.enabled[ch] and ch in fridge.channels:
            T = fridge.temperature(ch)
            self.last_reading[ch] = T * (1.0 + NOISE * self.rng.standard_normal())
        return _num(self.last_reading[ch]) + "K"

    def _r_enab(self, n: str) -> str:
        return "ON" if self.enabled[self._channel(n)] else "OFF"

    def _r_loop(self, n: str, node: str) -> str:
        ch = self._channel(n)
        loop = self.loops[ch]
        if node == "MODE":
            return "ON" if self._loop_on(ch) else "OFF"
        if node == "HTR":
            return loop.heater
        if node == "TSET":
            return _num(loop.tset) + "K"
        if node in ("P", "I", "D"):
            return _fixed(getattr(loop, node.lower()))
        if node == "RANGE":
            return _fixed(loop.range_ma, 3) + "mA"
        if node == "RAMP:ENAB":
            return "ON" if loop.ramp_on else "OFF"
        if node == "RAMP:RATE":
            return _fixed(loop.ramp_rate) + "K/min"
        raise _Invalid

    def _r_heater(self, node: str) -> str:
        fridge = self.lab.fridge
        current = self._heater_current()
        if node == "SIG:POWR":
            return _fixed(fridge.heater_power() * 1e6) + "uW"
        if node == "SIG:CURR":
            return _fixed(current * 1e3) + "mA"
        if node == "SIG:VOLT":
            return _fixed(current * fridge.heater_resistance) + "V"
        if node == "RES":
            return _fixed(fridge.heater_resistance)
        raise _Invalid

    def _r_pump(self, pump: str, node: str) -> str:
        if node == "STATE":
            return "ON" if self.pumps[pump] else "OFF"
        if pump == "TURB1":  # SPD
            return _fixed(TURBO_HZ if self.pumps[pump] else 0.0) + "Hz"
        raise _Invalid

    def _r_pressure(self, n: str) -> str:
        if int(n) not in PRESSURES_MB:
            raise _NotFound
        return _num(PRESSURES_MB[int(n)], 5) + "mB"

    # -- SET handlers ----------------------------------------------------------------------------------
    def _s_enab(self, n: str, value: str) -> None:
        self.enabled[self._channel(n)] = _on_off(value)

    def _s_loop(self, n: str, node: str, value: str) -> None:
        ch = self._channel(n)
        loop = self.loops[ch]
        fridge = self.lab.fridge
        if node == "MODE":
            on = _on_off(value)
            if loop.heater == HEATER and self._loop_on(ch) and not on:
                self.manual_power = fridge.heater_power()  # bumpless: the heater keeps its power
            loop.mode = on
        elif node == "HTR":
            if value not in (HEATER, "NONE"):
                raise _Invalid
            if value == HEATER and loop.heater != HEATER:
                for other in self.loops.values():  # one heater drives one loop
                    other.heater = "NONE"
                fridge.ramp_setpoint(loop.tset, 0.0)
            loop.heater = value
        elif node == "TSET":
            loop.tset = _number(value, 0.0, 40.0)
            if loop.heater == HEATER:
                fridge.ramp_setpoint(loop.tset, loop.ramp_rate / 60.0 if loop.ramp_on else 0.0)
        elif node in ("P", "I", "D"):
            setattr(loop, node.lower(), _number(value, 0.0, 1000.0))
        elif node == "RANGE":
            ma = _number(value, 0.0, 1000.0)
            match = [r for r in RANGES_MA if abs(r - ma) <= 1e-3 * r]
            if not match:
                raise _Invalid
            loop.range_ma = match[0]
        elif node in ("RAMP:ENAB", "RAMP:RATE"):
            if node == "RAMP:ENAB":
                loop.ramp_on = _on_off(value)
            else:
                loop.ramp_rate = _number(value, 0.0, 100.0)
            if loop.heater == HEATER and fridge.setpoint_target is not None:
                # switching the ramp off jumps to the target; a new rate applies from now on
                fridge.ramp_setpoint(fridge.setpoint_target, loop.ramp_rate / 60.0 if loop.ramp_on else 0.0)
        else:
            raise _Invalid
        if loop.heater == HEATER or node == "HTR":
            self._apply()

    def _s_power(self, value: str) -> None:
        fridge = self.lab.fridge
        most = HEATER_RANGES[OPEN_LOOP_RANGE] ** 2 * fridge.heater_resistance  # W
        self.manual_power = _number(value, 0.0, most * 1e6) * 1e-6
        self._apply()

    def _s_pump(self, pump: str, value: str) -> None:
        self.pumps[pump] = _on_off(value)

    _reads: ClassVar[_Table] = [
        (re.compile(r"SYS:TIME"), _r_time),
        (re.compile(r"SYS:DR:ACTN"), lambda self: "NONE"),
        (re.compile(r"SYS:DR:STATUS"), lambda self: "OK"),
        (re.compile(r"SYS:DR:CHAN"), _r_chan_list),
        (re.compile(r"SYS:DR:CHAN:([A-Z0-9]+)"), _r_chan),
        (re.compile(r"SYS:VRM:(.*)"), _r_vrm),
        (re.compile(r"DEV:T(\d+):TEMP:SIG:TEMP"), _r_temp),
        (re.compile(r"DEV:T(\d+):TEMP:MEAS:ENAB"), _r_enab),
        (re.compile(rf"DEV:T(\d+):TEMP:LOOP:{_LOOP}"), _r_loop),
        (re.compile(r"DEV:H1:HTR:(SIG:POWR|SIG:CURR|SIG:VOLT|RES)"), _r_heater),
        (re.compile(r"DEV:(TURB1|COMP):PUMP:SIG:(STATE|SPD)"), _r_pump),
        (re.compile(r"DEV:P(\d+):PRES:SIG:PRES"), _r_pressure),
    ]
    _sets: ClassVar[_Table] = [
        (re.compile(r"DEV:T(\d+):TEMP:MEAS:ENAB:([^:]*)"), _s_enab),
        (
            re.compile(rf"DEV:T(\d+):TEMP:LOOP:{_LOOP}:([^:]*)"),
            _s_loop,
        ),
        (re.compile(r"DEV:H1:HTR:SIG:POWR:([^:]*)"), _s_power),
        (re.compile(r"DEV:(TURB1|COMP):PUMP:SIG:STATE:([^:]*)"), _s_pump),
    ]
