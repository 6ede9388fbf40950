"""A tiny TCP forwarder: one loopback address in front of several servers, as a proxy
(HAProxy, MaxScale's readwriteconnroute, a virtual IP) puts a Galera cluster behind one
address. Each client connection goes to the first backend that accepts it, so when a
backend dies its connections break (the client sees the server gone) and the client's
next connection lands on the next backend. No health checks, no balancing: the simplest
failover there is, enough to show how the executor meets one.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Sequence

from servers import HOST, free_port


class Forwarder:
    """Listens on ``HOST:port`` and forwards to the first of *backends* that accepts."""

    def __init__(self, backends: Sequence[tuple[str, int]]) -> None:
        self.backends = list(backends)
        self.host = HOST
        self.port = free_port()
        self.connections: list[tuple[str, int]] = []  # the backend of each connection, in order
        self._listener = socket.create_server((self.host, self.port))
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="forwarder", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        for backend in self.backends:
            try:
                upstream = socket.create_connection(backend, timeout=2)
            except OSError:
                continue  # down: the next one
            upstream.settimeout(None)
            with self._lock:
                if self._closed:
                    upstream.close()
                    break
                self.connections.append(backend)
                self._open.update((client, upstream))
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
            self._pump(client, upstream)
            return
        client.close()  # no backend: the client sees the connection refused at once

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        # Either side gone: close both, so that the other pump and the client see it too.
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        with self._lock:
            self._open.difference_update((source, sink))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            open_sockets = list(self._open)
        self._listener.close()
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
