"""Per-task log lines: ``ctx.log("charged card", level="info")`` in a handler.

Bounded per task: the last ``MAX_LINES`` lines are kept, each cut to ``MAX_LINE_BYTES`` bytes of
UTF-8 (a cut line ends with ``…``). Stored in a Redis list next to the task (``QueueKeys.log``),
kept as long as the task: a live task's log has no TTL; when the task finishes, its TTL is the
task's (``expire_task`` in ``_lib.lua``), and it goes when the task is deleted. A line written
after the task finished (it was buffered) takes the task hash's TTL (``tasklog.lua``); lines for
a task that is gone are dropped.

Writing never waits on Redis and never rides on the worker's exchange: ``ctx.log`` appends to a
per-worker buffer (safe from handler threads) and a flusher sends what gathered, one
``tasklog`` call per task, ``FLUSH_DELAY_S`` after the first line of a burst. A worker that
stops flushes what is left (``flush``). A handler in a ``--pool process`` child sends its lines
to its worker over the child's pipe (``runners.ChildContext.log``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import weakref
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from engine.backend import Batch, Op, cmd, script_call
from engine.errors import InvalidTask, RediqError
from engine.ops import Settings, locate

if TYPE_CHECKING:  # the worker (a layer above) calls this module with its jobs
    from engine.worker.protocol import Job

log = logging.getLogger("rediq.worker")

MAX_LINES = 100
"""Lines kept per task (the oldest go first)."""
MAX_LINE_BYTES = 1024
"""Bytes of UTF-8 kept of one line's message."""
FLUSH_DELAY_S = 0.05
"""How long the flusher lets a burst of lines gather before sending them."""
MAX_BUFFERED = 10_000
"""Lines a worker buffers at most while Redis is slow; more are dropped (and counted)."""


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class LogLine:
    at_ms: int
    level: LogLevel
    attempt: int
    message: str

    def to_json(self) -> str:
        return json.dumps([self.at_ms, str(self.level), self.attempt, self.message], ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> LogLine | None:
        """None for anything malformed (a reader never crashes on what a buggy writer left)."""
        try:
            at_ms, level, attempt, message = json.loads(text)
            return cls(int(at_ms), LogLevel(level), int(attempt), str(message))
        except (TypeError, ValueError):
            return None


def level_of(level: str | LogLevel) -> LogLevel:
    try:
        return LogLevel(level)
    except ValueError:
        choices = ", ".join(repr(str(x)) for x in LogLevel)
        raise InvalidTask(f"ctx.log level {level!r} is not one of {choices}") from None


def cut(message: str, limit: int = MAX_LINE_BYTES) -> str:
    """``message`` in at most ``limit`` bytes of UTF-8 (never splitting a character)."""
    data = message.encode("utf-8", "replace")
    if len(data) <= limit:
        return message
    return data[: limit - 3].decode("utf-8", "ignore") + "…"


def append_call(settings: Settings, queue: str, task_id: str, lines: Sequence[LogLine]) -> Any:
    qk = settings.keyspace.queue(queue)
    return script_call(
        "tasklog", [qk.task(task_id), qk.log(task_id)], [MAX_LINES, *(line.to_json() for line in lines)]
    )


def read(settings: Settings, task_id: str, queue: str | None = None) -> Op[list[LogLine]]:
    """A task's log lines, oldest first (empty when it has none or is gone)."""
    if queue is None:
        where = yield from locate(settings, [task_id])
        if task_id not in where:
            return []
        queue = where[task_id]
    raw = yield cmd("LRANGE", settings.keyspace.queue(queue).log(task_id), 0, -1)
    return [line for line in (LogLine.from_json(r) for r in raw) if line is not None]


class TaskLogWriter:
    """One worker's buffer of log lines and their flusher."""

    def __init__(self, worker: Any) -> None:
        self._worker = worker
        self._lock = threading.Lock()
        self._lines: dict[tuple[str, str], list[LogLine]] = defaultdict(list)
        self._count = 0
        self._scheduled = False
        self._flushing: asyncio.Future[None] | None = None
        self.dropped = 0
        """Lines dropped because the buffer was full (Redis slow or away)."""

    def add(self, job: Job, level: LogLevel, message: str, at_ms: int) -> None:
        line = LogLine(at_ms, level, job.attempt, cut(message))
        with self._lock:
            if self._count >= MAX_BUFFERED:
                self.dropped += 1
                return
            self._lines[(job.queue, job.id)].append(line)
            self._count += 1
            if self._scheduled:
                return
            self._scheduled = True
        loop: asyncio.AbstractEventLoop | None = self._worker._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._start_flush()
        else:
            loop.call_soon_threadsafe(self._start_flush)

    def _start_flush(self) -> None:
        self._flushing = asyncio.ensure_future(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(FLUSH_DELAY_S)
        await self.flush()

    async def flush(self) -> None:
        """Send every buffered line now (one call per task, one round trip)."""
        with self._lock:
            pending, self._lines = self._lines, defaultdict(list)
            self._count = 0
            self._scheduled = False
        if not pending:
            return
        calls = [
            append_call(self._worker.settings, q, task_id, lines) for (q, task_id), lines in pending.items()
        ]
        try:
            await self._worker.backend.execute(Batch(calls))
        except RediqError as exc:
            log.warning("task log lines of %d task(s) not written: %s", len(pending), exc)


_writers: weakref.WeakKeyDictionary[Any, TaskLogWriter] = weakref.WeakKeyDictionary()
_writers_lock = threading.Lock()


def writer(worker: Any) -> TaskLogWriter:
    """The worker's writer, made on first use."""
    with _writers_lock:
        found = _writers.get(worker)
        if found is None:
            found = _writers[worker] = TaskLogWriter(worker)
        return found


async def flush(worker: Any) -> None:
    """Send what the worker's handlers logged and is still buffered (at the worker's stop)."""
    found = _writers.get(worker)
    if found is not None:
        with contextlib.suppress(Exception):
            await found.flush()
