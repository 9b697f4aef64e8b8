"""A HiSLIP server (IVI-6.1) for the emulated instruments: message-based LAN with END, like GPIB's EOI.

Raw sockets carry no end-of-message mark, so a client must end reads at a termination character. GPIB
instruments (the SR830) and their drivers rely on EOI instead: the QCoDeS SR830 driver sets no read
termination at all. HiSLIP marks the end of each message (DataEnd), so such drivers work unmodified over
TCP, as they would through a GPIB-LAN gateway. Clients reach an instrument as
``TCPIP0::127.0.0.1::hislip0,<port>::INSTR`` through pyvisa-py.

Implemented: the synchronous and asynchronous channels' initialization, Data/DataEnd, device clear
(AsyncDeviceClear + DeviceClearComplete), status query, max message size, lock info and lock requests
(always granted: one client per instrument here), remote/local control, trigger (ignored).
"""

from __future__ import annotations

import itertools
import socket
import socketserver
import struct
from collections.abc import Callable

from qbs_lab.sim.emulators.base import Emulator
from qbs_lab.sim.loopback import LoopbackServer

__all__ = ["HislipServer"]

HEADER = struct.Struct("!2sBBIQ")  # prologue 'HS', type, control code, parameter, payload length
# message types (IVI-6.1 table 4)
INITIALIZE, INITIALIZE_RESPONSE, FATAL_ERROR, ERROR = 0, 1, 2, 3
ASYNC_LOCK, ASYNC_LOCK_RESPONSE, DATA, DATA_END = 4, 5, 6, 7
DEVICE_CLEAR_COMPLETE, DEVICE_CLEAR_ACKNOWLEDGE = 8, 9
ASYNC_REMOTE_LOCAL_CONTROL, ASYNC_REMOTE_LOCAL_RESPONSE, TRIGGER = 10, 11, 12
ASYNC_MAX_MSG_SIZE, ASYNC_MAX_MSG_SIZE_RESPONSE = 15, 16
ASYNC_INITIALIZE, ASYNC_INITIALIZE_RESPONSE, ASYNC_DEVICE_CLEAR = 17, 18, 19
ASYNC_STATUS_QUERY, ASYNC_STATUS_RESPONSE, ASYNC_DEVICE_CLEAR_ACKNOWLEDGE = 21, 22, 23
ASYNC_LOCK_INFO, ASYNC_LOCK_INFO_RESPONSE = 24, 25
PROTOCOL_VERSION = 0x0100  # 1.0
MAX_MESSAGE = 1 << 20


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed")
        buf.extend(chunk)
    return bytes(buf)


def _recv_message(sock: socket.socket) -> tuple[int, int, int, bytes]:
    prologue, mtype, control, param, length = HEADER.unpack(_recv_exact(sock, HEADER.size))
    if prologue != b"HS":
        raise ConnectionError("HiSLIP prologue missing")
    return mtype, control, param, _recv_exact(sock, length) if length else b""


def _send(sock: socket.socket, mtype: int, control: int = 0, param: int = 0, payload: bytes = b"") -> None:
    sock.sendall(HEADER.pack(b"HS", mtype, control, param, len(payload)) + payload)


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def setup(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self) -> None:
        try:
            mtype, *_ = _recv_message(self.request)
            if mtype == INITIALIZE:
                self._sync_channel()
            elif mtype == ASYNC_INITIALIZE:
                _send(self.request, ASYNC_INITIALIZE_RESPONSE, 0, int.from_bytes(b"QBSL", "big"))
                self._async_channel()
            else:
                _send(self.request, FATAL_ERROR, 3, 0, b"Invalid Initialization sequence")
        except (ConnectionError, OSError):
            return

    def _sync_channel(self) -> None:
        sock, emulator = self.request, self.server.emulator
        session = next(self.server.session_ids) & 0xFFFF
        _send(sock, INITIALIZE_RESPONSE, 0, (PROTOCOL_VERSION << 16) | session)
        pending = bytearray()
        while not self.server.stopping.is_set():
            mtype, _control, param, payload = _recv_message(sock)
            if mtype in (DATA, DATA_END):
                pending.extend(payload)
                if mtype == DATA:
                    continue
                message = bytes(pending).decode(errors="replace").rstrip("\r\n")
                pending.clear()
                self.server.io_tick()
                data = emulator.respond(message)
                if data is not None:
                    _send(sock, DATA_END, 0, param, data)
            elif mtype == DEVICE_CLEAR_COMPLETE:
                pending.clear()
                _send(sock, DEVICE_CLEAR_ACKNOWLEDGE, 0)
            elif mtype == TRIGGER:
                continue
            else:
                _send(sock, ERROR, 1, 0, b"Unrecognized Message Type")

    def _async_channel(self) -> None:
        sock, emulator = self.request, self.server.emulator
        while not self.server.stopping.is_set():
            mtype, *_ = _recv_message(sock)
            if mtype == ASYNC_MAX_MSG_SIZE:
                _send(sock, ASYNC_MAX_MSG_SIZE_RESPONSE, 0, 0, struct.pack("!Q", MAX_MESSAGE))
            elif mtype == ASYNC_DEVICE_CLEAR:
                _send(sock, ASYNC_DEVICE_CLEAR_ACKNOWLEDGE, 0)
            elif mtype == ASYNC_STATUS_QUERY:
                with emulator.lock:
                    stb = emulator.status_byte() & 0xFF
                _send(sock, ASYNC_STATUS_RESPONSE, stb)
            elif mtype == ASYNC_LOCK:
                _send(sock, ASYNC_LOCK_RESPONSE, 1)
            elif mtype == ASYNC_LOCK_INFO:
                _send(sock, ASYNC_LOCK_INFO_RESPONSE, 0, 1)
            elif mtype == ASYNC_REMOTE_LOCAL_CONTROL:
                _send(sock, ASYNC_REMOTE_LOCAL_RESPONSE, 0)
            else:
                _send(sock, ERROR, 1, 0, b"Unrecognized Message Type")


class _Server(LoopbackServer):
    handler = _Handler

    def __init__(self, port: int, emulator: Emulator, io_tick: Callable[[], None]) -> None:
        super().__init__(port, emulator, io_tick)
        self.session_ids = itertools.count(1)


class HislipServer:
    """One HiSLIP listener on 127.0.0.1 for one emulator, served in a background thread."""

    def __init__(self, emulator: Emulator, io_tick: Callable[[], None], port: int = 0) -> None:
        self._server = _Server(port, emulator, io_tick)
        self._server.start()

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def address(self) -> str:
        return f"TCPIP0::127.0.0.1::hislip0,{self.port}::INSTR"

    def close(self) -> None:
        self._server.stop()
