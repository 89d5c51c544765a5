"""A real ``Worker`` and an ``AsyncClient`` through Sentinel follow the primary when it dies."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from engine.client import AsyncClient
from engine.registry import Registry
from engine.task import Task, TaskState
from engine.worker import TaskContext, Worker, WorkerOptions
from tests.ha.conftest import record_figure
from tests.servers import SentinelSet

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


async def test_worker_follows_the_primary_through_a_sentinel_failover() -> None:
    sentinels = SentinelSet(replicas=2, sentinels=3, min_replicas=1).start()
    registry = Registry()
    runs: dict[str, int] = {}

    @registry.task("job", queue="sq")
    async def job(ctx: TaskContext, payload: Any) -> int:
        runs[ctx.id] = runs.get(ctx.id, 0) + 1
        return int(payload["i"])

    client = AsyncClient(sentinels.url)
    worker = Worker(registry, sentinels.url, WorkerOptions(queues=["sq"], concurrency=4, poll_interval_s=0.2))
    running = asyncio.create_task(worker.run())
    try:
        results = [await client.enqueue("job", {"i": i}, queue="sq") for i in range(20)]

        async def settled() -> bool:
            infos = [await client.get_task(r.id, "sq") for r in results]
            return all(i is not None and i.state == TaskState.COMPLETED for i in infos)

        async def until(limit_s: float) -> None:
            deadline = time.monotonic() + limit_s
            while not await settled():
                assert time.monotonic() < deadline, "tasks did not complete"
                await asyncio.sleep(0.1)

        await until(20)
        old = sentinels.primary_port()
        sentinels.node(old).kill()
        killed = time.monotonic()
        errors = 0
        for i in range(20, 40):
            task = Task(type="job", payload={"i": i}, queue="sq")
            while True:
                try:
                    results.append(await client.enqueue(task))
                    break
                except Exception:  # noqa: BLE001 - ConnectionFailed during the failover
                    errors += 1
                    assert time.monotonic() - killed < 30
                    await asyncio.sleep(0.1)
        await until(40)
        done_s = time.monotonic() - killed
        assert sentinels.primary_port() != old
        assert not running.done(), "the worker died during the failover"
        infos = [await client.get_task(r.id, "sq") for r in results]
        record_figure(
            "sentinel-primary-kill (worker + async client)",
            all_completed_after_s=round(done_s, 2),
            tasks=len(results),
            tasks_lost=sum(1 for i in infos if i is None),
            ran_twice=sum(1 for n in runs.values() if n > 1),
            client_errors=errors,
        )
        assert sorted(i.result for i in infos if i is not None) == list(range(40))
    finally:
        worker.request_stop()
        await asyncio.wait_for(running, 30)
        await client.close()
        sentinels.cleanup()
