"""The emulator base: one instrument's command language on top of the simulated lab's physical state.

An emulator is a message-in, reply-out machine, independent of transport (in-process VISA or TCP):
:meth:`Emulator.handle` takes one program message (termination stripped), runs each ``;``-chained
command through the handler whose :class:`~qbs_lab.sim.scpi.Pattern` matches, and returns the reply
(queries' answers joined by ``;``) or None when nothing is to be sent back.

Handlers are declared on subclasses, PyMeasure-style, with :func:`command`::

    class MyEmulator(ScpiEmulator):
        @command("[:SOURce]:VOLTage[:LEVel]?")
        def _volt_q(self, args: list[str], n: tuple[int, ...]) -> str:
            return f"{self.volt:.6E}"

``args`` are the comma-separated arguments, ``n`` the numeric suffixes of the header. A handler raises
:class:`CommandError` for a command the real instrument would reject (bad value, out of range); the
base records the error the way the instrument does (:meth:`Emulator.report_error`), never hangs, and
never silently accepts it. Received commands go to :attr:`Emulator.log`, a bounded
:class:`~qbs_lab.sim.emulators.command_log.CommandLog`.

Plain settings (a value stored, read back, range-checked, reset by ``*RST``) are declared in a table,
:attr:`Emulator.settings`, of :class:`Setting` rows; write handlers only where the instrument has
behaviour.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from qbs_lab.sim.emulators.command_log import CommandLog, LoggedCommand
from qbs_lab.sim.scpi import Pattern, parse_arguments, split_header, split_message

if TYPE_CHECKING:
    from qbs_lab.sim.lab_state import LabState

__all__ = [
    "CommandError",
    "Emulator",
    "LoggedCommand",
    "ScpiEmulator",
    "Setting",
    "command",
    "float_arg",
    "function_commands",
    "int_arg",
    "keyword",
    "number",
    "one_arg",
    "short",
    "to_bool",
    "to_float",
    "to_int",
]

Handler = Callable[["Emulator", list[str], tuple[int, ...]], "str | None"]
LOOKUP_CACHE = 4096  # distinct headers remembered per emulator


class CommandError(Exception):
    """A command the instrument rejects. ``code`` follows SCPI (-100s: command, -200s: execution)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code},{text}")
        self.code = code
        self.text = text


def function_commands(
    table: Iterable[tuple[str, Mapping[str, str], str, str]],
) -> list[tuple[Pattern, str, str, bool]]:
    """Expand commands parametrised by a measurement function (SCPI's ``VOLTage``/``CURRent`` nodes).

    Each entry is (header template with ``{f}``, {function: header node}, handler method name, forms:
    ``"s"`` set and/or ``"q"`` query). The result goes in :attr:`Emulator.function_handlers`; the
    method is called as ``method(function, args, n, query)``.
    """
    return [
        (Pattern(template.format(f=node) + ("?" if query else "")), f, method, query)
        for template, nodes, method, forms in table
        for f, node in nodes.items()
        for query in (False, True)
        if ("q" if query else "s") in forms
    ]


def _call_function_handler(
    emu: Emulator, args: list[str], n: tuple[int, ...], *, method: str, f: str, query: bool
) -> str | None:
    handler: Callable[..., str | None] = getattr(emu, method)
    return handler(f, args, n, query)


def command(pattern: str) -> Callable[[Handler], Handler]:
    """Declare a method as the handler of a command pattern (see :mod:`qbs_lab.sim.scpi`)."""

    def decorate(func: Handler) -> Handler:
        patterns: list[str] = getattr(func, "_patterns", [])
        func._patterns = [*patterns, pattern]  # type: ignore[attr-defined]
        return func

    return decorate


def to_bool(arg: str) -> bool:
    """SCPI boolean: ON/OFF/1/0 (any case)."""
    a = arg.strip().upper()
    if a in ("1", "ON"):
        return True
    if a in ("0", "OFF"):
        return False
    raise CommandError(-224, "Illegal parameter value")


def to_float(arg: str) -> float:
    try:
        return float(arg)
    except ValueError:
        raise CommandError(-104, "Data type error") from None


def to_int(arg: str) -> int:
    try:
        value = float(arg)
    except ValueError:
        raise CommandError(-104, "Data type error") from None
    if value != int(value):
        raise CommandError(-104, "Data type error")
    return int(value)


def int_arg(args: list[str], i: int, lo: int, hi: int) -> int:
    """Argument ``i`` as an integer in [lo, hi]: -109 if missing, -104 if not an integer, -222 if out."""
    if len(args) <= i or not args[i]:
        raise CommandError(-109, "Missing parameter")
    value = to_int(args[i])
    if not lo <= value <= hi:
        raise CommandError(-222, "Data out of range")
    return value


def float_arg(args: list[str], i: int, lo: float, hi: float) -> float:
    """Argument ``i`` as a finite number in [lo, hi]: -109 if missing, -104 if not a number, -222 if out."""
    if len(args) <= i or not args[i]:
        raise CommandError(-109, "Missing parameter")
    value = to_float(args[i])
    if not (math.isfinite(value) and lo <= value <= hi):
        raise CommandError(-222, "Data out of range")
    return value


def keyword(arg: str, words: Iterable[str]) -> str:
    """The manual's word (e.g. ``"FRONt"``) of which ``arg`` is the short or long form, any case."""
    a = arg.strip().strip("'\"").upper()
    for word in words:
        if a in (word.upper(), short(word)):
            return word
    raise CommandError(-224, "Illegal parameter value")


def short(word: str) -> str:
    """The short form of a manual word: ``"FRONt"`` -> ``"FRON"``."""
    return "".join(c for c in word if c.isupper() or c.isdigit())


def one_arg(args: list[str]) -> str:
    if not args or not args[0]:
        raise CommandError(-109, "Missing parameter")
    if len(args) > 1:
        raise CommandError(-108, "Parameter not allowed")
    return args[0]


def number(arg: str, lo: float, hi: float, default: float, magnitude: bool = False) -> float:
    """A numeric parameter in [lo, hi] (its magnitude if ``magnitude``); MINimum, MAXimum and
    DEFault are accepted."""
    word = arg.strip().upper()
    if word in ("MIN", "MINIMUM"):
        return lo
    if word in ("MAX", "MAXIMUM"):
        return hi
    if word in ("DEF", "DEFAULT"):
        return default
    value = abs(to_float(arg)) if magnitude else to_float(arg)
    if not (math.isfinite(value) and lo <= value <= hi):
        raise CommandError(-222, "Parameter data out of range")
    return value


@dataclass(frozen=True)
class Setting:
    """One plain setting of an instrument, as its manual's command table gives it.

    ``path``: the command pattern (the query adds ``?``); ``kind``: ``bool``, ``int``, ``float``, or
    the manual's words of a choice (``("FRONt", "REAR")``, answered in short form); ``reset``: the
    ``*RST`` value; ``lo``/``hi``: the allowed range of a number, or ``allowed`` its discrete values;
    ``error``: what a value outside raises; ``many``: the argument is a list of choices (an event
    list). The value lives in ``emulator.setting[name]``.
    """

    name: str
    path: str
    kind: type | tuple[str, ...]
    reset: Any
    lo: float = -math.inf
    hi: float = math.inf
    allowed: tuple[float, ...] = ()
    error: tuple[int, str] = (-222, "Parameter data out of range")
    many: bool = False

    def parse(self, args: list[str]) -> Any:
        if isinstance(self.kind, tuple):
            if self.many:
                if not args or not args[0]:
                    raise CommandError(-109, "Missing parameter")
                return tuple(keyword(a, self.kind) for a in args)
            return keyword(one_arg(args), self.kind)
        arg = one_arg(args)
        if self.kind is bool:
            return to_bool(arg)
        try:
            value = number(arg, self.lo, self.hi, self.reset)
        except CommandError as err:
            if err.code == -222:
                raise CommandError(*self.error) from None
            raise
        if self.allowed and value not in self.allowed:
            raise CommandError(*self.error)
        if self.kind is int:
            if value != int(value):
                raise CommandError(-104, "Data type error")
            return int(value)
        return value

    def format(self, value: Any, fmt: Callable[[float], str]) -> str:
        if isinstance(self.kind, tuple):
            return ",".join(short(v) for v in value) if self.many else short(value)
        if self.kind is bool:
            return "1" if value else "0"
        if self.kind is int:
            return str(value)
        return fmt(value)

    def query(self, value: Any, args: list[str], fmt: Callable[[float], str]) -> str:
        """The answer to ``path?`` (numbers also take MINimum, MAXimum, DEFault)."""
        if args and self.kind in (int, float):
            word = one_arg(args).strip().upper()
            limits = {"MIN": self.lo, "MINIMUM": self.lo, "MAX": self.hi, "MAXIMUM": self.hi}
            limits |= {"DEF": self.reset, "DEFAULT": self.reset}
            if word not in limits:
                raise CommandError(-224, "Illegal parameter value")
            value = limits[word]
        elif args:
            raise CommandError(-108, "Parameter not allowed")
        return self.format(value, fmt)


def _set_setting(emu: Emulator, args: list[str], n: tuple[int, ...], *, setting: Setting) -> None:
    emu.setting[setting.name] = setting.parse(args)
    emu.setting_changed(setting.name)


def _query_setting(emu: Emulator, args: list[str], n: tuple[int, ...], *, setting: Setting) -> str:
    return setting.query(emu.setting[setting.name], args, emu.format_number)


class Emulator:
    """Base class of all instrument emulators.

    Parameters
    ----------
    name : str
        The instrument's name in the station.
    lab : LabState
        The simulated lab's physical state that this instrument observes and drives.
    rng : numpy.random.Generator
        This instrument's own noise source (one per instrument keeps runs reproducible).

    Class attributes a subclass sets: ``model`` (shown in logs), ``idn`` (the ``*IDN?`` answer),
    ``reply_termination`` (what the instrument ends replies with), ``greeting`` (text the instrument
    sends on connect, e.g. the AMI 430's), and ``chain_replies`` (join replies to chained queries with
    ``;`` as SCPI does), ``lan_protocol`` (``"socket"``, or ``"hislip"`` for GPIB instruments whose
    drivers rely on the END mark rather than a termination character).
    """

    model: ClassVar[str] = "generic"
    idn: ClassVar[str] = "QBS_LAB,EMULATOR,0,0.1"
    reply_termination: ClassVar[str] = "\n"
    greeting: ClassVar[str | None] = None
    #: how the instrument is reached over TCP by default: "socket" (raw) or "hislip" (with END)
    lan_protocol: ClassVar[str] = "socket"
    #: commands parametrised by a function, from :func:`function_commands` (tried after @command ones)
    function_handlers: ClassVar[list[tuple[Pattern, str, str, bool]]] = []
    #: plain settings, declared as the manual's command tables give them (see :class:`Setting`)
    settings: ClassVar[tuple[Setting, ...]] = ()
    #: the ``*OPT?`` answer; None: the instrument has no ``*OPT?``
    options: ClassVar[str | None] = None
    #: IEEE-488.2 common commands (as patterns, e.g. ``"*TST?"``) the instrument's manual lacks: they
    #: are answered as any unknown header is
    lacks: ClassVar[frozenset[str]] = frozenset()
    #: commands kept in memory by the command log (see :class:`CommandLog`)
    log_keep: ClassVar[int | None] = None
    _handlers: ClassVar[list[tuple[Pattern, Handler]]]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        handlers: list[tuple[Pattern, Handler]] = []
        seen: set[str] = set()
        # own class first, then bases, so a subclass can override a base command
        for klass in cls.__mro__:
            for attr, func in vars(klass).items():
                if attr in seen or not callable(func):
                    continue
                for text in getattr(func, "_patterns", ()):
                    if text not in cls.lacks:
                        handlers.append((Pattern(text), func))
                seen.add(attr)
        for setting in cls.settings:  # after the handlers: a handler may take over a setting's query
            handlers.append((Pattern(setting.path), partial(_set_setting, setting=setting)))
            handlers.append((Pattern(setting.path + "?"), partial(_query_setting, setting=setting)))
        if cls.options is None:
            handlers = [(p, f) for p, f in handlers if p.text != "*OPT?"]
        cls._handlers = handlers

    def __init__(self, name: str, lab: LabState, rng: np.random.Generator) -> None:
        self.name = name
        self.lab = lab
        self.rng = rng
        self.log = CommandLog() if self.log_keep is None else CommandLog(self.log_keep)
        self._matched = ""  # the pattern of the command being run: the log's key for it
        self._lookup: dict[str, tuple[Handler, tuple[int, ...], str] | None] = {}
        self.errors: deque[tuple[int, str]] = deque(maxlen=30)
        self.last_reply_binary = False  # set by a handler whose reply is a binary block
        self.esr = 0  # IEEE-488.2 standard event status register
        self.lock = lab.lock  # the lab's lock: instruments share one physical state
        self.reset()

    # -- state -----------------------------------------------------------------------------
    def reset(self) -> None:
        """Front-panel defaults (``*RST``): the settings table's reset values. Subclasses extend it."""
        self.errors.clear()
        self.esr = 0
        self.setting: dict[str, Any] = {s.name: s.reset for s in self.settings}

    def setting_changed(self, name: str) -> None:
        """Called after a table setting was set; an emulator with behaviour behind one overrides it."""

    def format_number(self, value: float) -> str:
        """How the instrument sends a number (table settings' answers)."""
        return f"{value:.6E}"

    # -- message handling --------------------------------------------------------------------
    def handle(self, message: str) -> str | None:
        """Run one program message; return the reply text (without termination) or None."""
        with self.lock:
            self.lab.sync()
            self.last_reply_binary = False
            replies: list[str] = []
            previous_path = ""
            for part in split_message(message.strip("\r\n")):
                self._matched = ""
                reply, error, previous_path = self._run(part, previous_path)
                self.log.append(LoggedCommand(self.lab.clock.now(), part, reply, error), self._matched)
                if reply is not None:
                    replies.append(reply)
            if not replies:
                return None
            return ";".join(replies)

    def _run(self, part: str, previous_path: str) -> tuple[str | None, str | None, str]:
        header, argtext = split_header(part)
        found = None
        if previous_path and not header.startswith((":", "*")):
            # SCPI: a chained header without a leading colon continues the previous command's path
            found = self._find(previous_path + ":" + header)
            if found is not None:
                header = previous_path + ":" + header
        if found is None:  # lenient: an instrument also finds a root command written without ':'
            found = self._find(header)
        if found is None:
            self.report_error(-113, "Undefined header")
            return None, f"-113,Undefined header: {part}", previous_path
        func, suffixes = found
        path = header.lstrip(":").rsplit(":", 1)[0] if ":" in header.lstrip(":") else ""
        try:
            reply = func(self, parse_arguments(argtext), suffixes)
        except CommandError as err:
            self.report_error(err.code, err.text)
            return None, f"{err.code},{err.text}", path
        return reply, None, path

    def _find(self, header: str) -> tuple[Handler, tuple[int, ...]] | None:
        """The handler of a header and its numeric suffixes (None: undefined); looked up once per
        distinct header (matching every pattern costs ~0.2 ms, and drivers repeat a few headers)."""
        key = header.upper()
        found = self._lookup.get(key, False)
        if found is False:
            found = self._search(header)
            if len(self._lookup) >= LOOKUP_CACHE:
                self._lookup.clear()
            self._lookup[key] = found
        if found is None:
            return None
        func, suffixes, self._matched = found
        return func, suffixes

    def _search(self, header: str) -> tuple[Handler, tuple[int, ...], str] | None:
        for pattern, func in self._handlers:
            suffixes = pattern.match(header)
            if suffixes is not None:
                return func, suffixes, pattern.text
        for pattern, f, method, query in self.function_handlers:
            suffixes = pattern.match(header)
            if suffixes is not None:
                handler = partial(_call_function_handler, method=method, f=f, query=query)
                return handler, suffixes, pattern.text
        return None

    def respond(self, message: str) -> bytes | None:
        """Run one message and return the bytes to send back (None: nothing to send).

        What transports call: the reply and its encoding (text or binary block) are taken together
        under the lab's lock, so a second client cannot change the encoding in between.
        """
        with self.lock:
            reply = self.handle(message)
            return None if reply is None else self.reply_bytes(reply)

    def query_interrupted(self) -> None:
        """A new command arrived while a reply was unread (IEEE-488.2: the reply is discarded)."""
        self.report_error(-410, "Query INTERRUPTED")

    def reply_bytes(self, reply: str) -> bytes:
        """The bytes a transport sends for the reply :meth:`handle` just returned.

        Text goes out UTF-8 encoded with the instrument's termination; a binary block (a handler set
        :attr:`last_reply_binary` and returned one character per byte) goes out as is, unterminated.
        """
        if self.last_reply_binary:
            return reply.encode("latin-1")
        return (reply + self.reply_termination).encode()

    def report_error(self, code: int, text: str) -> None:
        """Record an error as the instrument does: SCPI error queue plus the ESR bit.

        ESR bits (IEEE-488.2): 2 query error, 3 device-dependent, 4 execution error, 5 command error.
        """
        self.errors.append((code, text))
        if -199 <= code <= -100:
            self.esr |= 1 << 5
        elif -299 <= code <= -200:
            self.esr |= 1 << 4
        elif -499 <= code <= -400:
            self.esr |= 1 << 2
        else:
            self.esr |= 1 << 3

    def on_connect(self) -> str | None:
        """Text sent unprompted when a client connects (the greeting), if any."""
        return self.greeting

    # -- IEEE-488.2 common commands -----------------------------------------------------------
    @command("*IDN?")
    def _idn(self, args: list[str], n: tuple[int, ...]) -> str:
        return self.idn

    @command("*RST")
    def _rst(self, args: list[str], n: tuple[int, ...]) -> None:
        self.reset()

    @command("*CLS")
    def _cls(self, args: list[str], n: tuple[int, ...]) -> None:
        self.errors.clear()
        self.esr = 0

    @command("*ESR?")
    def _esr_q(self, args: list[str], n: tuple[int, ...]) -> str:
        value, self.esr = self.esr, 0
        return str(value)

    @command("*ESE")
    def _ese(self, args: list[str], n: tuple[int, ...]) -> None:
        self.ese = to_int(args[0]) if args else 0

    @command("*ESE?")
    def _ese_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(getattr(self, "ese", 0))

    @command("*SRE")
    def _sre(self, args: list[str], n: tuple[int, ...]) -> None:
        self.sre = to_int(args[0]) if args else 0

    @command("*SRE?")
    def _sre_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(getattr(self, "sre", 0))

    def status_byte(self) -> int:
        """The IEEE-488.2 status byte (serial poll, ``*STB?``): ESB (bit 5) and error available (bit 2)."""
        esb = 1 << 5 if self.esr else 0
        eav = 1 << 2 if self.errors else 0
        return esb | eav

    @command("*STB?")
    def _stb_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(self.status_byte())

    @command("*OPC?")
    def _opc_q(self, args: list[str], n: tuple[int, ...]) -> str:
        return "1"

    @command("*OPC")
    def _opc(self, args: list[str], n: tuple[int, ...]) -> None:
        self.esr |= 1

    @command("*WAI")
    def _wai(self, args: list[str], n: tuple[int, ...]) -> None:
        return None

    @command("*TST?")
    def _tst(self, args: list[str], n: tuple[int, ...]) -> str:
        return "0"

    @command("*OPT?")
    def _opt(self, args: list[str], n: tuple[int, ...]) -> str:
        return self.options or "0"

    @command("*TRG")
    def _trg(self, args: list[str], n: tuple[int, ...]) -> None:
        """A bus trigger: nothing waits for one unless an emulator says so."""


class ScpiEmulator(Emulator):
    """An SCPI instrument: adds the ``SYSTem:ERRor`` queue and ``SYSTem:VERSion``."""

    @command("SYSTem:ERRor[:NEXT]?")
    def _err_q(self, args: list[str], n: tuple[int, ...]) -> str:
        if not self.errors:
            return '0,"No error"'
        code, text = self.errors.popleft()
        return f'{code},"{text}"'

    @command("SYSTem:ERRor:COUNt?")
    def _err_count(self, args: list[str], n: tuple[int, ...]) -> str:
        return str(len(self.errors))

    @command("SYSTem:ERRor:ALL?")
    def _err_all(self, args: list[str], n: tuple[int, ...]) -> str:
        if not self.errors:
            return '0,"No error"'
        out = ",".join(f'{c},"{t}"' for c, t in self.errors)
        self.errors.clear()
        return out

    @command("SYSTem:VERSion?")
    def _version(self, args: list[str], n: tuple[int, ...]) -> str:
        return "1999.0"
