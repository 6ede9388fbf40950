"""tracemalloc snapshots on demand: in-process, and driven by real signals in a subprocess."""

from __future__ import annotations

import logging
import os
import re
import select
import signal
import stat
import subprocess
import sys
import textwrap
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from executor import memtrace
from executor.memtrace import MemoryTracer, read_rss_bytes

REPO = Path(__file__).resolve().parent.parent
LOG = logging.getLogger("test.memtrace")
SNAPSHOT_LINE = re.compile(
    r"tracemalloc snapshot (?P<path>\S+\.trace): RSS (?P<rss>[0-9.]+ MiB|unknown), "
    r"traced current [0-9.]+ MiB, peak [0-9.]+ MiB\Z"
)


@pytest.fixture(autouse=True)
def untraced() -> Iterator[None]:
    """Each test starts without tracing; after it, tracing is as it was (e.g. -X tracemalloc)."""
    frames = tracemalloc.get_traceback_limit() if tracemalloc.is_tracing() else None
    tracemalloc.stop()
    yield
    tracemalloc.stop()
    if frames is not None:
        tracemalloc.start(frames)


def snapshot_messages(caplog: pytest.LogCaptureFixture) -> list[re.Match[str]]:
    matches = (SNAPSHOT_LINE.match(r.getMessage()) for r in caplog.records)
    return [m for m in matches if m]


def test_start_and_snapshot(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=LOG.name)
    directory = tmp_path / "state" / "memtrace"  # created on demand
    tracer = MemoryTracer(directory, LOG)
    path = tracer.start_and_snapshot()
    assert tracemalloc.is_tracing()
    assert path.parent == directory
    assert re.fullmatch(rf"{os.getpid()}_snapshot_\d{{8}}T\d{{6}}\.trace", path.name)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert isinstance(tracemalloc.Snapshot.load(str(path)), tracemalloc.Snapshot)
    [message] = snapshot_messages(caplog)
    assert message["path"] == str(path)
    assert message["rss"] != "unknown"
    assert "tracemalloc started" in caplog.messages


def test_snapshot_again_while_tracing(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=LOG.name)
    tracer = MemoryTracer(tmp_path, LOG)
    first = tracer.start_and_snapshot()
    kept = [bytearray(1024) for _ in range(1000)]  # something traced between the two
    second = tracer.start_and_snapshot()
    assert first != second  # even within the same second
    assert caplog.messages.count("tracemalloc started") == 1
    old, new = (tracemalloc.Snapshot.load(str(p)) for p in (first, second))
    growth = sum(diff.size_diff for diff in new.compare_to(old, "filename"))
    assert growth >= 1000 * 1024
    assert len(snapshot_messages(caplog)) == 2
    del kept


def test_stop_is_idempotent(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=LOG.name)
    tracer = MemoryTracer(tmp_path, LOG)
    tracer.stop()
    assert caplog.messages == ["tracemalloc is not running"]
    tracer.start_and_snapshot()
    tracer.stop()
    assert not tracemalloc.is_tracing()
    tracer.stop()
    assert caplog.messages[-2:] == ["tracemalloc stopped", "tracemalloc is not running"]
    tracer.start_and_snapshot()  # and it starts again
    assert tracemalloc.is_tracing()


def test_rss_unavailable(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger=LOG.name)
    monkeypatch.setattr(memtrace, "read_rss_bytes", lambda: None)
    MemoryTracer(tmp_path, LOG).start_and_snapshot()
    [message] = snapshot_messages(caplog)
    assert message["rss"] == "unknown"


def test_read_rss_bytes(tmp_path):
    rss = read_rss_bytes()
    assert rss is not None and rss > 1024 * 1024
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmRSS:\t   2048 kB\nThreads:\t1\n")
    assert read_rss_bytes(status) == 2048 * 1024
    status.write_text("Name:\tpython\n")
    assert read_rss_bytes(status) is None
    status.write_text("VmRSS: lots\n")
    assert read_rss_bytes(status) is None
    assert read_rss_bytes(tmp_path / "missing") is None


def test_handle_signal(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=LOG.name)
    tracer = MemoryTracer(tmp_path / "snapshots", LOG)

    async def main() -> None:
        await tracer.handle_signal(signal.SIGUSR1)
        assert tracemalloc.is_tracing()
        await tracer.handle_signal(signal.SIGUSR2)
        assert not tracemalloc.is_tracing()
        with pytest.raises(ValueError):
            await tracer.handle_signal(signal.SIGTERM)

    trio.run(main)
    assert len(list((tmp_path / "snapshots").glob("*.trace"))) == 1


def test_handle_signal_logs_failures(tmp_path, caplog):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    tracer = MemoryTracer(blocker / "snapshots", LOG)
    trio.run(tracer.handle_signal, signal.SIGUSR1)  # does not raise
    assert "tracemalloc start_and_snapshot failed" in caplog.messages
    assert caplog.records[-1].exc_info is not None


# -- end to end -------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import logging, signal, sys
    from pathlib import Path

    import trio

    from executor.memtrace import MemoryTracer

    async def main():
        tracer = MemoryTracer(Path(sys.argv[1]), logging.getLogger("child"))
        with trio.open_signal_receiver(signal.SIGUSR1, signal.SIGUSR2) as signals:
            print("ready", flush=True)
            async for signum in signals:
                await tracer.handle_signal(signum)
                print(f"handled {signal.Signals(signum).name}", flush=True)
                if signum == signal.SIGUSR2:
                    return

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    trio.run(main)
    """
)


class Lines:
    """Reads lines from a pipe, failing instead of hanging when none comes in time."""

    def __init__(self, pipe: int) -> None:
        self._fd = pipe
        self._buffer = b""

    def next(self, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._fd], [], [], remaining)[0]:
                raise TimeoutError(f"no line within {timeout} s; have {self._buffer!r}")
            chunk = os.read(self._fd, 4096)
            if not chunk:
                raise EOFError(f"pipe closed; have {self._buffer!r}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()


def test_signals_in_a_subprocess(tmp_path):
    snapshots = tmp_path / "state" / "memtrace"
    stderr_path = tmp_path / "stderr.log"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONTRACEMALLOC"}  # starts untraced
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    with stderr_path.open("wb") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(snapshots)],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,  # a file cannot fill up and block the child as a pipe could
        )
    try:
        assert child.stdout is not None
        lines = Lines(child.stdout.fileno())
        assert lines.next() == "ready"  # the signal receiver is open: SIGUSR1 will not kill it
        os.kill(child.pid, signal.SIGUSR1)
        assert lines.next() == "handled SIGUSR1"
        [snapshot] = snapshots.glob("*.trace")
        assert snapshot.name.startswith(f"{child.pid}_snapshot_")
        assert tracemalloc.Snapshot.load(str(snapshot)).traces is not None
        os.kill(child.pid, signal.SIGUSR2)
        assert lines.next() == "handled SIGUSR2"
        assert child.wait(timeout=20) == 0
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=20)
        if child.stdout is not None:
            child.stdout.close()
    log = stderr_path.read_text().splitlines()
    assert log[0] == "INFO tracemalloc started"
    match = SNAPSHOT_LINE.match(log[1].removeprefix("INFO "))
    assert match is not None, log
    assert (match["path"], match["rss"] != "unknown") == (str(snapshot), True)
    assert log[2:] == ["INFO tracemalloc stopped"]
