"""The cost of a rate limit that never binds, against none, on a worker's drain.

    python bench/flow.py --n 5000 --repeat 3

On a private Valkey (loopback, persistence off), per run and per mode, in alternating order
(none, limit; limit, none; ...), one in-process worker (concurrency 10, prefetch 0, the
defaults) drains N pre-enqueued no-op tasks. ``limit`` sets the queue's rate limit to
1,000,000/s with a burst of 1,000,000 (it never binds: every dequeue is checked and charged).
Printed per mode: the median drain rate (tasks/s) over the runs with its range, the median
server commands per task (``INFO commandstats`` delta: every command inside the scripts too)
and script calls per task (FCALL); and the median of the per-run ratio limit / none.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis  # noqa: E402

from bench.pairs import alternate, drain_seconds, server_calls  # noqa: E402
from bench.server import Valkey  # noqa: E402
from engine.client import Client  # noqa: E402
from engine.registry import Registry  # noqa: E402
from engine.task import Task  # noqa: E402

QUEUE = "bench-flow"


async def _drain(url: str, n: int) -> float:
    registry = Registry()
    done = asyncio.Event()
    count = 0

    @registry.task("noop", queue=QUEUE)
    async def noop(ctx: Any, payload: Any) -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set()

    elapsed = await drain_seconds(registry, url, QUEUE, done)
    return n / elapsed


def one_run(url: str, r: redis.Redis, n: int, limited: bool) -> tuple[float, float, float]:
    r.flushall()
    with Client(url) as client:
        for start in range(0, n, 1000):
            client.enqueue_many(
                [Task(type="noop", queue=QUEUE, payload=i) for i in range(start, min(n, start + 1000))]
            )
    if limited:
        r.hset(
            f"rediq:{{{QUEUE}}}:ratelimit", mapping={"rate": 1_000_000, "period": 1000, "burst": 1_000_000}
        )
    r.config_resetstat()
    rate = asyncio.run(_drain(url, n))
    total, fcalls = server_calls(r)
    return rate, total / n, fcalls / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with Valkey() as server:
        r = redis.Redis.from_url(server.url, decode_responses=True)
        results, ratios, loads = alternate(
            args.repeat, lambda mode: one_run(server.url, r, args.n, mode), ratio_of=0
        )
        r.close()
    for mode, runs in results.items():
        rates = [x[0] for x in runs]
        print(
            f"{'limit' if mode else 'none':>5}: {statistics.median(rates):8,.0f} tasks/s "
            f"({min(rates):,.0f}..{max(rates):,.0f}), "
            f"{statistics.median(x[1] for x in runs):.2f} server cmds/task, "
            f"{statistics.median(x[2] for x in runs):.3f} script calls/task"
        )
    print(f"limit / none drain rate: {statistics.median(ratios):.3f} ({min(ratios):.3f}..{max(ratios):.3f})")
    print(f"load average (1 min) after each pair: {', '.join(f'{x:.2f}' for x in loads)}")


if __name__ == "__main__":
    main()
