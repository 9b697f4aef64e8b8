"""American Magnetics Model 430 power supply programmer: the superconducting magnet's supply.

Speaks the 430's remote language (manual, chapter 4 "Remote Interface Reference") on top of
``lab.magnet``, which keeps everything in SI (T, T/s, A, s). The 430 works in the units chosen with
``CONFigure:FIELD:UNITS`` (0 kilogauss, 1 tesla) and ``CONFigure:RAMP:RATE:UNITS`` (0 per second,
1 per minute); this emulator converts at the boundary, so the ramp segments in
``lab.magnet.segments`` stay (T/s, upper bound T) whatever the front panel shows.

On a TCP connection the 430 greets with two lines (``greeting``), which the QCoDeS and PyMeasure
drivers read before their first command. Replies end with CR LF.

Commands covered (short form shown, long forms and any case accepted):

- setup: ``COIL?`` / ``CONF:COIL``, ``CURR:LIM?`` / ``CONF:CURR:LIM``, ``VOLT:LIM?`` /
  ``CONF:VOLT:LIM``, ``CURR:RATING?`` / ``CONF:CURR:RATING``, ``IND?``, ``FIELD:UNITS?`` /
  ``CONF:FIELD:UNITS``, ``SUPP:TYPE?``, ``SUPP:VOLT:MIN?|MAX?``, ``SUPP:CURR:MIN?|MAX?``
- ramp configuration: ``RAMP:RATE:UNITS?`` / ``CONF:RAMP:RATE:UNITS``, ``RAMP:RATE:SEG?`` /
  ``CONF:RAMP:RATE:SEG``, ``RAMP:RATE:CURR:<n>?`` / ``CONF:RAMP:RATE:CURR <n>,<rate>,<upper>``,
  ``RAMP:RATE:FIELD:<n>?`` / ``CONF:RAMP:RATE:FIELD <n>,<rate>,<upper>`` (replies
  ``rate,upper``), ``FIELD:TARG?`` / ``CONF:FIELD:TARG``, ``CURR:TARG?`` / ``CONF:CURR:TARG``
- measurements: ``FIELD:MAG?`` (the field in the magnet: the frozen persistent field while the
  switch is cold), ``CURR:MAG?``, ``CURR:SUPP?``, ``VOLT:MAG?``, ``VOLT:SUPP?``
- ramping state: ``RAMP``, ``PAUSE``, ``ZERO``, ``STATE?`` (codes 1..10 of the manual's table 4-5)
- switch heater: ``PS`` / ``PS?``, ``PS:INST?`` / ``CONF:PS``, ``PS:CURR?`` / ``CONF:PS:CURR`` (mA),
  ``PS:HTIME?`` / ``CONF:PS:HTIME``, ``PS:CTIME?`` / ``CONF:PS:CTIME`` (s), ``PERS?``
- quench: ``QU?``, ``QU 0`` (reset), ``QU 1`` (set)
- system: ``*IDN?``, ``*RST`` (like a power cycle: stops a ramp, clears the error buffer), ``*CLS``,
  ``SYST:ERR?``, ``SYST:LOC``, ``SYST:REM``, the IEEE-488.2 status commands

Errors go to a 10-entry buffer read by ``SYSTem:ERRor?`` (manual section 4.6): ``-101``
unrecognized command, ``-102`` invalid argument, ``-103`` non-boolean argument, ``-104`` missing
parameter, ``-105`` out of range (a target beyond coil constant x current limit, a ramp rate
outside the supply's range, a segment's upper bound beyond the current limit), ``-107`` no switch
installed, ``-201`` unrecognized query, and ``-304`` once the buffer overflows; an empty buffer
answers ``0,"No errors"``. ``-301`` is this emulator's execution error for a ramp command the
present state forbids (quench latched, switch heating or cooling): the manual's list of execution
errors was not available to check its number.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from qbs_lab.sim.emulators.base import CommandError, ScpiEmulator, command
from qbs_lab.sim.magnet import MagnetState
from qbs_lab.sim.scpi import split_header

if TYPE_CHECKING:
    from qbs_lab.sim.lab_state import LabState

__all__ = ["AMI430Emulator"]

_REL = 1e-9  # relative tolerance of range checks (values arrive converted between units)


def _num(value: float) -> str:
    """The 430's numeric reply: fixed point, ten decimals, no negative zero."""
    return f"{round(value, 10) + 0.0:.10f}"


class AMI430Emulator(ScpiEmulator):
    """The AMI Model 430 programmer driving ``lab.magnet`` (see the module docstring)."""

    model: ClassVar[str] = "AMI430"
    idn: ClassVar[str] = "AMERICAN MAGNETICS INC.,MODEL 430,2.01"
    reply_termination: ClassVar[str] = "\r\n"
    greeting: ClassVar[str | None] = "American Magnetics Model 430 IP Interface\r\nHello.\r\n"

    #: the power supply behind the programmer: an AMI 4Q06125PS (four-quadrant, +-125 A, +-6 V)
    SUPPLY_TYPE: ClassVar[int] = 3
    SUPPLY_CURRENT: ClassVar[tuple[float, float]] = (-125.0, 125.0)  # A
    SUPPLY_VOLTAGE: ClassVar[tuple[float, float]] = (-6.0, 6.0)  # V
    #: ramp rates the programmer accepts, in A/s
    RAMP_RATE_RANGE: ClassVar[tuple[float, float]] = (1e-4, 10.0)
    MAX_SEGMENTS: ClassVar[int] = 10
    ERROR_BUFFER: ClassVar[int] = 10

    def __init__(self, name: str, lab: LabState, rng: np.random.Generator) -> None:
        super().__init__(name, lab, rng)
        # front-panel settings with no physical counterpart in lab.magnet
        self.field_units = 1  # 0 kG, 1 T
        self.ramp_rate_units = 0  # 0 per second, 1 per minute
        self.lab.magnet.voltage_limit = 2.0  # V
        self.current_rating = self.lab.magnet.current_limit  # A (older firmware's CURR:RATING)
        self.remote = True
        self._query = False

    # -- units ------------------------------------------------------------------------------
    @property
    def _field_scale(self) -> float:
        """Instrument field units per tesla."""
        return 10.0 if self.field_units == 0 else 1.0

    @property
    def _time_scale(self) -> float:
        """Seconds per instrument time unit."""
        return 60.0 if self.ramp_rate_units == 1 else 1.0

    def _field_limit(self) -> float:
        """The largest field the current limit allows [T]."""
        m = self.lab.magnet
        return m.coil_constant * m.current_limit

    # -- arguments --------------------------------------------------------------------------
    @staticmethod
    def _float(args: list[str], i: int = 0) -> float:
        if len(args) <= i or not args[i]:
            raise CommandError(-104, "Missing parameter")
        try:
            return float(args[i])
        except ValueError:
            raise CommandError(-102, "Invalid argument") from None

    def _int(self, args: list[str], i: int = 0) -> int:
        value = self._float(args, i)
        if value != int(value):
            raise CommandError(-102, "Invalid argument")
        return int(value)

    @staticmethod
    def _bool(args: list[str]) -> bool:
        if not args or not args[0]:
            raise CommandError(-104, "Missing parameter")
        if args[0] not in ("0", "1"):
            raise CommandError(-103, "Non-boolean argument")
        return args[0] == "1"

    def _choice(self, args: list[str], count: int) -> int:
        value = self._int(args)
        if not 0 <= value < count:
            raise CommandError(-105, "Out of range")
        return value

    @staticmethod
    def _in_range(value: float, low: float, high: float) -> float:
        tol = _REL * max(abs(low), abs(high), 1.0)
        if not low - tol <= value <= high + tol:
            raise CommandError(-105, "Out of range")
        return value

    def _ramp_allowed(self) -> None:
        m = self.lab.magnet
        if m.quenched:
            raise CommandError(-301, "Quench condition")
        if m.state in (MagnetState.HEATING_SWITCH, MagnetState.COOLING_SWITCH):
            raise CommandError(-301, "Switch heating or cooling")

    # -- errors -----------------------------------------------------------------------------
    def _run(self, part: str, previous_path: str) -> tuple[str | None, str | None, str]:
        self._query = split_header(part)[0].endswith("?")
        reply, error, path = super()._run(part, previous_path)
        if error is not None and error.startswith("-113,"):
            code, text = self._unrecognized()
            error = f"{code},{text}: {part}"
        return reply, error, path

    def _unrecognized(self) -> tuple[int, str]:
        return (-201, "Unrecognized query") if self._query else (-101, "Unrecognized command")

    def query_interrupted(self) -> None:
        self.report_error(-203, "Query interrupted")  # the AMI error list's code (manual, error codes)

    def report_error(self, code: int, text: str) -> None:
        """Manual 4.6: a FIFO of 10 errors; on overflow the last entry becomes -304.

        ESR bits: 5 command error (-1xx), 2 query error (-2xx), 4 execution error (-3xx),
        3 device error (-4xx).
        """
        if code == -113:
            code, text = self._unrecognized()
        if len(self.errors) >= self.ERROR_BUFFER:
            self.errors[-1] = (-304, "Error buffer overflow")
        else:
            self.errors.append((code, text))
        bit = {1: 5, 2: 2, 3: 4, 4: 3}.get(-code // 100, 3)
        self.esr |= 1 << bit

    @command("SYSTem:ERRor?")
    def _err_q(self, args: list[str], n: tuple[int, ...]) -> str:
        if not self.errors:
            return '0,"No errors"'
        code, text = self.errors.popleft()
        return f'{code},"{text}"'

    # -- system -----------------------------------------------------------------------------
    @command("*RST")
    def _rst(self, args: list[str], n: tuple[int, ...]) -> None:
        """Like cycling the power: a ramp in progress stops (PAUSED); settings are kept."""
        m = self.lab.magnet
        if m.state in (MagnetState.RAMPING, MagnetState.ZEROING) and not m.quenched:
            m.pause()
        self.reset()

    @command("SYSTem:LOCal")
    def _local(self, args: list[str], n: tuple[int, ...]) -> None:
        self.remote = False

    @command("SYSTem:REMote")
    def _remote(self, args: list[str], n: tuple[int, ...]) -> None:
        self.remote = True

    # -- supply and magnet setup --------------------------------------------------------------
    @command("SUPPly:TYPE?")
    def _supply_type(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(self.SUPPLY_TYPE)

    @command("SUPPly:VOLTage:MINimum?")
    def _supply_vmin(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(self.SUPPLY_VOLTAGE[0])

    @command("SUPPly:VOLTage:MAXimum?")
    def _supply_vmax(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(self.SUPPLY_VOLTAGE[1])

    @command("SUPPly:CURRent:MINimum?")
    def _supply_imin(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(self.SUPPLY_CURRENT[0])

    @command("SUPPly:CURRent:MAXimum?")
    def _supply_imax(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(self.SUPPLY_CURRENT[1])

    @command("COILconst?")
    def _coil_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(self.lab.magnet.coil_constant * self._field_scale)

    @command("CONFigure:COILconst")
    def _coil(self, args: list[str], n: tuple[int, ...]) -> None:
        value = self._in_range(self._float(args), 0.001, 999.99999)
        self.lab.magnet.coil_constant = value / self._field_scale

    @command("CURRent:LIMit?")
    def _current_limit_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(self.lab.magnet.current_limit)

    @command("CONFigure:CURRent:LIMit")
    def _current_limit(self, args: list[str], n: tuple[int, ...]) -> None:
        value = self._in_range(self._float(args), 0.0, self.SUPPLY_CURRENT[1])
        self.lab.magnet.current_limit = value

    @command("CURRent:RATING?")
    def _rating_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(self.current_rating)

    @command("CONFigure:CURRent:RATING")
    def _rating(self, args: list[str], n: tuple[int, ...]) -> None:
        self.current_rating = self._in_range(self._float(args), 0.0, self.SUPPLY_CURRENT[1])

    @command("VOLTage:LIMit?")
    def _voltage_limit_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(self.lab.magnet.voltage_limit)

    @command("CONFigure:VOLTage:LIMit")
    def _voltage_limit(self, args: list[str], n: tuple[int, ...]) -> None:
        # the supply's ramp is capped at dI/dt = V_lim / L in the magnet model
        self.lab.magnet.voltage_limit = self._in_range(self._float(args), 0.001, self.SUPPLY_VOLTAGE[1])

    @command("INDuctance?")
    def _inductance_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(self.lab.magnet.inductance)

    @command("FIELD:UNITS?")
    def _field_units_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(self.field_units)

    @command("CONFigure:FIELD:UNITS")
    def _field_units(self, args: list[str], n: tuple[int, ...]) -> None:
        self.field_units = self._choice(args, 2)

    # -- ramp configuration -------------------------------------------------------------------
    @command("RAMP:RATE:UNITS?")
    def _rate_units_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(self.ramp_rate_units)

    @command("CONFigure:RAMP:RATE:UNITS")
    def _rate_units(self, args: list[str], n: tuple[int, ...]) -> None:
        self.ramp_rate_units = self._choice(args, 2)

    @command("RAMP:RATE:SEGments?")
    def _segments_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(len(self.lab.magnet.segments))

    @command("CONFigure:RAMP:RATE:SEGments")
    def _segments(self, args: list[str], n: tuple[int, ...]) -> None:
        count = self._int(args)
        if not 1 <= count <= self.MAX_SEGMENTS:
            raise CommandError(-105, "Out of range")
        segments = list(self.lab.magnet.segments[:count])
        while len(segments) < count:  # new segments take the last rate, up to the field limit
            segments.append((segments[-1][0], self._field_limit()))
        self.lab.magnet.segments = segments

    def _segment_index(self, segment: int) -> int:
        if not 1 <= segment <= len(self.lab.magnet.segments):
            raise CommandError(-105, "Out of range")
        return segment - 1

    def _set_segment(self, args: list[str], per_tesla: float) -> None:
        """Store segment ``args[0]``: rate and upper bound given in units of ``per_tesla`` per T."""
        m = self.lab.magnet
        i = self._segment_index(self._int(args, 0))
        rate = self._float(args, 1) / (per_tesla * self._time_scale)  # T/s
        upper = self._float(args, 2) / per_tesla  # T
        self._in_range(rate / m.coil_constant, *self.RAMP_RATE_RANGE)
        self._in_range(upper / m.coil_constant, 0.0, m.current_limit)
        if i > 0 and upper <= m.segments[i - 1][1]:
            raise CommandError(-105, "Out of range")  # upper bounds must increase
        segments = list(m.segments)
        segments[i] = (rate, upper)
        m.segments = segments

    def _segment_reply(self, segment: int, per_tesla: float) -> str:
        rate, upper = self.lab.magnet.segments[self._segment_index(segment)]
        return f"{_num(rate * per_tesla * self._time_scale)},{_num(upper * per_tesla)}"

    @command("RAMP:RATE:FIELD:#?")
    def _rate_field_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return self._segment_reply(n[0], self._field_scale)

    @command("CONFigure:RAMP:RATE:FIELD")
    def _rate_field(self, args: list[str], n: tuple[int, ...]) -> None:
        self._set_segment(args, self._field_scale)

    @command("RAMP:RATE:CURRent:#?")
    def _rate_current_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return self._segment_reply(n[0], 1.0 / self.lab.magnet.coil_constant)

    @command("CONFigure:RAMP:RATE:CURRent")
    def _rate_current(self, args: list[str], n: tuple[int, ...]) -> None:
        self._set_segment(args, 1.0 / self.lab.magnet.coil_constant)

    @command("FIELD:TARGet?")
    def _field_target_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(self.lab.magnet.target * self._field_scale)

    @command("CONFigure:FIELD:TARGet")
    def _field_target(self, args: list[str], n: tuple[int, ...]) -> None:
        target = self._float(args) / self._field_scale
        limit = self._field_limit()
        self.lab.magnet.target = self._in_range(target, -limit, limit)

    @command("CURRent:TARGet?")
    def _current_target_q(self, args: list[str], n: tuple[int, ...]) -> str:
        m = self.lab.magnet
        return _num(m.target / m.coil_constant)

    @command("CONFigure:CURRent:TARGet")
    def _current_target(self, args: list[str], n: tuple[int, ...]) -> None:
        m = self.lab.magnet
        current = self._in_range(self._float(args), -m.current_limit, m.current_limit)
        m.target = current * m.coil_constant

    # -- measurements ---------------------------------------------------------------------------
    @command("FIELD:MAGnet?")
    def _field_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(self.lab.magnet.magnet_field() * self._field_scale)

    @command("CURRent:MAGnet?")
    def _magnet_current_q(self, args: list[str], n: tuple[int, ...]) -> str:
        m = self.lab.magnet
        return _num(m.magnet_field() / m.coil_constant)

    @command("CURRent:SUPPly?")
    def _supply_current_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(self.lab.magnet.current())

    @command("VOLTage:SUPPly?")
    @command("VOLTage:MAGnet?")
    def _voltage_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return _num(self.lab.magnet.voltage())

    # -- ramping state -----------------------------------------------------------------------
    @command("STATE?")
    def _state_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(int(self.lab.magnet.state))

    @command("RAMP")
    def _ramp(self, args: list[str], n: tuple[int, ...]) -> None:
        self._ramp_allowed()
        self.lab.magnet.ramp()

    @command("PAUSE")
    def _pause(self, args: list[str], n: tuple[int, ...]) -> None:
        self._ramp_allowed()
        self.lab.magnet.pause()

    @command("ZERO")
    def _zero(self, args: list[str], n: tuple[int, ...]) -> None:
        self._ramp_allowed()
        self.lab.magnet.zero()

    # -- quench -------------------------------------------------------------------------------
    @command("QUench?")
    def _quench_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return "1" if self.lab.magnet.quenched else "0"

    @command("QUench")
    def _quench(self, args: list[str], n: tuple[int, ...]) -> None:
        if self._bool(args):
            self.lab.magnet.quench()
        else:
            self.lab.magnet.reset_quench()

    # -- persistent switch --------------------------------------------------------------------
    @command("PSwitch:INSTalled?")
    def _switch_installed_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return "1" if self.lab.magnet.switch_installed else "0"

    @command("CONFigure:PSwitch")
    def _switch_installed(self, args: list[str], n: tuple[int, ...]) -> None:
        m = self.lab.magnet
        installed = self._bool(args)
        if not installed and m.switch_heater_on:
            m.set_switch_heater(False)
        m.switch_installed = installed

    @command("PSwitch?")
    def _switch_q(self, args: list[str], n: tuple[int, ...]) -> str:
        m = self.lab.magnet
        return "1" if m.switch_installed and m.switch_heater_on else "0"

    @command("PSwitch")
    def _switch(self, args: list[str], n: tuple[int, ...]) -> None:
        on = self._bool(args)
        if not self.lab.magnet.switch_installed:
            raise CommandError(-107, "No switch installed")
        self.lab.magnet.set_switch_heater(on)

    @command("PERSistent?")
    def _persistent_q(self, args: list[str], n: tuple[int, ...]) -> str:
        """The MAGNET IN PERSISTENT MODE LED: switch cold and the magnet holding a current."""
        m = self.lab.magnet
        lit = m.persistent() and m.state != MagnetState.COOLING_SWITCH and m.magnet_field() != 0
        return "1" if lit else "0"

    @command("PSwitch:CURRent?")
    def _switch_current_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return f"{self.lab.magnet.switch_current * 1e3:.1f}"

    @command("CONFigure:PSwitch:CURRent")
    def _switch_current(self, args: list[str], n: tuple[int, ...]) -> None:
        self.lab.magnet.switch_current = self._in_range(self._float(args), 0.0, 125.0) * 1e-3

    @command("PSwitch:HeatTIME?")
    def _heat_time_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(round(self.lab.magnet.switch_heat_time))

    @command("CONFigure:PSwitch:HeatTIME")
    def _heat_time(self, args: list[str], n: tuple[int, ...]) -> None:
        self.lab.magnet.switch_heat_time = float(self._in_range(self._int(args), 5, 120))

    @command("PSwitch:CoolTIME?")
    def _cool_time_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(round(self.lab.magnet.switch_cool_time))

    @command("CONFigure:PSwitch:CoolTIME")
    def _cool_time(self, args: list[str], n: tuple[int, ...]) -> None:
        self.lab.magnet.switch_cool_time = float(self._in_range(self._int(args), 5, 3600))
