"""One log record, one line (executor/logs.py): control characters in ids and messages, which
queue entries and documents supply, are escaped before they reach stderr and the journal."""

from __future__ import annotations

import io
import logging
import re

import pytest
import trio
from executors import wait_for

from executor.logs import EscapingFormatter, escape_controls
from executor.queue import wire

FORGED = "ERROR ragfleet.task_executor_test_1: task t2 done, all clear"


def test_a_task_id_with_a_newline_forges_no_log_line(fleet):
    """Issue 19: a queue entry whose task id held a newline and a log line of the sender's
    choosing wrote that line to the journal as the executor's own. A real executor, its
    stderr captured: the id is logged escaped, on its one line."""
    worker = fleet.start()
    task_id = f"t1\n{FORGED}\r\x1b[2K\x85"
    message = wire.encode_message({"id": task_id, "task_type": "noop"})
    fleet.redis.xadd(wire.queue_name(0), message)
    wait_for(lambda: fleet.redis.xlen(wire.DEAD_LETTER_STREAM), 15, "the entry set aside", worker)
    line = worker.wait_log(r".* set aside: .*TaskNotInDatabase: .*\n")[0]
    assert (
        "TaskNotInDatabase: task t1\\nERROR ragfleet.task_executor_test_1: task t2 done, all "
        "clear\\r\\x1b[2K\\x85 is not in the database" in line
    )
    assert not re.search(rf"^{re.escape(FORGED)}", worker.log, re.MULTILINE), worker.log
    assert not set(worker.log) & {"\r", "\x1b", "\x85"}
    assert worker.process.poll() is None
    # `ragfleet dlq list` shows the operator the same id, on one line and without the ESC.
    listed = fleet.cli("dlq", "list").stdout
    assert "t1\\nERROR ragfleet.task_executor_test_1: task t2 done" in listed
    assert len(listed.splitlines()) == 2 and not set(listed) & {"\r", "\x1b", "\x85"}


def _formatted(record: logging.LogRecord) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EscapingFormatter("%(levelname)s %(name)s: %(message)s"))
    handler.handle(record)
    return stream.getvalue()


def _record(msg: str, *args: object, exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord("ragfleet.x", logging.ERROR, __file__, 1, msg, args, exc_info)


def test_message_and_arguments_are_escaped():
    record = _record("task %s: %s", "a\nb", "tab\there, del\x7f, nul\x00, sep\u2028, é 中")
    assert _formatted(record) == (
        "ERROR ragfleet.x: task a\\nb: tab\\there, del\\x7f, nul\\x00, sep\\u2028, é 中\n"
    )


def test_a_traceback_keeps_its_lines_and_its_messages_lose_theirs():
    """The traceback's own line breaks stay (it is read as one); an exception's message in
    it, which may quote a task id, is one line, so it cannot begin a line of its own."""
    try:
        try:
            raise KeyError("inner\x1b[31m")
        except KeyError as exc:
            raise ValueError(f"task t1\n{FORGED} broke") from exc
    except ValueError as exc:
        record = _record("task failed", exc_info=(type(exc), exc, exc.__traceback__))
    text = _formatted(record)
    assert text.startswith("ERROR ragfleet.x: task failed\nTraceback (most recent call last):\n")
    assert f"\nValueError: task t1\\n{FORGED} broke\n" in text
    assert "KeyError: 'inner\\x1b[31m'\n" in text
    assert "\nThe above exception was the direct cause of the following exception:\n" in text
    assert not re.search(rf"^{re.escape(FORGED)}", text, re.MULTILINE)


def test_an_exception_group_from_trio_is_escaped_too():
    async def fail(message: str) -> None:
        raise RuntimeError(message)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fail, f"one\n{FORGED}")
            nursery.start_soon(fail, "two\x1b")

    with pytest.raises(BaseExceptionGroup) as caught:
        trio.run(main)
    exc = caught.value
    text = _formatted(_record("nursery failed", exc_info=(type(exc), exc, exc.__traceback__)))
    assert not re.search(rf"^{re.escape(FORGED)}", text, re.MULTILINE)
    assert "\x1b" not in text and "two\\x1b" in text


@pytest.mark.parametrize(
    ("text", "escaped"),
    [("a\r\nb", "a\\r\\nb"), ("\x1b[0m", "\\x1b[0m"), ("\x9b", "\\x9b"), ("\u2029", "\\u2029")],
)
def test_escape_controls(text, escaped):
    assert escape_controls(text) == escaped
    assert escape_controls("x\n" + text, keep_newlines=True) == "x\n" + escaped.replace("\\n", "\n")
