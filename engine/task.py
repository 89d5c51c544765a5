"""The task model: what a producer submits (``Task``) and what the engine stores (``TaskInfo``)."""

from __future__ import annotations

import json
import math
import os
import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.errors import PayloadError
from engine.keys import validate_queue_name

SCHEMA_VERSION = 1
DEFAULT_QUEUE = "default"
DEFAULT_PRIORITY = 50
DEFAULT_MAX_RETRY = 3
DEFAULT_TIMEOUT_S = 1800.0
TASK_TYPE_MAX = 128
MAX_DELAY_S = 10 * 365 * 86400.0
MAX_UNIQUE_TTL_S = 365 * 86400.0

# ``\s`` in a str pattern is exactly ``str.isspace``; a compiled search beats a per-character
# generator (this runs for every task built, twice with the default 32-character id).
_SPACE = re.compile(r"\s")
_BAD_ID_CHAR = re.compile(r"[\s|{}]")
# one encoder instead of a new JSONEncoder per json.dumps call with options
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


_C_MAKE_ENCODER: Any = getattr(json.encoder, "c_make_encoder", None)
# The C encoder behind ``_JSON``, made once. Without a markers dict it keeps no state between
# calls (so threads may share it); a circular reference then ends in RecursionError, which
# ``_compact_json`` reports as the ValueError that ``json`` raises for one.
_C_ENCODER: Any = (
    None
    if _C_MAKE_ENCODER is None
    else _C_MAKE_ENCODER(
        None, _JSON.default, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
)


def _compact_json(value: Any) -> str:
    """``_JSON.encode(value)``, about four times faster: the C encoder that
    ``JSONEncoder.encode`` builds on each call is built once and called directly (this runs
    once per task enqueued). Same output and errors: NaN raises ``ValueError``, unknown types
    ``TypeError``; a circular reference or nesting too deep to encode raise ``ValueError``."""
    if _C_ENCODER is None:  # pragma: no cover - an interpreter without the C accelerator
        return _JSON.encode(value)
    try:
        return "".join(_C_ENCODER(value, 0))
    except RecursionError:
        raise ValueError("circular reference or nesting too deep to encode") from None


def payload_json(task_type: str, payload: Any) -> str:
    """A payload as compact JSON (a pydantic model dumped); raises ``PayloadError`` (E002)
    when it is not JSON."""
    if isinstance(payload, BaseModel):
        return payload.model_dump_json()
    try:
        return _compact_json(payload)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"payload of task type {task_type!r} is not JSON: {exc}") from exc


class TaskState(StrEnum):
    SCHEDULED = "scheduled"
    WAITING = "waiting"
    PENDING = "pending"
    ACTIVE = "active"
    RETRY = "retry"
    COMPLETED = "completed"
    DEAD = "dead"
    CANCELLED = "cancelled"
    QUARANTINED = "quarantined"
    """Deleted by an operator; restorable until the quarantine TTL ends."""
    EXPIRED = "expired"
    """Not started by its ``expires`` deadline: never run (kept for the retention)."""

    @property
    def is_final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset(
    {TaskState.COMPLETED, TaskState.DEAD, TaskState.CANCELLED, TaskState.QUARANTINED, TaskState.EXPIRED}
)


ALL_STATES: tuple[TaskState, ...] = tuple(TaskState)


def new_task_id() -> str:
    """128 random bits as 32 hex digits, as unique as ``uuid.uuid4().hex`` and about twice as
    fast to make (no ``UUID`` object, no version bits): this runs once per task enqueued."""
    return os.urandom(16).hex()


class Task(BaseModel):
    """A unit of work as submitted to ``Client.enqueue``.

    Validation errors name the field and the allowed range, e.g.
    ``priority must be 0..100, got 250``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    """Task type, the key a worker's registry maps to a handler (``order:payment``)."""
    payload: Any = None
    """JSON-serialisable payload (a pydantic model is dumped to JSON)."""
    queue: str = DEFAULT_QUEUE
    id: str = Field(default_factory=new_task_id)
    """Task id; enqueue is idempotent by id, so a retried enqueue never creates a second task."""
    priority: int = DEFAULT_PRIORITY
    """0..100, lower runs first."""
    max_retry: int = DEFAULT_MAX_RETRY
    """Retries after the first attempt; the task goes dead after ``max_retry + 1`` attempts."""
    timeout: float = DEFAULT_TIMEOUT_S
    """Seconds one attempt may run before it is cancelled and retried."""
    delay: float | None = None
    """Seconds from now before the task becomes due (exclusive with ``eta``)."""
    eta: datetime | None = None
    """Absolute time the task becomes due (timezone-aware)."""
    unique_key: str | None = None
    """While a task with this key is alive, enqueueing another returns the first one's id."""
    unique_ttl: float = 86400.0
    """Upper bound in seconds on how long a unique key is held."""
    depends_on: tuple[str, ...] = ()
    """Ids of tasks (any queue) that must complete before this one becomes pending."""
    metadata: dict[str, str] = Field(default_factory=dict)
    keep_result: float | None = None
    """Seconds the completed task (its hash and result) is kept; 0: its result is not stored
    (the task itself stays visible for the retention). Unset: the type's declaration, else the
    retention (``REDIQ_RETENTION``...). A task others depend on is kept at least the retention."""
    expires: float | datetime | None = None
    """A deadline for the task to *start*: seconds from now, or a timezone-aware datetime. A
    task not started by then ends ``expired`` and never runs (one already running is not
    stopped). Unset: the type's declaration, else none."""
    group: str | None = None
    """Concurrency group (``customer:42``): with a limit set for the queue's groups
    (``rediq queue group-limit``), at most that many tasks of one group run at once, fleet-wide."""
    dependency_failure: str | None = None
    """What a dead, cancelled or vanished dependency does to this task: 'cancel' it or 'hold'
    it (waiting, for an operator). Unset: the enqueuing process's setting. Stored with the task,
    so every process that resolves it applies the same policy."""

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        if not value or len(value) > TASK_TYPE_MAX or _SPACE.search(value):
            raise ValueError(f"type must be 1..{TASK_TYPE_MAX} characters without spaces, got {value!r}")
        return value

    @field_validator("queue")
    @classmethod
    def _queue(cls, value: str) -> str:
        return validate_queue_name(value)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not value or len(value) > 128 or _BAD_ID_CHAR.search(value):
            raise ValueError(f"id must be 1..128 characters without spaces, '|' or braces, got {value!r}")
        return value

    @field_validator("group")
    @classmethod
    def _group(cls, value: str | None) -> str | None:
        if value is not None and (not value or len(value) > 128 or _BAD_ID_CHAR.search(value)):
            raise ValueError(f"group must be 1..128 characters without spaces, '|' or braces, got {value!r}")
        return value

    @field_validator("priority")
    @classmethod
    def _priority(cls, value: int) -> int:
        if not 0 <= value <= 100:
            raise ValueError(f"priority must be 0..100, got {value}")
        return value

    @field_validator("max_retry")
    @classmethod
    def _max_retry(cls, value: int) -> int:
        if not 0 <= value <= 1000:
            raise ValueError(f"max_retry must be 0..1000, got {value}")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if not 0.001 <= value <= 7 * 86400:  # it goes to Redis in whole ms: 0 would mean none
            raise ValueError(f"timeout must be > 0 and at most 7 days in seconds, got {value}")
        return value

    @field_validator("delay")
    @classmethod
    def _delay(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError(f"delay must be a finite number of seconds, got {value}")
        if value is not None and value < 0:
            raise ValueError(f"delay must be >= 0 seconds, got {value}")
        if value is not None and value > MAX_DELAY_S:
            raise ValueError(f"delay must be at most {MAX_DELAY_S:.0f} seconds (10 years), got {value}")
        return value

    @field_validator("eta")
    @classmethod
    def _eta(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("eta must be timezone-aware, e.g. datetime.now(UTC) + timedelta(...)")
        if value is not None and (value - datetime.now(UTC)).total_seconds() > MAX_DELAY_S:
            raise ValueError(f"eta must be at most 10 years ahead, got {value.isoformat()}")
        return value

    @field_validator("unique_ttl")
    @classmethod
    def _unique_ttl(cls, value: float) -> float:
        # the script sets the lock with PX; a value Redis refuses would fail the batch half way
        # (earlier tasks stored, the sequence counter not), so it is refused here, before any
        if not math.isfinite(value):
            raise ValueError(f"unique_ttl must be a finite number of seconds, got {value}")
        if not 1 <= value <= MAX_UNIQUE_TTL_S:
            raise ValueError(f"unique_ttl must be 1..{MAX_UNIQUE_TTL_S:.0f} seconds (1 year), got {value}")
        return value

    @field_validator("keep_result")
    @classmethod
    def _keep_result(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and 0 <= value <= MAX_DELAY_S):
            raise ValueError(f"keep_result must be 0..{MAX_DELAY_S:.0f} seconds (10 years), got {value}")
        return value

    @field_validator("expires")
    @classmethod
    def _expires(cls, value: float | datetime | None) -> float | datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError("expires must be timezone-aware, e.g. datetime.now(UTC) + timedelta(...)")
            ahead = (value - datetime.now(UTC)).total_seconds()
            if ahead <= 0:
                raise ValueError(
                    f"expires must be in the future, got {value.isoformat()} ({-ahead:.0f} s ago)"
                )
            if ahead > MAX_DELAY_S:
                raise ValueError(f"expires must be at most 10 years ahead, got {value.isoformat()}")
            return value
        if not (math.isfinite(value) and 0 < value <= MAX_DELAY_S):
            raise ValueError(
                f"expires must be > 0 and at most {MAX_DELAY_S:.0f} seconds (10 years), got {value}"
            )
        return value

    @field_validator("dependency_failure")
    @classmethod
    def _dependency_failure(cls, value: str | None) -> str | None:
        if value is not None and value not in ("cancel", "hold"):
            raise ValueError(f"dependency_failure must be 'cancel' or 'hold', got {value!r}")
        return value

    @model_validator(mode="after")
    def _delay_or_eta(self) -> Task:
        if self.delay is not None and self.eta is not None:
            raise ValueError("give either delay or eta, not both")
        if self.id in self.depends_on:
            raise ValueError("a task cannot depend on itself")
        if self.expires is not None and self.expires_in_ms() <= self.due_in_ms():
            raise ValueError(
                "expires must be later than the task's delay/eta: it would expire before it is due"
            )
        return self

    def payload_json(self) -> str:
        """The payload as compact JSON; raises ``PayloadError`` (E002) when it is not JSON."""
        return payload_json(self.type, self.payload)

    def due_in_ms(self) -> int:
        """Milliseconds until due, relative to now (Redis adds it to its own clock)."""
        if self.delay is not None:
            return int(self.delay * 1000)
        if self.eta is not None:
            return max(0, int((self.eta - datetime.now(UTC)) / timedelta(milliseconds=1)))
        return 0

    def expires_in_ms(self) -> int:
        """Milliseconds from now to the ``expires`` deadline (Redis adds it to its own clock,
        as for ``delay``); 0 when there is none."""
        if self.expires is None:
            return 0
        if isinstance(self.expires, datetime):
            return max(1, int((self.expires - datetime.now(UTC)) / timedelta(milliseconds=1)))
        return max(1, int(self.expires * 1000))


class HistoryEntry(BaseModel):
    """One transition in a task's status history (newest first when read)."""

    model_config = ConfigDict(frozen=True)

    at_ms: int
    state: str
    note: str = ""


class TaskInfo(BaseModel):
    """A task as stored in Redis, read back for clients, the CLI and the console."""

    model_config = ConfigDict(frozen=True)

    id: str
    type: str
    queue: str
    state: TaskState
    payload: Any = None
    payload_raw: str = ""
    priority: int = DEFAULT_PRIORITY
    max_retry: int = DEFAULT_MAX_RETRY
    timeout: float = DEFAULT_TIMEOUT_S
    attempts: int = 0
    enqueued_at_ms: int = 0
    due_at_ms: int | None = None
    expires_at_ms: int | None = None
    """The deadline to start by (``Task.expires``), server time in ms; None: no deadline."""
    started_at_ms: int | None = None
    finished_at_ms: int | None = None
    lease_expiry_ms: int | None = None
    worker: str | None = None
    unique_key: str | None = None
    group: str | None = None
    depends_on: tuple[str, ...] = ()
    waiting_on: tuple[str, ...] = ()
    dependents: tuple[str, ...] = ()
    metadata: dict[str, str] = Field(default_factory=dict)
    last_error: str | None = None
    traceback: str | None = None
    result: Any = None
    progress: float | None = None
    progress_message: str | None = None
    cancel_requested: bool = False
    reason: str | None = None
    schema_version: int = SCHEMA_VERSION
    history: tuple[HistoryEntry, ...] = ()
