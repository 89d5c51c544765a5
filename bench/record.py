"""Shared-memory counters the no-op handlers of every library report into.

The runner creates them before forking the worker processes; a handler calls ``done(ts)``.
``ts`` is the producer's ``time.time()`` at enqueue (latency workload) or 0.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any

_ctx = mp.get_context("fork")
COUNT: Any = None
LAT_N: Any = None
LAT: Any = None


def setup(latency_slots: int) -> None:
    global COUNT, LAT_N, LAT
    COUNT = _ctx.Value("q", 0, lock=True)
    LAT_N = _ctx.Value("q", 0, lock=True)
    LAT = _ctx.RawArray("d", max(1, latency_slots))


def done(ts: float = 0.0) -> None:
    if ts:
        elapsed = time.time() - ts
        with LAT_N.get_lock():
            i = LAT_N.value
            LAT_N.value = i + 1
        if i < len(LAT):
            LAT[i] = elapsed
    with COUNT.get_lock():
        COUNT.value += 1


def count() -> int:
    return int(COUNT.value)


def latencies() -> list[float]:
    n = min(int(LAT_N.value), len(LAT))
    return list(LAT[:n])
