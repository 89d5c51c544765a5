"""Defects the fault harness found, each as a deterministic reproduction against a real Valkey
(RELIABILITY.md, Fault exploration)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis

from engine.client import Client
from engine.connection import parse_url
from engine.registry import Registry
from engine.task import Task
from engine.worker import Worker, WorkerOptions
from tests.faults.wire import Fault, FaultyRedis, Wire

Q = "found"


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


async def test_a_worker_stopped_right_after_a_lost_dequeue_reply_hands_back_what_it_leased(
    redis_url: str, raw: redis.Redis
) -> None:
    """Found by tests/faults: stopped while the reply to its last dequeue was lost, the worker
    never took back what that dequeue started (its receipt); the tasks waited out their lease,
    charged, and with max_retry=0 went dead unrun."""
    ran: list[str] = []
    registry = Registry()

    @registry.task("job", queue=Q)
    async def job(ctx: Any, payload: Any) -> None:
        ran.append(ctx.id)

    with Client(redis_url) as client:
        task = client.enqueue(Task(type="job", queue=Q, max_retry=0))
    wire = Wire("w")
    wire.arm(Fault.DROP_REPLY, "dequeue")  # the dequeue leases and starts the task; its reply is lost
    for _ in range(5):
        wire.arm(Fault.DROP_REQUEST, "dequeue")  # and Redis stays out of reach for a while
    real = parse_url(redis_url).aio()
    options = WorkerOptions(queues=[Q], concurrency=1, handoff=False, lease_s=600, grace_s=1)
    worker = Worker(registry, options=options, redis=FaultyRedis(real, wire))
    running = asyncio.ensure_future(worker.run())
    try:
        await wait_for(lambda: bool(wire.log))
        worker.request_stop()  # SIGTERM while it backs off
        await asyncio.wait_for(running, 30)
    finally:
        await real.aclose()
    state, attempts = raw.hmget(f"rediq:{{{Q}}}:t:{task.id}", "state", "attempts")
    assert ran or state == "pending", (
        f"the stopped worker left the task {state!s} with {attempts!s} attempt(s) charged and never ran it"
    )
