"""Batching's gain: N notifications sent one handler call each, against batches of 500.

    python bench/batching.py --n 10000 --repeat 3

On a private Valkey (loopback, persistence off), per run and per mode, in alternating order
(single, batched; batched, single; ...), one in-process worker (concurrency 10, the defaults)
drains N pre-enqueued no-op notifications. ``single``: a plain task type, one handler call per
task. ``batched``: the same type declared ``Batch(max_size=500, max_delay=2.0)``, one handler
call per 500 (every batch full: the delay never triggers). Printed per mode: the median drain
rate (tasks/s, from the worker's start to the last task's handler) with its range, the median
server commands per task (``INFO commandstats`` delta: every command inside the scripts too),
script calls per task (FCALL) and handler calls; and the median per-run ratio batched / single.
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
from engine.batching import Batch, BatchItem  # noqa: E402
from engine.client import Client  # noqa: E402
from engine.registry import Registry  # noqa: E402
from engine.task import Task  # noqa: E402

QUEUE = "bench-batch"
SIZE = 500


async def _drain(url: str, n: int, batched: bool) -> tuple[float, int]:
    registry = Registry()
    done = asyncio.Event()
    count = calls = 0

    def seen(k: int) -> None:
        nonlocal count, calls
        count += k
        calls += 1
        if count >= n:
            done.set()

    if batched:

        @registry.task("notify", queue=QUEUE, batch=Batch(max_size=SIZE, max_delay=2.0))
        async def notify_many(ctx: Any, items: list[BatchItem[Any]]) -> None:
            seen(len(items))

    else:

        @registry.task("notify", queue=QUEUE)
        async def notify(ctx: Any, payload: Any) -> None:
            seen(1)

    elapsed = await drain_seconds(registry, url, QUEUE, done)
    return n / elapsed, calls


def one_run(url: str, r: redis.Redis, n: int, batched: bool) -> tuple[float, float, float, int]:
    r.flushall()
    with Client(url) as client:
        for start in range(0, n, 1000):
            client.enqueue_many(
                [Task(type="notify", queue=QUEUE, payload=i) for i in range(start, min(n, start + 1000))]
            )
    r.config_resetstat()
    rate, calls = asyncio.run(_drain(url, n, batched))
    total, fcalls = server_calls(r)
    return rate, total / n, fcalls / n, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
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
            f"{'batched' if mode else 'single':>7}: {statistics.median(rates):8,.0f} tasks/s "
            f"({min(rates):,.0f}..{max(rates):,.0f}), "
            f"{statistics.median(x[1] for x in runs):.2f} server cmds/task, "
            f"{statistics.median(x[2] for x in runs):.4f} script calls/task, "
            f"{statistics.median(x[3] for x in runs):,.0f} handler calls"
        )
    spread = f"{min(ratios):.2f}..{max(ratios):.2f}"
    print(f"batched / single drain rate: {statistics.median(ratios):.2f} ({spread})")
    print(f"load average (1 min) after each pair: {', '.join(f'{x:.2f}' for x in loads)}")


if __name__ == "__main__":
    main()
