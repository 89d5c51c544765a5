"""Queue semantics driven through the scripts directly (no worker), against the real server."""

from __future__ import annotations

import random
import time

import pytest
import redis

from engine import admin, inspect, ops
from engine.backend import Batch
from engine.client import Client
from engine.errors import UnknownQueue
from engine.ops import Settings
from engine.task import Task, TaskState
from engine.worker import protocol
from engine.worker.protocol import Job

SETTINGS = Settings()


def lease(client: Client, queue: str, n: int = 100, lease_ms: int = 30_000, worker: str = "w") -> list[Job]:
    reply = client.backend.execute(protocol.dequeue_call(client.settings, queue, n, lease_ms, worker))
    return protocol.parse_dequeue(queue, reply)


def ack(client: Client, jobs: list[Job], result: str = "") -> list[list[list[str]]]:
    by_queue: dict[str, list[tuple[str, str, str]]] = {}
    for j in jobs:
        by_queue.setdefault(j.queue, []).append((j.id, j.token, result))
    return [client.backend.execute(protocol.ack_call(client.settings, q, d)) for q, d in by_queue.items()]


def fail(client: Client, job: Job, mode: str = "retry", delay: float = 0.0) -> str:
    return str(
        client.backend.execute(
            protocol.fail_call(client.settings, job.queue, job.id, job.token, "boom", "tb", delay, mode)
        )
    )


def state(client: Client, task_id: str) -> TaskState:
    info = client.get_task(task_id)
    assert info is not None
    return info.state


def test_enqueue_is_idempotent_by_id(client: Client) -> None:
    first = client.enqueue("t", {"n": 1}, queue="q", id="order-42")
    again = client.enqueue("t", {"n": 2}, queue="q", id="order-42")
    assert first.status == "new" and again.status == "exists" and again.id == "order-42"
    assert client.backend.redis.zcard("rediq:{q}:pending") == 1
    info = client.get_task("order-42")
    assert info is not None and info.payload == {"n": 1}


def test_enqueue_many_is_one_script_call_per_queue(client: Client) -> None:
    r = client.backend.redis
    r.config_resetstat()
    tasks = [Task(type="t", queue=f"q{i % 3}", payload=i) for i in range(300)]
    results = client.enqueue_many(tasks)
    assert [x.id for x in results] == [t.id for t in tasks]
    assert all(x.created for x in results)
    stats = r.info("commandstats")
    scripted = sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("evalsha", "eval", "fcall"))
    assert 3 <= scripted <= 3 + 3  # one per queue (plus a reload after NOSCRIPT at most once each)
    assert sum(r.zcard(f"rediq:{{q{i}}}:pending") for i in range(3)) == 300


def test_strict_priority_then_fifo_across_1000_tasks(client: Client) -> None:
    rng = random.Random(7)
    tasks = [
        Task(type="t", queue="prio", priority=rng.choice([0, 10, 50, 100]), payload=i) for i in range(1000)
    ]
    client.enqueue_many(tasks)
    order = []
    while jobs := lease(client, "prio", 128):
        order.extend(jobs)
        ack(client, jobs)
    assert len(order) == 1000
    expected = sorted(range(1000), key=lambda i: (tasks[i].priority, i))
    assert [j.id for j in order] == [tasks[i].id for i in expected]


def test_unique_key_returns_the_existing_task_while_it_is_alive(client: Client) -> None:
    first = client.enqueue("order:timeout", {"order": 1}, queue="u", unique_key="order-1")
    dup = client.enqueue("order:timeout", {"order": 1}, queue="u", unique_key="order-1")
    assert dup.status == "duplicate" and dup.id == first.id
    assert client.backend.redis.zcard("rediq:{u}:pending") == 1
    ack(client, lease(client, "u"))
    after = client.enqueue("order:timeout", {"order": 1}, queue="u", unique_key="order-1")
    assert after.created and after.id != first.id


def test_delayed_task_is_not_handed_out_before_it_is_due(client: Client) -> None:
    r = client.enqueue("t", None, queue="later", delay=1.0)
    assert r.state == "scheduled"
    assert lease(client, "later") == []
    time.sleep(1.05)
    jobs = lease(client, "later")
    assert [j.id for j in jobs] == [r.id]
    ack(client, jobs)


def test_pause_hands_out_nothing_but_keeps_accepting(client: Client) -> None:
    client.enqueue("t", 1, queue="p")
    assert client.call(admin.pause, "p") is True
    assert client.call(admin.pause, "p") is False  # already paused
    client.enqueue("t", 2, queue="p")
    assert lease(client, "p") == []
    summary = client.call(inspect.queue, "p")
    assert summary is not None and summary.paused and summary.count("pending") == 2
    client.call(admin.resume, "p")
    jobs = lease(client, "p")
    assert len(jobs) == 2
    ack(client, jobs)


def test_pause_of_a_queue_before_its_first_task_works_and_resume_of_unknown_is_an_error(
    client: Client,
) -> None:
    """Issue 16: pausing a queue that never held a task was E003; it now pauses it (and it
    shows in the queue list). Resuming a queue nobody knows is still a clear error."""
    assert client.call(admin.pause, "nope") is True
    assert client.call(inspect.queue, "nope").paused  # type: ignore[union-attr]
    with pytest.raises(UnknownQueue) as info:
        client.call(admin.resume, "never")
    assert str(info.value).startswith("E003: queue 'never' does not exist")


def test_retry_then_dead_with_last_error_and_requeue(client: Client) -> None:
    r = client.enqueue("t", None, queue="f", max_retry=1)
    (job,) = lease(client, "f")
    assert fail(client, job, delay=0) == "retry"
    assert state(client, r.id) == TaskState.RETRY
    (job,) = lease(client, "f")  # due immediately: promoted by the dequeue
    assert job.attempt == 2
    assert fail(client, job) == "dead"
    info = client.get_task(r.id)
    assert info is not None and info.state == TaskState.DEAD
    assert info.last_error == "boom" and info.traceback == "tb" and info.attempts == 2
    assert client.call(admin.requeue, "f", [r.id]) == [r.id]
    (job,) = lease(client, "f")
    assert job.attempt == 1
    ack(client, [job])


def test_permanent_failure_goes_straight_to_dead(client: Client) -> None:
    r = client.enqueue("t", None, queue="f", max_retry=5)
    (job,) = lease(client, "f")
    assert fail(client, job, mode="permanent") == "dead"
    assert state(client, r.id) == TaskState.DEAD


def test_retry_waits_for_its_backoff(client: Client) -> None:
    client.enqueue("t", None, queue="b")
    (job,) = lease(client, "b")
    fail(client, job, delay=0.6)
    assert lease(client, "b") == []
    time.sleep(0.65)
    jobs = lease(client, "b")
    assert len(jobs) == 1
    ack(client, jobs)


def test_completed_tasks_expire_after_retention(redis_url: str) -> None:
    with Client(redis_url, settings=Settings(retention_s=0.5)) as client:
        r = client.enqueue("t", None, queue="ret")
        ack(client, lease(client, "ret"))
        ttl = client.backend.redis.pttl(f"rediq:{{ret}}:t:{r.id}")
        assert 0 < ttl <= 500
        time.sleep(0.6)
        assert client.get_task(r.id) is None
        # the index entry goes in the workers' maintenance pass, not with the next ack
        client.enqueue("t", None, queue="ret")
        ack(client, lease(client, "ret"))
        assert client.backend.redis.zscore("rediq:{ret}:completed", r.id) is not None
        assert client.call(ops.trim_finished_indexes, "ret") == 1
        assert client.backend.redis.zscore("rediq:{ret}:completed", r.id) is None


def test_expired_lease_returns_the_task_to_pending_counting_the_delivery(client: Client) -> None:
    r = client.enqueue("t", None, queue="l", max_retry=1)
    lease(client, "l", lease_ms=50)
    time.sleep(0.1)
    jobs = lease(client, "l", lease_ms=50)  # this dequeue recovers the task and hands it out again
    assert [j.id for j in jobs] == [r.id] and jobs[0].attempt == 2
    time.sleep(0.1)
    assert lease(client, "l") == []  # two deliveries died: dead instead of a crash loop
    info = client.get_task(r.id)
    assert info is not None and info.state == TaskState.DEAD
    assert info.last_error is not None and "worker died during attempt 2" in info.last_error


def test_stale_ack_after_lease_loss_is_refused(client: Client) -> None:
    client.enqueue("t", None, queue="s")
    (old,) = lease(client, "s", lease_ms=50)
    time.sleep(0.1)
    (new,) = lease(client, "s")
    stale, _ = ack(client, [old])[0]
    assert stale == [old.id]
    stale, _ = ack(client, [new])[0]
    assert stale == []


def test_cancel_pending_and_running(client: Client) -> None:
    waiting = client.enqueue("t", None, queue="c")
    running = client.enqueue("t", None, queue="c2")
    (job,) = lease(client, "c2")
    assert client.cancel(waiting.id) == "cancelled"
    assert client.cancel(running.id) == "requested"
    info = client.get_task(running.id)
    assert info is not None and info.cancel_requested and info.state == TaskState.ACTIVE
    assert fail(client, job, mode="cancel") == "cancelled"
    assert client.cancel(running.id) == "final:cancelled"


def test_bulk_requeue_with_filter_and_flush_in_chunks(client: Client) -> None:
    tasks = [Task(type="a" if i % 2 else "b", queue="bulk", max_retry=0) for i in range(1200)]
    client.enqueue_many(tasks)
    while jobs := lease(client, "bulk", 500):
        client.backend.execute(
            Batch(
                [
                    protocol.fail_call(client.settings, "bulk", j.id, j.token, "x", "", 0, "permanent")
                    for j in jobs
                ]
            )
        )
    assert client.call(admin.count, "bulk", "dead") == 1200
    moved = client.call(admin.requeue_all, "bulk", "dead", lambda t: t.type == "a")
    assert moved == 600
    assert client.call(admin.count, "bulk", "pending") == 600
    flushed = client.call(admin.flush, "bulk", "dead")
    assert flushed == 600 and client.call(admin.count, "bulk", "dead") == 0


def test_inspect_pages_never_read_the_whole_queue(client: Client) -> None:
    client.enqueue_many([Task(type="t", queue="pg", payload=i) for i in range(120)])
    page = client.call(inspect.page, "pg", TaskState.PENDING, 100, 50)
    assert page.total == 120 and len(page.tasks) == 20
    assert [t.payload for t in page.tasks] == list(range(100, 120))


def test_readers_survive_hashes_written_by_a_buggy_client(client: Client, raw: redis.Redis) -> None:
    r = client.enqueue("t", None, queue="junk")
    raw.hset(
        f"rediq:{{junk}}:t:{r.id}",
        mapping={"priority": "high", "attempts": "x", "meta": "{nope", "state": "pending"},
    )
    raw.lpush(f"rediq:{{junk}}:h:{r.id}", "not json")
    info = client.get_task(r.id)
    assert info is not None and info.priority == 50 and info.attempts == 0 and info.metadata == {}
    page = client.call(inspect.page, "junk", "pending")
    assert page.tasks[0].id == r.id


def test_duplicates_in_one_batch_each_name_their_own_holder(client: Client) -> None:
    a = client.enqueue("t", None, queue="ub", unique_key="A")
    b = client.enqueue("t", None, queue="ub", unique_key="B")
    batch = [Task(type="t", queue="ub", unique_key=k) for k in ("B", "A", "C", "A")]
    results = client.enqueue_many(batch)
    assert [r.status for r in results] == ["duplicate", "duplicate", "new", "duplicate"]
    assert [r.id for r in results[:2]] == [b.id, a.id]
    assert results[3].id == a.id and results[2].id == batch[2].id


def test_durable_enqueue_without_replicas_fails_clearly_but_keeps_the_task(client: Client) -> None:
    from engine.errors import ConnectionFailed

    with pytest.raises(ConnectionFailed, match="reached 0 of 1 replica"):
        client.run(
            ops.durable(
                ops.enqueue_many(client.settings, [Task(type="t", queue="dur", id="d1")]), timeout_ms=50
            )
        )
    assert client.get_task("d1") is not None  # written to the primary; a retry returns 'exists'


def test_durable_is_refused_on_cluster_urls() -> None:
    from engine.connection import parse_url
    from engine.errors import InvalidTask

    client = Client(redis=object(), settings=None)
    client.target = parse_url("redis+cluster://127.0.0.1:7000")
    with pytest.raises(InvalidTask, match="not supported on Redis Cluster"):
        client.enqueue("t", None, durable=True)


def test_a_retry_clears_the_failed_attempts_progress(client: Client) -> None:
    r = client.enqueue("t", None, queue="prog")
    (job,) = lease(client, "prog")
    client.backend.execute(protocol.progress_call(client.settings, "prog", job.id, job.token, 40, "half way"))
    assert client.get_task(r.id).progress == 40  # type: ignore[union-attr]
    fail(client, job, delay=0)
    info = client.get_task(r.id)
    assert info is not None and info.state == TaskState.RETRY and info.progress is None


@pytest.mark.parametrize("priority", ["nan", "inf", "-inf", "high", "1e400"])
def test_a_due_task_with_a_junk_priority_is_promoted_not_lost(
    client: Client, raw: redis.Redis, priority: str
) -> None:
    """A hash a buggy client wrote with priority 'nan' made the promotion's ZADD fail after the
    task had left the scheduled set: it was in no state set at all (found by the raw-state fuzz)."""
    task = client.enqueue("t", None, queue="junk", delay=0.001)
    raw.hset(client.settings.keyspace.queue("junk").task(task.id), "priority", priority)
    time.sleep(0.01)
    jobs = client.backend.execute(protocol.dequeue_call(client.settings, "junk", 1, 30_000, "w1"))
    leased = protocol.parse_dequeue("junk", jobs)
    assert [j.id for j in leased] == [task.id]
    client.backend.execute(
        protocol.release_call(client.settings, "junk", [(task.id, leased[0].token)], "test")
    )
