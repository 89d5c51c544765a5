"""The worker runtime against a real server: handlers, failures, timeouts, drain, registry."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
import redis
from pydantic import BaseModel

from engine import inspect, ops
from engine.client import Client
from engine.errors import Permanent, Retryable
from engine.ops import Settings
from engine.registry import Registry
from engine.retry import Fixed
from engine.task import TaskState
from engine.worker import TaskContext, TaskOutcome, Worker, WorkerOptions
from engine.worker.loops import cancel_all
from tests.engine.conftest import running_worker, wait_until
from tests.lost_cancel import lose_pubsub_cancels


def final(client: Client, task_id: str) -> bool:
    info = client.get_task(task_id)
    return info is not None and info.state.is_final


async def test_failures_retry_with_backoff_then_succeed(redis_url: str) -> None:
    registry = Registry()
    attempts: list[tuple[int, float]] = []

    @registry.task("flaky", queue="w", max_retry=5, retry=Fixed(seconds=0.3, jitter=0.0))
    async def flaky(ctx: TaskContext, payload: Any) -> str:
        attempts.append((ctx.attempt, time.monotonic()))
        if ctx.attempt < 3:
            raise ConnectionError("gateway unreachable")
        return "paid"

    client = Client(redis_url)
    r = client.enqueue("flaky", None, queue="w", max_retry=5)
    async with running_worker(registry, redis_url, ["w"], poll_interval_s=0.05):
        await wait_until(lambda: final(client, r.id))
    info = client.get_task(r.id)
    assert info is not None and info.state == TaskState.COMPLETED and info.result == "paid"
    assert [a for a, _ in attempts] == [1, 2, 3]
    gaps = [b - a for (_, a), (_, b) in zip(attempts, attempts[1:], strict=False)]
    assert all(g >= 0.29 for g in gaps), gaps
    assert info.last_error == "ConnectionError: gateway unreachable"


async def test_permanent_error_and_invalid_payload_go_dead(redis_url: str) -> None:
    registry = Registry()

    class Payment(BaseModel):
        order_id: int
        amount: int

    @registry.task("pay", queue="d", payload=Payment, max_retry=5)
    async def pay(ctx: TaskContext, payload: Payment) -> None:
        if payload.amount < 0:
            raise Permanent("negative amount")

    client = Client(redis_url)
    neg = client.enqueue("pay", {"order_id": 1, "amount": -5}, queue="d", max_retry=5)
    bad = client.enqueue("pay", {"order_id": "x"}, queue="d", max_retry=5)
    async with running_worker(registry, redis_url, ["d"]):
        await wait_until(lambda: all(final(client, t.id) for t in (neg, bad)))
    for t, needle in [
        (neg, "Permanent: negative amount"),
        (bad, "payload failed validation: order_id"),
    ]:
        info = client.get_task(t.id)
        assert info is not None and info.state == TaskState.DEAD and info.attempts == 1
        assert info.last_error is not None and needle in info.last_error


async def test_retries_spent_keep_last_error_and_traceback(redis_url: str) -> None:
    registry = Registry()

    @registry.task("boom", queue="d", retry=Fixed(seconds=0.01, jitter=0))
    def boom(ctx: TaskContext, payload: Any) -> None:
        raise ValueError(f"bad row {ctx.attempt}")

    client = Client(redis_url)
    r = client.enqueue("boom", None, queue="d", max_retry=2)
    async with running_worker(registry, redis_url, ["d"], poll_interval_s=0.05):
        await wait_until(lambda: final(client, r.id))
    info = client.get_task(r.id)
    assert info is not None and info.state == TaskState.DEAD and info.attempts == 3
    assert info.last_error == "ValueError: bad row 3"
    assert info.traceback is not None and "raise ValueError" in info.traceback


async def test_timeout_takes_the_retry_path_with_a_clear_error(redis_url: str) -> None:
    registry = Registry()

    @registry.task("hang", queue="t", retry=Fixed(seconds=60))
    async def hang(ctx: TaskContext, payload: Any) -> None:
        await asyncio.sleep(30)

    client = Client(redis_url)
    r = client.enqueue("hang", None, queue="t", timeout=0.3)
    outcomes: list[TaskOutcome] = []
    async with running_worker(registry, redis_url, ["t"]) as worker:
        worker.add_listener(outcomes.append)
        await wait_until(lambda: (t := client.get_task(r.id)) is not None and t.state == TaskState.RETRY)
    info = client.get_task(r.id)
    assert info is not None and info.last_error == "E004: timed out after 0.3 s"
    assert outcomes[0].outcome == "timeout"
    client.call(__import__("engine.admin", fromlist=["x"]).delete, "t", [r.id])


async def test_retryable_with_explicit_delay(redis_url: str) -> None:
    registry = Registry()

    @registry.task("later", queue="t")
    async def later(ctx: TaskContext, payload: Any) -> None:
        if ctx.attempt == 1:
            raise Retryable("rate limited", delay=0.4)

    client = Client(redis_url)
    r = client.enqueue("later", None, queue="t")
    async with running_worker(registry, redis_url, ["t"], poll_interval_s=0.05):
        await wait_until(lambda: (t := client.get_task(r.id)) is not None and t.state == TaskState.RETRY)
        info = client.get_task(r.id)
        assert info is not None and info.due_at_ms is not None
        started = time.monotonic()
        await wait_until(lambda: final(client, r.id))
        assert time.monotonic() - started >= 0.3


async def test_worker_registers_itself_and_deregisters_on_exit(redis_url: str) -> None:
    registry = Registry()
    gate = asyncio.Event()

    @registry.task("wait", queue="reg")
    async def wait(ctx: TaskContext, payload: Any) -> None:
        await gate.wait()

    client = Client(redis_url)
    r = client.enqueue("wait", None, queue="reg")
    async with running_worker(
        registry, redis_url, ["reg", "other"], concurrency=3, heartbeat_s=0.1
    ) as worker:
        await wait_until(lambda: any(w.busy == 1 for w in client.call(inspect.workers)))
        (summary,) = client.call(inspect.workers)
        assert summary.id == worker.id and summary.queues == ("reg", "other") and summary.concurrency == 3
        assert summary.tasks == (f"reg|{r.id}",) and not summary.stale
        gate.set()
        await wait_until(lambda: final(client, r.id))
    assert client.call(inspect.workers) == []


class _ClockTwoHoursAhead:
    """``engine.worker``'s view of the ``time`` module, with the wall clock two hours fast."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def time(self) -> float:
        return time.time() + 7200


async def test_a_worker_with_a_clock_ahead_does_not_drop_the_others(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.worker.driver

    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    seconds, micros = raw.time()
    server_ms = seconds * 1000 + micros // 1000
    # an honest worker, registered a minute ago by the server clock
    raw.hset("rediq:worker:honest", mapping={"host": "h", "heartbeat": server_ms - 60_000})
    raw.zadd("rediq:workers", {"honest": server_ms - 60_000})
    monkeypatch.setattr(engine.worker.driver, "time", _ClockTwoHoursAhead())
    async with running_worker(Registry(), redis_url, ["skew"], heartbeat_s=0.1) as worker:
        await asyncio.sleep(0.35)  # a few registry beats
        score = raw.zscore("rediq:workers", worker.id)
        assert score is not None and abs(score - server_ms) < 30_000  # the Redis clock, not +2 h
        assert raw.zscore("rediq:workers", "honest") == server_ms - 60_000
        client = Client(redis_url)
        (skewed,) = [w for w in client.call(inspect.workers) if w.id == worker.id]
        client.close()
        assert abs(skewed.heartbeat_ms - server_ms) < 30_000 and abs(skewed.started_ms - server_ms) < 30_000
    raw.close()


async def test_sigterm_drain_finishes_short_tasks_and_hands_back_long_ones(redis_url: str) -> None:
    registry = Registry()

    @registry.task("short", queue="drain")
    async def short(ctx: TaskContext, payload: Any) -> str:
        await asyncio.sleep(0.3)
        return "ok"

    @registry.task("long", queue="drain")
    async def long(ctx: TaskContext, payload: Any) -> None:
        await asyncio.sleep(30)

    client = Client(redis_url)
    s = client.enqueue("short", None, queue="drain")
    lg = client.enqueue("long", None, queue="drain")
    extra = [client.enqueue("short", None, queue="drain", priority=90) for _ in range(3)]
    worker = Worker(registry, redis_url, WorkerOptions(queues=["drain"], concurrency=2, grace_s=0.8))
    run = asyncio.create_task(worker.run())
    await wait_until(lambda: worker.in_flight == 2)
    worker.request_stop()
    await asyncio.wait_for(run, 10)
    assert client.get_task(s.id).state == TaskState.COMPLETED  # type: ignore[union-attr]
    long_info = client.get_task(lg.id)
    assert long_info is not None and long_info.state == TaskState.PENDING and long_info.attempts == 0
    assert "returned by worker shutdown" in long_info.history[0].note
    for e in extra:  # prefetched but never started: back to pending untouched
        info = client.get_task(e.id)
        assert info is not None and info.state == TaskState.PENDING and info.attempts == 0


async def test_a_cancelled_run_leaves_nothing_running_and_hands_its_tasks_back(redis_url: str) -> None:
    """``Worker.run()`` cancelled (an embedding app's shutdown, a caller's timeout) instead of
    stopped: no loop of the worker outlives it (a heartbeat left running would extend the
    leases of handlers nobody waits for) and the running task is back in the queue at once."""
    registry = Registry()
    began = asyncio.Event()
    ended: list[str] = []

    @registry.task("sleeper", queue="cancelrun")
    async def sleeper(ctx: TaskContext, payload: Any) -> None:
        began.set()
        try:
            await asyncio.sleep(600)
        finally:
            ended.append(ctx.id)

    client = Client(redis_url)
    r = client.enqueue("sleeper", None, queue="cancelrun")
    before = asyncio.all_tasks()
    run = asyncio.create_task(Worker(registry, redis_url, WorkerOptions(queues=["cancelrun"])).run())
    await asyncio.wait_for(began.wait(), 10)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(run, 10)
    assert sorted(t.get_name() for t in asyncio.all_tasks() - before) == []
    assert ended == [r.id]
    info = client.get_task(r.id)
    assert info is not None and info.state == TaskState.PENDING
    assert "whose run was cancelled" in info.history[0].note


async def test_a_run_cancelled_as_a_handler_returns_still_records_its_success(redis_url: str) -> None:
    """The handler's outcome is buffered when the run is cancelled: the abandoning run sends
    it before its loops end. Dropped, the task would stay active until its lease expired and
    run again, charged an attempt (on its last one: dead, a success recorded as a failure)."""
    registry = Registry()
    run: asyncio.Task[None] | None = None

    @registry.task("finisher", queue="cancelack", max_retry=0)
    async def finisher(ctx: TaskContext, payload: Any) -> str:
        assert run is not None
        run.cancel()  # processed before the exchange loop's next round trip
        return "done"

    client = Client(redis_url)
    r = client.enqueue("finisher", None, queue="cancelack", max_retry=0)
    run = asyncio.create_task(Worker(registry, redis_url, WorkerOptions(queues=["cancelack"])).run())
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(run, 10)
    info = client.get_task(r.id)
    assert info is not None and info.state == TaskState.COMPLETED and info.result == "done"


async def test_a_stopped_worker_ends_its_subscription_even_when_the_cancel_is_lost(
    redis_url: str, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    lose_pubsub_cancels(monkeypatch)
    arrivals = Settings().keyspace.queue("lostcancel").arrivals
    before = asyncio.all_tasks()
    worker = Worker(Registry(), redis_url, WorkerOptions(queues=["lostcancel"]))
    run = asyncio.create_task(worker.run())
    try:
        await wait_until(lambda: raw.pubsub_numsub(arrivals)[0][1] == 1)
        worker.request_stop()
        await asyncio.wait_for(run, 15)
        assert sorted(t.get_name() for t in asyncio.all_tasks() - before - {run}) == []
    finally:
        monkeypatch.undo()  # later reads let a cancel through (needed only without the fix)
        await cancel_all(list(asyncio.all_tasks() - before - {asyncio.current_task()}))


async def test_strict_queue_order_serves_the_first_queue_first(redis_url: str) -> None:
    registry = Registry()
    seen: list[str] = []

    @registry.task("rec", queue="any")
    async def rec(ctx: TaskContext, payload: Any) -> None:
        seen.append(ctx.queue)

    client = Client(redis_url)
    for _ in range(5):
        client.enqueue("rec", None, queue="low")
        client.enqueue("rec", None, queue="high")
    async with running_worker(registry, redis_url, ["high", "low"], concurrency=1, prefetch=0):
        await wait_until(lambda: len(seen) == 10)
    assert seen == ["high"] * 5 + ["low"] * 5


async def test_weighted_queues_serve_all_queues(redis_url: str) -> None:
    registry = Registry()
    seen: list[str] = []

    @registry.task("rec", queue="any")
    async def rec(ctx: TaskContext, payload: Any) -> None:
        seen.append(ctx.queue)

    client = Client(redis_url)
    for _ in range(40):
        client.enqueue("rec", None, queue="a")
        client.enqueue("rec", None, queue="b")
    async with running_worker(
        registry, redis_url, ["a", "b"], concurrency=1, prefetch=0, weights={"a": 3, "b": 1}
    ):
        await wait_until(lambda: len(seen) == 80)
    first_half = seen[:40]
    assert 0 < first_half.count("b") < first_half.count("a")


async def test_warns_when_eviction_can_drop_tasks(
    redis_url: str, raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    raw.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with caplog.at_level(logging.WARNING, logger="rediq.worker"):
            async with running_worker(Registry(), redis_url, ["x"]):
                pass
    finally:
        raw.config_set("maxmemory-policy", "noeviction")
    assert any("maxmemory-policy is 'allkeys-lru'" in r.message for r in caplog.records)


async def test_enqueue_async_client_same_surface(redis_url: str) -> None:
    from engine.client import AsyncClient

    async with AsyncClient(redis_url) as client:
        r = await client.enqueue("t", {"a": 1}, queue="aio")
        assert (await client.enqueue("t", {"a": 1}, queue="aio", id=r.id)).status == "exists"
        info = await client.get_task(r.id)
        assert info is not None and info.payload == {"a": 1}
        assert await client.cancel(r.id) == "cancelled"


async def test_a_heartbeat_answer_about_the_reserved_attempt_does_not_stop_the_started_run(
    redis_url: str,
) -> None:
    """Found at full chaos scale (Redis frozen 10 s): a heartbeat built while a task was still
    reserved (attempt 0) came back after the task had started (attempt 1). Redis rightly said
    attempt 0 no longer holds the lease, and the worker cancelled the run that did hold it; the
    task was re-run when its lease expired. The answer must only stop the attempt it was about."""
    registry = Registry()
    release = {name: asyncio.Event() for name in ("first", "second")}
    runs: list[tuple[str, int]] = []

    @registry.task("hold", queue="hb")
    async def hold(ctx: TaskContext, payload: Any) -> None:
        runs.append((payload, ctx.attempt))
        await release[payload].wait()

    client = Client(redis_url)
    first = client.enqueue("hold", "first", queue="hb")
    second = client.enqueue("hold", "second", queue="hb")
    # one slot, one prefetched task; heartbeats only when this test sends them
    async with running_worker(registry, redis_url, ["hb"], concurrency=1, prefetch=1, lease_s=60) as worker:
        await wait_until(lambda: runs == [("first", 1)] and len(worker._buffer) == 1)
        in_flight = worker._held()  # the heartbeat's snapshot: 'second' still reserved
        assert [t for pairs in in_flight.values() for _, t in pairs] == [f"{worker.id}#1"] * 2
        release["first"].set()
        await wait_until(lambda: ("second", 1) in runs)
        worker._held = lambda: in_flight  # type: ignore[method-assign]
        await worker._heartbeat()  # the late answer names the same delivery: not lost
        await asyncio.sleep(0.1)
        assert second.id in worker._running, "the started run was stopped by a stale answer"
        release["second"].set()
        await wait_until(lambda: final(client, second.id))
    info = client.get_task(second.id)
    assert info is not None and info.state == TaskState.COMPLETED and info.attempts == 1
    assert runs == [("first", 1), ("second", 1)]
    assert client.get_task(first.id).state == TaskState.COMPLETED  # type: ignore[union-attr]


async def test_maintenance_trims_finished_indexes_of_a_queue_with_no_traffic(redis_url: str) -> None:
    """The scripts that finish a task trim its index; with no later task, the worker's
    maintenance pass drops the ids whose hashes have expired."""
    settings = Settings(retention_s=0.3, dead_retention_s=0.3)
    registry = Registry()

    @registry.task("ok", queue="quiet")
    async def ok(ctx: TaskContext, payload: Any) -> None:
        return None

    @registry.task("bad", queue="quiet", max_retry=0)
    async def bad(ctx: TaskContext, payload: Any) -> None:
        raise Permanent("no")

    client = Client(redis_url, settings=settings)
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    async with running_worker(registry, redis_url, ["quiet"], settings=settings, maintenance_s=0.2):
        done, dead = client.enqueue("ok", None, queue="quiet"), client.enqueue("bad", None, queue="quiet")
        await wait_until(lambda: final(client, done.id) and final(client, dead.id))
        assert raw.zcard("rediq:{quiet}:completed") == 1 and raw.zcard("rediq:{quiet}:dead") == 1
        # nothing else finishes on this queue; the hashes expire, then the index entries go
        await wait_until(
            lambda: not raw.exists(f"rediq:{{quiet}}:t:{done.id}", f"rediq:{{quiet}}:t:{dead.id}")
        )
        await wait_until(lambda: raw.zcard("rediq:{quiet}:completed") + raw.zcard("rediq:{quiet}:dead") == 0)
    client.close()
    raw.close()


def test_trimming_keeps_what_is_within_retention(redis_url: str) -> None:
    settings = Settings(retention_s=60, dead_retention_s=0.1)
    client = Client(redis_url, settings=settings)
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    seconds, micros = raw.time()
    now_ms = seconds * 1000 + micros // 1000
    raw.zadd("rediq:{quiet}:completed", {"recent": now_ms - 1000, "old": now_ms - 120_000})
    raw.zadd("rediq:{quiet}:dead", {"gone": now_ms - 1000})
    raw.zadd("rediq:{quiet}:quarantined", {"kept": now_ms - 86_400_000})  # quarantine lasts 7 days
    assert client.call(ops.trim_finished_indexes, "quiet") == 2
    assert raw.zrange("rediq:{quiet}:completed", 0, -1) == ["recent"]
    assert raw.zcard("rediq:{quiet}:dead") == 0 and raw.zcard("rediq:{quiet}:quarantined") == 1
    raw.delete("rediq:{quiet}:completed", "rediq:{quiet}:quarantined")
    client.close()
    raw.close()
