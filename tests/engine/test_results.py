"""Issue 16: results you can wait for. `client.result(id, timeout=)`, `EnqueueResult.wait` and
`enqueue_and_wait` return the value or raise a typed error (dead, cancelled, timeout), woken
by the queue's completion events rather than by polling."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import redis

from engine import AsyncClient, Client, Registry, ResultTimeout, TaskCancelled, TaskDead, TaskFailed, results
from engine.errors import InvalidTask, Permanent, TaskNotFound
from tests.engine.conftest import running_worker


def echo_registry() -> Registry:
    registry = Registry()

    @registry.task("rpc:add", queue="rpc")
    async def add(ctx: Any, payload: dict[str, int]) -> int:
        return payload["a"] + payload["b"]

    @registry.task("rpc:broken", queue="rpc", max_retry=0)
    async def broken(ctx: Any, payload: Any) -> None:
        raise Permanent("the gateway refused the card")

    @registry.task("rpc:slow", queue="rpc")
    async def slow(ctx: Any, payload: float) -> str:
        await asyncio.sleep(payload)
        return "done"

    return registry


async def test_async_wait_returns_the_value_and_raises_for_a_dead_task(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(results, "RECHECK_S", 300.0)  # woken by events only
    registry = echo_registry()
    async with running_worker(registry, redis_url, ["rpc"]), AsyncClient(redis_url, registry=registry) as c:
        started = time.monotonic()
        result = await c.enqueue("rpc:add", {"a": 2, "b": 3})
        assert await result.wait_async(timeout=60) == 5
        assert await c.result(result.id, timeout=60) == 5  # again, already final: no wait
        assert await c.enqueue_and_wait("rpc:add", {"a": 40, "b": 2}, timeout=60) == 42
        dead = await c.enqueue("rpc:broken", {})
        with pytest.raises(TaskDead) as info:
            await dead.wait_async(timeout=60)
        # three waits, each ended by an event: without one, each would last its 60 s
        assert time.monotonic() - started < 60
        assert str(info.value).startswith(f"E014: task {dead.id} (rpc:broken) is dead after 1 attempt(s)")
        assert "the gateway refused the card" in (info.value.info.last_error or "")


async def test_sync_result_is_woken_by_the_completion(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The waiter blocks in a thread, subscribed, while the worker runs a 0.5 s task. With the
    safety re-read pushed past the timeout, only the completion event can wake it in time."""
    monkeypatch.setattr(results, "RECHECK_S", 300.0)
    registry = echo_registry()
    with Client(redis_url, registry=registry) as client:
        result = client.enqueue("rpc:slow", 0.5)
        box: dict[str, Any] = {}
        waiter = threading.Thread(target=lambda: box.update(value=client.result(result.id, timeout=60)))
        waiter.start()
        started = time.monotonic()
        async with running_worker(registry, redis_url, ["rpc"]):
            await asyncio.to_thread(waiter.join, 60)
            rpc = await asyncio.to_thread(client.enqueue_and_wait, "rpc:add", {"a": 1, "b": 1}, timeout=60)
        assert time.monotonic() - started < 60  # woken by events: without them, 120 s
        assert box == {"value": "done"}
        assert rpc == 2


def test_cancelled_and_timeout_and_unknown(client: Client) -> None:
    later = client.enqueue("rpc:add", {"a": 1, "b": 1}, queue="rpc", delay=3600)
    with pytest.raises(ResultTimeout) as timed_out:
        later.wait(timeout=0.2)
    assert isinstance(timed_out.value, TimeoutError)
    assert str(timed_out.value).startswith(f"E015: task {later.id} has no result after 0.2 s")
    client.cancel(later.id)
    with pytest.raises(TaskCancelled) as cancelled:
        client.result(later.id, timeout=5)
    assert isinstance(cancelled.value, TaskFailed) and "cancelled by request" in str(cancelled.value)
    with pytest.raises(TaskNotFound):
        client.result("no-such-task", timeout=1)


async def test_wait_of_a_result_from_the_other_kind_of_client_names_the_fix(redis_url: str) -> None:
    async with AsyncClient(redis_url) as c:
        result = await c.enqueue("x:y", {}, queue="rpc")
        with pytest.raises(InvalidTask, match=r"Use \.wait_async\(\)"):
            result.wait(timeout=0.1)


def commands_processed(raw: redis.Redis) -> int:
    return int(raw.info("stats")["total_commands_processed"])


def test_waiting_five_seconds_costs_a_handful_of_commands_not_a_poll(
    client: Client, raw: redis.Redis
) -> None:
    result = client.enqueue("rpc:add", {"a": 1, "b": 1}, queue="rpc")  # no worker: never runs
    before = commands_processed(raw)
    started = time.monotonic()
    with pytest.raises(ResultTimeout):
        result.wait(timeout=5)
    waited = time.monotonic() - started
    spent = commands_processed(raw) - before - 1  # the INFO that read `before`
    assert waited >= 5
    # the pub/sub connection's handshake (CLIENT SETINFO x2), SUBSCRIBE, the first read, the
    # safety re-read every RECHECK_S (5 s), the last read: 7 here; a 10 Hz poll would be 50
    assert spent <= 10, spent


async def test_async_wait_costs_a_handful_of_commands_too(redis_url: str, raw: redis.Redis) -> None:
    async with AsyncClient(redis_url) as c:
        result = await c.enqueue("rpc:add", {"a": 1, "b": 1}, queue="rpc")
        before = commands_processed(raw)
        with pytest.raises(ResultTimeout):
            await result.wait_async(timeout=5)
        assert commands_processed(raw) - before - 1 <= 10


async def test_a_dependent_task_reads_its_dependencies_results(redis_url: str) -> None:
    registry = Registry()

    @registry.task("calc:price", queue="calc")
    async def price(ctx: Any, payload: Any) -> int:
        return 1999

    @registry.task("calc:stock", queue="stock")
    def stock(ctx: Any, payload: Any) -> dict[str, int]:
        return {"sku-1": 3}

    @registry.task("calc:quote", queue="calc")
    async def quote(ctx: Any, payload: Any) -> dict[str, Any]:
        results: dict[str, Any] = await ctx.dependency_results()
        return results

    async with (
        running_worker(registry, redis_url, ["calc", "stock"]),
        AsyncClient(redis_url, registry=registry) as c,
    ):
        a = await c.enqueue("calc:price", None)
        b = await c.enqueue("calc:stock", None)
        alone = await c.enqueue("calc:quote", None)
        both = await c.enqueue("calc:quote", None, depends_on=[a, b])
        assert await both.wait_async(timeout=20) == {a.id: 1999, b.id: {"sku-1": 3}}
        assert await alone.wait_async(timeout=20) == {}


def test_an_enqueue_result_compares_and_pickles_as_the_plain_tuple(client: Client) -> None:
    import pickle

    result = client.enqueue("x:y", {}, queue="rpc")
    plain = (result.id, "rpc", "pending", "new")
    assert result == plain and hash(result) == hash(plain) and result.client is client
    copied = pickle.loads(pickle.dumps(result))
    assert copied == result and copied.client is None
    assert "client" not in repr(result)


async def test_client_requeue_pause_and_resume(redis_url: str) -> None:
    with Client(redis_url) as client:
        later = client.enqueue("x:y", {}, queue="ops", delay=3600)
        client.cancel(later.id)
        assert client.requeue(later.id) is True
        info = client.get_task(later.id)
        assert info is not None and info.state == "pending"
    async with AsyncClient(redis_url) as c:
        assert await c.pause("ops") is True
        assert (await c.get_task(later.id)) is not None
        assert await c.resume("ops") is True
        assert await c.requeue(later.id) is False  # pending already: nothing to move


def test_only_events_that_can_end_a_wait_cost_a_read() -> None:
    from engine.ops import Settings

    settings = Settings()
    channel = settings.keyspace.queue("rpc").events

    def message(event: str, ids: list[str]) -> dict[str, Any]:
        import json

        return {"type": "message", "channel": channel, "data": json.dumps({"v": 1, "e": event, "ids": ids})}

    assert results._names(settings, message("completed", ["a", "b"]), "b")
    assert results._names(settings, message("dead", ["b"]), "b")
    assert not results._names(settings, message("completed", ["a"]), "b")
    assert not results._names(settings, message("progress", ["b"]), "b")
    assert not results._names(settings, message("retry", ["b"]), "b")
    assert not results._names(settings, {"type": "message", "channel": channel, "data": "{oops"}, "b")
