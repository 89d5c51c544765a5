"""A cancel requested on a running task is kept until the task ends: its delivery may end in a
failure (the handler raised before the worker heard of the cancel) or be handed back (a
shutdown), and in both cases the task ends ``cancelled`` instead of running again. Found by
the fault harness (tests/faults, deep profile: "t3 runs again after a cancel was requested and
the delivery it was requested on ended"); before, ``fail.lua`` scheduled the retry and dropped
the request, and ``release.lua`` put the task back in pending, where the next worker ran it."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from engine import ops
from engine.client import Client
from engine.task import Task
from engine.worker import protocol

Q = "cxl"


def take(client: Client, worker: str, *, start_now: int = 1) -> protocol.Job:
    reply: Any = client.backend.execute(
        protocol.dequeue_call(client.settings, Q, 1, 30_000, worker, start_now=start_now)
    )
    (job,) = protocol.parse_dequeue(Q, reply)
    return job


def request_cancel(client: Client, task_id: str) -> None:
    assert client.backend.run(ops.cancel(client.settings, Q, [task_id])) == {task_id: "requested"}


@pytest.mark.parametrize("mode", ["retry", "permanent"])
def test_a_failure_after_a_cancel_was_requested_ends_the_task_cancelled(
    client: Client, raw: redis.Redis, mode: str
) -> None:
    task = client.enqueue(Task(type="t", queue=Q, max_retry=2))
    job = take(client, "w1")
    request_cancel(client, task.id)
    # the handler raised before the worker's heartbeat brought the cancel: a plain failure
    reply = client.backend.execute(
        protocol.fail_call(client.settings, Q, task.id, job.token, "boom", "", 0.0, mode)
    )
    info = client.get_task(task.id)
    assert info is not None
    assert (reply, info.state) == ("cancelled", "cancelled"), (
        f"the cancel was forgotten: the failure was recorded as {reply!r} and the task is {info.state}"
    )
    assert "boom" in (info.last_error or "")  # what the handler raised is still told
    assert take_none(client)  # nothing runs it again


def test_a_task_handed_back_after_a_cancel_was_requested_ends_cancelled(
    client: Client, raw: redis.Redis
) -> None:
    task = client.enqueue(Task(type="t", queue=Q, max_retry=2))
    job = take(client, "w1")  # started
    request_cancel(client, task.id)
    refused = client.backend.execute(
        protocol.release_call(client.settings, Q, [(task.id, job.token)], "shutdown")
    )
    assert refused == []
    info = client.get_task(task.id)
    assert info is not None and info.state == "cancelled", f"handed back as {info and info.state}"
    assert take_none(client)


def test_a_prefetched_task_is_cancelled_at_once_and_never_starts(client: Client, raw: redis.Redis) -> None:
    """A task leased but not started (prefetched, or in a worker's hand-off inbox) is not
    running: a cancel ends it at once, and its worker's start is refused, so it never runs.
    Found by the fault harness (deep profile, 2026-12-05): with only a flag, the worker started
    it and ran its handler, and the task ended cancelled or completed by whichever reached Redis
    first, the outcome or the heartbeat's news of the cancel."""
    task = client.enqueue(Task(type="t", queue=Q, max_retry=2))
    job = take(client, "w1", start_now=0)  # prefetched: reserved, not charged
    assert client.backend.run(ops.cancel(client.settings, Q, [task.id])) == {task.id: "cancelled"}
    started = client.backend.execute(protocol.start_call(client.settings, Q, [job]))
    assert protocol.parse_started(started) == {task.id: 0}  # refused: it never runs
    info = client.get_task(task.id)
    assert info is not None and info.state == "cancelled" and info.attempts == 0
    assert raw.zscore(f"rediq:{{{Q}}}:active", task.id) is None
    assert take_none(client)


def take_none(client: Client) -> bool:
    reply: Any = client.backend.execute(protocol.dequeue_call(client.settings, Q, 1, 30_000, "w2"))
    return protocol.parse_dequeue(Q, reply) == []
