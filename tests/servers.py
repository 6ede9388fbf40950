"""Real ``redis-server``, MariaDB and PostgreSQL servers, and the ``osmem-server`` ES/OpenSearch
API emulator, for the test suite (no mocks).

A plain module: the fixtures are in conftest.py. Each server is a child process of the test
process, on a free loopback port, with all its files (config, data, logs, socket) in the
``workdir`` it is given (PostgreSQL run by root keeps its cluster elsewhere: see
``PostgresServer``). A test may stop it, kill it (SIGKILL, for crash tests) and start it
again on the same port with the same data (Redis reloads its AOF, MariaDB and PostgreSQL
their datadir).

No server outlives the tests:

* ``stop()`` is idempotent; ``close()`` and the context-manager form call it;
* an ``atexit`` hook closes every server still running when the interpreter exits;
* each server is started through ``setpriv --pdeathsig TERM``, so a pytest killed with SIGKILL
  (or ended by ``os._exit``) takes its servers down too. The kernel sends that signal when the
  *thread* that forked the child ends, so every server is spawned from one daemon thread that
  lives as long as the process: a test can restart a server from a short-lived thread (see
  ``outage``) without the server dying with that thread.

Ports are taken from below the kernel's ephemeral range (``ip_local_port_range``), never from
binding port 0, which hands out a port inside it. While a server on such a port is stopped, a
client that keeps reconnecting can be given that very port as its source port and connect to
itself (TCP simultaneous open), or hold it so that the restart cannot bind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import queue
import random
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psycopg2
import pymysql
import redis
from elastic_transport import Urllib3HttpNode
from osmem_server import resolve_binary
from redis.backoff import NoBackoff
from redis.retry import Retry

HOST = "127.0.0.1"
SETUP_HINT = (
    "run scripts/setup.sh, which installs the Debian packages listed in scripts/system-packages.txt"
)
_BIN_DIRS = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/sbin", "/bin")
_PORT_FLOOR = 10000  # lowest port free_port() hands out


class ServerUnavailable(RuntimeError):
    """A server's binary is not installed."""


class ServerStartError(RuntimeError):
    """A server did not come up; the message ends with the tail of its logs."""


def find_binary(name: str) -> str:
    """Path of the executable ``name``: on PATH, else in /usr/sbin and friends."""
    found = shutil.which(name)
    if found:
        return found
    for directory in _BIN_DIRS:
        path = os.path.join(directory, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise ServerUnavailable(f"{name!r} is neither on PATH nor in /usr/sbin: {SETUP_HINT}")


# --- ports -------------------------------------------------------------------------------

_ports_given: set[int] = set()
_ports_lock = threading.Lock()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    # No SO_REUSEADDR: a port with a socket in any state (even TIME_WAIT) counts as taken.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port free on 127.0.0.1, below the ephemeral range, new to this process."""
    low = _ephemeral_low()
    rng = random.SystemRandom()
    with _ports_lock:
        if low - _PORT_FLOOR >= 1000:
            for _ in range(500):
                port = rng.randrange(_PORT_FLOOR, low)
                if port not in _ports_given and _bindable(port):
                    _ports_given.add(port)
                    return port
        # Odd ephemeral range (or a crowded machine): let the kernel choose.
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((HOST, 0))
                port = sock.getsockname()[1]
            if port not in _ports_given:
                _ports_given.add(port)
                return port
    raise RuntimeError("no free TCP port on 127.0.0.1")


# --- process spawning --------------------------------------------------------------------


class _Spawner:
    """Runs every server's Popen on one daemon thread that lives as long as the process."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[list[str], dict[str, Any], Future[Any]]] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="test-server-spawner", daemon=True
                )
                self._thread.start()
        future: Future[subprocess.Popen[bytes]] = Future()
        self._jobs.put((args, kwargs, future))
        return future.result()

    def _run(self) -> None:
        while True:
            args, kwargs, future = self._jobs.get()
            try:
                future.set_result(subprocess.Popen(args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)


_spawner = _Spawner()
_live: set[_Server] = set()
_live_lock = threading.Lock()


def _setpriv() -> str | None:
    return shutil.which("setpriv") or (
        "/usr/bin/setpriv" if os.path.exists("/usr/bin/setpriv") else None
    )


def _pdeathsig_prefix() -> list[str]:
    setpriv = _setpriv()
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


@atexit.register
def _close_all() -> None:
    with _live_lock:
        servers = list(_live)
    for server in servers:
        server.close()


def _tail(path: Path, lines: int = 40, offset: int = 0) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


# --- servers -----------------------------------------------------------------------------


class _Server:
    """A server process with start/stop/kill/restart; subclasses say how to run and probe it."""

    name = "server"
    start_timeout = 10.0  # seconds until the server must answer
    stop_timeout = 30.0  # seconds between the stop signal and SIGKILL
    stop_signal = signal.SIGTERM  # the graceful stop

    def __init__(self, workdir: Path | str) -> None:
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self.port = free_port()
        self.password = secrets.token_hex(16)
        self.startup_seconds: float | None = None  # wall time of the last start()
        self._proc: subprocess.Popen[bytes] | None = None
        self._prepared = False
        self._closed = False
        self._lock = threading.RLock()
        self._log_offset = 0
        self._out_offset = 0
        self._last_probe_error: BaseException | None = None

    # Subclass hooks ------------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    @property
    def out_path(self) -> Path:
        """The process's stdout and stderr (errors from before its log file is open)."""
        return self.workdir / f"{self.name}.out"

    def _prepare(self) -> None:
        """One-time set-up before the first launch (find binaries, create the datadir)."""

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _prefix(self) -> list[str]:
        """What ``_command()`` runs under: setpriv giving it a parent-death signal."""
        return _pdeathsig_prefix()

    @property
    def _cwd(self) -> Path:
        """The server's working directory."""
        return self.workdir

    def _probe(self) -> bool:
        """One readiness check; exceptions count as 'not yet'."""
        raise NotImplementedError

    _probe_errors: tuple[type[BaseException], ...] = (OSError,)

    # Public API ----------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def start(self) -> Self:
        """Start the server and wait until it answers; a no-op when it is already running.

        The first start sets up the workdir; later ones (``restart``) reuse the same port and
        data. Raises ``ServerUnavailable`` when the binary is missing, ``ServerStartError``
        (with the log tail) when the server does not come up.
        """
        with self._lock:
            if self._closed:
                raise ServerStartError(f"{self!r} is closed")
            if self.is_running:
                return self
            began = time.monotonic()
            first = not self._prepared
            if first:
                self._prepare()
                self._prepared = True
            for attempt in range(1, 4):
                self._launch()
                try:
                    self._wait_ready()
                except ServerStartError:
                    clash = "Address already in use" in self._log_since_launch()
                    self._terminate(signal.SIGKILL)
                    if first and clash and attempt < 3:
                        self.port = free_port()  # someone took it since free_port(): pick anew
                        continue
                    if clash:
                        raise ServerStartError(
                            f"{self.name}: port {self.port} is in use by another process "
                            "(a restart must come back on the same port)"
                            f"{self._diagnostics()}"
                        ) from None
                    raise
                break
            self.startup_seconds = time.monotonic() - began
            return self

    def stop(self, timeout: float | None = None) -> None:
        """Graceful stop: ``stop_signal`` (SIGTERM), wait, SIGKILL after ``timeout``.

        Idempotent.
        """
        with self._lock:
            self._terminate(self.stop_signal, self.stop_timeout if timeout is None else timeout)

    def kill(self) -> None:
        """SIGKILL the server (a crash: no shutdown, no final fsync) and reap it."""
        with self._lock:
            self._terminate(signal.SIGKILL)

    def restart(self) -> Self:
        """Graceful stop (if running), then start on the same port with the same data."""
        with self._lock:
            self.stop()
            return self.start()

    def outage(self, seconds: float, *, kill: bool = False) -> Outage:
        """Stop (or kill) the server now; start it again ``seconds`` later from a thread.

        Returns at once with the server down; ``join()`` the result to wait for the restart
        (it re-raises a failed start).
        """
        return Outage(self, seconds, kill=kill)

    def close(self) -> None:
        """Stop for good; later ``start()`` calls fail."""
        with self._lock:
            self._closed = True
            self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.is_running else "stopped"
        return f"<{type(self).__name__} {self.host}:{self.port} {state} in {self.workdir}>"

    # Internals -----------------------------------------------------------------------------

    def _launch(self) -> None:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._out_offset = self.out_path.stat().st_size if self.out_path.exists() else 0
        with open(self.out_path, "ab") as out:
            self._proc = _spawner.popen(
                [*self._prefix(), *self._command()],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self._cwd,
                start_new_session=True,  # a Ctrl-C in the terminal is pytest's to handle
            )
        with _live_lock:
            _live.add(self)

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        self._last_probe_error = None
        while True:
            code = self._proc.poll()
            if code is not None:
                raise ServerStartError(
                    f"{self.name} exited with status {code} while starting on "
                    f"{self.host}:{self.port}{self._diagnostics()}"
                )
            try:
                if self._probe():
                    return
            except self._probe_errors as exc:
                self._last_probe_error = exc
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"{self.name} did not answer on {self.host}:{self.port} within "
                    f"{self.start_timeout:.0f} s (last error: {self._last_probe_error!r})"
                    f"{self._diagnostics()}"
                )
            time.sleep(0.05)

    def _terminate(self, sig: signal.Signals, timeout: float = 10.0) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None
        with _live_lock:
            _live.discard(self)

    def _log_since_launch(self) -> str:
        return _tail(self.log_path, 200, self._log_offset) + _tail(
            self.out_path, 200, self._out_offset
        )

    def _diagnostics(self) -> str:
        parts = []
        logs = {self.log_path: self._log_offset, self.out_path: self._out_offset}  # may be one
        for path, offset in logs.items():
            text = _tail(path, 40, offset)
            if text.strip():
                parts.append(f"\n--- tail of {path} ---\n{text}")
        return "".join(parts) or f"\n(no output in {self.log_path} nor {self.out_path})"


class Outage:
    """A server stopped now and started again after a delay by a background thread."""

    def __init__(self, server: _Server, seconds: float, *, kill: bool = False) -> None:
        self.server = server
        self.seconds = seconds
        self._error: BaseException | None = None
        if kill:
            server.kill()
        else:
            server.stop()
        self._thread = threading.Thread(target=self._run, name=f"{server.name}-outage", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            time.sleep(self.seconds)
            self.server.start()
        except BaseException as exc:
            self._error = exc

    def join(self, timeout: float | None = None) -> None:
        """Wait until the server is back; re-raise the restart's error, if any."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"{self.server.name} is not back after {timeout} s")
        if self._error is not None:
            raise self._error


@dataclass(frozen=True)
class ServerTls:
    """A server's certificate, its key and the CA its clients verify it with (PEM files)."""

    cert: Path
    key: Path
    ca: Path


def _redis_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class RedisServer(_Server):
    """``redis-server`` with a password and an AOF fsynced every second, like production.

    With *tls*, it speaks TLS only (``port 0``, ``tls-port``), as configc's redis.conf makes
    it between hosts; ``client()`` then verifies its certificate. *extra_config*: lines
    appended to its config (ACL ``user`` lines, say).
    """

    name = "redis"
    start_timeout = 10.0
    stop_timeout = 10.0
    _probe_errors = (OSError, redis.RedisError)

    def __init__(
        self,
        workdir: Path | str,
        tls: ServerTls | None = None,
        extra_config: Sequence[str] = (),
    ) -> None:
        super().__init__(workdir)
        self.binary: str | None = None
        self.config_path = self.workdir / "redis.conf"
        self.tls = tls
        self.extra_config = list(extra_config)

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    def client(self, db: int = 0, **kwargs: Any) -> redis.Redis:
        """A redis-py client for this server (keyword arguments go to ``redis.Redis``).

        Note: redis-py 8 retries a refused connection 10 times with backoff (~4 s) by
        default; pass ``retry=no_retry()`` to see a stopped server fail at once.
        """
        if self.tls is not None:
            kwargs = {**self.tls_options(), **kwargs}
        return redis.Redis(host=self.host, port=self.port, password=self.password, db=db, **kwargs)

    def tls_options(self) -> dict[str, Any]:
        """redis-py's options for a verified TLS connection to this server."""
        assert self.tls is not None
        return {
            "ssl": True,
            "ssl_ca_certs": str(self.tls.ca),
            "ssl_cert_reqs": "required",
            "ssl_check_hostname": True,
        }

    def _listen_lines(self) -> list[str]:
        if self.tls is None:
            return [f"port {self.port}"]
        return [
            "port 0",
            f"tls-port {self.port}",
            f"tls-cert-file {_redis_quote(str(self.tls.cert))}",
            f"tls-key-file {_redis_quote(str(self.tls.key))}",
            f"tls-ca-cert-file {_redis_quote(str(self.tls.ca))}",
            "tls-auth-clients no",
        ]

    def _prepare(self) -> None:
        self.binary = find_binary("redis-server")

    def _command(self) -> list[str]:
        assert self.binary is not None
        self.config_path.write_text(
            "\n".join(
                [
                    "# Written by tests/servers.py for one test session.",
                    *self._listen_lines(),
                    f"bind {self.host}",
                    "protected-mode yes",
                    f"requirepass {self.password}",
                    "daemonize no",
                    "supervised no",
                    f"dir {_redis_quote(str(self.workdir))}",
                    f"logfile {_redis_quote(str(self.log_path))}",
                    "loglevel notice",
                    "appendonly yes",
                    "appendfsync everysec",
                    # After a SIGKILL the AOF may end in a torn command: load what precedes it.
                    "aof-load-truncated yes",
                    'save ""',
                    "maxmemory-policy noeviction",
                    *self.extra_config,
                    "",
                ]
            )
        )
        return [self.binary, str(self.config_path)]

    def _probe(self) -> bool:
        # PING answers -LOADING until the AOF is loaded, so ready means data is in. Up is
        # up, whatever names its certificate has (a test may give it one naming another host).
        names = {"ssl_check_hostname": False} if self.tls is not None else {}
        with self.client(
            socket_connect_timeout=1, socket_timeout=2, retry=no_retry(), **names
        ) as c:
            return bool(c.ping())


def no_retry() -> Retry:
    """A redis-py ``retry`` that gives up at once."""
    return Retry(NoBackoff(), 0)


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class MariaDBServer(_Server):
    """``mariadbd`` (MariaDB 10.11 on Debian 12) with a fresh datadir, running as root.

    After ``start()``: database ``ragfleet_test``, user ``ragfleet``@``127.0.0.1`` (random
    password, ALL on that database), root@127.0.0.1 with the random ``root_password``.
    With *tls*: TLS with that certificate and ``require_secure_transport`` (as configc's cnf
    makes it between hosts); ``connect()`` then verifies the certificate.
    """

    name = "mariadb"
    start_timeout = 30.0
    stop_timeout = 60.0
    user = "ragfleet"
    database = "ragfleet_test"
    _probe_errors = (OSError, pymysql.MySQLError)

    def __init__(self, workdir: Path | str, tls: ServerTls | None = None) -> None:
        super().__init__(workdir)
        self.tls = tls
        self.root_password = secrets.token_hex(16)
        self.binary: str | None = None
        self.datadir = self.workdir / "data"
        self._socket_dir: str | None = None
        self.socket_path = self.workdir / "mysqld.sock"
        if len(os.fsencode(self.socket_path)) > 100:  # sun_path holds 108 bytes
            self._socket_dir = tempfile.mkdtemp(prefix="rf-mariadb-")
            self.socket_path = Path(self._socket_dir) / "mysqld.sock"

    @property
    def log_path(self) -> Path:
        return self.workdir / "error.log"

    @property
    def url(self) -> str:
        return f"mysql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    def connect(self, **kwargs: Any) -> pymysql.connections.Connection:
        """A PyMySQL connection as ``ragfleet`` to ``ragfleet_test`` (kwargs override)."""
        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": self.database,
            "charset": "utf8mb4",
            "connect_timeout": 5,
        }
        if self.tls is not None:
            params["ssl"] = {"ca": str(self.tls.ca), "check_hostname": True, "verify_mode": True}
        params.update(kwargs)
        return pymysql.connect(**params)

    def admin_connect(self, **kwargs: Any) -> pymysql.connections.Connection:
        """A PyMySQL connection as root (no default database)."""
        params: dict[str, Any] = {"user": "root", "password": self.root_password, "database": None}
        params.update(kwargs)
        return self.connect(**params)

    def close(self) -> None:
        super().close()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    def _server_options(self) -> list[str]:
        """Options for both mariadb-install-db (it hands them to mariadbd --bootstrap) and
        mariadbd."""
        return [
            # First, and always: otherwise /etc/mysql/my.cnf (Debian's socket in /run/mysqld,
            # user=mysql, ...) applies.
            "--no-defaults",
            f"--datadir={self.datadir}",
            "--user=root",  # we are root; mariadbd refuses to run as root without it
            "--skip-name-resolve",  # no reverse DNS per connection
            # Compiled-in defaults are latin1; Debian's utf8mb4 lives in the skipped my.cnf.
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            "--innodb-buffer-pool-size=64M",
            "--innodb-log-file-size=16M",  # default 96M: smaller to write at install
        ]

    def _init_sql(self) -> str:
        pw, root_pw = _sql_string(self.password), _sql_string(self.root_password)
        user = f"{_sql_string(self.user)}@'127.0.0.1'"
        statements = [
            # mariadb-install-db runs this in bootstrap mode, where the grant tables are off:
            # account statements fail with ERROR 1290 (--skip-grant-tables) until this.
            "FLUSH PRIVILEGES",
            f"ALTER USER 'root'@'localhost' IDENTIFIED BY {root_pw}",
            f"ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY {root_pw}",
            "DROP USER IF EXISTS 'root'@'::1'",
        ]
        hostname = socket.gethostname()
        if hostname not in ("localhost", "127.0.0.1", "::1"):
            # root@<hostname> draws a warning at every start under --skip-name-resolve.
            statements.append(f"DROP USER IF EXISTS 'root'@{_sql_string(hostname)}")
        statements += [
            f"CREATE DATABASE `{self.database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
            f"CREATE USER {user} IDENTIFIED BY {pw}",
            f"GRANT ALL PRIVILEGES ON `{self.database}`.* TO {user}",
        ]
        return "".join(f"{s};\n" for s in statements)

    def _prepare(self) -> None:
        self.binary = find_binary("mariadbd")
        install_db = find_binary("mariadb-install-db")
        if self.datadir.exists() and any(self.datadir.iterdir()):
            raise ServerStartError(
                f"{self.datadir} is not empty: give each MariaDBServer a fresh workdir"
            )
        (self.workdir / "tmp").mkdir(exist_ok=True)
        init_sql = self.workdir / "init.sql"
        init_sql.write_text(self._init_sql())
        init_sql.chmod(0o600)
        install_log = self.workdir / "install.log"
        with open(install_log, "wb") as out:
            result = subprocess.run(
                [
                    install_db,
                    *self._server_options(),
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    f"--extra-file={init_sql}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                timeout=120,
                check=False,
            )
        if result.returncode != 0:
            shutil.rmtree(self.datadir, ignore_errors=True)
            raise ServerStartError(
                f"mariadb-install-db exited with status {result.returncode}"
                f"\n--- tail of {install_log} ---\n{_tail(install_log)}"
            )

    def _command(self) -> list[str]:
        assert self.binary is not None
        return [
            self.binary,
            *self._server_options(),
            f"--port={self.port}",
            f"--bind-address={self.host}",
            f"--socket={self.socket_path}",
            f"--pid-file={self.workdir / 'mariadbd.pid'}",
            f"--log-error={self.log_path}",
            f"--tmpdir={self.workdir / 'tmp'}",
            "--skip-log-bin",
            *self._tls_options(),
        ]

    def _tls_options(self) -> list[str]:
        if self.tls is None:
            return []
        return [
            f"--ssl-cert={self.tls.cert}",
            f"--ssl-key={self.tls.key}",
            f"--ssl-ca={self.tls.ca}",
            "--require-secure-transport=ON",
        ]

    def _probe(self) -> bool:
        with self.connect(connect_timeout=2) as conn:
            conn.ping(reconnect=False)
        return True


_POSTGRES_LIB = Path("/usr/lib/postgresql")


def find_postgres_binary(name: str) -> str:
    """Path of PostgreSQL's ``name`` (initdb, postgres): Debian keeps them off PATH, in
    /usr/lib/postgresql/<major>/bin (the newest major wins), else on PATH."""
    majors = sorted(
        (int(d.name) for d in _POSTGRES_LIB.glob("*") if d.name.isdigit()), reverse=True
    )
    for major in majors:
        path = _POSTGRES_LIB / str(major) / "bin" / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    try:
        return find_binary(name)
    except ServerUnavailable:
        raise ServerUnavailable(
            f"{name!r} is neither in /usr/lib/postgresql/*/bin nor on PATH: {SETUP_HINT}"
        ) from None


class PostgresServer(_Server):
    """``postgres`` (PostgreSQL 15 on Debian 12) with a fresh cluster made by ``initdb``.

    After ``start()``: database ``ragfleet_test`` owned by role ``ragfleet`` (random password,
    not a superuser), superuser ``postgres`` with the random ``admin_password``; password
    (scram-sha-256) authentication for every connection, TCP on 127.0.0.1 only.

    PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` system
    user (made by Debian's package). The cluster (datadir and Unix socket) lives in a private
    directory under /tmp, ``cluster_dir``, owned by the server's user: pytest's temporary
    directories are root's, mode 0700, where that user cannot reach, and a socket path must
    be short. ``close()`` removes it; a test process killed with SIGKILL leaves it behind
    (its server does stop). The server's log is ``postgres.log`` in ``workdir``.

    fsync stays on, as in production: a restart takes ~0.06 s with it, a fresh cluster
    (initdb, bootstrap, first start) 0.7-1 s. (Data would survive a stop, a SIGKILL or a
    restart of the *process* without it too: the kernel keeps what was written.)
    """

    name = "postgres"
    start_timeout = 30.0
    stop_timeout = 30.0
    # SIGTERM is a "smart" shutdown, which waits for every client to disconnect (executors
    # never do); SIGINT is the "fast" one: it ends the sessions, checkpoints and exits.
    stop_signal = signal.SIGINT
    user = "ragfleet"
    database = "ragfleet_test"
    admin_user = "postgres"
    _probe_errors = (OSError, psycopg2.Error)

    def __init__(self, workdir: Path | str) -> None:
        super().__init__(workdir)
        self.admin_password = secrets.token_hex(16)
        self.binary: str | None = None
        self.cluster_dir: Path | None = None  # datadir and socket directory: set by start()
        self._run_as: list[str] = []  # setpriv options switching to the postgres user

    @property
    def log_path(self) -> Path:
        return self.out_path  # the server logs to stderr, which goes there

    @property
    def out_path(self) -> Path:
        return self.workdir / "postgres.log"

    @property
    def datadir(self) -> Path:
        assert self.cluster_dir is not None, "start() the server first"
        return self.cluster_dir / "data"

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    def connect(self, **kwargs: Any) -> psycopg2.extensions.connection:
        """A psycopg2 connection as ``ragfleet`` to ``ragfleet_test`` (kwargs override).

        psycopg2's ``with connection:`` ends a transaction, not the connection: close it
        (``contextlib.closing``).
        """
        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dbname": self.database,
            "connect_timeout": 5,
        }
        params.update(kwargs)
        return psycopg2.connect(**params)

    def admin_connect(self, **kwargs: Any) -> psycopg2.extensions.connection:
        """A psycopg2 connection as the superuser ``postgres`` to database ``postgres``."""
        params: dict[str, Any] = {
            "user": self.admin_user,
            "password": self.admin_password,
            "dbname": "postgres",
        }
        params.update(kwargs)
        return self.connect(**params)

    def close(self) -> None:
        super().close()
        self._discard_cluster()

    def _discard_cluster(self) -> None:
        if self.cluster_dir is not None:
            shutil.rmtree(self.cluster_dir, ignore_errors=True)
            self.cluster_dir = None

    def _prefix(self) -> list[str]:
        setpriv = _setpriv()
        if not setpriv:
            if self._run_as:
                raise ServerUnavailable(f"setpriv is missing: {SETUP_HINT}")
            return []
        # One setpriv, not two chained: the kernel clears the parent-death signal when the
        # uid changes, and setpriv sets it after switching. INT: a fast shutdown (see
        # stop_signal), so a killed pytest's server does not wait for its clients.
        return [setpriv, *self._run_as, "--pdeathsig", "INT", "--"]

    @property
    def _cwd(self) -> Path:
        # postgres and initdb chdir away and back to find their own executable: the
        # working directory must be one their user can enter.
        assert self.cluster_dir is not None
        return self.cluster_dir

    def _prepare(self) -> None:
        self.binary = find_postgres_binary("postgres")
        find_postgres_binary("initdb")  # missing: ServerUnavailable before anything is made
        owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise ServerUnavailable(
                    f"no 'postgres' system user to run PostgreSQL as: {SETUP_HINT}"
                ) from None
            self._run_as = ["--reuid=postgres", "--regid=postgres", "--init-groups"]
        self.cluster_dir = Path(tempfile.mkdtemp(prefix="rf-postgres-"))
        try:
            if owner is not None:
                os.chown(self.cluster_dir, owner.pw_uid, owner.pw_gid)
            self._init_cluster(owner)
        except BaseException:
            self._discard_cluster()  # the next start() begins afresh
            raise

    def _init_cluster(self, owner: pwd.struct_passwd | None) -> None:
        assert self.binary is not None and self.cluster_dir is not None
        # initdb reads the password from a file its user can open (not root's stdin pipe).
        pwfile = self.cluster_dir / "pwfile"
        pwfile.touch(0o600)
        if owner is not None:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        pwfile.write_text(self.admin_password + "\n")
        install_log = self.workdir / "initdb.log"
        self._run_setup(
            [
                find_postgres_binary("initdb"),
                f"--pgdata={self.datadir}",
                f"--username={self.admin_user}",
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",  # for local (socket) and host connections alike
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",  # no fsync of the new cluster; the server fsyncs from then on
            ],
            "",
            install_log,
        )
        pwfile.unlink()
        # Single-user mode, like mariadb-install-db's bootstrap: one statement per line, each
        # its own transaction (CREATE DATABASE refuses to run inside one).
        pw = self.password.replace("'", "''")
        self._run_setup(
            [
                self.binary,
                "--single",
                "-D",
                str(self.datadir),
                "-c",
                "exit_on_error=on",
                "postgres",
            ],
            f"CREATE ROLE {self.user} LOGIN PASSWORD '{pw}'\n"
            f"CREATE DATABASE {self.database} OWNER {self.user}\n",
            install_log,
        )

    def _run_setup(self, command: list[str], stdin: str, log: Path) -> None:
        with open(log, "ab") as out:
            result = subprocess.run(
                [*self._prefix(), *command],
                input=stdin.encode(),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self._cwd,
                timeout=120,
                check=False,
            )
        if result.returncode != 0:
            raise ServerStartError(
                f"{Path(command[0]).name} exited with status {result.returncode}"
                f"\n--- tail of {log} ---\n{_tail(log)}"
            )

    def _command(self) -> list[str]:
        assert self.binary is not None and self.cluster_dir is not None
        return [
            self.binary,
            "-D",
            str(self.datadir),
            "-p",
            str(self.port),
            "-h",
            self.host,  # listen_addresses
            "-k",
            str(self.cluster_dir),  # the Unix socket's directory (short: sun_path)
            "-c",
            "logging_collector=off",  # log to stderr: postgres.log
            "-c",
            "log_line_prefix=%m [%p] ",
        ]

    def _probe(self) -> bool:
        with contextlib.closing(self.connect(connect_timeout=2)) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
        return True

    def kill(self) -> None:
        """SIGKILL the postmaster *and* its backends, as a crash of the machine would.

        Each backend is a session of its own (postgres calls setsid() in every child), so
        killing the postmaster's process group misses them, and an orphaned backend goes on
        answering its client until it notices the postmaster is gone. The postmaster is
        stopped first (SIGSTOP) so that it forks no child between the listing and the kill.
        """
        with self._lock:
            proc = self._proc
            children: list[int] = []
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGSTOP)
                    deadline = time.monotonic() + 2
                    while _process_state(proc.pid) not in ("T", None):
                        if time.monotonic() > deadline:
                            break
                        time.sleep(0.005)
                    children = child_pids(proc.pid)
                    for pid in children:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
            self._terminate(signal.SIGKILL)
            deadline = time.monotonic() + 10
            while any(process_alive(pid) for pid in children) and time.monotonic() < deadline:
                time.sleep(0.01)


def _process_state(pid: int) -> str | None:
    """The state letter of ``pid`` in /proc (R, S, T, Z, ...); None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def process_alive(pid: int) -> bool:
    """True while ``pid`` exists and has not exited (a zombie has)."""
    return _process_state(pid) not in (None, "Z", "X")


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


class EmulatorServer(_Server):
    """``osmem-server`` (the binary of the osmem-server wheel) on a free loopback port."""

    name = "osmem"
    start_timeout = 30.0

    @property
    def log_path(self) -> Path:
        return self.out_path  # it logs to stdout/stderr only

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _prepare(self) -> None:
        self.binary = resolve_binary()

    def _command(self) -> list[str]:
        # stdin is /dev/null, so --no-stdin-watch; --parent-pid ends it with the test process
        return [
            self.binary,
            "--addr",
            f"{self.host}:{self.port}",
            "--no-ja",
            "--no-stdin-watch",
            "--parent-pid",
            str(os.getpid()),
        ]

    def _probe(self) -> bool:
        with urllib.request.urlopen(self.url, timeout=1) as response:
            return bool(response.status == 200)


class PlainJsonNode(Urllib3HttpNode):
    """Sends elasticsearch-py 8's requests with plain JSON content types.

    The emulator answers ``application/vnd.elasticsearch+json; compatible-with=8`` with 406;
    a real Elasticsearch 8 accepts it. Only the two headers change, never the bodies.
    """

    def perform_request(
        self, method: str, target: str, body: Any = None, headers: Any = None, **kw: Any
    ) -> Any:
        if headers:
            headers = headers.copy()
            for name in ("accept", "content-type"):
                value = headers.get(name)
                if value:
                    headers[name] = value.replace("vnd.elasticsearch+", "").split(";")[0]
        return super().perform_request(method, target, body=body, headers=headers, **kw)
