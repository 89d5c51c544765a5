"""A worker whose replies from Redis go missing: its requests (dequeue, start marks, acks) run,
the answers never arrive, redis-py re-sends after its socket timeout and the worker asks again
once the network is back. Every task must run exactly once and none may wait out a lease held
by nobody. The control turns dequeue receipts off, and the checker must see those waits.

Hand-off is off here: a hand-off popped from the inbox whose reply is lost still waits out one
lease (uncharged); see RELIABILITY.md."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
import redis

from engine import connection
from engine.client import Client
from engine.registry import Registry
from engine.task import Task
from engine.worker.core import WorkerCore
from tests.chaos.conftest import ServerFactory
from tests.chaos.harness import Figure, lease_expiries, scaled
from tests.chaos.proxy import FaultProxy
from tests.engine.conftest import running_worker, wait_until

pytestmark = pytest.mark.chaos

LEASE_S = 5.0
PHASES = 6
"""Each phase: replies pass for 0.6 s, then go missing for 0.6 s (two socket timeouts)."""


@pytest.fixture(autouse=True)
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "SOCKET_TIMEOUT_S", 0.3)


async def run_through_lost_replies(
    server_factory: ServerFactory, prefetch: int | None
) -> tuple[Figure, list[str], Counter[str]]:
    server = server_factory()
    proxy = FaultProxy(server.port).start()
    r = redis.Redis(port=server.port, decode_responses=True)
    client = Client(server.url)
    n = scaled(10_000)
    ids = [x.id for x in client.enqueue_many([Task(type="work", queue="lost", payload=i) for i in range(n)])]
    runs: Counter[str] = Counter()
    registry = Registry()

    @registry.task("work", queue="lost")
    async def work(ctx: Any, payload: Any) -> None:
        runs[ctx.id] += 1
        await asyncio.sleep(0.05)  # 1,000 tasks on 8 slots outlast the 6 fault phases

    try:
        async with running_worker(
            registry, proxy.url, ["lost"], concurrency=8, prefetch=prefetch, lease_s=LEASE_S, handoff=False
        ):
            for _ in range(PHASES):
                proxy.set_mode("pass")
                await asyncio.sleep(0.6)
                proxy.set_mode("lose_replies")
                await asyncio.sleep(0.6)
            proxy.set_mode("pass")
            # twice the run time of the tasks on 8 slots, plus the faults and a lease
            await wait_until(lambda: r.zcard("rediq:{lost}:completed") >= n, timeout=30 + n * 0.05 / 8 * 2)
        expired = lease_expiries(r, "lost", ids)
        fig = Figure(
            f"worker replies lost 6 x 0.6 s (prefetch {prefetch})",
            n,
            r.zcard("rediq:{lost}:completed"),
            n - r.zcard("rediq:{lost}:completed"),
            sum(1 for c in runs.values() if c > 1),
            0.0,
            f"{len(expired)} task(s) waited out a lease, {proxy.connections} connections through the proxy",
        )
        fig.report()
        return fig, expired, runs
    finally:
        proxy.stop()
        client.close()
        r.close()


@pytest.mark.parametrize("prefetch", [0, None], ids=["every-exchange-dequeues", "prefetching"])
async def test_lost_replies_neither_strand_nor_repeat_a_task(
    server_factory: ServerFactory, prefetch: int | None
) -> None:
    # without prefetch every exchange that frees a slot carries a dequeue; with it (the default)
    # start marks of prefetched tasks are lost too
    fig, expired, runs = await run_through_lost_replies(server_factory, prefetch)
    assert fig.lost == 0 and fig.duplicates == 0
    assert expired == []
    assert len(runs) == fig.submitted and set(runs.values()) == {1}


async def test_control_without_receipts_lost_dequeue_replies_strand_tasks(
    server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(WorkerCore, "_request_id", lambda self, queue: "")
    fig, expired, _ = await run_through_lost_replies(server_factory, prefetch=0)
    assert fig.lost == 0  # they are not lost: they wait for their lease to run out
    assert expired, "with no receipts a lost dequeue reply must leave tasks to a lease expiry"
