"""The console's event listener survives its connection being dropped: ``events.subscribe``
reconnects (with backoff), says so with a fresh ``resync`` (so the console re-reads what it may
have missed), and delivers the events published after it."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio as aioredis

from engine import events, ops
from engine.worker.loops import cancel_all
from tests.engine.conftest import wait_until
from tests.lost_cancel import lose_pubsub_cancels


async def test_a_dropped_subscriber_reconnects_and_resyncs(redis_url: str, raw: redis.Redis) -> None:
    settings = ops.Settings(prefix="ev")
    channel = settings.keyspace.queue("q").events
    seen: list[events.Event] = []

    async def listen() -> None:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            async for event in events.subscribe(settings, client, ["q"], max_backoff=0.2):
                seen.append(event)
        finally:
            await client.aclose()

    def resyncs() -> int:
        return sum(1 for e in seen if e.event == events.RESYNC)

    listener = asyncio.create_task(listen())
    try:
        await wait_until(lambda: resyncs() == 1 and raw.pubsub_numsub(channel)[0][1] == 1)
        raw.publish(channel, '{"v":1,"e":"dead","ids":["a"],"t":1}')
        await wait_until(lambda: any(e.event == "dead" for e in seen))
        assert raw.client_kill_filter(_type="pubsub") == 1  # the listener's connection is dropped
        await wait_until(lambda: resyncs() == 2 and raw.pubsub_numsub(channel)[0][1] == 1)
        raw.publish(channel, '{"v":1,"e":"completed","ids":["b"],"t":2}')
        await wait_until(lambda: any(e.event == "completed" for e in seen))
        assert [e.event for e in seen] == [events.RESYNC, "dead", events.RESYNC, "completed"]
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)


async def test_a_subscription_whose_cancel_is_lost_ends_once_its_owner_stops(
    redis_url: str, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    lost = lose_pubsub_cancels(monkeypatch)
    settings = ops.Settings(prefix="ev")
    wanted = True
    seen: list[events.Event] = []
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)

    async def listen() -> None:
        async for event in events.subscribe(settings, client, ["q"], running=lambda: wanted):
            seen.append(event)

    listener = asyncio.create_task(listen())
    try:
        await wait_until(lambda: len(seen) == 1)
        listener.cancel()
        await asyncio.sleep(2 * events.TICK_S)
        assert not listener.done() and lost[0] == 1  # the cancel was lost: the read goes on
        wanted = False
        done, _ = await asyncio.wait({listener}, timeout=3 * events.TICK_S)
        assert done, "the subscription outlived its owner"
        assert raw.pubsub_numsub(settings.keyspace.queue("q").events)[0][1] == 0
    finally:
        monkeypatch.undo()  # later reads let a cancel through (needed only without the fix)
        await cancel_all([listener])
        await client.aclose()
