"""The Prometheus registry's text format, and the HTTP endpoint over real TCP sockets."""

from __future__ import annotations

import math
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
import trio

from executor.metrics import Metrics, endpoint
from executor.metrics.endpoint import CONTENT_TYPE, HEAD_LIMIT, serve_metrics

# -- rendering --------------------------------------------------------------------------------

GOLDEN = """\
# HELP ragfleet_tasks_total Tasks finished, by outcome.
# TYPE ragfleet_tasks_total counter
ragfleet_tasks_total{outcome="failed"} 2.0
ragfleet_tasks_total{outcome="ok"} 2.0
ragfleet_tasks_total{outcome="ok",queue="q1"} 1.0
# HELP ragfleet_workers_busy Workers running a task.
# TYPE ragfleet_workers_busy gauge
ragfleet_workers_busy 2.0
# HELP ragfleet_task_seconds Task duration.
# TYPE ragfleet_task_seconds histogram
ragfleet_task_seconds_bucket{kind="pdf",le="0.25"} 2
ragfleet_task_seconds_bucket{kind="pdf",le="1.0"} 2
ragfleet_task_seconds_bucket{kind="pdf",le="10.0"} 3
ragfleet_task_seconds_bucket{kind="pdf",le="+Inf"} 4
ragfleet_task_seconds_sum{kind="pdf"} 25.375
ragfleet_task_seconds_count{kind="pdf"} 4
ragfleet_task_seconds_bucket{kind="txt",le="0.25"} 1
ragfleet_task_seconds_bucket{kind="txt",le="1.0"} 1
ragfleet_task_seconds_bucket{kind="txt",le="10.0"} 1
ragfleet_task_seconds_bucket{kind="txt",le="+Inf"} 1
ragfleet_task_seconds_sum{kind="txt"} 0.0
ragfleet_task_seconds_count{kind="txt"} 1
"""


def test_render_golden():
    metrics = Metrics()
    tasks = metrics.counter("ragfleet_tasks_total", "Tasks finished, by outcome.")
    busy = metrics.gauge("ragfleet_workers_busy", "Workers running a task.")
    latency = metrics.histogram("ragfleet_task_seconds", "Task duration.", buckets=(0.25, 1, 10))
    tasks.inc(outcome="ok")
    tasks.inc(2, outcome="failed")
    tasks.inc(queue="q1", outcome="ok")  # keyword order does not matter
    tasks.inc(outcome="ok")
    busy.set(3)
    busy.dec()
    latency.observe(0, kind="txt")  # series sort by labels, not by first use
    for seconds in (0.125, 0.25, 5, 20):  # 0.25 lands in le="0.25": buckets are inclusive
        latency.observe(seconds, kind="pdf")
    assert metrics.render() == GOLDEN
    assert tasks.value(outcome="ok") == 2.0
    assert tasks.value(outcome="never") == 0.0
    assert busy.value() == 2.0


def test_render_empty_and_unused():
    metrics = Metrics()
    assert metrics.render() == ""
    metrics.counter("idle_total", "Never incremented.")
    assert metrics.render() == "# HELP idle_total Never incremented.\n# TYPE idle_total counter\n"


def test_escaping():
    metrics = Metrics()
    counter = metrics.counter(
        "escaped_total", 'Help with a \\ backslash,\na newline and a " quote.'
    )
    counter.inc(path='C:\\dir\\"quoted"\nnext')
    assert metrics.render().splitlines() == [
        '# HELP escaped_total Help with a \\\\ backslash,\\na newline and a " quote.',
        "# TYPE escaped_total counter",
        'escaped_total{path="C:\\\\dir\\\\\\"quoted\\"\\nnext"} 1.0',
    ]


def test_values_and_labels():
    metrics = Metrics()
    gauge = metrics.gauge("g", "A gauge.")
    gauge.set(math.inf, kind="inf")
    gauge.set(-math.inf, kind="ninf")
    gauge.set(math.nan, kind="nan")
    gauge.inc(amount=7)  # positional-only parameters leave every label name free
    gauge.inc(0.5, shard=3)
    gauge.dec(2, shard=3)
    assert metrics.render().splitlines()[2:] == [
        'g{amount="7"} 1.0',
        'g{kind="inf"} +Inf',
        'g{kind="nan"} NaN',
        'g{kind="ninf"} -Inf',
        'g{shard="3"} -1.5',
    ]


def test_histogram_default_buckets_and_no_labels():
    metrics = Metrics()
    histogram = metrics.histogram("h_seconds", "A histogram.")
    histogram.observe(0.003)
    histogram.observe(1e9)
    lines = metrics.render().splitlines()
    assert lines[2] == 'h_seconds_bucket{le="0.005"} 1'
    assert lines[-4] == 'h_seconds_bucket{le="600.0"} 1'
    assert lines[-3:] == [
        'h_seconds_bucket{le="+Inf"} 2',
        "h_seconds_sum 1000000000.003",
        "h_seconds_count 2",
    ]


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.counter("1bad", "x"),
        lambda m: m.gauge("bad-name", "x"),
        lambda m: m.counter("ok_total", "x").inc(-1),
        lambda m: m.counter("ok_total", "x").inc(math.nan),
        lambda m: m.counter("ok_total", "x").inc(**{"bad-label": "v"}),
        lambda m: m.counter("ok_total", "x").inc(__reserved="v"),
        lambda m: m.histogram("h", "x").observe(1, le="1"),
        lambda m: m.histogram("h", "x").observe(math.nan),
        lambda m: m.histogram("h", "x", buckets=()),
        lambda m: m.histogram("h", "x", buckets=(1, 0.5)),
        lambda m: m.histogram("h", "x", buckets=(1, 1)),
        lambda m: (m.counter("twice", "x"), m.gauge("twice", "x")),
    ],
)
def test_rejects_misuse(call):
    with pytest.raises(ValueError):
        call(Metrics())


# -- HTTP endpoint ----------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


class Health:
    def __init__(self) -> None:
        self.result = (True, "")

    def __call__(self) -> tuple[bool, str]:
        return self.result


async def exchange(port: int, request: bytes, *, eof: bool = False) -> bytes:
    """Send ``request`` (then EOF if asked) and return everything received until EOF."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        if eof:
            await stream.send_eof()
        received = bytearray()
        while chunk := await stream.receive_some():
            received += chunk
    return bytes(received)


async def fetch(port: int, request: bytes, **kwargs: bool) -> Reply:
    head, separator, body = (await exchange(port, request, **kwargs)).partition(b"\r\n\r\n")
    assert separator, head
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    version, status, _reason = status_line.split(" ", 2)
    assert version == "HTTP/1.0"
    headers = dict(line.split(": ", 1) for line in header_lines)
    assert headers["Connection"] == "close"
    return Reply(int(status), headers, body)


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n".encode()


def serve(
    test: Callable[[int], Awaitable[None]],
    metrics: Metrics | None = None,
    health: Callable[[], tuple[bool, str]] = lambda: (True, ""),
    **kwargs: float,
) -> None:
    """Run ``test(port)`` against a live server on 127.0.0.1, then cancel the server."""

    async def main() -> None:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                port = await nursery.start(
                    lambda task_status: serve_metrics(
                        metrics or Metrics(),
                        "127.0.0.1",
                        0,
                        health,
                        task_status=task_status,
                        **kwargs,
                    )
                )
                assert port > 0
                await test(port)
                nursery.cancel_scope.cancel()

    trio.run(main)


def test_live_endpoints():
    metrics = Metrics()
    metrics.counter("ragfleet_tasks_total", "Tasks.").inc(outcome="ok")
    health = Health()

    async def test(port: int) -> None:
        reply = await fetch(port, get("/metrics"))
        assert reply.status == 200
        assert reply.headers["Content-Type"] == CONTENT_TYPE
        assert reply.body.decode() == metrics.render()
        assert int(reply.headers["Content-Length"]) == len(reply.body)

        reply = await fetch(port, get("/metrics?debug=1"))
        assert (reply.status, reply.body.decode()) == (200, metrics.render())

        head = await fetch(port, get("/metrics", "HEAD"))
        assert (head.status, head.body) == (200, b"")
        assert head.headers["Content-Length"] == str(len(metrics.render()))

        assert (await fetch(port, get("/healthz"))).body == b"ok\n"
        health.result = (False, "redis unreachable")
        reply = await fetch(port, get("/healthz"))
        assert (reply.status, reply.body) == (503, b"redis unreachable\n")
        health.result = (True, "")
        assert (await fetch(port, get("/healthz"))).status == 200

        assert (await fetch(port, get("/nope"))).status == 404
        reply = await fetch(port, get("/metrics", "POST"))
        assert (reply.status, reply.headers["Allow"]) == (405, "GET, HEAD")

        for garbage in (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS ClientHello, say
            b"GET /metrics\r\n\r\n",  # HTTP/0.9
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics SPDY/3\r\n\r\n",
            "GET /m\u00e9trics HTTP/1.1\r\n\r\n".encode(),
        ):
            assert (await fetch(port, garbage)).status == 400, garbage
        reply = await fetch(port, b"GET /metrics HTTP/1.0\r\n", eof=True)  # no blank line
        assert reply.status == 400

        # Bare LF line endings and bytes after the head (unread by us) still get an answer.
        reply = await fetch(port, b"GET /healthz HTTP/1.0\n\n" + b"x" * 50_000)
        assert (reply.status, reply.body) == (200, b"ok\n")

    serve(test, metrics, health)


def test_broken_health_check_and_metrics():
    class Exploding(Metrics):
        def render(self) -> str:
            raise RuntimeError("boom")

    def health() -> tuple[bool, str]:
        raise OSError("no such file")

    async def test(port: int) -> None:
        reply = await fetch(port, get("/healthz"))
        assert reply.status == 503
        assert reply.body == b"health check failed: OSError('no such file')\n"
        assert (await fetch(port, get("/metrics"))).status == 500

    serve(test, Exploding(), health)


def test_slow_and_oversized_requests():
    async def test(port: int) -> None:
        with trio.fail_after(5):  # the server's timeout, not ours, ends the silent request
            assert (await fetch(port, b"GET /metrics HT")).status == 408
        assert (await fetch(port, b"GET /" + b"a" * HEAD_LIMIT)).status == 431
        assert (await fetch(port, get("/healthz"))).status == 200

    serve(test, timeout=0.3)


def test_broken_clients_do_not_stop_the_server():
    async def test(port: int) -> None:
        await (await trio.open_tcp_stream("127.0.0.1", port)).aclose()  # connect and leave
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET /metrics HTTP/1.1\r\n")
        # Abort with an RST (SO_LINGER 0) halfway through the head.
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()
        # A client that sends a request with an extra body then resets before reading.
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(get("/metrics") + b"x" * 10_000)
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()
        await trio.sleep(0.1)
        assert (await fetch(port, get("/healthz"))).status == 200

    serve(test)


def test_healthz_answers_while_100_idle_connections_are_open():
    """Issue 19: idle connections (a port scanner, a stuck client, an attacker) held every
    slot, and /healthz was refused until they timed out. Beyond MAX_CONNECTIONS, the
    newest connection closes the oldest one still waiting for its head."""

    async def test(port: int) -> None:
        idle = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(100)]
        await trio.sleep(0.5)  # let the server accept them all and start their handlers
        with trio.fail_after(2):  # far sooner than the 30 s the idle ones are allowed
            for _ in range(3):
                reply = await fetch(port, get("/healthz"))
                assert (reply.status, reply.body) == (200, b"ok\n")
        # The oldest idle ones were closed (EOF, no answer); the newest still wait.
        with trio.fail_after(2):
            assert await idle[0].receive_some() == b""
        with trio.move_on_after(0.2) as still_open:
            await idle[-1].receive_some()
        assert still_open.cancelled_caught
        for stream in idle:
            await stream.aclose()

    serve(test, timeout=30)


def test_a_connection_sending_its_request_is_not_closed_for_a_newcomer(monkeypatch):
    """Only connections still waiting for their head make room: with every slot taken by
    requests being answered slowly (a client that does not read), a newcomer is closed.
    Four slots, so that four responses larger than the socket buffers (send buffer up to
    4 MiB, receive buffer of a reader that reads nothing 128 KiB) stay in memory."""
    monkeypatch.setattr(endpoint, "MAX_CONNECTIONS", 4)
    big = Metrics()
    big.gauge("padding", "x" * 12 * 2**20).set(1)

    async def test(port: int) -> None:
        # Sending a request and reading nothing keeps each connection in its response phase.
        slow = []
        for _ in range(4):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(get("/metrics"))
            slow.append(stream)
        await trio.sleep(1.5)  # past the 1 s a finished response lingers
        with trio.fail_after(2):  # closed at once, not after the 30 s the slow ones have
            assert await exchange(port, b"") == b""
        for stream in slow:
            await stream.aclose()
        await trio.sleep(0.1)
        assert (await fetch(port, get("/healthz"))).status == 200

    serve(test, big, timeout=30)
