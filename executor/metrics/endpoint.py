"""The HTTP endpoint of the metrics: ``GET /metrics`` and ``GET /healthz`` (serve_metrics)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus

import trio

from .registry import Metrics

log = logging.getLogger(__name__)

#: Content type of ``GET /metrics``, as Prometheus expects for format 0.0.4.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: The most bytes a request head (request line and headers) may take.
HEAD_LIMIT = 8192
#: Default seconds a client gets to send its request head, and again to take the response.
TIMEOUT = 5.0
#: Connections served at once. A connection beyond them closes the oldest one still waiting
#: for its request head (idle, or a slow client), so idle connections, however many, cannot
#: keep /healthz from answering; only when none waits is the newcomer closed instead.
MAX_CONNECTIONS = 64
# After the response, how long and how much we read and discard before closing: closing a
# socket with unread input sends an RST, which can destroy the response before it is read.
_LINGER_SECONDS = 1.0
_LINGER_BYTES = 65536


class _HTTPError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class _Response:
    status: HTTPStatus
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()

    def encode(self, *, include_body: bool = True) -> bytes:
        lines = [
            f"HTTP/1.0 {self.status.value} {self.status.phrase}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Connection: close",
            *(f"{name}: {value}" for name, value in self.headers),
        ]
        head = "".join(f"{line}\r\n" for line in lines) + "\r\n"
        return head.encode("latin-1") + (self.body if include_body else b"")


def _text(status: HTTPStatus, text: str, headers: tuple[tuple[str, str], ...] = ()) -> _Response:
    return _Response(status, f"{text}\n".encode(), headers=headers)


_HEAD_END = re.compile(rb"\r?\n\r?\n")  # bare LF is tolerated, as RFC 9112 section 2.2 allows
_METHOD = re.compile(r"[A-Z]+\Z")
_VERSION = re.compile(r"HTTP/1\.[0-9]\Z")
_ROUTES = ("/metrics", "/healthz")
_ALLOWED = ("GET", "HEAD")


async def _read_head(stream: trio.abc.ReceiveStream) -> bytes:
    """Bytes up to the blank line that ends the head; raise _HTTPError if there is none."""
    buffer = bytearray()
    while (end := _HEAD_END.search(buffer)) is None:
        if len(buffer) >= HEAD_LIMIT:
            raise _HTTPError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large")
        chunk = await stream.receive_some(HEAD_LIMIT - len(buffer))
        if not chunk:
            raise _HTTPError(HTTPStatus.BAD_REQUEST, "incomplete request head")
        buffer += chunk
    return bytes(buffer[: end.start()])


def _parse_request_line(head: bytes) -> tuple[str, str]:
    """The method and path (query string dropped) of a request; headers are ignored."""
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        method, target, version = line.decode("ascii").split(" ")
    except (UnicodeDecodeError, ValueError):
        raise _HTTPError(HTTPStatus.BAD_REQUEST, "malformed request line") from None
    if not (_METHOD.match(method) and target.startswith("/") and _VERSION.match(version)):
        raise _HTTPError(HTTPStatus.BAD_REQUEST, "malformed request line")
    return method, target.split("?", 1)[0]


class _Waiting:
    """A connection waiting for its request head: the scope that ends the wait."""

    def __init__(self, timeout: float) -> None:
        self.scope = trio.CancelScope(deadline=trio.current_time() + timeout)
        self.evicted = False

    def evict(self) -> None:
        self.evicted = True
        self.scope.cancel()


class _Endpoint:
    """Answers one request per connection; see serve_metrics."""

    def __init__(
        self, metrics: Metrics, health: Callable[[], tuple[bool, str]], timeout: float
    ) -> None:
        self._metrics = metrics
        self._health = health
        self._timeout = timeout
        self._active = 0
        # Connections waiting for their head, oldest first (dicts keep insertion order).
        self._waiting: dict[_Waiting, None] = {}

    async def handle(self, stream: trio.SocketStream) -> None:
        """Serve one connection. Never raises but Cancelled: a client cannot stop the server."""
        try:
            async with stream:
                if self._active >= MAX_CONNECTIONS and not self._evict_oldest_waiting():
                    log.debug("metrics endpoint at capacity; dropping a connection")
                    return
                self._active += 1
                try:
                    await self._exchange(stream)
                finally:
                    self._active -= 1
        except Exception:  # peers reset, vanish or misbehave in many ways; none matter here
            log.debug("metrics connection failed", exc_info=True)

    def _evict_oldest_waiting(self) -> bool:
        """Close the oldest connection that has not sent its head yet, if there is one: a
        request that arrives now is worth more than one that has not arrived so far."""
        oldest = next(iter(self._waiting), None)
        if oldest is None:
            return False
        del self._waiting[oldest]
        oldest.evict()
        log.debug("metrics endpoint at capacity; closing its oldest idle connection")
        return True

    async def _exchange(self, stream: trio.SocketStream) -> None:
        method = "GET"
        response = _text(HTTPStatus.REQUEST_TIMEOUT, "request timeout")  # unless a head arrives
        waiting = _Waiting(self._timeout)
        self._waiting[waiting] = None
        try:
            with waiting.scope:
                method, path = _parse_request_line(await _read_head(stream))
                response = self._respond(method, path)
        except _HTTPError as exc:
            response = _text(exc.status, exc.message)
        finally:
            self._waiting.pop(waiting, None)
        if waiting.evicted:
            return  # it sent nothing in all that time: closed without an answer
        with trio.move_on_after(self._timeout):
            await stream.send_all(response.encode(include_body=method != "HEAD"))
            await stream.send_eof()
            with trio.move_on_after(_LINGER_SECONDS):
                drained = 0
                while drained < _LINGER_BYTES and (chunk := await stream.receive_some()):
                    drained += len(chunk)

    def _respond(self, method: str, path: str) -> _Response:
        if path not in _ROUTES:
            return _text(HTTPStatus.NOT_FOUND, "not found")
        if method not in _ALLOWED:
            allow = (("Allow", ", ".join(_ALLOWED)),)
            return _text(HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed", allow)
        if path == "/metrics":
            try:
                body = self._metrics.render().encode()
            except Exception:
                log.exception("rendering metrics failed")
                return _text(HTTPStatus.INTERNAL_SERVER_ERROR, "rendering metrics failed")
            return _Response(HTTPStatus.OK, body, CONTENT_TYPE)
        try:
            healthy, reason = self._health()
        except Exception as exc:
            log.exception("health check failed")
            healthy, reason = False, f"health check failed: {exc!r}"
        if healthy:
            return _text(HTTPStatus.OK, "ok")
        return _text(HTTPStatus.SERVICE_UNAVAILABLE, reason)


async def serve_metrics(
    metrics: Metrics,
    host: str,
    port: int,
    health: Callable[[], tuple[bool, str]],
    *,
    timeout: float = TIMEOUT,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``metrics`` and ``health`` over HTTP on ``host:port`` until cancelled.

    ``GET /metrics`` answers 200 with ``metrics.render()``. ``GET /healthz`` answers 200 "ok"
    when ``health()`` returns ``(True, _)``, else 503 with its reason (or the exception it
    raised); like rendering, ``health`` runs on the event loop, so it must be quick and must not
    block. ``HEAD`` is accepted wherever ``GET`` is. Other paths answer 404, other methods
    405, and a malformed request line 400. One request per connection (``Connection: close``).

    A client gets ``timeout`` seconds to send a request head of at most HEAD_LIMIT bytes (else
    408 or 431) and as long again to take the response; at most MAX_CONNECTIONS are served at
    once, and a connection beyond them closes the oldest one still waiting for its head
    (idle connections cannot starve ``/healthz``). Each connection runs in its own task and
    its errors are logged at debug level, so no client can crash the server.

    Calls ``task_status.started(port)`` once listening, with the real port when ``port`` is 0.
    Only one port is reported: use a single-address ``host`` such as "127.0.0.1" or "::" with
    port 0, since each address of a multi-address host gets its own free port.
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    await serve_metrics_on(listeners, metrics, health, timeout=timeout, task_status=task_status)


async def serve_metrics_on(
    listeners: list[trio.SocketListener],
    metrics: Metrics,
    health: Callable[[], tuple[bool, str]],
    *,
    timeout: float = TIMEOUT,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """:func:`serve_metrics` on listeners opened beforehand (an executor takes its port
    before anything else, so that a port in use stops it at once)."""
    host, bound_port = listeners[0].socket.getsockname()[:2]
    endpoint = _Endpoint(metrics, health, timeout)
    log.info("serving metrics on %s port %d", host, bound_port)
    task_status.started(bound_port)
    await trio.serve_listeners(endpoint.handle, listeners)
