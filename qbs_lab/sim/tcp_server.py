"""The TCP transport: each emulated instrument listens on its own ports of 127.0.0.1.

Drivers connect as to a LAN instrument, ``TCPIP0::127.0.0.1::<port>::SOCKET``, through pyvisa-py.
Messages end at a newline (a preceding ``\\r`` is dropped); replies carry the instrument's own termination.
TCP_NODELAY is set so a query's reply is not held back by Nagle's algorithm. An instrument with a
connect greeting (AMI 430) sends it a moment after the connection opens, as the real one does, so that a
client's device clear (pyvisa-py drains the socket for 0.1 s) does not swallow it.

Each instrument is also served over HiSLIP (:mod:`qbs_lab.sim.hislip_server`), whose messages carry
an END mark as GPIB's do; GPIB instruments (the SR830) default to it.

Faults (:mod:`qbs_lab.sim.faults`) act on the raw sockets too: a disconnect cuts the connections open
when it fires and refuses new ones while it lasts (the client sees the connection closed or reset), a
lost reply is not sent (the client times out in its own, real, time), a garbled reply is sent garbled.
HiSLIP connections are not faulted.

Only loopback is served: the simulated lab is never reachable from the network.
"""

from __future__ import annotations

import socket
import socketserver
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from qbs_lab.sim.emulators.base import Emulator
from qbs_lab.sim.hislip_server import HislipServer
from qbs_lab.sim.loopback import LoopbackServer

if TYPE_CHECKING:
    from qbs_lab.sim.faults import FaultInjector

__all__ = ["GREETING_DELAY", "InstrumentServer"]

#: seconds between accepting a connection and sending the greeting (real time)
GREETING_DELAY = 0.25


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def setup(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self) -> None:
        emulator = self.server.emulator
        faults = self.server.faults
        epoch = 0
        if faults is not None:
            faults.update()
            if faults.unreachable(emulator.name):
                return  # nobody answers: the connection closes at once
            epoch = faults.epochs.get(emulator.name, 0)
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
                if faults is not None:
                    faults.update(emulator.name)
                    if faults.epochs.get(emulator.name, 0) != epoch:
                        return  # disconnected: the connection is cut
                data = emulator.respond(message)
                if data is not None and faults is not None:
                    data = faults.reply(emulator.name, emulator, data)
                if data is not None:
                    self.request.sendall(data)


class _Server(LoopbackServer):
    handler = _Handler
    faults: FaultInjector | None = None


class InstrumentServer:
    """Serve a set of emulators on 127.0.0.1 in background threads: a raw socket and a HiSLIP port each.

    Parameters
    ----------
    emulators : dict
        Instrument name -> emulator.
    io_tick : callable
        Called once per received message (advances a virtual clock by the I/O latency).
    ports : dict, optional
        Instrument name -> raw-socket port; missing names get a free port from the OS. HiSLIP ports
        are always chosen by the OS.
    faults : FaultInjector, optional
        The lab's faults, applied to the raw sockets.
    """

    def __init__(
        self,
        emulators: dict[str, Emulator],
        io_tick: Callable[[], None],
        ports: dict[str, int] | None = None,
        faults: FaultInjector | None = None,
    ) -> None:
        ports = ports or {}
        self._emulators = emulators
        self._servers: dict[str, _Server] = {}
        self._hislip: dict[str, HislipServer] = {}
        try:
            for name, emulator in emulators.items():
                self._servers[name] = _Server(ports.get(name, 0), emulator, io_tick)
                self._servers[name].faults = faults
        except OSError:
            for server in self._servers.values():
                server.stop()
            raise
        for name, server in self._servers.items():
            server.start()
            self._hislip[name] = HislipServer(emulators[name], io_tick)

    def port(self, name: str) -> int:
        return self._servers[name].port

    def address(self, name: str, protocol: str | None = None) -> str:
        """The VISA resource name a driver uses to reach ``name``.

        ``protocol`` is ``"socket"`` (``TCPIP0::127.0.0.1::PORT::SOCKET``) or ``"hislip"``
        (``TCPIP0::127.0.0.1::hislip0,PORT::INSTR``); by default the instrument's own LAN protocol
        (its emulator's ``lan_protocol``: HiSLIP for GPIB instruments, whose drivers rely on END).
        """
        protocol = protocol or self._emulators[name].lan_protocol
        if protocol == "hislip":
            return self._hislip[name].address
        if protocol == "socket":
            return f"TCPIP0::127.0.0.1::{self.port(name)}::SOCKET"
        raise ValueError(f"unknown protocol {protocol!r}: use 'socket' or 'hislip'")

    def addresses(self, protocol: str | None = None) -> dict[str, str]:
        return {name: self.address(name, protocol) for name in self._servers}

    def close(self) -> None:
        for server in self._servers.values():
            server.stop()
        for hislip in self._hislip.values():
            hislip.close()
        self._servers.clear()
        self._hislip.clear()
