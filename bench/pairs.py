"""What the A/B benches of one feature share (bench/flow.py, fair.py, batching.py): a drain by
one in-process worker, server command counts, and runs of both modes in alternating order.

Alternating (off, on; on, off; ...) spreads a shared machine's drift over both modes, and the
per-pair ratio compares runs made seconds apart."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from engine.registry import Registry
from engine.worker import Worker, WorkerOptions

Figures = TypeVar("Figures", bound=tuple[Any, ...])


def server_calls(r: redis.Redis) -> tuple[int, int]:
    """Commands the server ran since the last ``CONFIG RESETSTAT`` (those inside scripts too),
    and how many of them were script calls (FCALL)."""
    stats: dict[str, Any] = r.info("commandstats")
    total = sum(int(v["calls"]) for v in stats.values())
    return total, int(stats.get("cmdstat_fcall", {}).get("calls", 0))


async def drain_seconds(registry: Registry, url: str, queue: str, done: asyncio.Event) -> float:
    """Seconds from a worker's start (concurrency 10, the other defaults) on ``queue`` until
    ``done`` is set by its handlers; then it stops gracefully."""
    worker = Worker(registry, url, WorkerOptions(queues=[queue], concurrency=10))
    started = time.perf_counter()
    run = asyncio.create_task(worker.run())
    await asyncio.wait_for(done.wait(), 300)
    elapsed = time.perf_counter() - started
    worker.request_stop()
    await asyncio.wait_for(run, 60)
    return elapsed


def alternate(
    repeat: int, one_run: Callable[[bool], Figures], ratio_of: int = 0
) -> tuple[dict[bool, list[Figures]], list[float], list[float]]:
    """``repeat`` pairs of runs, off and on in alternating order. Returns each mode's figures,
    the per-pair ratio on / off of figure ``ratio_of``, and the load average after each pair."""
    results: dict[bool, list[Figures]] = {False: [], True: []}
    ratios, loads = [], []
    for i in range(repeat):
        order = (False, True) if i % 2 == 0 else (True, False)
        run = {mode: one_run(mode) for mode in order}
        for mode, figures in run.items():
            results[mode].append(figures)
        ratios.append(run[True][ratio_of] / run[False][ratio_of])
        loads.append(os.getloadavg()[0])
    return results, ratios, loads
