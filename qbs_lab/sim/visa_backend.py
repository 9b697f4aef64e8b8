"""The in-process PyVISA backend ``@qbslab``: drivers reach the simulated lab without sockets.

``pyvisa.ResourceManager("<lab id>@qbslab")`` loads :class:`QbsLabVisaLibrary` (through the top-level
shim module ``pyvisa_qbslab``); the part before ``@`` names a live :class:`~qbs_lab.sim.lab.SimLab`.
Each opened resource is a session with its own output buffer, as a connection to a real instrument:
writes are split into messages at the termination, each message goes to the emulator, and replies are
queued with the instrument's own termination. Reads honour the session's termination character and
time out (on the lab's clock) when nothing is pending, like the real thing.

Faults (:mod:`qbs_lab.sim.faults`, ``lab.faults``) act here: a disconnected instrument cannot be
opened (VI_ERROR_RSRC_NFOUND) and its sessions open at the time die (VI_ERROR_CONN_LOST on every read,
write and device clear until closed and opened again); a lost reply times out as above (VI_ERROR_TMO);
a garbled reply arrives as undecodable bytes.

QCoDeS tells VISA backends apart by the library class's name (``VisaInstrument.visabackend``):
``SimVisaLibrary`` is pyvisa-sim, for which it skips real code paths (device clear, the AMI 430
greeting); any name it does not know it takes as IVI, logging "Could not determine VISA backend" at
every lookup (the AMI 430 driver looks it up on every ramp poll). So the class answers to
``__name__ == "IVIVisaLibrary"``: QCoDeS takes the real-instrument path, silently. Its qualified name
(``repr``, tracebacks) stays ``QbsLabVisaLibrary``.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from pyvisa import attributes, constants, errors, highlevel, rname
from pyvisa.typing import VISARMSession, VISASession
from pyvisa.util import LibraryPath

from qbs_lab.sim.emulators.base import Emulator

if TYPE_CHECKING:
    from qbs_lab.sim.faults import FaultInjector

__all__ = ["QbsLabVisaLibrary", "register_lab", "unregister_lab"]


class _LabLike(Protocol):
    def emulator_at(self, resource_name: str) -> Emulator | None: ...

    def resource_names(self) -> list[str]: ...

    def io_tick(self) -> None: ...

    def wait(self, seconds: float) -> None: ...

    @property
    def faults(self) -> FaultInjector: ...


_LABS: dict[str, _LabLike] = {}
_ids = itertools.count(1)


def register_lab(lab: _LabLike) -> str:
    """Register a lab and return its id (the part of the visalib string before ``@qbslab``)."""
    lab_id = f"qbslab-{next(_ids)}"
    _LABS[lab_id] = lab
    return lab_id


def unregister_lab(lab_id: str) -> None:
    _LABS.pop(lab_id, None)
    # PyVISA caches one library object per (class, path); forget ours so nothing keeps the lab alive
    highlevel.VisaLibraryBase._registry.pop((QbsLabVisaLibrary, LibraryPath(lab_id)), None)


def canonical(resource_name: str) -> str:
    """The canonical form of a VISA resource name (``GPIB::8`` -> ``GPIB0::8::INSTR``)."""
    return str(rname.parse_resource_name(resource_name))


class _Session:
    """One open resource: a connection to an emulator, with the instrument's output queue.

    Replies are queued as whole messages, each ending with END (GPIB's EOI). A read returns the rest
    of the first message, or less: up to the termination character when the client enabled one, or
    ``count`` bytes. As IEEE-488.2 requires, a new command arriving while a reply is still unread
    discards that reply and reports -410 "Query INTERRUPTED" to the instrument.
    """

    def __init__(self, lab: _LabLike, emulator: Emulator, resource_name: str) -> None:
        self.lab = lab
        self.emulator = emulator
        self.name = emulator.name
        self.faults: FaultInjector | None = getattr(lab, "faults", None)
        # a disconnect that fires after this session opened kills it (see _check_line)
        self.epoch = self.faults.epochs.get(self.name, 0) if self.faults is not None else 0
        self.out: deque[bytes] = deque()  # pending output messages
        self.unread_reply = False  # a query's reply is (partly) waiting in `out`
        self.inbuf = bytearray()
        # the greeting arrives after the client's device clear, as with the real instrument
        self.greeting = emulator.on_connect()
        parsed = rname.parse_resource_name(resource_name)
        self.attrs: dict[int, Any] = {
            constants.ResourceAttribute.resource_name: str(parsed),
            constants.ResourceAttribute.resource_class: parsed.resource_class,
            constants.ResourceAttribute.interface_type: parsed.interface_type_const,
            constants.ResourceAttribute.timeout_value: 2000,
            constants.ResourceAttribute.termchar: ord("\n"),
            constants.ResourceAttribute.termchar_enabled: False,
            constants.ResourceAttribute.send_end_enabled: True,
        }
        self.session_type = (parsed.interface_type_const, parsed.resource_class)

    def _deliver_greeting(self) -> None:
        if self.greeting:
            self.out.extend(line.encode() for line in self.greeting.splitlines(keepends=True))
            self.greeting = None

    def _check_line(self) -> None:
        """Fire the faults due now; raise as a lost connection does when this session is dead."""
        faults = self.faults
        if faults is None:
            return
        faults.update()
        if faults.epochs.get(self.name, 0) != self.epoch:
            raise errors.VisaIOError(constants.StatusCode.error_connection_lost)

    def clear(self) -> None:
        self._check_line()
        self.out.clear()
        self.inbuf.clear()
        self.unread_reply = False

    def write(self, data: bytes) -> tuple[int, constants.StatusCode]:
        self._check_line()
        self._deliver_greeting()
        self.inbuf.extend(data)
        while b"\n" in self.inbuf:
            i = self.inbuf.index(b"\n")
            message = bytes(self.inbuf[:i]).decode(errors="replace").rstrip("\r")
            del self.inbuf[: i + 1]
            self._handle(message)
        return len(data), constants.StatusCode.success

    def _handle(self, message: str) -> None:
        self.lab.io_tick()
        faults = self.faults
        if faults is not None and not faults.idle:
            faults.update(self.name)  # command-count faults fire just before the message arrives
            if faults.epochs.get(self.name, 0) != self.epoch:
                self.inbuf.clear()
                raise errors.VisaIOError(constants.StatusCode.error_connection_lost)
        if self.unread_reply:
            self.out.clear()
            self.unread_reply = False
            with self.emulator.lock:
                self.emulator.query_interrupted()
        data = self.emulator.respond(message)
        if data is not None and faults is not None and not faults.idle:
            data = faults.reply(self.name, self.emulator, data)  # lost (no_reply) or garbled
        if data is not None:
            self.out.append(data)
            self.unread_reply = True

    def flush_unterminated(self) -> None:
        # a write sent with END but no termination character still is a complete message
        if self.inbuf:
            message = bytes(self.inbuf).decode(errors="replace").rstrip("\r")
            self.inbuf.clear()
            self._handle(message)

    def read(self, count: int) -> tuple[bytes, constants.StatusCode]:
        self._check_line()
        self._deliver_greeting()
        if not self.out:
            timeout_ms = self.attrs.get(constants.ResourceAttribute.timeout_value, 2000) or 0
            self.lab.wait(min(float(timeout_ms), 1e7) / 1000.0)
            raise errors.VisaIOError(constants.StatusCode.error_timeout)
        message = self.out[0]
        end, status = len(message), constants.StatusCode.success  # END
        if self.attrs.get(constants.ResourceAttribute.termchar_enabled):
            term = self.attrs.get(constants.ResourceAttribute.termchar, ord("\n"))
            i = message.find(bytes([term]))
            if i >= 0:
                end, status = i + 1, constants.StatusCode.success_termination_character_read
        if end > count:
            end, status = count, constants.StatusCode.success_max_count_read
        if end < len(message):
            self.out[0] = message[end:]
        else:
            self.out.popleft()
            if not self.out:
                self.unread_reply = False
        return message[:end], status


class QbsLabVisaLibrary(highlevel.VisaLibraryBase):
    """PyVISA library object for one simulated lab (``library_path`` is the lab's id)."""

    sessions: dict[int, Any]

    @staticmethod
    def get_library_paths() -> tuple[LibraryPath, ...]:
        return (LibraryPath("unset"),)

    @staticmethod
    def get_debug_info() -> dict[str, str]:
        return {"backend": "qbs_lab simulated lab (in-process)"}

    def _init(self) -> None:
        self.sessions = {}
        self._handles = itertools.count(1000)
        lab = _LABS.get(str(self.library_path))
        if lab is None:
            raise errors.LibraryError(
                f"no simulated lab {self.library_path!r}: create a SimLab and use its .visalib"
            )
        self.lab = lab

    def _register(self, obj: object) -> int:
        handle = next(self._handles)
        self.sessions[handle] = obj
        return handle

    def open_default_resource_manager(self) -> tuple[VISARMSession, constants.StatusCode]:
        return VISARMSession(self._register(self)), constants.StatusCode.success

    def list_resources(self, session: VISARMSession, query: str = "?*::INSTR") -> tuple[str, ...]:
        names = self.lab.resource_names()
        faults = getattr(self.lab, "faults", None)
        if faults is not None and not faults.idle:
            faults.update()
            names = [n for n in names if not faults.unreachable(self.lab.emulator_at(n).name)]  # type: ignore[union-attr]
        found = rname.filter(names, query)
        if not found:
            raise errors.VisaIOError(constants.StatusCode.error_resource_not_found)
        return tuple(found)

    def open(
        self,
        session: VISARMSession,
        resource_name: str,
        access_mode: constants.AccessModes = constants.AccessModes.no_lock,
        open_timeout: int = constants.VI_TMO_IMMEDIATE,
    ) -> tuple[VISASession, constants.StatusCode]:
        try:
            name = canonical(resource_name)
        except rname.InvalidResourceName:
            return VISASession(0), self.handle_return_value(
                None, constants.StatusCode.error_invalid_resource_name
            )
        emulator = self.lab.emulator_at(name)
        faults = getattr(self.lab, "faults", None)
        if faults is not None and emulator is not None:
            faults.update()
            if faults.unreachable(emulator.name):
                emulator = None  # disconnected: nobody answers at that address
        if emulator is None:
            return VISASession(0), self.handle_return_value(
                None, constants.StatusCode.error_resource_not_found
            )
        return VISASession(self._register(_Session(self.lab, emulator, name))), (constants.StatusCode.success)

    def close(self, session: Any) -> constants.StatusCode:
        if self.sessions.pop(session, None) is None:
            return constants.StatusCode.error_invalid_object
        return constants.StatusCode.success

    def _session(self, session: Any) -> _Session:
        sess = self.sessions.get(session)
        if not isinstance(sess, _Session):
            raise errors.VisaIOError(constants.StatusCode.error_invalid_object)
        return sess

    def read(self, session: VISASession, count: int) -> tuple[bytes, constants.StatusCode]:
        return self._session(session).read(count)

    def write(self, session: VISASession, data: bytes) -> tuple[int, constants.StatusCode]:
        sess = self._session(session)
        written, status = sess.write(data)
        sess.flush_unterminated()
        return written, status

    def clear(self, session: VISASession) -> constants.StatusCode:
        self._session(session).clear()
        return constants.StatusCode.success

    def flush(self, session: VISASession, mask: constants.BufferOperation) -> constants.StatusCode:
        return self.clear(session)

    def assert_trigger(self, session: VISASession, protocol: constants.TriggerProtocol) -> Any:
        return constants.StatusCode.success

    def read_stb(self, session: VISASession) -> tuple[int, constants.StatusCode]:
        sess = self._session(session)
        sess._check_line()
        emulator = sess.emulator
        with emulator.lock:  # a serial poll: no command is sent, so nothing enters the log
            return emulator.status_byte(), constants.StatusCode.success

    def get_attribute(self, session: Any, attribute: Any) -> tuple[Any, constants.StatusCode]:
        sess = self.sessions.get(session)
        if not isinstance(sess, _Session):
            return 0, constants.StatusCode.error_invalid_object
        if attribute in sess.attrs:
            return sess.attrs[attribute], constants.StatusCode.success
        attr = attributes.AttributesByID.get(attribute)
        if attr is None:
            return 0, constants.StatusCode.error_nonsupported_attribute
        return attr.default, constants.StatusCode.success

    def set_attribute(self, session: Any, attribute: Any, attribute_state: Any) -> constants.StatusCode:
        sess = self.sessions.get(session)
        if not isinstance(sess, _Session):
            return constants.StatusCode.error_invalid_object
        sess.attrs[attribute] = attribute_state
        return constants.StatusCode.success

    def disable_event(self, session: Any, event_type: Any, mechanism: Any) -> constants.StatusCode:
        return constants.StatusCode.success

    def discard_events(self, session: Any, event_type: Any, mechanism: Any) -> constants.StatusCode:
        return constants.StatusCode.success

    def lock(self, session: Any, lock_type: Any, timeout: int, requested_key: Any = None) -> Any:
        return "", constants.StatusCode.success

    def unlock(self, session: Any) -> constants.StatusCode:
        return constants.StatusCode.success


# QCoDeS reads the class name only (see the module docstring): the name of a real library, IVI's
QbsLabVisaLibrary.__name__ = "IVIVisaLibrary"
