"""Waiting for a task's result: ``Client.result``, ``EnqueueResult.wait``, ``enqueue_and_wait``.

A waiter subscribes to the task's queue events channel (scripts publish every transition
there), then reads the task's state (so an outcome that landed before the subscription is not
missed), and reads it again only when an event names the task, or every ``RECHECK_S`` in case
a notification was lost. So waiting costs a handful of commands however long it lasts. With
events disabled (``Settings.events=False``) it polls, backing off to once a second.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from engine import events, ops
from engine.backend import PUBSUB_LOST, Batch, Op, cmd
from engine.errors import (
    ResultTimeout,
    TaskCancelled,
    TaskDead,
    TaskExpired,
    TaskFailed,
    TaskNotFound,
)
from engine.ops import Settings
from engine.task import TaskInfo, TaskState

RECHECK_S = 5.0
"""Read the state again this often while waiting even if no event named the task: a safety
net for a notification lost with a pub/sub connection."""
POLL_MAX_S = 1.0
_FIELDS = ("id", "type", "state", "result", "error", "tb", "reason", "attempts", "finished")


def outcome(settings: Settings, task_id: str, queue: str) -> Op[TaskInfo | None]:
    """The task's state and outcome fields (not its payload): one HMGET."""
    values = yield cmd("HMGET", settings.keyspace.queue(queue).task(task_id), *_FIELDS)
    fields = {k: v for k, v in zip(_FIELDS, values, strict=True) if v is not None}
    return ops.task_info(queue, fields) if fields else None


def dependency_results(settings: Settings, queue: str, task_id: str) -> Op[dict[str, Any]]:
    """The results of a task's completed dependencies, by dependency id (what
    ``TaskContext.dependency_results`` returns). A dependency that did not complete (dead or
    cancelled under ``dependency_failure='hold'``) or whose hash expired is absent."""
    ks = settings.keyspace
    refs = ops._json((yield cmd("HGET", ks.queue(queue).task(task_id), "deps")), [])
    pairs = [str(ref).partition("|")[::2] for ref in refs] if isinstance(refs, list) else []
    if not pairs:
        return {}
    replies = yield Batch([cmd("HMGET", ks.queue(q).task(i), "state", "result") for q, i in pairs])
    return {
        i: ops._json(result)
        for (_, i), (state, result) in zip(pairs, replies, strict=True)
        if state == TaskState.COMPLETED
    }


def settle(info: TaskInfo | None, task_id: str) -> tuple[bool, Any]:
    """(True, result) once the task completed; raises for the other final states and for a task
    that does not exist; (False, None) while it is still on its way."""
    if info is None:
        raise TaskNotFound(f"no task with id {task_id!r}")
    where = f"task {task_id} ({info.type})"
    if info.state is TaskState.COMPLETED:
        return True, info.result
    if info.state is TaskState.DEAD:
        raise TaskDead(f"{where} is dead after {info.attempts} attempt(s): {info.last_error}", info=info)
    if info.state is TaskState.CANCELLED:
        raise TaskCancelled(
            f"{where} was cancelled: {info.reason or info.last_error or 'no reason'}", info=info
        )
    if info.state is TaskState.EXPIRED:
        raise TaskExpired(f"{where} expired: {info.reason or 'not started by its deadline'}", info=info)
    if info.state is TaskState.QUARANTINED:
        raise TaskFailed(f"{where} was deleted by an operator (restorable from quarantine)", info=info)
    return False, None


def _timeout(task_id: str, timeout: float | None) -> ResultTimeout:
    return ResultTimeout(f"task {task_id} has no result after {timeout:g} s")


FINAL_EVENTS = frozenset({"completed", "dead", "cancelled", "deleted", "quarantined", "expired"})
"""Events after which a waiter reads the task again (progress, retry and the like cannot end
a wait, so a task reporting progress costs its waiters nothing)."""


def _names(settings: Settings, message: Any, task_id: str) -> bool:
    """Whether a pub/sub message is an event that may have ended the wait for ``task_id``."""
    if message is None or message.get("type") != "message":
        return False
    event = events.parse(settings, message.get("channel") or "", message.get("data"))
    return event is not None and event.event in FINAL_EVENTS and task_id in event.ids


def _remaining(deadline: float | None) -> float:
    return float("inf") if deadline is None else deadline - time.monotonic()


def wait_sync(client: Any, task_id: str, queue: str | None, timeout: float | None) -> Any:
    """The result of a task, blocking until it is final (see the module docstring)."""
    settings: Settings = client.settings
    if queue is None:
        queue = client.backend.run(ops.require_task(settings, task_id)).queue
    deadline = None if timeout is None else time.monotonic() + timeout
    channel = settings.keyspace.queue(queue).events if settings.events else ""
    pubsub: Any = None
    poll = 0.05
    try:
        while True:
            if channel and pubsub is None:
                pubsub = client.backend.redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(channel)
            done, value = settle(client.backend.run(outcome(settings, task_id, queue)), task_id)
            if done:
                return value
            left = _remaining(deadline)
            if left <= 0:
                raise _timeout(task_id, timeout)
            if pubsub is None:
                time.sleep(min(poll, left))
                poll = min(POLL_MAX_S, poll * 2)
                continue
            until = time.monotonic() + min(RECHECK_S, left)
            try:
                while (wait := until - time.monotonic()) > 0:
                    if _names(settings, pubsub.get_message(timeout=wait), task_id):
                        break
            except PUBSUB_LOST:
                pubsub.close()
                pubsub = None  # resubscribe, then read the state again
                time.sleep(min(0.1, max(0.0, _remaining(deadline))))
    finally:
        if pubsub is not None:
            pubsub.close()


async def wait_async(
    client: Any,
    task_id: str,
    queue: str | None,
    timeout: float | None,  # noqa: ASYNC109 - one deadline across subscribe, reads and waits
) -> Any:
    """The asyncio twin of ``wait_sync``."""
    settings: Settings = client.settings
    if queue is None:
        queue = (await client.backend.run(ops.require_task(settings, task_id))).queue
    deadline = None if timeout is None else time.monotonic() + timeout
    channel = settings.keyspace.queue(queue).events if settings.events else ""
    pubsub: Any = None
    poll = 0.05
    try:
        while True:
            if channel and pubsub is None:
                pubsub = client.backend.redis.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(channel)
            done, value = settle(await client.backend.run(outcome(settings, task_id, queue)), task_id)
            if done:
                return value
            left = _remaining(deadline)
            if left <= 0:
                raise _timeout(task_id, timeout)
            if pubsub is None:
                await asyncio.sleep(min(poll, left))
                poll = min(POLL_MAX_S, poll * 2)
                continue
            until = time.monotonic() + min(RECHECK_S, left)
            try:
                while (wait := until - time.monotonic()) > 0:
                    if _names(settings, await pubsub.get_message(timeout=wait), task_id):
                        break
            except PUBSUB_LOST:
                await pubsub.aclose()
                pubsub = None
                await asyncio.sleep(min(0.1, max(0.0, _remaining(deadline))))
    finally:
        if pubsub is not None:
            await pubsub.aclose()
