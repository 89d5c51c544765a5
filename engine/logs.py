"""Log output of the worker and the CLI: text lines for people, or one JSON object per line for
log pipelines (``--log-format json``).

A JSON line holds ``time`` (UTC, ISO 8601, ms), ``level``, ``logger``, ``message``, the worker
id when a worker runs, and the task fields a line is about (``queue``, ``task_id``, ``type``,
``attempt``, ``event``, ``outcome``, ``duration_s``, ``error``); a traceback goes in
``traceback``. Text in either format passes the sanitiser (``engine.display``): log lines
quote Redis data, and a JSON consumer may print a message raw.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from engine.display import SafeFormatter, visible

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TASK_FIELDS = ("worker", "queue", "task_id", "type", "attempt", "event", "outcome", "duration_s", "error")
"""Fields a record may carry (``extra=``) that a JSON line keeps."""


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": visible(record.getMessage(), 0, multiline=True),
        }
        for field in TASK_FIELDS:
            value = record.__dict__.get(field)
            if value is not None:
                line[field] = visible(value, 0, multiline=True) if isinstance(value, str) else value
        if record.exc_info:
            line["traceback"] = visible(self.formatException(record.exc_info), 0, multiline=True)
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


class WorkerField(logging.Filter):
    """Stamps every record with the id of the worker this process runs."""

    def __init__(self, worker_id: str) -> None:
        super().__init__()
        self.worker_id = worker_id

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "worker", None) is None:
            record.worker = self.worker_id
        return True


_installed: list[logging.Handler] = []
"""The handler ``configure`` put on the root logger (replaced by a later call)."""


def configure(level: str = "info", log_format: LogFormat = "text") -> logging.Handler:
    """Log to stderr in ``log_format``; returns the handler (a worker adds its id to it). A
    process whose logging someone else set up (an app, pytest) keeps its own handlers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else SafeFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    if _installed:
        root.removeHandler(_installed.pop())
    elif root.handlers:
        return handler
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    _installed.append(handler)
    return handler


def log_outcome(outcome: Any) -> None:
    """A worker listener: one ``task_finished`` event per attempt, with its task fields (JSON
    mode adds it, so a log pipeline sees every task without a text pattern)."""
    logging.getLogger("rediq.tasks").info(
        "task %s %s",
        outcome.task_id,
        outcome.outcome,
        extra={
            "event": "task_finished",
            "queue": outcome.queue,
            "task_id": outcome.task_id,
            "type": outcome.type,
            "attempt": outcome.attempt,
            "outcome": str(outcome.outcome),
            "duration_s": round(outcome.duration_s, 6),
            "error": outcome.error,
        },
    )


__all__ = ["LOG_FORMATS", "JsonFormatter", "LogFormat", "WorkerField", "configure", "log_outcome"]
