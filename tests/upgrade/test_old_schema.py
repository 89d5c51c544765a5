"""Upgrade safety: tasks and events written by the previous release (schema version 0: no
``v``, ``seq``, ``meta`` or ``timeout`` field in the task hash, events without ``v``) are still
read and processed."""

from __future__ import annotations

import json
from typing import Any

import redis

from engine import events, inspect
from engine.client import Client
from engine.ops import Settings
from engine.registry import Registry
from engine.retry import Fixed
from engine.task import TaskState
from engine.worker import TaskContext
from tests.engine.conftest import running_worker, wait_until
from tests.engine.invariants import check_invariants

QUEUE = "legacy"
BASE = f"rediq:{{{QUEUE}}}:"
PRIORITY_SHIFT = 2**40

app = Registry()


@app.task("legacy:double", queue=QUEUE)
def double(ctx: TaskContext, payload: Any) -> int:
    return int(payload["n"]) * 2


FLAKY_RUNS: dict[str, int] = {}


@app.task("legacy:flaky", queue=QUEUE, max_retry=2, retry=Fixed(0.05))
def flaky(ctx: TaskContext, payload: Any) -> int:
    """Fails its first attempt."""
    FLAKY_RUNS[ctx.id] = FLAKY_RUNS.get(ctx.id, 0) + 1
    if FLAKY_RUNS[ctx.id] == 1:
        raise RuntimeError("first attempt fails")
    return 1


def write_old_task(r: redis.Redis, task_id: str, n: int, version: str | None) -> None:
    """A task hash as release 0 wrote it."""
    fields = {
        "id": task_id,
        "type": "legacy:double",
        "payload": json.dumps({"n": n}),
        "priority": "50",
        "max_retry": "3",
        "enq": "1700000000000",
        "due": "1700000000000",
        "state": "pending",
        "attempts": "0",
    }
    if version is not None:
        fields["v"] = version
    r.hset(BASE + "t:" + task_id, mapping={name: value for name, value in fields.items()})
    r.lpush(BASE + "h:" + task_id, json.dumps([1700000000000, "pending"]))  # no note: old entries
    r.zadd(BASE + "pending", {task_id: 50 * PRIORITY_SHIFT + n})
    r.sadd("rediq:queues", QUEUE)


async def test_old_format_tasks_are_read_and_processed(redis_url: str, raw: redis.Redis) -> None:
    write_old_task(raw, "old-no-v", 1, None)
    write_old_task(raw, "old-v0", 2, "0")
    client = Client(redis_url)
    try:
        for task_id in ("old-no-v", "old-v0"):
            info = client.get_task(task_id)
            assert info is not None and info.state == TaskState.PENDING and info.queue == QUEUE
            assert info.timeout == 1800.0 and info.metadata == {}
            assert [h.state for h in info.history] == ["pending"]
        page = client.call(inspect.page, QUEUE, TaskState.PENDING)
        assert sorted(t.id for t in page.tasks) == ["old-no-v", "old-v0"]
        # a new task enqueued beside them sorts after them (the old ones have no seq field)
        new = client.enqueue("legacy:double", {"n": 3}, queue=QUEUE)
        async with running_worker(app, redis_url, [QUEUE], concurrency=2, poll_interval_s=0.05):

            def all_done() -> bool:
                return all(
                    (t := client.get_task(i, QUEUE)) is not None and t.state == TaskState.COMPLETED
                    for i in ("old-no-v", "old-v0", new.id)
                )

            await wait_until(all_done, timeout=15)
        results = {i: client.get_task(i, QUEUE).result for i in ("old-no-v", "old-v0", new.id)}  # type: ignore[union-attr]
        assert results == {"old-no-v": 2, "old-v0": 4, new.id: 6}
        assert check_invariants(raw) == []
    finally:
        client.close()


async def test_history_read_alike_in_the_listed_and_the_implied_encoding(
    redis_url: str, raw: redis.Redis
) -> None:
    """A hash written before the implied history ('enqueued' and the completion pushed to the
    list, no 'entered' field) and one written now (neither pushed) read the same history, after a
    real worker ran both: enqueued, active, completed; and again after a requeue."""
    enq = 1700000000000
    raw.hset(
        BASE + "t:old-list",
        mapping={"id": "old-list", "type": "legacy:double", "payload": json.dumps({"n": 5}), "priority": "50",
                 "max_retry": "3", "enq": str(enq), "due": str(enq), "state": "pending", "attempts": "0",
                 "v": "1", "seq": "0"},
    )  # fmt: skip
    raw.lpush(BASE + "h:old-list", json.dumps([enq, "pending", "enqueued"]))
    raw.zadd(BASE + "pending", {"old-list": 50 * PRIORITY_SHIFT})
    client = Client(redis_url)
    try:
        new = client.enqueue("legacy:double", {"n": 6}, queue=QUEUE)
        assert raw.hget(BASE + "t:" + new.id, "entered") == "pending"
        assert raw.exists(BASE + "h:" + new.id) == 0  # nothing pushed for the enqueue
        async with running_worker(app, redis_url, [QUEUE], concurrency=2, poll_interval_s=0.05):

            def all_done() -> bool:
                return all(
                    (t := client.get_task(i, QUEUE)) is not None and t.state == TaskState.COMPLETED
                    for i in ("old-list", new.id)
                )

            await wait_until(all_done, timeout=15)
            assert raw.exists(BASE + "h:" + new.id) == 0  # the start and completion implied too
            for task_id in ("old-list", new.id):
                info = client.get_task(task_id, QUEUE)
                assert info is not None
                assert [(h.state, h.note) for h in info.history] == [
                    ("completed", ""),
                    ("active", info.worker),
                    ("pending", "enqueued"),
                ], task_id
                assert info.history[0].at_ms == info.finished_at_ms
                assert info.history[-1].at_ms == info.enqueued_at_ms
                assert [(a.worker, a.outcome) for a in inspect.attempts(info)] == [(info.worker, "completed")]
            assert client.requeue(new.id, QUEUE)

            def rerun() -> bool:
                t = client.get_task(new.id, QUEUE)
                return t is not None and t.state == TaskState.COMPLETED and len(t.history) == 6

            await wait_until(rerun, timeout=15)
        info = client.get_task(new.id, QUEUE)
        assert info is not None
        assert [h.state for h in info.history] == [
            "completed",
            "active",
            "pending",
            "completed",
            "active",
            "pending",
        ]
        assert check_invariants(raw) == []
    finally:
        client.close()


def test_events_without_a_version_parse() -> None:
    settings = Settings()
    old = events.parse(settings, BASE + "events", json.dumps({"e": "pending", "ids": ["a", "b"], "t": 17}))
    assert old is not None
    assert (old.event, old.queue, old.ids, old.at_ms, old.version) == ("pending", QUEUE, ("a", "b"), 17, 1)
    bare = events.parse(settings, BASE + "events", json.dumps({"e": "completed"}))
    assert bare is not None and bare.ids == () and bare.event == "completed"


async def test_an_implied_start_is_written_down_in_order_when_the_attempt_fails(
    redis_url: str, raw: redis.Redis
) -> None:
    """The start of an attempt is implied ('started', 'worker'); fail.lua writes it down before its
    'retry' entry, so the history reads in order: enqueued, active, retry, pending (due), active,
    completed, and the list holds only the entries that are not implied."""
    client = Client(redis_url, registry=app)
    try:
        task = client.enqueue("legacy:flaky", {}, queue=QUEUE)
        async with running_worker(app, redis_url, [QUEUE], concurrency=1, poll_interval_s=0.05):

            def done() -> bool:
                t = client.get_task(task.id, QUEUE)
                return t is not None and t.state == TaskState.COMPLETED

            await wait_until(done, timeout=15)
        info = client.get_task(task.id, QUEUE)
        assert info is not None
        expected = ["completed", "active", "pending", "retry", "active", "pending"]
        assert [h.state for h in info.history] == expected
        assert info.history[1].at_ms == info.started_at_ms and info.history[1].note == info.worker
        assert info.history[4].note == info.worker  # the first start, written down by fail.lua
        listed = [json.loads(e)[1] for e in raw.lrange(BASE + "h:" + task.id, 0, -1)]
        assert listed == ["pending", "retry", "active"]
        assert check_invariants(raw) == []
    finally:
        client.close()


async def test_a_start_listed_by_the_previous_release_is_not_implied_again(
    redis_url: str, raw: redis.Redis
) -> None:
    """A hash the previous release leased ('entered' written, its 'active' entry pushed) reads one
    start, not two, and a requeue does not write it down a second time."""
    enq, started = 1700000000000, 1700000000500
    raw.hset(
        BASE + "t:s7",
        mapping={"id": "s7", "type": "legacy:double", "payload": json.dumps({"n": 1}), "priority": "50",
                 "max_retry": "3", "enq": str(enq), "due": str(enq), "state": "completed", "attempts": "1",
                 "v": "1", "seq": "0", "entered": "pending", "started": str(started), "worker": "w-old",
                 "finished": str(started + 10), "result": "2"},
    )  # fmt: skip
    raw.lpush(BASE + "h:s7", json.dumps([started, "active", "w-old"]))
    raw.zadd(BASE + "completed", {"s7": started + 10})
    raw.sadd("rediq:queues", QUEUE)
    client = Client(redis_url)
    try:
        info = client.get_task("s7", QUEUE)
        assert info is not None
        assert [(h.state, h.note) for h in info.history] == [
            ("completed", ""),
            ("active", "w-old"),
            ("pending", "enqueued"),
        ]
        assert client.requeue("s7", QUEUE)
        listed = [json.loads(e)[1] for e in raw.lrange(BASE + "h:s7", 0, -1)]
        assert listed == ["pending", "completed", "active"]
    finally:
        client.close()


def test_a_pending_task_cancelled_keeps_no_history_forever(redis_url: str, raw: redis.Redis) -> None:
    """A task cancelled before it ever started has no list until the 'cancelled' entry: the push
    comes before the expiry, so the list it creates expires with the hash."""
    client = Client(redis_url)
    try:
        task = client.enqueue("legacy:double", {"n": 1}, queue=QUEUE)
        client.cancel(task.id, QUEUE)
        assert raw.llen(BASE + "h:" + task.id) == 1
        assert raw.pttl(BASE + "h:" + task.id) > 0
    finally:
        client.close()
