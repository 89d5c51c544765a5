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
    """A worker's start: write each batch type's size and delay in its queue's hash."""
    for (queue, task_type), batch in batches.items():
        yield cmd("HSET", settings.keyspace.queue(queue).batches, task_type, batch.field)


def read_batches(settings: Settings, queue: str) -> Op[dict[str, Batch]]:
    """The queue's batch types (empty: the queue is not batched)."""
    fields = yield cmd("HGETALL", settings.keyspace.queue(queue).batches)
    out = {}
    for task_type, raw in dict(fields or {}).items():
        size, _, delay = str(raw).partition(":")
        if size.isdigit() and delay.isdigit():
            out[task_type] = Batch(int(size), int(delay) / 1000)
    return out
