"""Batching (asynq's aggregation): a task type's tasks handed to one handler call as a list.

Declared in code on a task type (``@registry.task("notify", queue="notify",
batch=Batch(max_size=500, max_delay=2.0))``) with a handler ``fn(ctx, items: list[BatchItem])``.
Every worker writes the queue's batch hash (``QueueKeys.batches``) at start; ``dequeue.lua``
then leases the tasks of one type and group together once ``max_size`` of them wait or the
oldest waited ``max_delay`` on the Redis clock (``batch_pick`` in ``_lib.lua``), so the batch
forms in Redis, never in one worker's memory. Each task keeps its own lease, fencing token,
attempts and outcome (``engine.worker.batches`` runs the call and records them).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from engine.backend import Batch as Batch_
from engine.backend import Op, cmd
from engine.errors import InvalidBatch
from engine.ops import Settings

MAX_SIZE = 1000
"""The largest batch (``batch_pick`` looks at the first 2,000 pending tasks of a queue)."""
MAX_DELAY_S = 3600.0
M = TypeVar("M")


@dataclass(frozen=True, slots=True)
class Batch:
    """``max_size`` tasks of one type (and group) go to one handler call; fewer once the
    oldest waited ``max_delay`` seconds."""

    max_size: int
    max_delay: float

    @property
    def field(self) -> str:
        """The value ``batch_pick`` reads: '<max_size>:<max_delay ms>'."""
        return f"{self.max_size}:{round(self.max_delay * 1000)}"


@dataclass(frozen=True, slots=True)
class BatchItem(Generic[M]):
    """One task of a batch as its handler sees it (picklable: ``--pool process`` too)."""

    id: str
    payload: M
    attempt: int


def validated(batch: Batch, task_type: str) -> Batch:
    size, delay = batch.max_size, batch.max_delay
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_SIZE:
        raise InvalidBatch(
            f"task type {task_type!r}: batch max_size={size!r} must be a whole number 1..{MAX_SIZE}"
        )
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 < delay <= MAX_DELAY_S:
        raise InvalidBatch(
            f"task type {task_type!r}: batch max_delay={delay!r} must be seconds > 0, at most {MAX_DELAY_S:g}"
        )
    return Batch(size, float(delay))


def check_handler(task_type: str, fn: Callable[..., Any]) -> None:
    """A batch handler takes ``(ctx, items)``; ``items``, when annotated, must be a list."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2 and not any(p.kind is p.VAR_POSITIONAL for p in params):
        raise InvalidBatch(
            f"batch handler {task_type!r} takes {len(positional)} argument(s), not (ctx, items)"
        )
    if len(positional) < 2:
        return
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - an unresolvable annotation: not ours to judge
        return
    hint = hints.get(positional[1].name)
    if hint is None or hint is Any:
        return
    origin = typing.get_origin(hint) or hint
    if not (isinstance(origin, type) and issubclass(origin, Sequence)) or origin in (str, bytes):
        raise InvalidBatch(
            f"batch handler {task_type!r} declares items: {getattr(hint, '__name__', hint)}, not a list",
            fix="Annotate the second argument as list[BatchItem[...]] (it gets the batch's items)",
        )


def declare_batches(settings: Settings, batches: dict[tuple[str, str], Batch]) -> Op[None]:
    """A worker's start: write each batch type's size and delay in its queue's hash. Withdraws
    the queue's hand-off registrations: a worker that registered before the queue was batched
    would otherwise be handed its tasks one by one by enqueues."""
    for (queue, task_type), batch in batches.items():
        qk = settings.keyspace.queue(queue)
        yield cmd("HSET", qk.batches, task_type, batch.field)
        yield cmd("DEL", qk.idle)


def read_batches(settings: Settings, queue: str) -> Op[dict[str, Batch]]:
    """The queue's batch types (empty: the queue is not batched)."""
    fields = yield cmd("HGETALL", settings.keyspace.queue(queue).batches)
    parsed = {task_type: _parse(raw) for task_type, raw in dict(fields or {}).items()}
    return {task_type: batch for task_type, batch in parsed.items() if batch is not None}


BATCH_SCAN = 2000
"""Pending tasks looked at, as ``batch_pick`` in ``_lib.lua`` does."""


@dataclass(frozen=True, slots=True)
class BatchState:
    """The batch a pending task waits in, as ``batch_pick`` would see it at ``now_ms``."""

    task_type: str
    group: str | None
    batch: Batch
    waiting: int
    """Tasks of the batch (its type and group) among the first ``BATCH_SCAN`` pending."""
    due_in_ms: int
    """ms until its oldest waited ``max_delay`` (0: due now)."""

    def __str__(self) -> str:
        name = self.task_type + (f" (group {self.group})" if self.group else "")
        ready = (
            "ready now"
            if self.waiting >= self.batch.max_size or not self.due_in_ms
            else f"ready in {self.due_in_ms / 1000:.1f} s"
        )
        return f"batch {name}: {self.waiting}/{self.batch.max_size}, {ready}"


def read_batch_state(
    settings: Settings, queue: str, task_type: str, group: str | None, now_ms: int
) -> Op[BatchState | None]:
    """The batch ``task_type`` (and ``group``) forms in ``queue`` (None: not a batch type)."""
    qk = settings.keyspace.queue(queue)
    raw = yield cmd("HGET", qk.batches, task_type)
    batch = _parse(raw)
    if batch is None:
        return None
    ids = yield cmd("ZRANGE", qk.pending, 0, BATCH_SCAN - 1)
    fields = (yield Batch_([cmd("HMGET", qk.task(i), "type", "grp", "due") for i in ids])) if ids else []
    dues = [int(float(f[2] or now_ms)) for f in fields if f[0] == task_type and (f[1] or None) == group]
    due_in = max(0, min(dues) + round(batch.max_delay * 1000) - now_ms) if dues else 0
    return BatchState(task_type, group, batch, len(dues), due_in)


def _parse(raw: Any) -> Batch | None:
    size, _, delay = str(raw or "").partition(":")
    return Batch(int(size), int(delay) / 1000) if size.isdigit() and delay.isdigit() else None
