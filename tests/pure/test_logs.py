"""JSON log lines: one object per line, task fields kept, text sanitised."""

from __future__ import annotations

import json
import logging
import sys

from engine.logs import JsonFormatter, WorkerField, log_outcome
from engine.worker import Outcome, TaskOutcome


def test_a_json_line_holds_the_task_fields_and_visible_text() -> None:
    record = logging.LogRecord(
        "rediq.worker", logging.WARNING, "f.py", 1, "task %s: lease lost", ("t\x1b[2J",), None
    )
    record.__dict__.update(queue="payment", task_id="t\x1b[2J", attempt=2, event="lease_lost")
    WorkerField("host:1:ab").filter(record)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["level"] == "warning" and data["logger"] == "rediq.worker"
    assert data["message"] == "task t␛[2J: lease lost" and data["task_id"] == "t␛[2J"
    assert (data["worker"], data["queue"], data["attempt"], data["event"]) == (
        "host:1:ab",
        "payment",
        2,
        "lease_lost",
    )
    assert data["time"].endswith("+00:00") and "T" in data["time"]


def test_tracebacks_go_in_their_own_field() -> None:
    try:
        raise ValueError("bad\u202e")
    except ValueError:
        record = logging.LogRecord("rediq", logging.ERROR, "f.py", 1, "boom", (), sys.exc_info())
    data = json.loads(JsonFormatter().format(record))
    assert data["message"] == "boom" and data["traceback"].endswith("ValueError: bad⟨U+202E⟩")


def test_each_attempt_is_a_task_finished_event(caplog: object) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("rediq.tasks")
    keep = Keep()
    logger.addHandler(keep)
    logger.setLevel(logging.INFO)
    try:
        log_outcome(TaskOutcome("t1", "payment", "order:pay", Outcome.RETRY, 0.25, 1, "HTTP 503"))
    finally:
        logger.removeHandler(keep)
    data = json.loads(JsonFormatter().format(records[0]))
    assert {k: data[k] for k in ("event", "queue", "task_id", "type", "attempt", "outcome", "error")} == {
        "event": "task_finished",
        "queue": "payment",
        "task_id": "t1",
        "type": "order:pay",
        "attempt": 1,
        "outcome": "retry",
        "error": "HTTP 503",
    }
    assert data["duration_s"] == 0.25
