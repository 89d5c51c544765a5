"""Task apps for ``rediq-worker --processes N`` tests: handlers record their worker process in
Redis (``REDIQ_TEST_URL``) so the test sees which child ran what."""

from __future__ import annotations

import os
import time
from typing import Any

import redis

from engine.registry import Registry
from engine.worker import TaskContext

registry = Registry()
PIDS = "test:supervised:pids"
RUNS = "test:supervised:runs"


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIQ_TEST_URL"], decode_responses=True)


@registry.task("together", queue="sup")
def together(ctx: TaskContext, payload: Any) -> int:
    """Runs until a task has started in a second worker process (or 30 s pass): a test whose
    tasks all complete has seen two processes take work."""
    r = _redis()
    r.sadd(PIDS, os.getpid())
    deadline = time.monotonic() + 30
    while r.scard(PIDS) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    return os.getpid()


@registry.task("stall_once", queue="sup", max_retry=3)
def stall_once(ctx: TaskContext, payload: Any) -> int:
    """The first attempt runs for a long time (long enough to be killed under); later ones
    return at once."""
    _redis().rpush(RUNS, f"{ctx.attempt}:{os.getpid()}")
    if ctx.attempt == 1:
        time.sleep(float(payload.get("seconds", 60)))
    return os.getpid()
