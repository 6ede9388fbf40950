"""executor/settings_spec.py is the one declaration of the executor's keys and timing rules:
the shipped conf and the docs table must agree with it, and the executor refuses at start
(exit 2) timings that break the rules under the watchdog it runs with."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from confdirs import REPO, SHIPPED_CONF
from executors import sqlite_database, write_config

from configc.config import BASE_FILE, load_config
from executor.settings import SettingsError, load_settings
from executor.settings_spec import KEYS, Watchdog, timing_problems, watchdog_sec

DOCS = REPO / "docs" / "configuration.md"


def _docs_rows() -> list[tuple[str, str]]:
    """(key, default cell) of the docs table of the `executor` section, in order."""
    text = DOCS.read_text()
    section = text.split("### `executor` (ragfleet)", 1)[1].split("\n### ", 1)[0]
    return re.findall(r"^\| `(\w+)` \| ([^|]+?) \|", section, re.MULTILINE)


def _shown(value: object) -> str:
    """A default as the docs table writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int) else f"`{value}`"


def _shipped_differences() -> dict[str, str]:
    """The keys whose shipped value the docs say differs from the default, and that value."""
    found = {}
    for key, cell in _docs_rows():
        if match := re.fullmatch(r".* \(shipped conf: (.*)\)", cell):
            found[key] = match.group(1)
    return found


def test_the_docs_table_lists_every_key_with_its_default():
    rows = _docs_rows()
    assert [key for key, _ in rows] == [key.name for key in KEYS]
    for (name, cell), key in zip(rows, KEYS, strict=True):
        assert cell.split(" (shipped conf:")[0] == _shown(key.default), name


def test_the_shipped_conf_sets_every_key_to_its_default(tmp_path):
    """Every key is in the shipped conf (it is the commented reference), with the default,
    unless the docs table names the shipped value (instances: 2)."""
    shutil.copy(SHIPPED_CONF / BASE_FILE, tmp_path / BASE_FILE)  # without a site's local file
    config = load_config(tmp_path, (), {})
    assert list(config.layers[0].data["executor"]) == [key.name for key in KEYS]
    shipped = config.document["executor"]
    differences = _shipped_differences()
    for key in KEYS:
        expected = differences.get(key.name, _shown(key.default))
        assert _shown(shipped[key.name]) == expected, key.name


@pytest.mark.parametrize("heartbeat", [1, 2, 5, 9, 10, 11, 30, 600])
def test_timings_configc_accepts_pass_the_executors_rules_outside_systemd(heartbeat):
    """`ragfleet` run by hand (no watchdog) or an operator command accepts what configc
    compiled: configc's rule, under its watchdog, is the stricter one."""
    least = {
        "heartbeat_interval": heartbeat,
        "worker_heartbeat_timeout": 2 * heartbeat + 1,
        "reclaim_idle": 2 * watchdog_sec(heartbeat) + 1,
    }
    assert timing_problems(least, Watchdog(watchdog_sec(heartbeat), "configc")) == []
    assert timing_problems(least, None) == []
    refused = {**least, "reclaim_idle": least["reclaim_idle"] - 1}
    assert timing_problems(refused, Watchdog(watchdog_sec(heartbeat), "configc")) != []


def _config(tmp_path: Path, redis_server, **executor) -> Path:
    return write_config(tmp_path, redis_server, sqlite_database(tmp_path), **executor)


def test_the_watchdog_systemd_gives_decides_the_reclaim_rule(tmp_path, redis_server):
    """The test timings (heartbeat 1 s, reclaim_idle 3 s) are sound without a watchdog, and
    under one of 1 s; under a watchdog of 5 s a hung executor's entries would be taken over
    while it still lives."""
    config = _config(tmp_path, redis_server)
    assert load_settings(config, environ={}).executor.reclaim_idle == 3
    assert load_settings(config, environ={"WATCHDOG_USEC": "1000000"})
    with pytest.raises(SettingsError, match=r"executor\.reclaim_idle: must be more than 10 s, "):
        load_settings(config, environ={"WATCHDOG_USEC": "5000000"})
    for_another = {"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert load_settings(config, environ=for_another)  # not this process's watchdog


def test_run_under_a_watchdog_too_long_for_reclaim_idle_exits_2(fleet):
    result = fleet.cli("run", "--instance", "1", env={"WATCHDOG_USEC": "5000000"})
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1].endswith(
        "ragfleet.yaml: executor.reclaim_idle: must be more than 10 s, twice the watchdog "
        "(5 s, systemd's WATCHDOG_USEC): a hung executor is killed by its watchdog at most "
        "that long after it last refreshed its tasks' entries, and no other may take them "
        "over before, or both would run them"
    )
