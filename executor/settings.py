"""The executor's settings: the runtime config that configc compiles, read once at start.

Environment overrides (documented, and the only ones): ``RAGFLEET_CONFIG`` names the config
file when ``--config`` is not given; ``RAGFLEET_HOST_ID`` replaces ``host_id`` (tests and
ad-hoc runs on a machine whose compiled name differs). systemd's ``WATCHDOG_USEC`` overrides
nothing but decides which timing rule applies (settings_spec.timing_problems).
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, make_dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import peewee as pw
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from .errors import SettingsError
from .sdnotify import watchdog_usec
from .settings_spec import RUNTIME_KEYS, Watchdog, timing_problems
from .sqlite import codes as sqlite_codes

DEFAULT_CONFIG = Path("/etc/ragfleet/ragfleet.yaml")
# A compiled config is a few KiB; reading at most this much, /dev/zero is refused, not read.
MAX_CONFIG_BYTES = 1 << 20


@contextmanager
def opening(what: str, where: object) -> Iterator[None]:
    """Open *what* at *where* (a path, a URL) as the config names it: a failure is a
    SettingsError that says which (``ragfleet`` exits 2, and systemd does not restart it),
    except one that says the thing is unavailable for now (a ConnectionError) or that the
    machine is short of something (descriptors, memory; an I/O error), which stays what it
    is, so that a restart can mend it."""
    try:
        yield
    except ConnectionError:
        raise
    except _CANNOT_OPEN as exc:
        if not _names_the_config(exc):
            raise
        raise SettingsError(f"cannot open {what} ({where}): {exc}") from exc


# A path that cannot be made or opened, a file that is no database, a refused login, a
# store's or storage's own refusal (RuntimeError), a malformed section (ValueError).
_CANNOT_OPEN = (OSError, sqlite3.Error, pw.PeeweeException, RuntimeError, ValueError)

# What a path the config names can get wrong: missing, a file where a directory should be
# (or the reverse), no permission, a read-only file system, a name too long or looping.
_PATH_ERRNOS = frozenset(
    {
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ELOOP,
        errno.ENAMETOOLONG,
        errno.EEXIST,
    }
)
# SQLite refusing for now: another connection's lock, memory, an I/O error, an interrupt,
# a full disk.
_SQLITE_PASSING = frozenset(
    {
        sqlite_codes.BUSY,
        sqlite_codes.LOCKED,
        sqlite_codes.NOMEM,
        sqlite_codes.INTERRUPT,
        sqlite_codes.IOERR,
        sqlite_codes.FULL,
        sqlite_codes.PROTOCOL,
    }
)


def _names_the_config(exc: BaseException) -> bool:
    """Whether *exc*, met opening something the config names, is the config's to fix."""
    for error in (exc, exc.__cause__ or exc.__context__):
        if isinstance(error, OSError) and error.errno is not None:
            return error.errno in _PATH_ERRNOS
        if (code := sqlite_codes.primary_code(error)) is not None:
            return code not in _SQLITE_PASSING
    return True


# The runtime config's `executor:` section: a field per key of settings_spec.RUNTIME_KEYS,
# with its type and default (max_concurrent_tasks, heartbeat_interval, reclaim_idle, ...).
ExecutorSettings = make_dataclass(
    "ExecutorSettings",
    [(key.name, key.type.__name__, field(default=key.default)) for key in RUNTIME_KEYS],
    frozen=True,
)
ExecutorSettings.__module__ = __name__  # for repr and pickling (Python < 3.12 says "types")


@dataclass(frozen=True)
class RedisSettings:
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 1
    username: str = ""
    password: str = ""
    tls: bool = False
    """Connect over TLS, verifying the server's certificate and name against ca_cert."""
    ca_cert: str = ""
    sentinels: str = ""
    """``host:port,...`` of Redis Sentinels: the master is the one they name for
    sentinel_master (host and port above are then only the initial master, for messages)."""
    sentinel_master: str = ""
    sentinel_password: str = ""
    """The sentinels' own requirepass (the same TLS as Redis's applies to them)."""


@dataclass(frozen=True)
class Settings:
    host_id: str
    executor: ExecutorSettings
    redis: RedisSettings
    database: dict[str, Any]
    doc_store: dict[str, Any] = field(default_factory=dict)
    storage: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], source: str = "", watchdog: Watchdog | None = None
    ) -> Settings:
        """The settings of a loaded config; a SettingsError names the first key that is
        missing, unknown or of the wrong type, or the first timing that breaks a rule of
        settings_spec under *watchdog* (no traceback later, when it is used)."""
        if "host_id" not in data or "database" not in data:
            missing = "host_id" if "host_id" not in data else "database"
            raise SettingsError(f"{source}: not a ragfleet runtime config (no {missing!r})")
        sections = {name: _mapping(data, name, source) for name in _SECTIONS}
        models = sections["models"]
        for kind, model in models.items():
            if model and not isinstance(model, Mapping):
                got = _kind_of(model)  # not the value: it may hold a key
                raise SettingsError(f"{source}: models.{kind}: expected a mapping, got {got}")
        executor = _typed(ExecutorSettings, sections["executor"], "executor", source)
        if problems := timing_problems(vars(executor), watchdog):
            (section, key), message = problems[0]
            raise SettingsError(f"{source}: {section}.{key}: {message}")
        return cls(
            host_id=str(data["host_id"]),
            executor=executor,
            redis=_typed(RedisSettings, sections["redis"], "redis", source),
            database=sections["database"],
            doc_store=sections["doc_store"],
            storage=sections["storage"],
            models=models,
            source=source,
        )


_SECTIONS = ("executor", "redis", "database", "doc_store", "storage", "models")

# The types a runtime config's scalars may have, by the dataclass field's annotation (a
# string here: annotations are not evaluated). An int is a float too; a bool is no number.
_SCALARS: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
}

T = TypeVar("T")


def _mapping(data: Mapping[str, Any], name: str, source: str) -> dict[str, Any]:
    section = data.get(name)
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        got = _kind_of(section)  # not the value: it may hold a secret
        raise SettingsError(f"{source}: {name}: expected a mapping, got {got}")
    return dict(section)


def _typed(kind: type[T], section: dict[str, Any], name: str, source: str) -> T:
    """*kind* (a dataclass of scalars) from *section*, each value checked against its field."""
    types = {f.name: str(f.type) for f in fields(kind)}  # type: ignore[arg-type]
    for key, value in section.items():
        if key not in types:
            raise SettingsError(f"{source}: {name}.{key}: unknown setting")
        allowed = _SCALARS[types[key]]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise SettingsError(
                f"{source}: {name}.{key}: expected {_NAMES[types[key]]}, got {_shown(key, value)}"
            )
        if key == "port" and not 0 < value < 65536:
            raise SettingsError(f"{source}: {name}.{key}: expected 1..65535, got {value!r}")
    return kind(**section)


_NAMES = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}


def _shown(key: str, value: object) -> str:
    """*value* for a message; a secret's only by its type (no command prints a secret)."""
    secret = "password" in key or "key" in key or "secret" in key or "token" in key
    return _kind_of(value) if secret else repr(value)


def _kind_of(value: object) -> str:
    if isinstance(value, bool):
        return "true or false"
    for kind, name in ((int, "an integer"), (float, "a number"), (str, "a string")):
        if isinstance(value, kind):
            return name
    return "a list" if isinstance(value, list) else f"a {type(value).__name__}"


def config_path(explicit: str | Path | None, environ: Mapping[str, str] = os.environ) -> Path:
    if explicit:
        return Path(explicit)
    return Path(environ.get("RAGFLEET_CONFIG") or DEFAULT_CONFIG)


def load_settings(
    explicit: str | Path | None = None, environ: Mapping[str, str] = os.environ
) -> Settings:
    path = config_path(explicit, environ)
    try:
        with path.open("rb") as stream:  # a pipe too: ragfleet -c <(configc ...)
            raw = stream.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise SettingsError(f"{path}: over {MAX_CONFIG_BYTES} bytes: not a runtime config")
        data = YAML(typ="safe", pure=True).load(raw.decode("utf-8"))
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{path}: not UTF-8 (byte offset {exc.start})") from None
    except YAMLError as exc:
        raise SettingsError(f"{path}:{_yaml_problem(exc)}") from None
    except RecursionError:
        raise SettingsError(f"{path}: nested too deeply: not a runtime config") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: not a ragfleet runtime config (not a mapping)")
    if environ.get("RAGFLEET_HOST_ID"):
        data["host_id"] = environ["RAGFLEET_HOST_ID"]
    return Settings.from_mapping(data, str(path), _watchdog(environ))


OPERATOR_FILE = "operator.yaml"
"""Beside the runtime config: the operator CLI's own Redis login (configc writes it, root's
only, when Redis has ACL users). The executors never read it."""


def with_operator_login(settings: Settings) -> Settings:
    """*settings* with the Redis login of OPERATOR_FILE beside its config, when that file
    exists and this user may read it (root); else *settings* as they are, whose executor
    login may run the same commands."""
    if not settings.source:
        return settings
    path = Path(settings.source).parent / OPERATOR_FILE
    try:
        raw = path.read_bytes()[:MAX_CONFIG_BYTES]
    except OSError:
        return settings
    try:
        data = YAML(typ="safe", pure=True).load(raw.decode("utf-8"))
    except (UnicodeDecodeError, YAMLError):
        raise SettingsError(f"{path}: not valid YAML") from None
    redis = _mapping(data if isinstance(data, dict) else {}, "redis", str(path))
    return replace(settings, redis=_typed(RedisSettings, redis, "redis", str(path)))


def _watchdog(environ: Mapping[str, str]) -> Watchdog | None:
    """The watchdog systemd runs this process under (the unit's WatchdogSec, which configc
    derives from heartbeat_interval), if any: the timing rules depend on it."""
    usec = watchdog_usec(environ)
    return None if usec is None else Watchdog(usec / 1_000_000, "systemd's WATCHDOG_USEC")


def _yaml_problem(exc: YAMLError) -> str:
    """``line:col: not YAML: problem``, on one line, for a file that does not parse."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    problem = problem.split(" with value ")[0]  # a duplicate key's values may be secrets
    where = f"{mark.line + 1}:{mark.column + 1}:" if mark is not None else ""
    return f"{where} not valid YAML: {problem}"
