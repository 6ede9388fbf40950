"""A TCP relay in front of a test server that can cut the link the way a network partition
does: bytes stop flowing both ways, while connections neither close nor refuse, so a
client waits for its own timeouts. Real sockets and threads, no mock: the process behind
the relay (an executor) is cut off from that server alone.
"""

from __future__ import annotations

import socket
import threading
from contextlib import suppress

from servers import free_port


class Partition:
    """Relays 127.0.0.1:``port`` to *host*:*target_port* until :meth:`cut`; :meth:`heal`
    lets bytes through again (a client's requests sent meanwhile are lost: it times out,
    reconnects and goes on)."""

    def __init__(self, host: str, target_port: int) -> None:
        self.target = (host, target_port)
        self.port = free_port()
        self._cut = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, name="partition-accept", daemon=True).start()

    def cut(self) -> None:
        self._cut.set()

    def heal(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        for sock in self._sockets:
            with suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                server = socket.create_connection(self.target)
            except OSError:
                return  # closed
            self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                if not self._cut.is_set():
                    sink.sendall(data)
        for sock in (source, sink):  # one side closed: close the other
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
