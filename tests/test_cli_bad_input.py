"""Bad input to the ``ragfleet`` CLI: one line on stderr naming the problem, the documented
exit code (2 usage or configuration: systemd does not restart the unit; 4 not found), and
never a traceback. Each row runs the real binary against the test Redis and SQLite."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from executors import RAGFLEET, Fleet
from ruamel.yaml import YAML
from servers import free_port

from executor.ingest.catalog import Catalog

USAGE, NOT_FOUND = 2, 4

# Arrange a row: given a Fleet maker and an ExitStack for what must outlive the setup,
# return the --config path the row runs with.
Arrange = Callable[[Callable[..., Fleet], ExitStack], Path]


@dataclass(frozen=True)
class Bad:
    args: tuple[str, ...]
    code: int
    says: str  # a regex for the one line after "ragfleet: "
    arrange: Arrange | None = None


def _config_text(text: bytes) -> Arrange:
    def arrange(make_fleet: Callable[..., Fleet], stack: ExitStack) -> Path:
        config = make_fleet().config
        config.write_bytes(text)
        return config

    return arrange


def _config_edit(section: str, key: str, value: object) -> Arrange:
    """The fleet's config with one key of a section set (or removed, when value is None);
    its database has a knowledge base "kb", for the commands that look one up first."""

    def arrange(make_fleet: Callable[..., Fleet], stack: ExitStack) -> Path:
        fleet = make_fleet()
        Catalog(fleet.store).ensure_knowledge_base("kb")
        config = fleet.config
        yaml = YAML(typ="safe", pure=True)
        data = yaml.load(config.read_text())
        if value is None:
            del data[section][key]
        else:
            data[section][key] = value
        with config.open("w") as stream:
            yaml.dump(data, stream)
        return config

    return arrange


def _directory(make_fleet: Callable[..., Fleet], stack: ExitStack) -> Path:
    return make_fleet().config.parent


def _live_instance(make_fleet: Callable[..., Fleet], stack: ExitStack) -> Path:
    fleet = make_fleet()
    fleet.start(instance=1)
    return fleet.config


def _live_twin_elsewhere(make_fleet: Callable[..., Fleet], stack: ExitStack) -> Path:
    """Instance 1 running from another config (its own state dir) with the same host_id:
    what another machine given this host's name looks like from Redis."""
    make_fleet().start(instance=1)
    return make_fleet().config


def _metrics_port_taken(make_fleet: Callable[..., Fleet], stack: ExitStack) -> Path:
    port = free_port()
    taken = stack.enter_context(socket.socket())
    taken.bind(("0.0.0.0", port))
    taken.listen()
    return make_fleet(metrics_port_base=port - 1).config


ROWS = {
    "config broken YAML": Bad(
        ("status",),
        USAGE,
        r".*ragfleet\.yaml:2:1: not valid YAML: expected ',' or '\]', but got '<stream end>'",
        _config_text(b"a: [b, c\n"),
    ),
    "config not UTF-8": Bad(
        ("status",),
        USAGE,
        r".*ragfleet\.yaml: not UTF-8 \(byte offset 9\)",
        _config_text(b"host_id: \xff\xfe\n"),
    ),
    "config with a duplicate key": Bad(
        ("tasks",),
        USAGE,
        r".*ragfleet\.yaml:2:1: not valid YAML: found duplicate key .*",
        _config_text(b"host_id: a\nhost_id: b\n"),
    ),
    "config a duplicate secret, not shown": Bad(
        ("status",),
        USAGE,
        r'.*ragfleet\.yaml:4:3: not valid YAML: found duplicate key "password"',
        _config_text(b"host_id: a\nredis:\n  password: old\n  password: s3cret\n"),
    ),
    "config a secret of the wrong type, not shown": Bad(
        ("status",),
        USAGE,
        r".*ragfleet\.yaml: redis\.password: expected a string, got an integer",
        _config_edit("redis", "password", 12345),
    ),
    "config endless (/dev/zero)": Bad(
        ("status",),
        USAGE,
        r"/dev/zero: over 1048576 bytes: not a runtime config",
        lambda make_fleet, stack: Path("/dev/zero"),
    ),
    "config a mistyped setting (run)": Bad(
        ("run", "--instance", "1"),
        USAGE,
        r".*ragfleet\.yaml: executor\.heartbeat_interval: expected a number, got 'often'",
        _config_edit("executor", "heartbeat_interval", "often"),
    ),
    "config a reclaim_idle within a live executor's lease (run)": Bad(
        ("run", "--instance", "1"),
        USAGE,
        r".*ragfleet\.yaml: executor\.reclaim_idle: must be more than 2 s, twice "
        r"heartbeat_interval: a live executor renews .*",
        _config_edit("executor", "reclaim_idle", 2),
    ),
    "config a heartbeat timeout within two heartbeats (status)": Bad(
        ("status",),
        USAGE,
        r".*ragfleet\.yaml: executor\.worker_heartbeat_timeout: must be more than twice "
        r"heartbeat_interval \(1 s\), .*",
        _config_edit("executor", "worker_heartbeat_timeout", 2),
    ),
    "config a Redis port out of range": Bad(
        ("status",),
        USAGE,
        r".*ragfleet\.yaml: redis\.port: expected 1\.\.65535, got 99999",
        _config_edit("redis", "port", 99999),
    ),
    "config a database section without its path": Bad(
        ("tasks",),
        USAGE,
        r"database: type sqlite needs path",
        _config_edit("database", "path", None),
    ),
    "config an unknown database type": Bad(
        ("tasks",),
        USAGE,
        r"database\.type: expected one of sqlite, mysql, postgres, got 'oracle'",
        _config_edit("database", "type", "oracle"),
    ),
    "config a storage section without its path (submit)": Bad(
        ("submit", "{config}", "--kb", "kb"),
        USAGE,
        r"cannot open the document storage \(local\): the 'local' storage backend needs a path",
        _config_edit("storage", "path", None),
    ),
    "config an unknown doc_store engine (search)": Bad(
        ("search", "anything", "--kb", "kb"),
        USAGE,
        r"cannot open the document store \(.*/docstore\.db\): unknown doc_store engine 'milvus'.*",
        _config_edit("doc_store", "engine", "milvus"),
    ),
    "submit --kb without FILES": Bad(
        ("submit", "--kb", "kb"), USAGE, r"--kb kb names no FILES to submit"
    ),
    "submit an unknown task type": Bad(
        ("submit", "-t", "nosuchtype"),
        USAGE,
        r"unknown task type 'nosuchtype' \(known: noop, sleep; documents: FILE\.\.\. --kb NAME\)",
    ),
    "submit a payload that is no JSON object": Bad(
        ("submit", "-t", "sleep", "-p", "[1, 2]"), USAGE, r"--payload is not a JSON object: .*"
    ),
    "cancel --doc of no document": Bad(
        ("cancel", "--doc", "UNKNOWN"), NOT_FOUND, r"no document UNKNOWN"
    ),
    "cancel a task id that is not UTF-8": Bad(
        ("cancel", "\udcff"), USAGE, r"argument '\\xff' is not UTF-8"
    ),
    "tasks --doc that is not UTF-8": Bad(
        ("tasks", "--doc", "doc\udcff"), USAGE, r"argument 'doc\\xff' is not UTF-8"
    ),
    "submit to a knowledge base whose name is not UTF-8": Bad(
        ("submit", "{config}", "--kb", "kb\udcfe"), USAGE, r"argument 'kb\\xfe' is not UTF-8"
    ),
    "a mistyped command": Bad(
        ("stauts",),
        USAGE,
        r"No such command 'stauts'\. Did you mean 'status'\? \(`ragfleet --help`\)",
    ),
    "tasks --state of no state": Bad(
        ("tasks", "--state", "finished"),
        USAGE,
        r"Invalid value for '--state' / '-s': 'finished' is not one of .* "
        r"\(`ragfleet tasks --help`\)",
    ),
    "run --instance 0": Bad(
        ("run", "--instance", "0"),
        USAGE,
        r"Invalid value for '--instance' / '-i': 0 is not in the range 1<=x<=999\. .*",
    ),
    "reconcile --min-age inf": Bad(
        ("reconcile", "--check", "--min-age", "inf"),
        USAGE,
        r"Invalid value for '--min-age': inf is not in the range .*",
    ),
    "reconcile --min-age nan": Bad(
        ("reconcile", "--check", "--min-age", "nan"),
        USAGE,
        r"Invalid value for --min-age: not a number \(`ragfleet reconcile --help`\)",
    ),
    "run a second instance 1 on this host": Bad(
        ("run", "--instance", "1"),
        USAGE,
        r"instance 1 already runs on this host \(pid \d+, which holds .*/instance-1\.lock\)",
        _live_instance,
    ),
    "run instance 1 that lives from another config": Bad(
        ("run", "--instance", "1"),
        USAGE,
        r"task_executor_test_1 already runs: pid \d+ at [\d.]+ sent a heartbeat .*",
        _live_twin_elsewhere,
    ),
    "run with its metrics port in use": Bad(
        ("run", "--instance", "1"),
        USAGE,
        r"cannot serve metrics on 127\.0\.0\.1 port \d+ \(executor\.metrics_bind, "
        r"executor\.metrics_port_base \+ instance 1\): Address already in use",
        _metrics_port_taken,
    ),
    "run with a metrics_bind that is not this host's": Bad(
        ("run", "--instance", "1"),
        USAGE,
        r"cannot serve metrics on 192\.0\.2\.1 port \d+ \(executor\.metrics_bind, "
        r"executor\.metrics_port_base \+ instance 1\): Cannot assign requested address",
        lambda make, _: make(metrics_port_base=free_port(), metrics_bind="192.0.2.1").config,
    ),
    "run with a metrics_bind that names no address": Bad(
        ("run", "--instance", "1"),
        USAGE,
        r"cannot serve metrics on no-such-host\.invalid port \d+ \(executor\.metrics_bind, "
        r"executor\.metrics_port_base \+ instance 1\): Name or service not known",
        lambda make, _: (
            make(metrics_port_base=free_port(), metrics_bind="no-such-host.invalid").config
        ),
    ),
}


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_bad_input_is_one_line_and_its_exit_code(make_fleet, row: Bad):
    with ExitStack() as stack:
        config = (row.arrange or (lambda make, _: make().config))(make_fleet, stack)
        args = [a.format(config=config) for a in row.args]
        result = subprocess.run(
            [str(RAGFLEET), "--config", str(config), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
    lines = result.stderr.splitlines()
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == row.code, result.stderr
    # run logs before it stops; its last line is the verdict
    verdict = lines[-1] if row.args[0] == "run" else "\n".join(lines)
    assert re.fullmatch(f"ragfleet: {row.says}", verdict), result.stderr


def test_a_restart_after_kill_9_is_not_refused_nor_delayed(make_fleet):
    """The killed instance's flock went with it, and its fresh heartbeat came from this
    machine's address and a pid that no longer exists: the restart starts at once, not
    after watching for the dead one's next heartbeat (here 10 s apart)."""
    fleet = make_fleet(heartbeat_interval=10, worker_heartbeat_timeout=60, reclaim_idle=60)
    first = fleet.start(instance=1)
    first.signal(signal.SIGKILL)
    first.process.wait(10)
    began = time.monotonic()
    fleet.start(instance=1)
    assert time.monotonic() - began < 8


def test_submit_of_a_fifo_is_refused_not_read(fleet, tmp_path):
    """A FIFO (or a device: /dev/zero never ends) is no document: submit reports it like
    any file it cannot take in (exit 1) and submits the others, instead of blocking."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "doc.txt").write_text("A document.")
    result = fleet.cli("submit", str(fifo), str(tmp_path / "doc.txt"), "--kb", "kb", "-q")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines() == [
        f"ragfleet: {fifo}: not submitted: fifo is not a regular file",
        "ragfleet: 1 of 2 documents submitted to knowledge base 'kb'",
    ]
