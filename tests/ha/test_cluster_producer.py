"""Issue 16 on Redis Cluster: published declarations route a plain enqueue to the type's queue
(the declaration keys and the queues live on different primaries), and results are waited for
through the cluster's pub/sub."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from engine import AsyncClient, Client, Registry, TaskDead
from engine.declarations import list_types
from engine.errors import Permanent
from engine.worker import Worker, WorkerOptions
from tests.ha.util import spread_queues
from tests.servers import ClusterSet

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


async def test_declarations_and_results_on_a_cluster(fresh_cluster: ClusterSet) -> None:
    queues = spread_queues(fresh_cluster)
    registry = Registry()

    @registry.task("order:payment", queue=queues[1], priority=0, max_retry=5)
    async def charge(ctx: Any, payload: Any) -> int:
        return int(payload["amount"])

    @registry.task("order:broken", queue=queues[2], max_retry=0)
    async def broken(ctx: Any, payload: Any) -> None:
        raise Permanent("no")

    worker = Worker(registry, fresh_cluster.url, WorkerOptions(queues=queues, poll_interval_s=0.2))
    running = asyncio.create_task(worker.run())
    try:
        async with AsyncClient(fresh_cluster.url) as client:  # no registry
            for _ in range(100):
                if await client.run(list_types(client.settings.keyspace)):
                    break
                await asyncio.sleep(0.05)
            paid = await client.enqueue("order:payment", {"amount": 7})
            assert paid.queue == queues[1]
            info = await client.get_task(paid.id, paid.queue)
            assert info is not None and (info.priority, info.max_retry) == (0, 5)
            assert await paid.wait_async(timeout=30) == 7
            dead = await client.enqueue("order:broken", {})
            with pytest.raises(TaskDead):
                await dead.wait_async(timeout=30)
        with Client(fresh_cluster.url) as sync_client:
            again = sync_client.enqueue("order:payment", {"amount": 8})
            assert again.queue == queues[1]
            assert await asyncio.to_thread(again.wait, 30) == 8
            types = sync_client.run(list_types(sync_client.settings.keyspace))
            assert {t.declaration.task_type: t.served_by for t in types}["order:payment"] == (worker.id,)
    finally:
        worker.request_stop()
        await asyncio.wait_for(running, 30)
