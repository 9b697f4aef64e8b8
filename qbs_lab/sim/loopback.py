"""The base of the simulated lab's TCP servers: one emulator, bound to 127.0.0.1 only.

The simulated lab is never reachable from the network: every server binds the loopback address.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Callable

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
        super().__init__(("127.0.0.1", port), self.handler)
        self._thread: threading.Thread | None = None

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
        self.stopping.set()
        if self._thread is not None:
            self.shutdown()
        self.server_close()
