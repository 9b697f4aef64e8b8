"""Errors the roles raise. Every one is something a procedure or the overnight queue can act on."""

from __future__ import annotations

__all__ = [
    "InstrumentNotAnswering",
    "LeakageError",
    "LimitError",
    "QuenchError",
    "RoleError",
    "SafetyError",
    "describe_error",
]


class RoleError(Exception):
    """Base of the roles' errors."""


class SafetyError(RoleError):
    """A safety rule stopped an action."""


class LimitError(SafetyError):
    """A target outside the station's limits, refused before anything was sent to the instrument."""


class LeakageError(SafetyError):
    """Gate leakage above its limit: the ramp stopped and the gate went back to its safe value.

    Attributes: ``voltage`` where it was found [V], ``current`` measured [A], ``limit`` [A].
    """

    def __init__(self, message: str, voltage: float, current: float, limit: float) -> None:
        super().__init__(message)
        self.voltage, self.current, self.limit = voltage, current, limit


class QuenchError(SafetyError):
    """The magnet quenched (the supply reports it): the field is gone and the supply latched."""


class InstrumentNotAnswering(RoleError):
    """An instrument still failed after the bounded retries of transient I/O errors (see
    :mod:`qbs_lab.drivers.retry`): a lost connection, timeouts or replies that cannot be read.

    Attributes: ``instrument`` (its name in the station), ``call`` (the adapter method), ``attempts``
    (calls made, the first included) and ``last_error`` (also the exception's ``__cause__``).
    """

    def __init__(self, instrument: str, call: str, attempts: int, last_error: BaseException) -> None:
        super().__init__(
            f"instrument {instrument!r} is not answering: gave up on {call}() after {attempts} attempts"
            f" with reconnects; last error {describe_error(last_error)}"
        )
        self.instrument, self.call, self.attempts, self.last_error = instrument, call, attempts, last_error


def describe_error(err: BaseException) -> str:
    """``Type: message`` on one line. QCoDeS appends its context (``getting lockin_X``) to an error's
    args, which makes ``str()`` a tuple: the args are then joined with ``; ``."""
    text = str(err)
    if len(err.args) > 1 and all(isinstance(a, str) for a in err.args):
        text = "; ".join(err.args)
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")
