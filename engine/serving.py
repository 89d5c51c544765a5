"""Which task types waiting in a queue no live worker serves (the console's queue view).

A worker serves type T on queue Q when it listens on Q and has a handler for T: workers publish
their handlers at start (``engine.declarations.publish``, ``Keyspace.declared_by``) and their
queues with every heartbeat. Tasks of a type nobody serves wait forever (a queue no worker
listens on), or die as 'unknown task type' once a worker of another app takes them. Read from
the head of pending only (``SAMPLE`` tasks): bounded, whatever the backlog.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

from engine.backend import Batch, Op, cmd
from engine.declarations import Declaration
from engine.inspect import STALE_HEARTBEAT_S
from engine.ops import Settings, server_time_ms

SAMPLE = 100
"""Tasks read from the head of pending (the ones that run next)."""


@dataclass(frozen=True, slots=True)
class UnservedType:
    task_type: str
    queue: str
    waiting: int
    """Tasks of the type among the sampled head of pending (at most ``SAMPLE``)."""
    listeners: int
    """Live workers listening on the queue (none of them has a handler for the type)."""
    declared_queue: str | None
    """The queue the type's published declaration names (None: declared nowhere)."""
    handlers_on: tuple[str, ...]
    """Queues of live workers that do have a handler for it (listening elsewhere)."""

    @property
    def why(self) -> str:
        """One line: what is missing and where the type's handlers are."""
        if not self.listeners:
            text = f"no live worker listens on {self.queue}"
        else:
            text = f"none of the {self.listeners} worker(s) on {self.queue} has a handler"
        if self.declared_queue is not None and self.declared_queue != self.queue:
            text += f"; declared for queue {self.declared_queue}"
        if self.handlers_on:
            text += f"; handlers on {', '.join(self.handlers_on)}"
        return text


def unserved_types(settings: Settings, queue: str, sample: int = SAMPLE) -> Op[list[UnservedType]]:
    """The types among the next ``sample`` pending tasks of ``queue`` that no live worker
    serves, most waiting first. A live worker that published no handlers (its Redis user may
    not write them) counts as serving every type of its queues: never a false alarm."""
    ks = settings.keyspace
    qk = ks.queue(queue)
    ids = yield cmd("ZRANGE", qk.pending, 0, sample - 1)
    if not ids:
        return []
    now_ms = yield from server_time_ms()
    stale_before = now_ms - int(STALE_HEARTBEAT_S * 1000)
    replies = yield Batch(
        [
            *[cmd("HGET", qk.task(i), "type") for i in ids],
            cmd("ZRANGEBYSCORE", ks.workers, stale_before, "+inf"),
            cmd("HGETALL", ks.declared_by),
        ]
    )
    types = Counter(t for t in replies[: len(ids)] if t)
    live, by_worker = replies[len(ids)], replies[len(ids) + 1]
    if not types:
        return []
    worker_queues: list[str | None] = []
    if live:
        worker_queues = yield Batch([cmd("HGET", ks.worker(w), "queues") for w in live])
    listening: list[tuple[set[str], set[str] | None]] = []  # (queues, handler types or None: unknown)
    for worker_id, queues_text in zip(live, worker_queues, strict=True):
        handlers: set[str] | None = None
        try:
            published = json.loads(by_worker[worker_id]) if worker_id in by_worker else None
        except ValueError:
            published = None
        if isinstance(published, dict):
            handlers = set(published)
        listening.append((set((queues_text or "").split(",")) - {""}, handlers))
    wanted = sorted(types)
    declared = yield cmd("HMGET", ks.declarations, *wanted)
    declared_queue = {}
    for task_type, text in zip(wanted, declared, strict=True):
        decl = Declaration.from_json(text) if text else None
        declared_queue[task_type] = decl.queue if decl is not None else None
    out = []
    on_queue = [(qs, h) for qs, h in listening if queue in qs]
    for task_type, count in types.most_common():
        if any(h is None or task_type in h for _, h in on_queue):
            continue
        elsewhere = sorted({q for qs, h in listening if h is not None and task_type in h for q in qs})
        out.append(
            UnservedType(task_type, queue, count, len(on_queue), declared_queue[task_type], tuple(elsewhere))
        )
    return out
