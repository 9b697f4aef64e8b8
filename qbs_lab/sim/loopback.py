"""The base of the simulated lab's TCP servers: one emulator, bound to 127.0.0.1 only.

The simulated lab is never reachable from the network: every server binds the loopback address.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Callable
from typing import Any

from qbs_lab.sim.emulators.base import Emulator

__all__ = ["LoopbackServer"]


class LoopbackServer(socketserver.ThreadingTCPServer):
    """A threaded TCP server for one emulator on 127.0.0.1, served from a daemon thread.

    Subclasses give ``handler``; ``io_tick`` is called once per message received (it advances a virtual
    clock by the I/O latency). ``port`` 0 lets the OS choose.
    """

    daemon_threads = True
    allow_reuse_address = True
    handler: type[socketserver.BaseRequestHandler]

    def __init__(self, port: int, emulator: Emulator, io_tick: Callable[[], None]) -> None:
        self.emulator = emulator
        self.io_tick = io_tick
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), self.handler)
        self._thread: threading.Thread | None = None

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> None:
        """Serve in a background thread (polling for shutdown every 50 ms)."""
        self._thread = threading.Thread(
            target=self.serve_forever,
            args=(0.05,),
            name=f"qbs-{type(self).__name__}-{self.emulator.name}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and cut every open connection (their handler threads then end)."""
        self.stopping.set()
        if self._thread is not None:
            self.shutdown()
        self.server_close()
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
