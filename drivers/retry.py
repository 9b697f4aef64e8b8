"""Bounded retry of transient I/O errors around a role adapter: back-off on the clock, reconnect, retry.

:class:`RetryingAdapter` stands in for an adapter (:mod:`qbs_lab.drivers.protocols`): every method call
goes straight through; when one fails with a *transient* I/O error (:func:`transient`), the proxy
waits the next back-off on the station's clock (0.5, 2 and 8 s by default), reconnects (device clear;
a dead session is closed and opened again: :class:`DriverReconnect`) and calls again, up to
``retries`` times. Then it raises :class:`~qbs_lab.drivers.errors.InstrumentNotAnswering` with the
instrument's name, from the last error. Every retry is recorded (:attr:`RetryingAdapter.retries`, and
the ``on_retry`` callback). Any other error goes through at once, untouched.

What is transient, and why:

- ``pyvisa.errors.VisaIOError`` with a code of a line that failed, not of a wrong request: timeout
  (VI_ERROR_TMO), connection lost, resource not found (while re-opening), no listeners (GPIB), I/O
  error, closed or invalid session (a re-open that failed before), resource busy, aborted, serial
  framing/parity/overrun, protocol violations; ``pyvisa.errors.InvalidSession`` (the handle was closed
  by a failed re-open). Configuration errors (bad resource name, unsupported attribute...) are not.
- ``TimeoutError`` and ``ConnectionError`` (raw sockets, e.g. QCoDeS's IPInstrument), and an
  ``OSError`` whose errno is a network one (unreachable, down, reset, broken pipe...). Other
  ``OSError`` (a missing file) are not.
- A reply that cannot be read: ``UnicodeDecodeError`` (bytes no instrument sends: a line glitch)
  always. ``ValueError`` and ``KeyError`` from reading calls (every adapter method but ``set_*``,
  ``start_ramp`` and ``pause``): a read sends no value, so they can only come from a reply the parser
  chokes on. From setting calls they usually are a refusal of the value (QCoDeS validators, a
  driver's range check: raised before anything is sent) and are *not* retried, except when QCoDeS
  tagged the error ``getting ...`` and not ``setting ...`` (a read-back inside the call). A bug that
  raises ValueError in a read is therefore retried before it surfaces, as InstrumentNotAnswering
  naming it.

Why calls can be repeated blindly: every adapter call reads, or sets an absolute value (a level, a
rate, a range, a setpoint, a state), so doing it twice leaves the instrument as doing it once. That
includes ``start_ramp(target)`` (it sets the target and asks for RAMP: again, the supply keeps ramping
to the same target), ``set_output(on)``, ``pause()`` and ``set_closed_loop``. A call that failed half
way (a read-back after a set, the Triton's multi-command loop move) is repeated from the start, which
sends the same absolute values again. One caveat: the lock-in's ``status()`` reads *and clears* its
latched flags (``LIAS?``); when its reply is lost the flags latched before are gone, but a condition
that persists latches again at once.

Overhead: a method is looked up once (then cached on the proxy) and each call costs one Python call
and a ``try``; nothing else happens unless an error is raised.

>>> lockin = RetryingAdapter(QcodesSR830(driver), clock, name="lockin")   # doctest: +SKIP
>>> lockin.read_xy()                                                      # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from qbs_lab.drivers.errors import InstrumentNotAnswering, describe_error

from qbs_lab.clock import Clock

__all__ = [
    "DriverReconnect",
    "RetryRecord",
    "RetryingAdapter",
    "is_setter",
    "transient",
]

try:
    from pyvisa import constants as _visa_constants
    from pyvisa import errors as _visa_errors

    _S = _visa_constants.StatusCode
    #: VISA codes of a line that failed (retry), not of a wrong request (do not)
    TRANSIENT_VISA_CODES: frozenset[int] = frozenset(
        int(code)
        for code in (
            _S.error_timeout,
            _S.error_connection_lost,
            _S.error_resource_not_found,
            _S.error_no_listeners,
            _S.error_io,
            _S.error_invalid_object,
            _S.error_resource_busy,
            _S.error_abort,
            _S.error_input_protocol_violation,
            _S.error_output_protocol_violation,
            _S.error_serial_framing,
            _S.error_serial_parity,
            _S.error_serial_overrun,
        )
    )
    _VISA_IO: tuple[type[BaseException], ...] = (_visa_errors.VisaIOError,)
    _INVALID_SESSION: tuple[type[BaseException], ...] = (_visa_errors.InvalidSession,)
except ImportError:  # pragma: no cover - pyvisa is a dependency
    TRANSIENT_VISA_CODES = frozenset()
    _VISA_IO = _INVALID_SESSION = ()

#: errno values of a network that failed
NETWORK_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ENETUNREACH",
        "EHOSTUNREACH",
        "ENETDOWN",
        "EHOSTDOWN",
        "ENETRESET",
        "ECONNABORTED",
        "ECONNRESET",
        "ECONNREFUSED",
        "EPIPE",
        "ETIMEDOUT",
        "ENOTCONN",
    )
    if hasattr(errno, name)
)

#: adapter calls that send a value (the others read)
SETTING_CALLS = frozenset({"start_ramp", "pause"})


def is_setter(call: str) -> bool:
    """True for an adapter call that sends a value: ``set_*``, ``start_ramp``, ``pause``."""
    return call.startswith("set_") or call in SETTING_CALLS


def transient(err: BaseException, call: str = "") -> bool:
    """True when ``err``, raised by adapter method ``call``, is a transient I/O error worth a retry
    (see the module docstring for the rules)."""
    if isinstance(err, _VISA_IO):
        return getattr(err, "error_code", None) in TRANSIENT_VISA_CODES
    if isinstance(err, _INVALID_SESSION):
        return True
    if isinstance(err, TimeoutError | ConnectionError):
        return True
    if isinstance(err, OSError):
        return err.errno in NETWORK_ERRNOS
    if isinstance(err, UnicodeDecodeError):
        return True
    if isinstance(err, ValueError | KeyError):
        if not is_setter(call):
            return True
        context = [a for a in err.args if isinstance(a, str)]
        return any(a.startswith("getting ") for a in context) and not any(
            a.startswith("setting ") for a in context
        )
    return False


@dataclass(frozen=True)
class RetryRecord:
    """One retry: when it was made [s, the station's clock: after the back-off and the reconnect], which
    instrument and call, the attempt (1 = the first retry), the error that caused it, the back-off
    waited [s] and what the reconnect did (a reconnect that failed uses up the attempt)."""

    time: float
    instrument: str
    call: str
    attempt: int
    error: str
    wait: float
    reconnect: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "instrument": self.instrument,
            "call": self.call,
            "attempt": self.attempt,
            "error": self.error,
            "wait": self.wait,
            "reconnect": self.reconnect,
        }


class DriverReconnect:
    """Reconnect a driver after a transient error: a device clear, or, when the session is dead, close
    and open it again.

    VISA drivers (QCoDeS ``visa_handle``, PyMeasure ``adapter.connection``): the same pyvisa resource
    object is closed and opened again in place, so the driver keeps it, and its timeout and
    terminations are put back (QCoDeS's ``set_address`` would open a new resource manager and lose
    both); then a device clear, as the driver's own start does; on a raw socket (``::SOCKET``), what
    the instrument sends unasked on a new connection (the AMI 430's greeting) is read and dropped.
    QCoDeS's raw-socket IP instruments (Oxford Triton): the socket is closed and connected again.
    Returns what it did; raises what the reconnect raised (the proxy counts it as a failed attempt).
    """

    #: seconds to read away what a fresh socket connection sends unasked
    DRAIN_TIMEOUT = 0.25

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self._settings: dict[str, Any] | None = None

    def _handle(self) -> Any:
        handle = getattr(self.driver, "visa_handle", None)  # QCoDeS VisaInstrument
        if handle is None:  # PyMeasure: the adapter's pyvisa resource
            handle = getattr(getattr(self.driver, "adapter", None), "connection", None)
        return handle if hasattr(handle, "clear") and hasattr(handle, "open") else None

    def __call__(self) -> str:
        handle = self._handle()
        if handle is None:
            if hasattr(self.driver, "_connect") and hasattr(self.driver, "_disconnect"):
                try:
                    self.driver._disconnect()
                except OSError:  # a socket the peer closed cannot shut down: just drop it
                    sock = getattr(self.driver, "_socket", None)
                    if sock is not None:
                        with contextlib.suppress(OSError):
                            sock.close()
                    self.driver._socket = None
                self.driver._connect()
                return "socket re-connected"
            return "none (no connection to reset)"
        try:
            self._settings = {
                "timeout": handle.timeout,
                "read_termination": handle.read_termination,
                "write_termination": handle.write_termination,
            }
            handle.clear()
            return "device clear"
        except Exception as err:
            if not transient(err):
                raise
        self._reopen(handle)
        return "re-opened"

    def _reopen(self, handle: Any) -> None:
        with contextlib.suppress(Exception):
            handle.close()
        handle.open()
        settings = self._settings or {}
        for key, value in settings.items():
            setattr(handle, key, value)
        handle.clear()
        if str(getattr(handle, "resource_name", "")).upper().endswith("::SOCKET"):
            timeout = handle.timeout
            handle.timeout = self.DRAIN_TIMEOUT * 1000.0
            try:
                for _ in range(20):
                    handle.read_raw()
            except Exception as err:
                if not transient(err):
                    raise
            finally:
                handle.timeout = timeout


class RetryingAdapter:
    """A role adapter with bounded retries of transient I/O errors (see the module docstring).

    Parameters
    ----------
    adapter : object
        The adapter (any object: its public methods are called through).
    clock : Clock
        Where the back-off waits go (the station's clock: a stop request lands in them).
    name : str
        The instrument's name in the station (errors and records carry it).
    retries : int
        Retries after the first failure (0: none).
    backoff : sequence of float
        Seconds to wait before each retry; the last one repeats when there are more retries.
    reconnect : callable, optional
        Called before each retry; returns a short text of what it did. Default: a
        :class:`DriverReconnect` of ``adapter.driver`` (nothing if the adapter has no driver).
    on_retry : callable, optional
        Called with each :class:`RetryRecord` (e.g. to log it in the run).
    """

    def __init__(
        self,
        adapter: Any,
        clock: Clock,
        *,
        name: str | None = None,
        retries: int = 3,
        backoff: Sequence[float] = (0.5, 2.0, 8.0),
        reconnect: Callable[[], str | None] | None = None,
        on_retry: Callable[[RetryRecord], None] | None = None,
    ) -> None:
        if retries < 0 or (retries and not backoff):
            raise ValueError("retries must be >= 0, with at least one back-off time")
        driver = getattr(adapter, "driver", None)
        if reconnect is None:
            reconnect = DriverReconnect(driver) if driver is not None else (lambda: "none")
        set_ = object.__setattr__
        #: the adapter called through
        set_(self, "adapter", adapter)
        #: the instrument's name in the station
        set_(self, "name", name or getattr(driver, "name", None) or type(adapter).__name__)
        #: every retry made, in order
        set_(self, "retries", [])
        set_(self, "_clock", clock)
        set_(self, "_max_retries", int(retries))
        set_(self, "_backoff", tuple(float(b) for b in backoff))
        set_(self, "_reconnect", reconnect)
        set_(self, "_on_retry", on_retry)

    def __getattr__(self, attr: str) -> Any:
        # only reached for names the proxy has not got: the adapter's attributes, and its methods the
        # first time (then the wrapper is cached on the proxy)
        if attr == "adapter":  # not set yet (a copy being made): no recursion
            raise AttributeError(attr)
        value = getattr(self.adapter, attr)
        if attr.startswith("_") or not callable(value) or isinstance(value, type):
            return value
        adapter = self.adapter

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return getattr(adapter, attr)(*args, **kwargs)
            except Exception as err:
                if not transient(err, attr):
                    raise
                return self._retry(attr, args, kwargs, err)

        call.__name__ = call.__qualname__ = attr
        call.__doc__ = getattr(value, "__doc__", None)
        object.__setattr__(self, attr, call)
        return call

    def __setattr__(self, attr: str, value: Any) -> None:
        # the adapter's state lives on the adapter; drop a cached wrapper the new value replaces
        self.__dict__.pop(attr, None)
        setattr(self.adapter, attr, value)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(dir(self.adapter)))

    def __repr__(self) -> str:
        return f"RetryingAdapter({self.adapter!r}, name={self.name!r}, retries={self._max_retries})"

    def _retry(self, call: str, args: tuple[Any, ...], kwargs: dict[str, Any], err: Exception) -> Any:
        for attempt in range(1, self._max_retries + 1):
            wait = self._backoff[min(attempt, len(self._backoff)) - 1]
            self._clock.sleep(wait)
            try:
                done = self._reconnect() or ""
            except Exception as reconnect_err:
                if not transient(reconnect_err):
                    raise
                done = f"failed ({describe_error(reconnect_err)})"
                self._record(call, attempt, err, wait, done)
                err = reconnect_err
                continue
            self._record(call, attempt, err, wait, done)
            try:
                return getattr(self.adapter, call)(*args, **kwargs)
            except Exception as again:
                if not transient(again, call):
                    raise
                err = again
        raise InstrumentNotAnswering(self.name, call, self._max_retries + 1, err) from err

    def _record(self, call: str, attempt: int, err: BaseException, wait: float, reconnect: str) -> None:
        record = RetryRecord(
            self._clock.now(), self.name, call, attempt, describe_error(err), wait, reconnect
        )
        self.retries.append(record)
        if self._on_retry is not None:
            self._on_retry(record)
