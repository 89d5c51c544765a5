"""Batching on real Valkey with real workers (engine.batching, batch_pick in _lib.lua): a batch
goes out when max_size tasks wait or the oldest waited max_delay; two workers never split or
duplicate one; a failing item retries alone while the others complete; a whole-call failure
retries every item; a batch whose worker died is recovered by lease expiry, nothing lost; a
task cancelled while it waits leaves its batch."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest
import redis

from engine.backend import Call, Op
from engine.batching import Batch, BatchItem
from engine.client import Client
from engine.errors import BatchFailed, Retryable
from engine.explain import Reason, why
from engine.registry import Registry
from engine.task import Task
from engine.worker import protocol
from tests.engine import flow_apps
from tests.engine.conftest import running_worker, spawn_worker, stop_process, wait_until
from tests.engine.test_cli import invoke, invoke_json


def completed(raw: redis.Redis, queue: str) -> int:
    return int(raw.zcard(f"rediq:{{{queue}}}:completed"))


def app(queue: str, size: int, delay: float, calls: list[list[Any]], **options: Any) -> Registry:
    registry = Registry()

    @registry.task("notify", queue=queue, batch=Batch(max_size=size, max_delay=delay), **options)
    async def notify(ctx: Any, items: list[BatchItem[Any]]) -> list[str]:
        calls.append(sorted(i.payload for i in items))
        return [f"sent {i.payload}" for i in items]

    return registry


def one(call: Call) -> Op[Any]:
    reply = yield call
    return reply


def enqueue_all(client: Client, queue: str, payloads: list[int], **options: Any) -> list[str]:
    tasks = [Task(type="notify", payload=p, queue=queue, **options) for p in payloads]
    return [r.id for r in client.enqueue_many(tasks)]


async def test_a_batch_goes_out_when_max_size_wait(redis_url: str, client: Client, raw: redis.Redis) -> None:
    calls: list[list[Any]] = []
    registry = app("bsize", 5, 3600, calls)
    ids = enqueue_all(client, "bsize", list(range(12)))
    async with running_worker(registry, redis_url, ["bsize"], concurrency=2):
        await wait_until(lambda: completed(raw, "bsize") == 10)
        await asyncio.sleep(0.2)  # the 2 left wait for their hour (no third call)
    assert calls == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert raw.zcard("rediq:{bsize}:pending") == 2
    info = client.get_task(ids[3])
    assert info is not None and info.result == "sent 3" and info.attempts == 1


async def test_a_partial_batch_goes_out_once_its_oldest_waited_max_delay(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    calls: list[list[Any]] = []
    registry = app("bdelay", 100, 0.4, calls)
    async with running_worker(registry, redis_url, ["bdelay"], concurrency=4):
        enqueue_all(client, "bdelay", [1, 2, 3])
        await asyncio.sleep(0.1)
        assert calls == []  # not full, not due: it waits (the worker sleeps till it is due)
        enqueue_all(client, "bdelay", [4])
        await wait_until(lambda: completed(raw, "bdelay") == 4)
    assert calls == [[1, 2, 3, 4]]


async def test_two_workers_never_split_or_duplicate_a_batch(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    calls: list[list[Any]] = []
    registry = app("btwo", 10, 3600, calls)
    enqueue_all(client, "btwo", list(range(60)))
    async with (
        running_worker(registry, redis_url, ["btwo"], concurrency=3),
        running_worker(registry, redis_url, ["btwo"], concurrency=3),
    ):
        await wait_until(lambda: completed(raw, "btwo") == 60, timeout=20)
    assert sorted(len(c) for c in calls) == [10] * 6
    assert sorted(p for c in calls for p in c) == list(range(60))


async def test_a_failing_item_retries_alone_while_the_rest_complete(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    registry = Registry()
    calls: list[list[int]] = []

    @registry.task("notify", queue="bfail", batch=Batch(max_size=3, max_delay=3600))
    async def notify(ctx: Any, items: list[BatchItem[int]]) -> None:
        calls.append([i.payload for i in items])
        full = Retryable("mailbox full", delay=0.05)
        bad = {i.id: full for i in items if i.payload == 2 and i.attempt == 1}
        if bad:
            raise BatchFailed(bad, results={i.id: "ok" for i in items if i.id not in bad})

    ids = enqueue_all(client, "bfail", [1, 2, 3])
    async with running_worker(registry, redis_url, ["bfail"], concurrency=2):
        await wait_until(lambda: completed(raw, "bfail") == 2)
        assert raw.zcard("rediq:{bfail}:retry") == 1
        enqueue_all(client, "bfail", [4, 5])  # the retried item rejoins a batch
        await wait_until(lambda: completed(raw, "bfail") == 5)
    assert [sorted(c) for c in calls] == [[1, 2, 3], [2, 4, 5]]
    infos = [client.get_task(i) for i in ids]
    states = [(i.state, i.attempts) for i in infos if i]
    assert states == [("completed", 1), ("completed", 2), ("completed", 1)]
    assert infos[0] is not None and infos[0].result == "ok"


async def test_an_exception_from_the_whole_call_fails_every_item(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    registry = Registry()
    calls: list[list[int]] = []

    @registry.task("notify", queue="ball", max_retry=1, batch=Batch(max_size=3, max_delay=3600))
    async def notify(ctx: Any, items: list[BatchItem[int]]) -> None:
        calls.append([i.payload for i in items])
        if len(calls) == 1:
            raise Retryable("gateway down", delay=0.05)

    ids = enqueue_all(client, "ball", [1, 2, 3])
    async with running_worker(registry, redis_url, ["ball"], concurrency=2):
        await wait_until(lambda: completed(raw, "ball") == 3)
    assert [sorted(c) for c in calls] == [[1, 2, 3], [1, 2, 3]]
    assert all((i := client.get_task(t)) is not None and i.attempts == 2 for t in ids)


async def test_a_batch_whose_worker_died_is_recovered_whole_nothing_lost(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    calls: list[list[Any]] = []
    registry = app("bkill", 4, 3600, calls)
    ids = enqueue_all(client, "bkill", [1, 2, 3, 4])
    raw.hset("rediq:{bkill}:batches", "notify", "4:3600000")
    # a worker leases the batch (all four started, one call) and dies: it never acks or extends
    call = protocol.dequeue_call(client.settings, "bkill", 1, 300, "dead-worker", start_now=1)
    leased = protocol.parse_dequeue("bkill", client.run(one(call)))
    assert [j.id for j in leased] == ids and not any(j.reserved for j in leased)
    await asyncio.sleep(0.4)  # its leases run out
    async with running_worker(registry, redis_url, ["bkill"], concurrency=2):
        await wait_until(lambda: completed(raw, "bkill") == 4)
    # recovered by lease expiry: back to pending charged, and handed out as a batch again
    assert calls == [[1, 2, 3, 4]]
    assert [(i.state, i.attempts) for t in ids if (i := client.get_task(t))] == [("completed", 2)] * 4


async def test_a_task_cancelled_while_it_waits_leaves_its_batch(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    calls: list[list[Any]] = []
    registry = app("bcancel", 3, 3600, calls)
    ids = enqueue_all(client, "bcancel", [1, 2])
    async with running_worker(registry, redis_url, ["bcancel"], concurrency=2):
        await asyncio.sleep(0.1)
        assert client.cancel(ids[0]) == "cancelled"
        enqueue_all(client, "bcancel", [3, 4])
        await wait_until(lambda: completed(raw, "bcancel") == 3)
    assert calls == [[2, 3, 4]]


async def test_why_names_the_forming_batch(redis_url: str, client: Client, raw: redis.Redis) -> None:
    calls: list[list[Any]] = []
    registry = app("bwhy", 500, 3600, calls)
    ids = enqueue_all(client, "bwhy", [1, 2, 3])
    async with running_worker(registry, redis_url, ["bwhy"], concurrency=2):
        await asyncio.sleep(0.1)
        explanation = client.run(why(client.settings, ids[0]))
        shown = invoke(redis_url, "queue", "inspect", "bwhy").output
        listed = invoke_json(redis_url, "queue", "inspect", "bwhy")["batches"]
    (cause,) = [c for c in explanation.causes if c.reason is Reason.BATCH_FORMING]
    assert cause.text.startswith("batch notify: 3/500, ready in 3") and explanation.blocked
    assert calls == []
    assert "batches     batch notify: 3/500, ready in 3" in shown
    assert "(up to 500 per call, or after 3600 s)" in shown
    assert listed == {"notify": {"max_size": 500, "max_delay": 3600.0, "waiting": 3}}


async def test_a_sync_handler_gets_a_batch_that_a_delayed_task_completes(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    registry = Registry()
    calls: list[list[int]] = []

    @registry.task("notify", queue="bsync", batch=Batch(max_size=3, max_delay=3600))
    def notify(ctx: Any, items: list[BatchItem[int]]) -> dict[str, int]:
        calls.append(sorted(i.payload for i in items))
        assert ctx.ids == [i.id for i in items]
        return {i.id: i.payload * 10 for i in items}

    ids = enqueue_all(client, "bsync", [1, 2])
    late = client.enqueue(Task(type="notify", payload=3, queue="bsync", delay=0.3)).id
    async with running_worker(registry, redis_url, ["bsync"], concurrency=2):
        await wait_until(lambda: completed(raw, "bsync") == 3)
    assert calls == [[1, 2, 3]]
    assert [i.result for t in [*ids, late] if (i := client.get_task(t))] == [10, 20, 30]


async def test_a_batch_runs_in_a_child_process(redis_url: str, client: Client, raw: redis.Redis) -> None:
    tasks = [Task(type="notify_many", payload=p, queue="batchpool") for p in (1, 2, 3)]
    ids = [r.id for r in client.enqueue_many(tasks)]
    async with running_worker(flow_apps.flow, redis_url, ["batchpool"], concurrency=1, pool="process"):
        await wait_until(lambda: completed(raw, "batchpool") == 2, timeout=30)
        client.enqueue_many([Task(type="notify_many", payload=p, queue="batchpool") for p in (4, 5)])
        await wait_until(lambda: completed(raw, "batchpool") == 5, timeout=30)
    infos = [client.get_task(t) for t in ids]
    # the first call's BatchFailed named no results: 1 and 3 completed without one; 2 retried
    assert [(i.result, i.attempts) for i in infos if i] == [(None, 1), (20, 2), (None, 1)]


async def test_an_item_cancelled_while_the_call_runs_ends_cancelled_the_others_complete(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    registry = Registry()
    release = asyncio.Event()
    calls: list[list[int]] = []

    @registry.task("notify", queue="brun", batch=Batch(max_size=3, max_delay=3600))
    async def notify(ctx: Any, items: list[BatchItem[int]]) -> None:
        calls.append([i.payload for i in items])
        await release.wait()

    ids = enqueue_all(client, "brun", [1, 2, 3])
    async with running_worker(registry, redis_url, ["brun"], concurrency=2, heartbeat_s=0.1) as worker:
        await wait_until(lambda: len(calls) == 1)
        assert client.cancel(ids[0]) == "requested"
        # the heartbeat brought the request: that item is marked, the call goes on
        await wait_until(lambda: worker._running[ids[0]][2].cancelled)
        assert not worker._running[ids[1]][2].cancelled
        release.set()
        await wait_until(lambda: completed(raw, "brun") == 2)
        await wait_until(lambda: raw.zcard("rediq:{brun}:cancelled") == 1)
    assert [i.state for t in ids if (i := client.get_task(t))] == ["cancelled", "completed", "completed"]
    assert calls == [[1, 2, 3]]


async def test_a_worker_killed_mid_batch_loses_nothing(
    redis_url: str, client: Client, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REDIQ_TEST_URL", redis_url)
    tasks = [Task(type="slow_batch", payload=p, queue="batchkill") for p in (1, 2, 3)]
    ids = [r.id for r in client.enqueue_many(tasks)]
    app_path = "tests.engine.flow_apps:flow"
    proc = spawn_worker(redis_url, app_path, "batchkill", "1.0", log_path=tmp_path / "w.log")
    try:
        await wait_until(lambda: raw.llen("test:batchkill:calls") == 1, timeout=30)
    finally:
        stop_process(proc, signal.SIGKILL)
    # every item comes back by lease expiry (charged), and goes out as a batch again
    async with running_worker(flow_apps.flow, redis_url, ["batchkill"], concurrency=2):
        await wait_until(lambda: completed(raw, "batchkill") == 3, timeout=30)
    assert raw.lrange("test:batchkill:calls", 0, -1) == ["1,2,3", "1,2,3"]
    assert [(i.state, i.attempts) for t in ids if (i := client.get_task(t))] == [("completed", 2)] * 3
