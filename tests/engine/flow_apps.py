"""Handlers for the ``--pool process`` tests of ``RateLimited`` and of batching: module level,
so a child process can import them. ``limited_once`` counts its calls in Redis
(``REDIQ_TEST_URL``)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import redis

from engine import RateLimited
from engine.batching import Batch, BatchItem
from engine.errors import BatchFailed, Retryable
from engine.registry import Registry

flow = Registry()


@flow.task("limited_once", queue="flowpool", max_retry=0)
def limited_once(ctx: Any, payload: Any) -> str:
    r = redis.Redis.from_url(os.environ["REDIQ_TEST_URL"])
    calls = r.incr(f"test:calls:{ctx.id}")
    r.close()
    if calls == 1:
        raise RateLimited("429 from the child", retry_after=0.3)
    return "ok"


@flow.task("notify_many", queue="batchpool", batch=Batch(max_size=3, max_delay=3600))
def notify_many(ctx: Any, items: list[BatchItem[int]]) -> list[int]:
    """A batch handler in a child process: items pickled there, results and a BatchFailed back."""
    bad = {i.id: Retryable("odd one", delay=0.05) for i in items if i.payload == 2 and i.attempt == 1}
    if bad:
        raise BatchFailed(bad)
    return [i.payload * 10 for i in items]


@flow.task("slow_batch", queue="batchkill", batch=Batch(max_size=3, max_delay=3600))
async def slow_batch(ctx: Any, items: list[BatchItem[int]]) -> None:
    """The first call hangs (its worker is killed meanwhile); later ones complete. Each call
    appends its items' payloads to a Redis list."""
    r = redis.Redis.from_url(os.environ["REDIQ_TEST_URL"])
    # marked first before the call is listed: the test kills the worker once it sees the call
    # listed, and a kill between the two left the next worker's call to hang instead
    first = r.set("test:batchkill:first", "1", nx=True)
    r.rpush("test:batchkill:calls", ",".join(str(i.payload) for i in sorted(items, key=lambda i: i.payload)))
    r.close()
    if first:
        await asyncio.sleep(600)
