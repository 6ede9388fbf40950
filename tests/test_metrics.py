"""The metrics registry and the worker's metrics (names, series from the start), and the
HTTP endpoint over real TCP sockets. The queue gauges are tested in test_queue_stats.py."""

from __future__ import annotations

import logging
import socket
import struct
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from executor import __version__
from executor.errors import DependencyUnavailable
from executor.metrics import Metrics, endpoint
from executor.metrics.endpoint import CONTENT_TYPE, HEAD_LIMIT, serve_metrics
from executor.version import build_info
from executor.worker.gauges import DEPENDENCIES, HealthGauges
from executor.worker.health import Health as WorkerHealth
from executor.worker.meters import OUTCOMES, Meters

# -- the registry and the worker's metrics ---------------------------------------------------


def families(metrics: Metrics) -> dict[str, Any]:
    """The rendered text parsed back (which also checks that it is valid exposition)."""
    return {f.name: f for f in text_string_to_metric_families(metrics.render())}


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(metrics.render()):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


def test_registry_renders_build_info_and_process_metrics():
    metrics = Metrics(process=True)
    metrics.build_info()
    found = families(metrics)
    (info,) = found["ragfleet_build_info"].samples
    assert info.labels["version"] == __version__ and info.value == 1
    assert info.labels["commit"] == build_info().commit  # as --version and the heartbeat say
    assert found["process_cpu_seconds"].type == "counter"  # parsed names drop _total
    assert sample(metrics, "process_resident_memory_bytes") > 0
    assert "_created" not in metrics.render()  # disabled: they would double the output


PROBE = """
import time
from executor.metrics import Metrics
assert not __import__("os").path.exists("/proc/stat")
text = Metrics(process=True).render()
line = next(l for l in text.splitlines() if l.startswith("process_start_time_seconds "))
print(float(line.split()[1]) - time.time())
assert "process_resident_memory_bytes " in text
"""


def test_process_metrics_under_the_units_proc_subset_pid():
    """The unit's ProcSubset=pid hides /proc/stat (a proc mounted with subset=pid, in a new
    PID and mount namespace, as systemd does): the process metrics stay, the start time
    right. Needs root (unshare); the suite runs as root, as CI does."""
    script = f"mount -t proc -o subset=pid proc /proc && exec {sys.executable} -c '{PROBE}'"
    result = subprocess.run(
        ["unshare", "--fork", "--pid", "--mount", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert -60 < float(result.stdout) <= 0  # started just now, not at the epoch


def test_every_task_series_exists_before_the_first_task():
    metrics = Metrics()
    Meters.define(metrics, ["", "noop"])
    text = metrics.render()
    for task_type in ("ingest", "noop", "unknown"):
        for outcome in OUTCOMES:
            line = f'ragfleet_tasks_total{{outcome="{outcome}",type="{task_type}"}} 0.0'
            assert line in text.splitlines()
        assert f'ragfleet_task_duration_seconds_count{{type="{task_type}"}} 0.0' in text
    for name in ("ragfleet_reclaimed_total", "ragfleet_redis_errors_total"):
        assert f"{name} 0.0" in text.splitlines()
    assert "ragfleet_tasks_in_flight 0.0" in text.splitlines()


def test_tasks_are_counted_by_type_and_outcome_with_their_durations():
    metrics = Metrics()
    meters = Meters.define(metrics, ["noop"])
    meters.ended("noop", "done", 0.003)
    meters.ended("noop", "done", 700.0)
    meters.ended("", "failed")
    meters.ended("new_type", "cancelled")  # a type first seen now gets all its series
    assert sample(metrics, "ragfleet_tasks_total", type="noop", outcome="done") == 2
    assert sample(metrics, "ragfleet_tasks_total", type="ingest", outcome="failed") == 1
    assert sample(metrics, "ragfleet_tasks_total", type="new_type", outcome="cancelled") == 1
    assert sample(metrics, "ragfleet_tasks_total", type="new_type", outcome="done") == 0
    bucket = "ragfleet_task_duration_seconds_bucket"
    assert sample(metrics, bucket, type="noop", le="0.005") == 1
    assert sample(metrics, bucket, type="noop", le="600.0") == 1
    assert sample(metrics, bucket, type="noop", le="+Inf") == 2
    assert sample(metrics, "ragfleet_task_duration_seconds_sum", type="noop") == 700.003
    assert sample(metrics, "ragfleet_task_duration_seconds_count", type="ingest") == 0


def test_dependency_gauges_follow_the_outages():
    health = WorkerHealth(logging.getLogger("test"), heartbeat_interval=1)
    metrics = Metrics()
    metrics.register(HealthGauges(health))
    for name in DEPENDENCIES:
        assert sample(metrics, "ragfleet_dependency_up", dependency=name) == 1
        assert sample(metrics, "ragfleet_dependency_outages_total", dependency=name) == 0
    health.outage_of(DependencyUnavailable("x", "embedding_endpoint")).failed(OSError())
    health.redis.failed(OSError("down"))
    assert sample(metrics, "ragfleet_dependency_up", dependency="embedding_endpoint") == 0
    assert sample(metrics, "ragfleet_dependency_up", dependency="document_store") == 1
    assert sample(metrics, "ragfleet_dependency_up", dependency="redis") == 0
    health.dep.recovered()
    health.redis.recovered()
    assert sample(metrics, "ragfleet_dependency_up", dependency="embedding_endpoint") == 1
    assert sample(metrics, "ragfleet_dependency_up", dependency="redis") == 1
    for name in ("embedding_endpoint", "redis"):
        assert sample(metrics, "ragfleet_dependency_outages_total", dependency=name) == 1
    assert sample(metrics, "ragfleet_dependency_outages_total", dependency="database") == 0


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.counter("ok_total", "x").inc(-1),
        lambda m: m.histogram("h", "x", ("le",)),
        lambda m: m.histogram("h", "x", buckets=(1, 0.5)),
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
    metrics.counter("ragfleet_tasks_total", "Tasks.", ("outcome",)).labels(outcome="ok").inc()
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
