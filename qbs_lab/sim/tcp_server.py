"""The TCP transport: each emulated instrument listens on its own port of 127.0.0.1.

Drivers connect as to a LAN instrument, ``TCPIP0::127.0.0.1::<port>::SOCKET``, through pyvisa-py.
Messages end at a newline (a preceding ``\\r`` is dropped); replies carry the instrument's own termination.
TCP_NODELAY is set so a query's reply is not held back by Nagle's algorithm. An instrument with a
connect greeting (AMI 430) sends it a moment after the connection opens, as the real one does, so that a
client's device clear (pyvisa-py drains the socket for 0.1 s) does not swallow it.

Only loopback is served: the simulated lab is never reachable from the network.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable

from qbs_lab.sim.emulators.base import Emulator

__all__ = ["GREETING_DELAY", "InstrumentServer"]

#: seconds between accepting a connection and sending the greeting (real time)
GREETING_DELAY = 0.25


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def setup(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self) -> None:
        emulator = self.server.emulator
        greeting = emulator.on_connect()
        if greeting:
            time.sleep(GREETING_DELAY)
            self.request.sendall(greeting.encode())
        buf = bytearray()
        while not self.server.stopping.is_set():
            try:
                data = self.request.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf.extend(data)
            while b"\n" in buf:
                i = buf.index(b"\n")
                message = bytes(buf[:i]).decode(errors="replace").rstrip("\r")
                del buf[: i + 1]
                self.server.io_tick()
                reply = emulator.handle(message)
                if reply is not None:
                    self.request.sendall((reply + emulator.reply_termination).encode())


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, emulator: Emulator, io_tick: Callable[[], None]) -> None:
        self.emulator = emulator
        self.io_tick = io_tick
        self.stopping = threading.Event()
        super().__init__(("127.0.0.1", port), _Handler)


class InstrumentServer:
    """Serve a set of emulators over TCP on 127.0.0.1, one port each, in background threads.

    Parameters
    ----------
    emulators : dict
        Instrument name -> emulator.
    io_tick : callable
        Called once per received message (advances a virtual clock by the I/O latency).
    ports : dict, optional
        Instrument name -> port; missing names get a free port from the OS.
    """

    def __init__(
        self,
        emulators: dict[str, Emulator],
        io_tick: Callable[[], None],
        ports: dict[str, int] | None = None,
    ) -> None:
        ports = ports or {}
        self._servers: dict[str, _Server] = {}
        self._threads: list[threading.Thread] = []
        try:
            for name, emulator in emulators.items():
                self._servers[name] = _Server(ports.get(name, 0), emulator, io_tick)
        except OSError:
            for server in self._servers.values():
                server.server_close()
            raise
        for name, server in self._servers.items():
            t = threading.Thread(target=server.serve_forever, name=f"qbs-sim-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def port(self, name: str) -> int:
        return self._servers[name].server_address[1]

    def address(self, name: str) -> str:
        """The VISA resource name a driver uses to reach ``name``."""
        return f"TCPIP0::127.0.0.1::{self.port(name)}::SOCKET"

    def addresses(self) -> dict[str, str]:
        return {name: self.address(name) for name in self._servers}

    def close(self) -> None:
        for server in self._servers.values():
            server.stopping.set()
            server.shutdown()
            server.server_close()
        self._servers.clear()
