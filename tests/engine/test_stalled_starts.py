"""A worker that wakes from a stall past its lease with prefetched tasks sends their start marks
and a dequeue in one exchange. Found by the fault harness (tests/faults, deep profile): the
start charged an attempt on a lease that had run out, the dequeue right after it recovered the
task as "worker died during attempt 1", and with ``max_retry=0`` the task went dead without its
handler ever being called. Now a reserved task whose lease ran out is not started; the dequeue
recovers it uncharged."""

from __future__ import annotations

from typing import Any

import redis

from engine.backend import Batch
from engine.client import Client
from engine.task import Task
from engine.worker import protocol

Q = "stall"


def lapse(raw: redis.Redis, task_id: str) -> None:
    """Make the task's lease look run out, as after a stall that long (no waiting)."""
    seconds, micros = raw.time()
    past = int(seconds) * 1000 + int(micros) // 1000 - 1
    raw.zadd(f"rediq:{{{Q}}}:active", {task_id: past}, xx=True)
    raw.hset(f"rediq:{{{Q}}}:t:{task_id}", "lease", past)


def exchange(
    client: Client, worker: str, starting: list[protocol.Job]
) -> tuple[dict[str, int], list[protocol.Job]]:
    """A worker's exchange: start marks for its reserved tasks, then a dequeue."""
    replies: Any = client.backend.execute(
        Batch(
            [
                protocol.start_call(client.settings, Q, starting),
                protocol.dequeue_call(client.settings, Q, 1, 30_000, worker, start_now=0),
            ]
        )
    )
    return protocol.parse_started(replies[0]), protocol.parse_dequeue(Q, replies[1])


def test_a_prefetched_task_whose_lease_ran_out_is_not_started_and_returns_uncharged(
    client: Client, raw: redis.Redis
) -> None:
    task = client.enqueue(Task(type="t", queue=Q, max_retry=0))
    (job,) = protocol.parse_dequeue(
        Q, client.backend.execute(protocol.dequeue_call(client.settings, Q, 1, 30_000, "w1", start_now=0))
    )
    assert job.reserved
    lapse(raw, task.id)  # w1 stalled past its lease with the task prefetched
    started, leased = exchange(client, "w1", [job])
    assert started == {task.id: 0}  # refused: the worker does not run it
    info = client.get_task(task.id)
    assert info is not None and info.state == "active" and info.attempts == 0  # re-leased uncharged
    assert [j.id for j in leased] == [task.id] and leased[0].token != job.token


def test_a_started_task_whose_start_is_sent_again_after_its_lease_ran_out_keeps_its_attempt(
    client: Client, raw: redis.Redis
) -> None:
    """(the refusal is for reserved tasks only: a copy of a start mark that already ran still
    answers the attempt, so the worker runs what Redis charged)"""
    task = client.enqueue(Task(type="t", queue=Q, max_retry=0))
    (job,) = protocol.parse_dequeue(
        Q, client.backend.execute(protocol.dequeue_call(client.settings, Q, 1, 30_000, "w1", start_now=0))
    )
    client.backend.execute(protocol.start_call(client.settings, Q, [job]))  # its reply was lost
    lapse(raw, task.id)
    assert protocol.parse_started(client.backend.execute(protocol.start_call(client.settings, Q, [job]))) == {
        task.id: 1
    }
