"""Errors the roles raise. Every one is something a procedure or the overnight queue can act on."""

from __future__ import annotations

__all__ = ["LeakageError", "LimitError", "QuenchError", "RoleError", "SafetyError"]


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
