"""Fencing: every delivery of a task (a lease by dequeue, a hand-off by enqueue) carries a token
unique to it ('<worker id>#<delivery number>', ``Job.token``), and the scripts refuse any start,
ack, failure, extend, release or progress that names a delivery that is over. Each test here
replays, call by call against a real Valkey, an interleaving that lost or buried a task before
the calls were fenced; the last ones check what the worker does with a refusal."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis

from engine import admin, inspect, ops
from engine.backend import Batch
from engine.client import Client
from engine.metrics import LabelPolicy, WorkerMetrics
from engine.registry import Registry
from engine.task import Task
from engine.worker import protocol
from tests.engine.conftest import running_worker, wait_until

Q = "fz"
IDLE = "rediq:{fz}:idle"


def dequeue(
    client: Client,
    worker: str,
    n: int = 1,
    *,
    start_now: int | None = None,
    lease_ms: int = 30_000,
    handoff_ms: int = 0,
) -> list[protocol.Job]:
    reply: Any = client.backend.execute(
        protocol.dequeue_call(
            client.settings, Q, n, lease_ms, worker, start_now=start_now, handoff_ms=handoff_ms
        )
    )
    return protocol.parse_dequeue(Q, reply)


def pop_handoff(raw: redis.Redis, worker: str) -> protocol.Job:
    record = raw.lpop(f"rediq:{{fz}}:inbox:{worker}")
    assert isinstance(record, str)
    return protocol.parse_handoff(Q, record)


def wait_past(client: Client, lease_ms: int) -> None:
    """Until the Redis clock is past a lease taken now (leases run on the server's clock)."""
    until = client.backend.run(ops.server_time_ms()) + lease_ms
    while client.backend.run(ops.server_time_ms()) <= until:
        time.sleep(lease_ms / 4000)


def state(client: Client, task_id: str) -> str:
    info = client.get_task(task_id)
    assert info is not None
    return str(info.state)


def test_every_delivery_has_its_own_token(client: Client, raw: redis.Redis) -> None:
    task = client.enqueue("t", None, queue=Q)
    first = dequeue(client, "w1", lease_ms=50)
    assert [j.token for j in first] == ["w1#1"]
    wait_past(client, 50)
    again = dequeue(client, "w1")  # the same worker, a new delivery (after recovery)
    assert [(j.id, j.token, j.attempt) for j in again] == [(task.id, "w1#2", 2)]
    # the first delivery's calls are all refused now, though worker and attempt look right
    stale = first[0]
    assert client.backend.execute(
        protocol.extend_call(client.settings, Q, [(task.id, stale.token)], 1000)
    ) == [
        [task.id],
        [],
    ]
    assert (
        client.backend.execute(protocol.progress_call(client.settings, Q, task.id, stale.token, 50, ""))
        is None
    )
    assert client.backend.execute(
        protocol.release_call(client.settings, Q, [(task.id, stale.token)], "x")
    ) == [task.id]
    assert client.backend.execute(protocol.ack_call(client.settings, Q, [(task.id, stale.token, "")])) == [
        [task.id],
        [],
    ]
    assert state(client, task.id) == "active"
    assert client.backend.execute(protocol.ack_call(client.settings, Q, [(task.id, again[0].token, "")])) == [
        [],
        [],
    ]
    assert state(client, task.id) == "completed"


def test_a_stalled_handoff_failure_does_not_bury_another_workers_success(
    client: Client, raw: redis.Redis
) -> None:
    """w1 is handed the task and stalls past its lease before its start mark lands; w2 runs it
    as attempt 1. w1's start mark and its failure then arrive in one batch: both are refused
    (before fencing, the failure matched 'attempt 1' and buried w2's run as dead)."""
    dequeue(client, "w1", handoff_ms=5_000, lease_ms=100)  # idle: registers for hand-offs
    task = client.enqueue("t", None, queue=Q, max_retry=0)
    assert task.state == "active"
    held = pop_handoff(raw, "w1")
    assert held.token == "w1#1" and held.reserved
    wait_past(client, 100)
    (taken,) = dequeue(client, "w2")  # recovers the lease (uncharged), starts attempt 1
    assert (taken.attempt, taken.token) == (1, "w2#2")
    start, fail = client.backend.execute(
        Batch(
            [
                protocol.start_call(client.settings, Q, [held]),
                protocol.fail_call(client.settings, Q, task.id, held.token, "boom", "", 0),
            ]
        )
    )
    assert (start, fail) == ([task.id, 0], "stale")
    assert state(client, task.id) == "active"
    assert client.backend.execute(protocol.ack_call(client.settings, Q, [(task.id, taken.token, "")])) == [
        [],
        [],
    ]
    info = client.get_task(task.id)
    assert info is not None and info.state == "completed" and info.attempts == 1


def test_a_started_delivery_that_stalled_cannot_fail_the_next_one(client: Client, raw: redis.Redis) -> None:
    task = client.enqueue("t", None, queue=Q, max_retry=1)
    (first,) = dequeue(client, "w1", lease_ms=50)
    wait_past(client, 50)
    (second,) = dequeue(client, "w2")  # attempt 2, the last
    assert second.attempt == 2
    late = protocol.fail_call(client.settings, Q, task.id, first.token, "slow", "", 0, "permanent")
    assert client.backend.execute(late) == "stale"
    assert client.backend.execute(protocol.ack_call(client.settings, Q, [(task.id, second.token, "")])) == [
        [],
        [],
    ]
    assert state(client, task.id) == "completed"


def test_a_start_whose_reply_was_lost_keeps_its_lease_and_starts_once(
    client: Client, raw: redis.Redis
) -> None:
    """The worker sends a start mark, loses the reply, keeps the task reserved and heartbeats
    it: the extend must not answer "lost" (before fencing it named the uncharged attempt and the
    worker dropped a task Redis held started and charged: with max_retry=0 it went dead unrun);
    the start sent again answers "started" with the attempt it was charged."""
    task = client.enqueue("t", None, queue=Q, max_retry=0)
    (job,) = dequeue(client, "w1", start_now=0)
    assert job.reserved and job.attempt == 0
    client.backend.execute(protocol.start_call(client.settings, Q, [job]))  # its reply is lost
    lost, _ = client.backend.execute(protocol.extend_call(client.settings, Q, [(job.id, job.token)], 30_000))
    assert lost == []
    again: Any = client.backend.execute(protocol.start_call(client.settings, Q, [job]))
    assert again == [task.id, 1]
    assert client.get_task(task.id).attempts == 1  # type: ignore[union-attr]  # charged once
    assert client.backend.execute(protocol.ack_call(client.settings, Q, [(task.id, job.token, "")])) == [
        [],
        [],
    ]
    assert state(client, task.id) == "completed"


def test_a_failure_sent_again_answers_what_the_first_copy_did(client: Client) -> None:
    task = client.enqueue("t", None, queue=Q, max_retry=0)
    (job,) = dequeue(client, "w1")
    fail = protocol.fail_call(client.settings, Q, task.id, job.token, "boom", "", 0)
    assert client.backend.execute(fail) == "dead"
    assert client.backend.execute(fail) == "dead"  # not counted as a refusal


def test_a_cancel_requested_on_a_running_task_survives_its_worker(client: Client, raw: redis.Redis) -> None:
    running = client.enqueue("t", None, queue=Q, max_retry=3)
    prefetched = client.enqueue("t", None, queue=Q, max_retry=3)
    jobs = dequeue(client, "w1", 2, start_now=1, lease_ms=100)
    assert [j.reserved for j in jobs] == [False, True]
    outcomes = client.call(ops.cancel, Q, [running.id, prefetched.id])
    # (the prefetched one never started: it ends at once)
    assert outcomes == {running.id: "requested", prefetched.id: "cancelled"}
    wait_past(client, 100)  # w1 died: it never saw the request
    assert dequeue(client, "w2", 2) == []  # recovery ends the running one; nothing to run
    for task_id, note in ((running.id, "cancel was requested"), (prefetched.id, "before it started")):
        info = client.get_task(task_id)
        assert info is not None and info.state == "cancelled"
        assert any(note in h.note for h in info.history)
    assert raw.zcard("rediq:{fz}:active") == 0 and raw.zcard("rediq:{fz}:pending") == 0


def test_a_handoff_never_jumps_ahead_of_a_pending_task_that_runs_first(
    client: Client, raw: redis.Redis
) -> None:
    client.enqueue("t", None, queue=Q)  # the queue exists (pause names a known queue)
    dequeue(client, "w1", 4, handoff_ms=5_000)  # takes it, registers 3 free slots
    client.call(admin.pause, Q)
    urgent = client.enqueue("t", None, queue=Q, priority=10)  # paused: stays pending
    client.call(admin.resume, Q)
    assert raw.hexists(IDLE, "w1")  # the registration outlived the pause
    later = client.enqueue("t", None, queue=Q, priority=50)
    assert later.state == "pending"  # not handed off ahead of the urgent one
    assert raw.llen("rediq:{fz}:inbox:w1") == 0
    # one that runs before everything pending is still handed off
    first = client.enqueue("t", None, queue=Q, priority=5)
    assert first.state == "active" and raw.llen("rediq:{fz}:inbox:w1") == 1
    # the pending ones come out in priority order
    assert [j.id for j in dequeue(client, "w2", 2)] == [urgent.id, later.id]


def test_in_one_batch_a_handoff_does_not_pass_a_task_just_made_pending(
    client: Client, raw: redis.Redis
) -> None:
    dequeue(client, "w1", 1, handoff_ms=5_000)  # one free slot
    results = client.enqueue_many(
        [*(Task(type="t", queue=Q, priority=50) for _ in range(2)), Task(type="t", queue=Q, priority=90)]
    )
    assert [r.state for r in results] == ["active", "pending", "pending"]


async def test_the_worker_counts_and_reports_refused_calls(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    registry = Registry()
    gate = asyncio.Event()
    started = asyncio.Event()

    @registry.task("wait", queue=Q)
    async def wait(ctx: Any, payload: Any) -> None:
        started.set()
        await gate.wait()

    metrics = WorkerMetrics(LabelPolicy({"wait"}, {Q}), lambda: [], served_queues=[Q])
    async with running_worker(registry, redis_url, [Q], concurrency=1, lease_s=30) as worker:
        worker.add_fence_listener(metrics.observe_fenced)
        task = client.enqueue("wait", None, queue=Q)
        await asyncio.wait_for(started.wait(), 10)
        client.call(ops.delete, Q, [task.id])  # the operator removes it while it runs
        gate.set()
        await wait_until(lambda: worker.fenced == 1)
        key = client.settings.keyspace.worker(worker.id)
        await wait_until(lambda: raw.hget(key, "fenced") == "1", timeout=10)
        (listed,) = [w for w in client.call(inspect.workers) if w.id == worker.id]
        assert listed.fenced == 1  # what `rediq worker list` and the console show
    assert b'rediq_fenced_total{call="ack",queue="fz"} 1.0' in metrics.exposition()
    assert client.get_task(task.id) is None  # the refused ack did not bring it back
