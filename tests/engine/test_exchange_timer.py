"""An asyncio exchange's time limit is kept by the backend's one loop timer (engine.deadlines,
engine.backend._exchange_async): redis-py's own socket timeout armed a timeout for every reply
and ran every write in a task of its own. What must stay true: a server that stops answering
fails the call within the socket timeout (and the connection is dropped, not reused), replies
spaced out over more than the socket timeout in all still arrive as long as each comes within
it, and the connection gets its socket timeout back for redis-py's own calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
import redis.asyncio.connection as aioconnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from engine.backend import Batch, Call
from engine.client import AsyncClient
from engine.deadlines import Deadlines
from engine.errors import ConnectionFailed


def _client(redis_url: str, socket_timeout: float) -> AsyncClient:
    """A client whose connections time out after ``socket_timeout`` and never retry."""
    return AsyncClient(
        redis=aioredis.Redis.from_url(
            redis_url, socket_timeout=socket_timeout, retry=Retry(NoBackoff(), 0), decode_responses=True
        )
    )


@pytest.fixture
async def short_timeout_client(redis_url: str) -> AsyncIterator[AsyncClient]:
    client = _client(redis_url, 0.3)
    await client.enqueue("t", "warm", queue="timer")  # the first call loads the declarations
    try:
        yield client
    finally:
        await client.close()


def _socket_timeouts(client: AsyncClient) -> list[Any]:
    pool = client.backend.redis.connection_pool
    held = client.backend._held
    conns = [*pool._available_connections, *pool._in_use_connections]
    if held is not None and held._conn is not None:
        conns.append(held._conn)
    return [c.socket_timeout for c in conns]


async def test_an_exchange_arms_no_timeout_per_reply_and_no_task_per_write(
    short_timeout_client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    armed = {"read timeouts": 0, "write tasks": 0}
    real_timeout, real_wait_for = aioconnection.async_timeout, asyncio.wait_for  # type: ignore[attr-defined]

    def counting_timeout(*args: Any) -> Any:
        armed["read timeouts"] += 1
        return real_timeout(*args)

    def counting_wait_for(*args: Any, **kwargs: Any) -> Any:
        armed["write tasks"] += 1
        return real_wait_for(*args, **kwargs)

    monkeypatch.setattr(aioconnection, "async_timeout", counting_timeout)
    monkeypatch.setattr(asyncio, "wait_for", counting_wait_for)  # (redis-py calls asyncio.wait_for)
    for i in range(5):
        assert (await short_timeout_client.enqueue("t", i, queue="timer")).status == "new"
    replies = await short_timeout_client.backend.execute(
        Batch([Call(command=("ECHO", "a")), Call(command=("ECHO", "b"))])
    )
    assert replies == ["a", "b"]
    assert armed == {"read timeouts": 0, "write tasks": 0}
    assert set(_socket_timeouts(short_timeout_client)) == {0.3}


class _CountingDeadlines(Deadlines):
    def __init__(self) -> None:
        super().__init__()
        self.arms = 0

    def _arm(self, when: float) -> None:
        self.arms += 1
        super()._arm(when)


async def test_round_trips_one_after_another_arm_one_timer_between_them(
    short_timeout_client: AsyncClient,
) -> None:
    """Each round trip's limit lies after the one armed: no loop timer is armed or cancelled
    for it (engine.deadlines)."""
    deadlines = short_timeout_client.backend._deadlines = _CountingDeadlines()
    for i in range(20):
        assert (await short_timeout_client.enqueue("t", i, queue="timer")).status == "new"
    assert deadlines.arms == 1
    assert len(deadlines) == 0  # every round trip's limit ended with it


async def test_a_server_that_stops_answering_fails_the_call_within_the_socket_timeout(
    short_timeout_client: AsyncClient, raw: redis.Redis
) -> None:
    raw.execute_command("CLIENT", "PAUSE", 1500, "ALL")
    paused_at = time.monotonic()
    with pytest.raises(ConnectionFailed, match="Timeout"):
        await short_timeout_client.enqueue("t", "during", queue="timer")
    assert time.monotonic() - paused_at < 1.2  # well before the pause ends
    held = short_timeout_client.backend._held
    assert held is not None and held._conn is None  # dropped: its late reply is never read
    assert set(_socket_timeouts(short_timeout_client)) <= {0.3}
    await asyncio.sleep(max(0.0, 1.6 - (time.monotonic() - paused_at)))
    assert (await short_timeout_client.enqueue("t", "after", queue="timer")).status == "new"
    assert raw.zcard("rediq:{timer}:pending") == 2  # 'warm' and 'after'; 'during' was not run
    assert set(_socket_timeouts(short_timeout_client)) == {0.3}


async def test_replies_each_within_the_socket_timeout_arrive_however_long_the_exchange(
    redis_url: str,
) -> None:
    """Five replies ~0.3 s apart: 1.5 s in all, past the 1 s socket timeout. (``WAIT 1 300``
    on a server without replicas answers after 300 ms, give or take its 100 ms clock.)"""
    client = _client(redis_url, 1.0)
    try:
        started = time.monotonic()
        replies = await client.backend.execute(Batch([Call(command=("WAIT", 1, 300)) for _ in range(5)]))
        assert replies == [0, 0, 0, 0, 0]
        assert time.monotonic() - started >= 1.4
    finally:
        await client.close()
