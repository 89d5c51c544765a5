"""The arrivals channel (issue 20): scripts publish the events that may mean work for a worker
(``pending``, ``resumed``) on ``<queue events>:arrivals`` and the rest on the events channel.
A worker listens only to arrivals, so it no longer receives (and parses) the events of its own
starts and acks; observers (the console, ``events.subscribe``) still see every event."""

from __future__ import annotations

import asyncio
from typing import Any

import redis
import redis.asyncio as aioredis

from engine import events
from engine.client import Client
from engine.registry import Registry
from tests.engine.conftest import running_worker, wait_until

SLOW_POLL_S = 30.0
"""Longer than any wait here: a worker that runs a task in time was woken by pub/sub."""


def _registry() -> Registry:
    registry = Registry()

    @registry.task("arrive", queue="arr")
    async def arrive(ctx: Any, payload: Any) -> None:
        return None

    return registry


async def test_a_worker_listens_to_arrivals_only_and_they_wake_it(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    qk = client.settings.keyspace.queue("arr")
    # no hand-off and a 30 s poll: only a pub/sub wake-up starts a task within seconds
    async with running_worker(
        _registry(), redis_url, ["arr"], handoff=False, poll_interval_s=SLOW_POLL_S
    ) as worker:
        await wait_until(lambda: raw.pubsub_numsub(qk.arrivals)[0][1] == 1)
        assert raw.pubsub_numsub(qk.events)[0][1] == 0  # not its own starts' and acks' events
        first = client.enqueue("arrive", {}, queue="arr")
        await wait_until(lambda: client.get_task(first.id).state == "completed")  # type: ignore[union-attr]
        client.pause("arr")
        paused = client.enqueue("arrive", {}, queue="arr")
        await asyncio.sleep(0.2)
        assert client.get_task(paused.id).state == "pending"  # type: ignore[union-attr]
        client.resume("arr")  # 'resumed' wakes it
        await wait_until(lambda: client.get_task(paused.id).state == "completed")  # type: ignore[union-attr]
        assert worker.processed == 2


async def test_observers_see_every_event_and_a_workers_subscription_only_arrivals(
    redis_url: str, client: Client
) -> None:
    everything: list[str] = []
    arrivals: list[str] = []

    async def listen(into: list[str], arrivals_only: bool) -> None:
        conn = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            async for event in events.subscribe(client.settings, conn, ["arr"], arrivals_only=arrivals_only):
                into.append(event.event)
        finally:
            await conn.aclose()

    listeners = [asyncio.create_task(listen(everything, False)), asyncio.create_task(listen(arrivals, True))]
    try:
        await wait_until(lambda: everything[:1] == arrivals[:1] == [events.RESYNC])
        await asyncio.sleep(0.1)  # subscribed (the resync is yielded once the subscribe returned)
        async with running_worker(_registry(), redis_url, ["arr"], handoff=False) as worker:
            client.enqueue("arrive", {}, queue="arr")
            await wait_until(lambda: worker.processed == 1)
            await wait_until(lambda: "completed" in everything)
        assert {"pending", "active", "completed"} <= set(everything)
        assert arrivals[1:] == ["pending"]
    finally:
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
