"""Operator actions: pause/resume, requeue, cancel, delete, flush. Bulk actions run in bounded
chunks so a huge dead set never stalls Redis in one command.

Use through a client: ``client.call(admin.pause, "payment")``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from engine import ops
from engine.backend import Op, cmd
from engine.errors import UnknownQueue
from engine.ops import Settings
from engine.task import TaskInfo, TaskState

CHUNK = 500


def _known(settings: Settings, queue: str) -> Op[None]:
    if not (yield cmd("SISMEMBER", settings.keyspace.queues, queue)):
        raise UnknownQueue(f"queue {queue!r} does not exist")


def pause(settings: Settings, queue: str) -> Op[bool]:
    yield from _known(settings, queue)
    return (yield from ops.set_paused(settings, queue, True))


def resume(settings: Settings, queue: str) -> Op[bool]:
    yield from _known(settings, queue)
    return (yield from ops.set_paused(settings, queue, False))


def requeue(settings: Settings, queue: str, ids: Sequence[str]) -> Op[list[str]]:
    return (yield from ops.requeue(settings, queue, ids, "requeued by operator"))


def cancel(settings: Settings, queue: str, ids: Sequence[str]) -> Op[dict[str, str]]:
    return (yield from ops.cancel(settings, queue, ids, "cancelled by operator"))


def delete(settings: Settings, queue: str, ids: Sequence[str]) -> Op[list[str]]:
    return (yield from ops.delete(settings, queue, ids))


def count(settings: Settings, queue: str, state: TaskState | str) -> Op[int]:
    return int((yield cmd("ZCARD", settings.keyspace.queue(queue).state_key(str(TaskState(state))))))


def _chunks(
    settings: Settings,
    queue: str,
    state: TaskState,
    where: Callable[[TaskInfo], bool] | None,
    act: Callable[[Sequence[str]], Op[Sequence[str]]],
) -> Op[int]:
    """Apply ``act`` to every task of a state in chunks; each chunk is one bounded script."""
    qk = settings.keyspace.queue(queue)
    key = qk.state_key(str(state))
    done = 0
    offset = 0
    while True:
        ids = yield cmd("ZRANGE", key, offset, offset + CHUNK - 1)
        if not ids:
            return done
        chosen = list(ids)
        if where is not None:
            page = yield from ops_page(settings, queue, ids)
            chosen = [t.id for t in page if where(t)]
            skipped = len(ids) - len(chosen)
        else:
            skipped = 0
        acted: Sequence[str] = []
        if chosen:
            acted = yield from act(chosen)
        done += len(acted)
        # acted tasks left the set; skipped ones stay, so step over them
        offset += skipped + (len(chosen) - len(acted))


def ops_page(settings: Settings, queue: str, ids: Sequence[str]) -> Op[list[TaskInfo]]:
    from engine.backend import Batch

    qk = settings.keyspace.queue(queue)
    hashes = yield Batch([cmd("HGETALL", qk.task(i)) for i in ids])
    return [ops.task_info(queue, h) for h in hashes if h]


def requeue_all(
    settings: Settings,
    queue: str,
    state: TaskState | str = TaskState.DEAD,
    where: Callable[[TaskInfo], bool] | None = None,
) -> Op[int]:
    """Requeue every task of a state (default dead), optionally only those ``where`` accepts."""
    yield from _known(settings, queue)
    return (
        yield from _chunks(
            settings,
            queue,
            TaskState(state),
            where,
            lambda ids: ops.requeue(settings, queue, ids, "requeued by operator (bulk)"),
        )
    )


def flush(
    settings: Settings,
    queue: str,
    state: TaskState | str = TaskState.DEAD,
    where: Callable[[TaskInfo], bool] | None = None,
) -> Op[int]:
    """Delete every task of a state (default dead)."""
    yield from _known(settings, queue)
    return (
        yield from _chunks(
            settings, queue, TaskState(state), where, lambda ids: ops.delete(settings, queue, ids)
        )
    )
