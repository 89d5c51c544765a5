"""A real ``Worker`` on the cluster: it serves queues on three primaries, and keeps serving
after one primary is killed and its replica takes over."""

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
from tests.ha.util import spread_queues
from tests.servers import ClusterSet

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


async def until(predicate: Any, limit_s: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        if await predicate():
            return time.monotonic() - start
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} not reached within {limit_s}s")


async def test_worker_serves_queues_on_every_primary_and_survives_a_primary_kill(cluster: ClusterSet) -> None:
    queues = spread_queues(cluster)
    registry = Registry()
    runs: dict[str, int] = {}

    @registry.task("job")
    async def job(ctx: TaskContext, payload: Any) -> int:
        runs[ctx.id] = runs.get(ctx.id, 0) + 1
        await asyncio.sleep(0.01)
        return int(payload["i"])

    client = AsyncClient(cluster.url)
    worker = Worker(
        registry, cluster.url, WorkerOptions(queues=queues, concurrency=4, lease_s=6, poll_interval_s=0.2)
    )
    running = asyncio.create_task(worker.run())
    try:
        first = await client.enqueue_many(
            [Task(type="job", payload={"i": i}, queue=queues[i % 3]) for i in range(30)]
        )

        async def all_done(results: list[Any] = first) -> bool:
            infos = [await client.get_task(r.id, r.queue) for r in results]
            return all(i is not None and i.state == TaskState.COMPLETED for i in infos)

        await until(all_done, 30, "first batch completed")
        assert {r.queue for r in first} == set(queues)  # one worker, three primaries

        victim = cluster.node_for_key(f"rediq:{{{queues[1]}}}:pending")
        cluster.node(victim).kill()
        killed = time.monotonic()
        second: list[Any] = []
        for i in range(30, 60):  # a producer that retries each enqueue until it is stored
            task = Task(type="job", payload={"i": i}, queue=queues[i % 3])
            while True:
                try:
                    second.append(await client.enqueue(task))
                    break
                except Exception:  # noqa: BLE001 - ConnectionFailed while the cluster fails over
                    assert time.monotonic() - killed < 30
                    await asyncio.sleep(0.1)
        await until(lambda: all_done(second), 45, "second batch completed after failover")
        recovered_s = time.monotonic() - killed
        assert not running.done(), "the worker died during the failover"
        lost = [r.id for r in first + second if r.id not in runs]
        infos = [await client.get_task(r.id, r.queue) for r in first + second]
        record_figure(
            "cluster-primary-kill (worker)",
            all_completed_after_s=round(recovered_s, 2),
            tasks=len(infos),
            tasks_lost=len(lost),
            ran_twice=sum(1 for n in runs.values() if n > 1),
        )
        assert lost == []
        assert all(i is not None and i.state == TaskState.COMPLETED for i in infos)
        assert sorted(i.result for i in infos if i is not None) == list(range(60))
    finally:
        worker.request_stop()
        await asyncio.wait_for(running, 30)
        await client.close()
