"""Property: random sequences of engine operations never lose or duplicate a task id."""

from __future__ import annotations

from typing import Any

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import ops
from engine.client import Client
from engine.task import Task
from engine.worker import protocol
from engine.worker.protocol import Job
from tests.engine.invariants import STATE_SETS, check_invariants

QUEUES = ("alpha", "beta")

operation = st.one_of(
    st.tuples(st.just("enqueue"), st.sampled_from(QUEUES), st.integers(1, 4), st.integers(0, 100)),
    st.tuples(st.just("lease"), st.sampled_from(QUEUES), st.integers(1, 5), st.booleans()),
    st.tuples(st.just("ack"), st.integers(0, 50)),
    st.tuples(st.just("fail"), st.integers(0, 50), st.sampled_from(["retry", "permanent", "cancel"])),
    st.tuples(st.just("requeue"), st.sampled_from(QUEUES), st.integers(0, 50)),
    st.tuples(st.just("cancel"), st.integers(0, 50)),
    st.tuples(st.just("delete"), st.integers(0, 50)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(operation, min_size=1, max_size=40))
def test_operations_never_lose_or_duplicate_a_task(redis_url: str, steps: list[tuple[Any, ...]]) -> None:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    r.flushall()
    client = Client(redis_url)
    enqueued: dict[str, str] = {}
    deleted: set[str] = set()
    held: list[Job] = []
    try:
        for step in steps:
            kind = step[0]
            if kind == "enqueue":
                _, queue, count, priority = step
                tasks = [
                    Task(type="t", queue=str(queue), priority=int(priority), max_retry=1)
                    for _ in range(int(count))
                ]
                for t in tasks:
                    enqueued[t.id] = t.queue
                client.enqueue_many(tasks)
            elif kind == "lease":
                _, queue, n, expire_now = step
                lease_ms = 0 if expire_now else 30_000  # a 0 ms lease is recovered by the next dequeue
                reply = client.backend.execute(
                    protocol.dequeue_call(client.settings, str(queue), int(n), lease_ms, "w")
                )
                held.extend(protocol.parse_dequeue(str(queue), reply))
            elif kind in ("ack", "fail") and held:
                job = held.pop(int(step[1]) % len(held))
                if kind == "ack":
                    client.backend.execute(
                        protocol.ack_call(client.settings, job.queue, [(job.id, job.token, "1")])
                    )
                else:
                    client.backend.execute(
                        protocol.fail_call(
                            client.settings, job.queue, job.id, job.token, "e", "", 0, str(step[2])
                        )
                    )
            elif kind in ("cancel", "delete", "requeue") and enqueued:
                ids = sorted(enqueued)
                task_id = ids[int(step[-1]) % len(ids)]
                queue = enqueued[task_id]
                if kind == "cancel":
                    client.run(ops.cancel(client.settings, queue, [task_id]))
                elif kind == "delete":
                    if client.run(ops.delete(client.settings, queue, [task_id])):
                        deleted.add(task_id)
                else:
                    client.run(ops.requeue(client.settings, queue, [task_id]))
        assert check_invariants(r) == []
        found: dict[str, int] = {}
        for queue in QUEUES:
            for state in STATE_SETS:
                for member in r.zrange(f"rediq:{{{queue}}}:{state}", 0, -1):
                    task_id = str(member)
                    found[task_id] = found.get(task_id, 0) + 1
        assert set(found) == set(enqueued) - deleted, "a task was lost or appeared from nowhere"
        assert all(n == 1 for n in found.values()), "a task is in two places"
    finally:
        client.close()
        r.close()
