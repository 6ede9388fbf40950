"""The executor's log lines as journald reads them: a real ``ragfleet run`` process with
JOURNAL_STREAM set, its stderr captured; and the formatter's priorities level by level."""

from __future__ import annotations

import logging
import re
import sys

import pytest

from executor.logs import LineFormatter, for_task, syslog_priority


def test_under_journald_every_line_carries_its_priority_and_task_lines_their_ids(fleet):
    executor = fleet.start(env={"JOURNAL_STREAM": "8:12345"})
    (failing,) = fleet.submit("sleep", seconds=0, fail="boom on purpose")
    fleet.wait_done([failing])
    executor.wait_log(r"task \S+ failed")
    executor.terminate()
    lines = executor.log.splitlines()
    assert lines, "the executor logged nothing"
    assert all(re.match(r"<[2-7]>", line) for line in lines), lines
    doc = fleet.task(failing).get("doc_id") or "-"
    (started,) = [line for line in lines if "started as task_executor_" in line]
    assert started.startswith("<6>INFO ragfleet.")
    (failed,) = [line for line in lines if f"task {failing} failed" in line]
    assert failed.startswith("<3>ERROR ragfleet.")
    assert f": task={failing} doc={doc} task {failing} failed: RuntimeError: boom on purpose" in (
        failed
    )
    # The traceback's lines are errors too: `journalctl -p err` shows all of it.
    at = lines.index(failed)
    assert lines[at + 1] == "<3>Traceback (most recent call last):"
    assert not re.search(r"^\d{4}-\d\d-\d\d ", "\n".join(lines), re.MULTILINE)  # no timestamps


def test_outside_journald_lines_have_a_timestamp_and_no_priority(fleet):
    executor = fleet.start()
    started = executor.wait_log(r"(?m)^.*started as task_executor_.*$").group(0)
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO ragfleet\.", started)


@pytest.mark.parametrize(
    ("level", "priority"),
    [
        (logging.CRITICAL, 2),
        (logging.ERROR, 3),
        (logging.WARNING, 4),
        (logging.INFO, 6),
        (logging.DEBUG, 7),
        (logging.INFO + 5, 6),  # a custom level between two takes the lower priority
    ],
)
def test_levels_map_to_syslog_priorities(level, priority):
    assert syslog_priority(level) == priority
    # A message is one line (its newline escaped, issue 19); a traceback's lines each get the
    # priority, so journald files every one of them under it.
    try:
        raise ValueError("bad")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("ragfleet.x", level, __file__, 1, "one\ntwo", None, exc_info)
    lines = LineFormatter(journald=True).format(record).splitlines()
    assert lines[0] == f"<{priority}>{logging.getLevelName(level)} ragfleet.x: one\\ntwo"
    assert lines[1] == f"<{priority}>Traceback (most recent call last):"
    assert lines[-1] == f"<{priority}>ValueError: bad"
    assert all(line.startswith(f"<{priority}>") for line in lines)


def test_task_lines_carry_their_ids_first(caplog):
    log = logging.getLogger("ragfleet.test")
    with caplog.at_level(logging.INFO, "ragfleet.test"):
        for_task(log, {"id": "t1", "doc_id": "d1"}).info("hello")
        for_task(log, {"id": "t2"}).info("no document")
        log.info("not about a task")
    formatter = LineFormatter(journald=True)
    assert [formatter.format(r) for r in caplog.records] == [
        "<6>INFO ragfleet.test: task=t1 doc=d1 hello",
        "<6>INFO ragfleet.test: task=t2 doc=- no document",
        "<6>INFO ragfleet.test: not about a task",
    ]
