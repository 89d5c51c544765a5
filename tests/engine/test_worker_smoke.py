from __future__ import annotations

from typing import Any

from engine.client import Client
from engine.registry import Registry
from engine.task import TaskState
from engine.worker import TaskContext
from tests.engine.conftest import running_worker, wait_until


async def test_worker_runs_async_and_sync_handlers_and_stores_results(redis_url: str) -> None:
    registry = Registry()

    @registry.task("add", queue="math")
    async def add(ctx: TaskContext, payload: Any) -> int:
        return int(payload["a"]) + int(payload["b"])

    @registry.task("mul", queue="math")
    def mul(ctx: TaskContext, payload: Any) -> int:
        return int(payload["a"]) * int(payload["b"])

    client = Client(redis_url)
    a = client.enqueue("add", {"a": 2, "b": 3}, queue="math")
    m = client.enqueue("mul", {"a": 4, "b": 5}, queue="math")
    async with running_worker(registry, redis_url, ["math"], concurrency=2):
        await wait_until(
            lambda: all(
                (t := client.get_task(x.id)) is not None and t.state == TaskState.COMPLETED for x in (a, m)
            )
        )
    ta, tm = client.get_task(a.id), client.get_task(m.id)
    assert ta is not None and ta.result == 5 and ta.attempts == 1
    assert tm is not None and tm.result == 20
    assert [h.state for h in ta.history][:3] == ["completed", "active", "pending"]
    client.close()
