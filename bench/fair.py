"""Fair scheduling between the groups of one queue: a small tenant's latency behind a big one.

    python bench/fair.py --n 5000 --repeat 3

On a private Valkey (loopback, persistence off), per run and per mode, in alternating order
(plain, fair; fair, plain; ...): N no-op tasks of group ``big`` are enqueued, one in-process
worker (concurrency 10, the defaults) starts draining them, and once it has run N/10 a single
task of group ``small`` is enqueued. Printed per mode: the median (and range) of the small
task's latency (its enqueue to its handler's start) and of the drain rate of the whole backlog,
the load average, and the median per-run ratio of drain rates fair / plain (the cost of the
tags: one HMGET + HSET per enqueue and re-entry, one HMGET per lease).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis  # noqa: E402

from bench.pairs import alternate, drain_seconds  # noqa: E402
from bench.server import Valkey  # noqa: E402
from engine import flow  # noqa: E402
from engine.client import AsyncClient, Client  # noqa: E402
from engine.registry import Registry  # noqa: E402
from engine.task import Task  # noqa: E402

QUEUE = "bench-fair"


async def _drain(url: str, client: AsyncClient, n: int) -> tuple[float, float]:
    registry = Registry()
    done = asyncio.Event()
    count = 0
    small_at: list[float] = []
    enqueued_at: list[float] = []

    @registry.task("noop", queue=QUEUE)
    async def noop(ctx: Any, payload: Any) -> None:
        nonlocal count
        if payload == "small":
            small_at.append(time.perf_counter())
        count += 1
        if count == n // 10 and not enqueued_at:
            enqueued_at.append(time.perf_counter())
            await client.enqueue_many([Task(type="noop", queue=QUEUE, payload="small", group="small")])
        if count == n + 1:
            done.set()

    elapsed = await drain_seconds(registry, url, QUEUE, done)
    return (small_at[0] - enqueued_at[0]) * 1000, (n + 1) / elapsed


def one_run(url: str, r: redis.Redis, n: int, fair: bool) -> tuple[float, float]:
    r.flushall()
    with Client(url) as client:
        if fair:
            client.run(flow.write_fair(client.settings, QUEUE))
        for start in range(0, n, 1000):
            client.enqueue_many(
                [
                    Task(type="noop", queue=QUEUE, payload=i, group="big")
                    for i in range(start, min(n, start + 1000))
                ]
            )

    async def go() -> tuple[float, float]:
        async with AsyncClient(url) as aclient:
            return await _drain(url, aclient, n)

    return asyncio.run(go())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with Valkey() as server:
        r = redis.Redis.from_url(server.url, decode_responses=True)
        results, ratios, loads = alternate(
            args.repeat, lambda mode: one_run(server.url, r, args.n, mode), ratio_of=1
        )
        r.close()
    for mode, runs in results.items():
        lat = [x[0] for x in runs]
        rates = [x[1] for x in runs]
        print(
            f"{'fair' if mode else 'plain':>5}: small tenant's task started after "
            f"{statistics.median(lat):8,.1f} ms ({min(lat):,.1f}..{max(lat):,.1f}); drain "
            f"{statistics.median(rates):6,.0f} tasks/s ({min(rates):,.0f}..{max(rates):,.0f})"
        )
    print(f"fair / plain drain rate: {statistics.median(ratios):.3f} ({min(ratios):.3f}..{max(ratios):.3f})")
    print(f"load average (1 min) after each pair: {', '.join(f'{x:.2f}' for x in loads)}")


if __name__ == "__main__":
    main()
