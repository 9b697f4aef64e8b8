"""Lake Shore Model 372 AC resistance bridge and temperature controller.

The 372 speaks Lake Shore's own mnemonic language (user's manual, chapter 6 "Computer Interface
Operation"), not SCPI: ``RDGK? 6`` reads channel 6 in kelvin, ``RANGE 0,5`` sets the sample
heater's range. Replies end with CR LF. There is no error queue: a command it cannot parse sets the
Command Error bit (CME, bit 5) of the Standard Event Status Register, a parameter out of range the
Execution Error bit (EXE, bit 4); ``*ESR?`` reads and clears them.

Commands (manual names):

- readings: ``RDGK?``/``KRDG?`` (K), ``RDGR?``/``SRDG?`` (Ohm), ``RDGST?`` (status), ``RDGPWR?``
- inputs 1..16: ``INSET``, ``INTYPE``, ``INNAME``, ``TLIMIT``, ``FILTER``, ``SCAN`` (and queries)
- outputs 0 (sample heater), 1 (warm-up heater), 2 (analog/still): ``OUTMODE``, ``HTRSET``,
  ``RANGE``, ``SETP``, ``PID``, ``MOUT``, ``RAMP``, ``RAMPST?``, ``HTR?``, ``AOUT?``, ``HTRST?``

Physics: readings come from ``lab.fridge`` (temperature with 0.2 % thermometer noise; the RuOx
resistance); a channel with no sensor reads 0 with status R.OVER + T.UNDER. The sample heater's
settings are ``lab.fridge``'s (mode, control channel, range, setpoint, PID, manual output); the
warm-up and analog outputs are front-panel state only. Two of the 372's own safety behaviours run
in the cryostat model, between messages too: setpoint ramping (``RAMP``, ``lab.fridge.ramp_setpoint``)
and a channel above its ``TLIMIT`` switching every heater off (``lab.fridge.temperature_limits``).

Deviations from the manual, for the unmodified QCoDeS driver: ``HTRSET?`` answers the five fields
that driver parses (``<type>,<resistance 1=25/2=50 Ohm>,<max current>,<max user current>,
<display>``, the Model 336 layout) instead of the 372's four, for all three outputs; ``HTRSET``
takes either form. ``HTR? 1``/``HTR? 2`` answer the warm-up/analog output (the manual's
``AOUT?``), since the driver asks ``HTR?`` for every output.
"""

from __future__ import annotations

from dataclasses import dataclass

from qbs_lab.sim.emulators.base import (
    CommandError,
    Emulator,
    command,
    float_arg,
    int_arg,
)

__all__ = ["Lakeshore372Emulator"]

N_CHANNELS = 16
NOISE = 0.002  # relative thermometer noise of a reading
#: INTYPE resistance ranges 1..22: full scale [Ohm] (2 mOhm ... 63.2 MOhm, half-decade steps)
RANGE_FULL_SCALE = tuple(2e-3 * 10 ** (i / 2) for i in range(22))
#: OUTMODE mode -> lab.fridge.heater_mode, for the sample heater (zone control is PID control)
LAB_MODES = {0: "off", 2: "open_loop", 3: "closed_loop", 5: "closed_loop"}
#: OUTMODE modes each output accepts: 0 off, 1 monitor out, 2 open loop, 3 zone, 4 still,
#: 5 closed loop, 6 warm up
VALID_MODES = {0: {0, 2, 3, 5}, 1: {0, 1, 2, 3, 5, 6}, 2: {0, 1, 2, 3, 4, 5}}
MAX_RANGE = {0: 8, 1: 1, 2: 1}  # sample heater 0..8 (off, 31.6 uA ... 100 mA); others off/on
R_OVER, T_UNDER = 16, 128  # RDGST? bits


@dataclass
class _Input:
    """Front-panel settings of one measurement channel (INSET, INTYPE, INNAME, TLIMIT, FILTER)."""

    name: str
    curve: int
    enabled: int = 1
    dwell: int = 10  # s
    pause: int = 3  # s
    tempco: int = 1  # 1 negative, 2 positive
    exc_mode: int = 0  # 0 voltage, 1 current excitation
    excitation: int = 3  # excitation range (voltage 1..12, current 1..22)
    autorange: int = 1
    range: int = 13  # resistance range 1..22 (used when autorange is off)
    cs_shunt: int = 0
    units: int = 1  # 1 kelvin, 2 ohms
    tlimit: float = 0.0  # K, 0 = off
    filter_on: int = 0
    filter_settle: int = 10  # s
    filter_window: int = 2  # %


@dataclass
class _Output:
    """Front-panel settings of one heater output (the sample heater's live ones: lab.fridge)."""

    mode: int = 0
    input: int = 1
    powerup: int = 0
    polarity: int = 0
    filter: int = 0
    delay: int = 1
    htr_type: int = 0  # 0 current, 1 voltage
    htr_ohms: float = 100.0  # heater resistance the display assumes
    max_current: int = 0
    max_user_current: float = 0.0
    display: int = 1  # 1 current, 2 power
    range: int = 0
    setpoint: float = 0.0
    pid: tuple[float, float, float] = (10.0, 20.0, 0.0)
    mout: float = 0.0
    ramp_on: int = 0
    ramp_rate: float = 0.0  # K/min


def _count(args: list[str], *allowed: int) -> None:
    if len(args) < min(allowed):
        raise CommandError(-109, "Missing parameter")
    if len(args) not in allowed:
        raise CommandError(-108, "Parameter not allowed")


def _sci(value: float) -> str:
    """The 372's reading format, e.g. ``+1.23456E-02``."""
    return f"{value:+.5E}"


class Lakeshore372Emulator(Emulator):
    """Lake Shore Model 372 on the simulated fridge (see the module docstring)."""

    model = "Lakeshore 372"
    idn = "LSCI,MODEL372,LSA1ZZZ,1.4"
    #: the manual's common commands: *CLS, *ESE, *ESR?, *IDN?, *OPC, *OPC?, *RST, *SRE, *STB?, *TST?,
    #: *WAI; no *TRG (nor *OPT?)
    lacks = frozenset({"*TRG"})
    reply_termination = "\r\n"

    def reset(self) -> None:
        """Power-up front-panel settings (the sample heater's live settings stay in lab.fridge)."""
        super().reset()
        channels = self.lab.fridge.channels
        self.inputs = {
            ch: _Input(name=f"Channel {ch}", curve=20 + ch if ch in channels else 0)
            for ch in range(1, N_CHANNELS + 1)
        }
        self.outputs = {i: _Output() for i in range(3)}
        self.scan_channel = self.lab.fridge.control_channel
        self.autoscan = 0

    @command("*RST")
    def _rst(self, args: list[str], n: tuple[int, ...]) -> None:
        self.reset()
        fridge = self.lab.fridge
        fridge.heater_mode, fridge.heater_range, fridge.manual_output = "off", 0, 0.0

    def report_error(self, code: int, text: str) -> None:
        """No error queue on the 372: only the ESR bits (CME for -1xx, EXE for -2xx)."""
        self.esr |= 1 << 4 if -299 <= code <= -200 else 1 << 5

    def query_interrupted(self) -> None:
        self.esr |= 1 << 2  # QYE: query error

    # -- the 372's own processes, run whenever it is addressed -------------------------------------
    def handle(self, message: str) -> str | None:
        with self.lock:
            self.lab.sync()
            self._poll()
            return super().handle(message)

    def _poll(self) -> None:
        # the cryostat ramps the setpoint and trips the sample heater itself; the warm-up and analog
        # heaters exist only on this front panel
        if self.lab.fridge.limit_tripped:
            self.outputs[1].range = self.outputs[2].range = 0

    # -- argument helpers --------------------------------------------------------------------------
    def _channel(self, args: list[str], allow_control: bool = False) -> int:
        """Input channel 1..16 (0 for the control input ``A`` where the command accepts it)."""
        if allow_control and args and args[0].strip().upper() == "A":
            return 0
        return int_arg(args, 0, 1, N_CHANNELS)

    def _output(self, args: list[str]) -> int:
        return int_arg(args, 0, 0, 2)

    # -- readings ----------------------------------------------------------------------------------
    def _status(self, ch: int) -> int:
        fridge = self.lab.fridge
        if ch == 0 or ch not in fridge.channels or fridge.temperature(ch) <= 0:
            return R_OVER | T_UNDER
        cfg = self.inputs[ch]
        if not cfg.autorange and fridge.resistance(ch) > RANGE_FULL_SCALE[cfg.range - 1]:
            return R_OVER | T_UNDER
        return 0

    def _resistance(self, ch: int) -> float:
        if self._status(ch):
            return 0.0
        return self.lab.fridge.resistance(ch) * (1.0 + NOISE * self.rng.standard_normal())

    @command("RDGK?")
    @command("KRDG?")
    def _rdgk(self, args: list[str], n: tuple[int, ...]) -> str:
        ch = self._channel(args, allow_control=True)
        if self._status(ch) or self.inputs[ch].curve == 0:  # no curve: the manual's zero reading
            return _sci(0.0)
        T = self.lab.fridge.temperature(ch)
        return _sci(T * (1.0 + NOISE * self.rng.standard_normal()))

    @command("RDGR?")
    @command("SRDG?")
    def _rdgr(self, args: list[str], n: tuple[int, ...]) -> str:
        return _sci(self._resistance(self._channel(args, allow_control=True)))

    @command("RDGST?")
    def _rdgst(self, args: list[str], n: tuple[int, ...]) -> str:
        return f"{self._status(self._channel(args, allow_control=True)):03d}"

    @command("RDGPWR?")
    def _rdgpwr(self, args: list[str], n: tuple[int, ...]) -> str:
        ch = self._channel(args)
        R = self._resistance(ch)
        if R <= 0:
            return _sci(0.0)
        cfg = self.inputs[ch]
        step = 10 ** ((cfg.excitation - 1) / 2)
        if cfg.exc_mode == 0:  # voltage excitation: 2 uV, 6.32 uV, ... 632 mV
            return _sci((2e-6 * step) ** 2 / R)
        return _sci((1e-12 * step) ** 2 * R)  # current excitation: 1 pA, 3.16 pA, ... 31.6 mA

    # -- input setup -------------------------------------------------------------------------------
    @command("INSET")
    def _inset(self, args: list[str], n: tuple[int, ...]) -> None:
        _count(args, 6)
        cfg = self.inputs[self._channel(args)]
        values = (
            int_arg(args, 1, 0, 1),
            int_arg(args, 2, 1, 200),
            int_arg(args, 3, 3, 200),
            int_arg(args, 4, 0, 59),
            int_arg(args, 5, 1, 2),
        )
        cfg.enabled, cfg.dwell, cfg.pause, cfg.curve, cfg.tempco = values

    @command("INSET?")
    def _inset_q(self, args: list[str], n: tuple[int, ...]) -> str:
        c = self.inputs[self._channel(args)]
        return f"{c.enabled},{c.dwell},{c.pause},{c.curve},{c.tempco}"

    @command("INTYPE")
    def _intype(self, args: list[str], n: tuple[int, ...]) -> None:
        _count(args, 7)
        cfg = self.inputs[self._channel(args)]
        mode = int_arg(args, 1, 0, 1)
        values = (
            mode,
            int_arg(args, 2, 1, 12 if mode == 0 else 22),
            int_arg(args, 3, 0, 1),
            int_arg(args, 4, 1, 22),
            int_arg(args, 5, 0, 1),
            int_arg(args, 6, 1, 2),
        )
        cfg.exc_mode, cfg.excitation, cfg.autorange, cfg.range, cfg.cs_shunt, cfg.units = values

    @command("INTYPE?")
    def _intype_q(self, args: list[str], n: tuple[int, ...]) -> str:
        ch = self._channel(args)
        c = self.inputs[ch]
        rng = c.range
        if c.autorange and not self._status(ch):  # autorange picks the smallest range that fits
            R = self.lab.fridge.resistance(ch)
            rng = next((i + 1 for i, fs in enumerate(RANGE_FULL_SCALE) if fs >= R), 22)
        return f"{c.exc_mode},{c.excitation},{c.autorange},{rng},{c.cs_shunt},{c.units}"

    @command("INNAME")
    def _inname(self, args: list[str], n: tuple[int, ...]) -> None:
        _count(args, 2)
        cfg = self.inputs[self._channel(args)]
        if len(args[1]) > 15:
            raise CommandError(-222, "Data out of range")
        cfg.name = args[1]

    @command("INNAME?")
    def _inname_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return self.inputs[self._channel(args)].name

    @command("TLIMIT")
    def _tlimit(self, args: list[str], n: tuple[int, ...]) -> None:
        _count(args, 2)
        channel = self._channel(args)
        limit = float_arg(args, 1, 0.0, 2000.0)
        self.inputs[channel].tlimit = limit
        if limit > 0 and channel in self.lab.fridge.channels:
            self.lab.fridge.temperature_limits[channel] = limit
        else:
            self.lab.fridge.temperature_limits.pop(channel, None)

    @command("TLIMIT?")
    def _tlimit_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return f"{self.inputs[self._channel(args)].tlimit:+.4f}"

    @command("FILTER")
    def _filter(self, args: list[str], n: tuple[int, ...]) -> None:
        _count(args, 4)
        ch = int_arg(args, 0, 0, N_CHANNELS)  # 0 = all channels
        values = (int_arg(args, 1, 0, 1), int_arg(args, 2, 1, 200), int_arg(args, 3, 1, 80))
        for c in self.inputs.values() if ch == 0 else [self.inputs[ch]]:
            c.filter_on, c.filter_settle, c.filter_window = values

    @command("FILTER?")
    def _filter_q(self, args: list[str], n: tuple[int, ...]) -> str:
        c = self.inputs[self._channel(args)]
        return f"{c.filter_on},{c.filter_settle},{c.filter_window}"

    @command("SCAN")
    def _scan(self, args: list[str], n: tuple[int, ...]) -> None:
        _count(args, 2)
        self.scan_channel, self.autoscan = self._channel(args), int_arg(args, 1, 0, 1)

    @command("SCAN?")
    def _scan_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return f"{self.scan_channel:02d},{self.autoscan}"

    # -- outputs -----------------------------------------------------------------------------------
    def _mode(self, out: int) -> int:
        """OUTMODE mode of an output; the sample heater's follows lab.fridge.heater_mode."""
        mode = self.outputs[out].mode
        if out == 0 and LAB_MODES.get(mode) != self.lab.fridge.heater_mode:
            mode = {"off": 0, "open_loop": 2, "closed_loop": 5}[self.lab.fridge.heater_mode]
        return mode

    @command("OUTMODE")
    def _outmode(self, args: list[str], n: tuple[int, ...]) -> None:
        _count(args, 7)
        out = self._output(args)
        mode = int_arg(args, 1, 0, 6)
        if mode not in VALID_MODES[out]:
            raise CommandError(-222, "Data out of range")
        values = (
            int_arg(args, 2, 1, N_CHANNELS),
            int_arg(args, 3, 0, 1),
            int_arg(args, 4, 0, 1),
            int_arg(args, 5, 0, 1),
            int_arg(args, 6, 1, 255),
        )
        o = self.outputs[out]
        o.mode = mode
        o.input, o.powerup, o.polarity, o.filter, o.delay = values
        if out == 0:
            self.lab.fridge.heater_mode = LAB_MODES[mode]
            self.lab.fridge.control_channel = o.input

    @command("OUTMODE?")
    def _outmode_q(self, args: list[str], n: tuple[int, ...]) -> str:
        out = self._output(args)
        o = self.outputs[out]
        channel = self.lab.fridge.control_channel if out == 0 else o.input
        return f"{self._mode(out)},{channel},{o.powerup},{o.polarity},{o.filter},{o.delay}"

    @command("HTRSET")
    def _htrset(self, args: list[str], n: tuple[int, ...]) -> None:
        _count(args, 5, 6)
        out = self._output(args)
        o = self.outputs[out]
        if len(args) == 6:  # QCoDeS's form: <type>,<1=25/2=50 Ohm>,<max>,<user max>,<display>
            values = (
                int_arg(args, 1, 0, 1 if out == 1 else 0),
                (25.0, 50.0)[int_arg(args, 2, 1, 2) - 1],
                int_arg(args, 3, 0, 4),
                float_arg(args, 4, 0.0, 1.732),
                int_arg(args, 5, 1, 2),
            )
            o.htr_type, o.htr_ohms, o.max_current, o.max_user_current, o.display = values
            return
        # the manual's form: <resistance>,<max current>,<max user current>,<current/power>
        # sample heater: the load in ohms; warm-up heater: 1 = 25 Ohm, 2 = 50 Ohm
        ohms = float_arg(args, 1, 1, 2000) if out == 0 else (25.0, 50.0)[int_arg(args, 1, 1, 2) - 1]
        values = (ohms, int_arg(args, 2, 0, 2), float_arg(args, 3, 0.0, 1.732), int_arg(args, 4, 1, 2))
        o.htr_ohms, o.max_current, o.max_user_current, o.display = values

    @command("HTRSET?")
    def _htrset_q(self, args: list[str], n: tuple[int, ...]) -> str:
        o = self.outputs[self._output(args)]
        code = 1 if o.htr_ohms < 50.0 else 2
        return f"{o.htr_type},{code},{o.max_current},{o.max_user_current:+.3f},{o.display}"

    @command("RANGE")
    def _range(self, args: list[str], n: tuple[int, ...]) -> None:
        _count(args, 2)
        out = self._output(args)
        value = int_arg(args, 1, 0, MAX_RANGE[out])
        if out == 0:
            self.lab.fridge.heater_range = value
        else:
            self.outputs[out].range = value

    @command("RANGE?")
    def _range_q(self, args: list[str], n: tuple[int, ...]) -> str:
        out = self._output(args)
        return str(self.lab.fridge.heater_range if out == 0 else self.outputs[out].range)

    @command("SETP")
    def _setp(self, args: list[str], n: tuple[int, ...]) -> None:
        _count(args, 2)
        out = self._output(args)
        value = float_arg(args, 1, 0.0, 2000.0)
        o = self.outputs[out]
        o.setpoint = value
        if out != 0:
            return
        self.lab.fridge.ramp_setpoint(value, o.ramp_rate / 60.0 if o.ramp_on else 0.0)

    @command("SETP?")
    def _setp_q(self, args: list[str], n: tuple[int, ...]) -> str:
        out = self._output(args)
        if out == 0 and self.lab.fridge.setpoint_target is None:  # while ramping: the target
            return _sci(self.lab.fridge.setpoint)
        return _sci(self.outputs[out].setpoint)

    @command("RAMP")
    def _ramp_set(self, args: list[str], n: tuple[int, ...]) -> None:
        _count(args, 3)
        out = self._output(args)
        o = self.outputs[out]
        o.ramp_on, o.ramp_rate = int_arg(args, 1, 0, 1), float_arg(args, 2, 0.0, 100.0)
        fridge = self.lab.fridge
        if out == 0 and fridge.setpoint_target is not None:
            # switching the ramp off jumps to the target; a new rate applies from now on
            fridge.ramp_setpoint(fridge.setpoint_target, o.ramp_rate / 60.0 if o.ramp_on else 0.0)

    @command("RAMP?")
    def _ramp_q(self, args: list[str], n: tuple[int, ...]) -> str:
        o = self.outputs[self._output(args)]
        return f"{o.ramp_on},{o.ramp_rate:.3f}"

    @command("RAMPST?")
    def _rampst(self, args: list[str], n: tuple[int, ...]) -> str:
        return "1" if self._output(args) == 0 and self.lab.fridge.setpoint_target is not None else "0"

    @command("PID")
    def _pid(self, args: list[str], n: tuple[int, ...]) -> None:
        _count(args, 4)
        out = self._output(args)
        pid = (
            float_arg(args, 1, 0.0, 1000.0),
            float_arg(args, 2, 0.0, 10000.0),
            float_arg(args, 3, 0, 2500),
        )
        if out == 0:
            self.lab.fridge.pid = pid
        else:
            self.outputs[out].pid = pid

    @command("PID?")
    def _pid_q(self, args: list[str], n: tuple[int, ...]) -> str:
        out = self._output(args)
        p, i, d = self.lab.fridge.pid if out == 0 else self.outputs[out].pid
        return f"{p:+.3f},{i:+.1f},{d:+.1f}"

    @command("MOUT")
    def _mout(self, args: list[str], n: tuple[int, ...]) -> None:
        _count(args, 2)
        out = self._output(args)
        value = float_arg(args, 1, 0.0, 100.0)
        if out == 0:
            self.lab.fridge.manual_output = value
        else:
            self.outputs[out].mout = value

    @command("MOUT?")
    def _mout_q(self, args: list[str], n: tuple[int, ...]) -> str:
        out = self._output(args)
        value = self.lab.fridge.manual_output if out == 0 else self.outputs[out].mout
        return f"{value:+.3f}"

    def _aout(self, out: int) -> float:
        """Warm-up/analog output [%]: its manual output while on (no physics behind it)."""
        o = self.outputs[out]
        return 0.0 if o.mode == 0 or o.range == 0 else o.mout

    @command("HTR?")
    def _htr(self, args: list[str], n: tuple[int, ...]) -> str:
        out = self._output(args) if args else 0
        value = self.lab.fridge.heater_output() if out == 0 else self._aout(out)
        return f"{value:+.3f}"

    @command("AOUT?")
    def _aout_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return f"{self._aout(int_arg(args, 0, 1, 2)):+.3f}"

    @command("HTRST?")
    def _htrst(self, args: list[str], n: tuple[int, ...]) -> str:
        self._output(args)
        return "0"  # no heater open/short fault
