"""Operator actions: pause/resume, requeue, cancel, delete (to quarantine), restore, flush,
failure-group actions. Each action is one entry in the audit stream (``inspect.audit``), however
many tasks it moves.

Bulk actions run in chunks sized by measured time (``ChunkSizer``): each script call reports
the server CPU time it took, and the next chunk is sized to take about ``CHUNK_TARGET_US``, so
no call holds Redis for long (a fixed 500-task chunk took 6-10 ms in SLOWLOG; the limit is
``CHUNK_LIMIT_US``), whatever one task costs on that server.

Use through a client: ``client.call(admin.pause, "payment")``.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache

from engine import batching, cron, flow, ops
from engine.backend import Batch, Op, cmd
from engine.errors import InvalidBatch, InvalidTask, UnknownQueue
from engine.keys import validate_queue_name
from engine.ops import Settings
from engine.task import TaskInfo, TaskState

AUDIT_MAX = 10_000

CHUNK_START = 20
"""Tasks in a bulk action's first script call, before any time was measured: about the target
for the costliest bulk script (quarantine, ~25 us of Valkey CPU per task)."""
CHUNK_MAX = 1_000
CHUNK_TARGET_US = 500
"""Server CPU time a chunk is sized to take: a quarter of the limit, the margin for a chunk
whose tasks cost more than the last one's."""
CHUNK_LIMIT_US = 2_000
"""No bulk script call should take longer (the usual ``slowlog-log-slower-than`` alarm level)."""


@dataclass
class ChunkSizer:
    """The size of a bulk action's next chunk, from the server time the last ones took: grows
    (at most doubling) while calls are cheap, shrinks to the target when one took longer, and at
    least halves when one went past the limit. Without a measurement (a server that cannot tell,
    Redis 7.0) it keeps its size. ``timings`` holds each call's (tasks, server CPU us)."""

    size: int = CHUNK_START
    timings: list[tuple[int, int | None]] = field(default_factory=list)

    def observe(self, tasks: int, cpu_us: int | None) -> None:
        self.timings.append((tasks, cpu_us))
        if cpu_us is None or tasks <= 0:
            return
        fitting = tasks * CHUNK_TARGET_US // max(cpu_us, 1)  # tasks that take about the target
        if cpu_us > CHUNK_LIMIT_US:
            self.size = min(fitting, tasks // 2)
        elif cpu_us > CHUNK_TARGET_US:
            self.size = fitting
        else:  # a cheap call, perhaps a short last chunk: grow, never shrink on it
            self.size = min(max(fitting, self.size), 2 * self.size)
        self.size = max(1, min(self.size, CHUNK_MAX))


def _each_chunk(
    ids: Sequence[str], act: Callable[[Sequence[str]], Op[ops.Moved]], sizer: ChunkSizer | None = None
) -> Op[ops.Moved]:
    """``act`` on ``ids`` in chunks sized by ``sizer``; the moved ids and refusals of them all."""
    sizer = sizer or ChunkSizer()
    result = ops.Moved()
    start = 0
    while start < len(ids):
        chunk = ids[start : start + sizer.size]
        start += len(chunk)
        moved = yield from act(chunk)
        sizer.observe(len(chunk), moved.cpu_us)
        result.extend(moved)
        result.refused.update(moved.refused)
    return result


@cache
def _actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def audit(
    settings: Settings,
    action: str,
    queue: str = "",
    count: int = 0,
    detail: str = "",
    actor: str | None = None,
) -> Op[None]:
    """Append one operator action to the audit stream (capped near ``AUDIT_MAX`` entries)."""
    yield cmd(
        "XADD",
        settings.keyspace.audit,
        "MAXLEN",
        "~",
        AUDIT_MAX,
        "*",
        "action",
        action,
        "queue",
        queue,
        "count",
        count,
        "detail",
        detail[:500],
        "actor",
        actor or _actor(),
    )


def _known(settings: Settings, queue: str) -> Op[None]:
    if not (yield cmd("SISMEMBER", settings.keyspace.queues, queue)):
        raise UnknownQueue(f"queue {queue!r} does not exist")


def pause(settings: Settings, queue: str) -> Op[bool]:
    """Pause a queue, known or not: pausing one before its first task arrives (a deploy, a
    maintenance window) is legitimate, so an unknown name joins the known queues."""
    try:
        validate_queue_name(queue)
    except ValueError as exc:
        raise InvalidTask(str(exc)) from None
    yield cmd("SADD", settings.keyspace.queues, queue)
    changed = yield from ops.set_paused(settings, queue, True)
    yield from audit(settings, "pause", queue)
    return changed


def resume(settings: Settings, queue: str) -> Op[bool]:
    yield from _known(settings, queue)
    changed = yield from ops.set_paused(settings, queue, False)
    yield from audit(settings, "resume", queue)
    return changed


def _not_batched(settings: Settings, queue: str, what: str) -> Op[None]:
    """A batched queue's dequeue hands out whole batches and applies no rate or group limit
    (``batch_pick`` in ``_lib.lua``): a limit written there would be shown and audited but never
    hold. Refused, as ``Registry`` refuses to declare one."""
    batches = yield from batching.read_batches(settings, queue)
    if batches:
        raise InvalidBatch(
            f"queue {queue!r} holds batch type {min(batches)!r}: {what} would not hold there",
            fix="Give the batch type a queue of its own (queue=...) or leave this queue unlimited",
        )


def set_rate_limit(
    settings: Settings, queue: str, limit: flow.RateLimit, task_type: str | None = None
) -> Op[None]:
    """An operator's rate limit for ``queue``, or for one ``task_type`` in it (kept over the
    app's declared one until cleared); validated before anything is written, and audited.
    Refused on a batched queue (``InvalidBatch``), whose dequeue would not apply it."""
    try:
        validate_queue_name(queue)
    except ValueError as exc:
        raise InvalidTask(str(exc)) from None
    limit = flow.validated(limit)
    yield from _not_batched(settings, queue, "a rate limit")
    yield cmd("SADD", settings.keyspace.queues, queue)
    yield from flow.write_limit(settings, queue, limit, flow.LimitSource.OPERATOR, task_type)
    of = "" if task_type is None else f" for type {task_type}"
    yield from audit(settings, "rate-limit", queue, detail=f"{limit}{of}")


def clear_rate_limit(settings: Settings, queue: str, task_type: str | None = None) -> Op[bool]:
    """Remove ``queue``'s rate limit (and a pause a handler asked for), or one type's own;
    audited. A declared one comes back at the next start of a worker whose app declares it."""
    yield from _known(settings, queue)
    removed = yield from flow.clear_limit(settings, queue, task_type)
    of = "" if task_type is None else f" for type {task_type}"
    yield from audit(settings, "rate-limit", queue, detail=f"cleared{of}")
    return removed


def set_group_limit(settings: Settings, queue: str, group: str, limit: int) -> Op[None]:
    """At most ``limit`` tasks of concurrency ``group`` (``*``: any group) of ``queue`` run at
    once, fleet-wide; validated before anything is written, and audited. Refused on a batched
    queue (``InvalidBatch``), whose dequeue would not apply it."""
    try:
        validate_queue_name(queue)
    except ValueError as exc:
        raise InvalidTask(str(exc)) from None
    flow.validated_group_limit(group, limit)
    yield from _not_batched(settings, queue, "a concurrency group limit")
    yield cmd("SADD", settings.keyspace.queues, queue)
    yield from flow.write_group_limit(settings, queue, group, limit)
    yield from audit(settings, "group-limit", queue, detail=f"{group}={limit}")


def clear_group_limit(settings: Settings, queue: str, group: str) -> Op[bool]:
    yield from _known(settings, queue)
    removed = yield from flow.clear_group_limit(settings, queue, group)
    yield from audit(settings, "group-limit", queue, detail=f"{group} cleared")
    return removed


def set_fair(settings: Settings, queue: str, weights: dict[str, int] | None = None) -> Op[None]:
    """Make ``queue`` fair between its groups (weighted by ``weights``); audited."""
    try:
        validate_queue_name(queue)
    except ValueError as exc:
        raise InvalidTask(str(exc)) from None
    yield cmd("SADD", settings.keyspace.queues, queue)
    yield from flow.write_fair(settings, queue, weights)
    shown = ",".join(f"{g}={w}" for g, w in (weights or {}).items())
    yield from audit(settings, "fair", queue, detail=f"on {shown}".strip())


def clear_fair(settings: Settings, queue: str) -> Op[bool]:
    yield from _known(settings, queue)
    removed = yield from flow.clear_fair(settings, queue)
    yield from audit(settings, "fair", queue, detail="off")
    return removed


def requeue(settings: Settings, queue: str, ids: Sequence[str]) -> Op[ops.Moved]:
    moved = yield from _each_chunk(
        ids, lambda chunk: ops.requeue(settings, queue, chunk, "requeued by operator")
    )
    yield from audit(settings, "requeue", queue, len(moved), ",".join(ids[:20]))
    return moved


def cancel(settings: Settings, queue: str, ids: Sequence[str]) -> Op[dict[str, str]]:
    outcomes = yield from ops.cancel(settings, queue, ids, "cancelled by operator")
    done = sum(1 for v in outcomes.values() if v in ("cancelled", "requested"))
    yield from audit(settings, "cancel", queue, done, ",".join(ids[:20]))
    return outcomes


def delete(settings: Settings, queue: str, ids: Sequence[str]) -> Op[list[str]]:
    """Delete recoverably: tasks go to quarantine (``restore`` brings them back)."""
    moved = yield from _each_chunk(ids, lambda chunk: ops.quarantine(settings, queue, chunk))
    yield from audit(settings, "delete", queue, len(moved), ",".join(ids[:20]))
    return moved


def restore(settings: Settings, queue: str, ids: Sequence[str]) -> Op[ops.Moved]:
    restored = yield from _each_chunk(ids, lambda chunk: ops.restore(settings, queue, chunk))
    yield from audit(settings, "restore", queue, len(restored), ",".join(ids[:20]))
    return restored


def purge(settings: Settings, queue: str, ids: Sequence[str]) -> Op[list[str]]:
    """Delete for good (no quarantine)."""
    deleted = yield from _each_chunk(ids, lambda chunk: ops.delete(settings, queue, chunk))
    yield from audit(settings, "purge", queue, len(deleted), ",".join(ids[:20]))
    return deleted


def count(settings: Settings, queue: str, state: TaskState | str) -> Op[int]:
    key = settings.keyspace.queue(queue).state_key(str(TaskState(state)))
    return int((yield cmd("ZCARD", key)))


def _tasks(settings: Settings, queue: str, ids: Sequence[str]) -> Op[list[TaskInfo]]:
    qk = settings.keyspace.queue(queue)
    hashes = yield Batch([cmd("HGETALL", qk.task(i)) for i in ids])
    return [ops.task_info(queue, h) for h in hashes if h]


def _chunks(
    settings: Settings,
    key: str,
    queue: str,
    where: Callable[[TaskInfo], bool] | None,
    act: Callable[[Sequence[str]], Op[ops.Moved]],
    sizer: ChunkSizer | None = None,
) -> Op[int]:
    """Apply ``act`` to every member of ``key`` in chunks sized by ``sizer``: each chunk is one
    script call of bounded server time."""
    sizer = sizer or ChunkSizer()
    done = 0
    offset = 0
    while True:
        ids = yield cmd("ZRANGE", key, offset, offset + sizer.size - 1)
        if not ids:
            return done
        chosen = list(ids)
        if where is not None:
            tasks = yield from _tasks(settings, queue, ids)
            chosen = [t.id for t in tasks if where(t)]
        acted = ops.Moved()
        if chosen:
            acted = yield from act(chosen)
            sizer.observe(len(chosen), acted.cpu_us)
        done += len(acted)
        # acted tasks left the set; skipped ones stay, so step over them
        offset += len(ids) - len(acted)


def requeue_all(
    settings: Settings,
    queue: str,
    state: TaskState | str = TaskState.DEAD,
    where: Callable[[TaskInfo], bool] | None = None,
    refused: dict[str, str] | None = None,
    sizer: ChunkSizer | None = None,
) -> Op[int]:
    """Requeue every task of a state (default dead), optionally only those ``where`` accepts.
    Tasks refused (another live task holds their unique key) stay, with the reason put in
    ``refused`` when given."""
    yield from _known(settings, queue)
    key = settings.keyspace.queue(queue).state_key(str(TaskState(state)))

    def act(ids: Sequence[str]) -> Op[ops.Moved]:
        moved = yield from ops.requeue(settings, queue, ids, "requeued by operator (bulk)")
        if refused is not None:
            refused.update(moved.refused)
        return moved

    moved = yield from _chunks(settings, key, queue, where, act, sizer)
    yield from audit(settings, "requeue_all", queue, moved, f"state={state}" + (" filtered" if where else ""))
    return moved


def restore_all(
    settings: Settings,
    queue: str,
    refused: dict[str, str] | None = None,
    sizer: ChunkSizer | None = None,
) -> Op[int]:
    """Restore every quarantined task of a queue: one action, one audit entry. Tasks refused
    (another live task holds their unique key) stay quarantined, with the reason put in
    ``refused`` when given."""
    yield from _known(settings, queue)
    key = settings.keyspace.queue(queue).quarantine

    def act(ids: Sequence[str]) -> Op[ops.Moved]:
        restored = yield from ops.restore(settings, queue, ids)
        if refused is not None:
            refused.update(restored.refused)
        return restored

    restored = yield from _chunks(settings, key, queue, None, act, sizer)
    yield from audit(settings, "restore_all", queue, restored, "state=quarantined")
    return restored


def flush(
    settings: Settings,
    queue: str,
    state: TaskState | str = TaskState.DEAD,
    where: Callable[[TaskInfo], bool] | None = None,
    sizer: ChunkSizer | None = None,
) -> Op[int]:
    """Delete (to quarantine) every task of a state, default dead."""
    yield from _known(settings, queue)
    key = settings.keyspace.queue(queue).state_key(str(TaskState(state)))
    moved = yield from _chunks(
        settings, key, queue, where, lambda ids: ops.quarantine(settings, queue, ids), sizer
    )
    yield from audit(settings, "flush", queue, moved, f"state={state}" + (" filtered" if where else ""))
    return moved


def retry_group(settings: Settings, queue: str, fingerprint: str) -> Op[int]:
    """Requeue every task of one failure group (dead or retrying) in one action."""
    key = settings.keyspace.queue(queue).fingerprint(fingerprint)
    moved = yield from _chunks(
        settings,
        key,
        queue,
        None,
        lambda ids: ops.requeue(settings, queue, ids, f"requeued with group {fingerprint}"),
    )
    yield from audit(settings, "retry_group", queue, moved, fingerprint)
    return moved


def delete_group(settings: Settings, queue: str, fingerprint: str) -> Op[int]:
    key = settings.keyspace.queue(queue).fingerprint(fingerprint)
    moved = yield from _chunks(settings, key, queue, None, lambda ids: ops.quarantine(settings, queue, ids))
    yield from audit(settings, "delete_group", queue, moved, fingerprint)
    return moved


def run_cron_now(settings: Settings, name: str) -> Op[str]:
    task_id = yield from cron.run_now(settings, name)
    yield from audit(settings, "cron_run_now", "", 1, name)
    return task_id


def set_cron_paused(settings: Settings, name: str, paused: bool) -> Op[bool]:
    changed = yield from cron.set_paused(settings, name, paused)
    yield from audit(settings, "cron_pause" if paused else "cron_resume", "", int(changed), name)
    return changed


def remove_cron(settings: Settings, name: str) -> Op[bool]:
    """Delete a cron entry and its state. A scheduler whose code still declares it stores it
    again on its next pass: remove the entry from the code first (or it is orphaned anyway)."""
    removed = yield from cron.unregister(settings, name)
    yield from audit(settings, "cron_remove", "", int(removed), name)
    return removed
