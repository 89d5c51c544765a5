"""Task apps used by subprocess-worker tests. Handlers record what they did in Redis so that
the test process can see it."""

from __future__ import annotations

import os
import time
from typing import Any

import redis

from engine.registry import Registry
from engine.worker import TaskContext

crash = Registry()


def _record(ctx: TaskContext, what: str) -> None:
    url = os.environ["REDIQ_TEST_URL"]
    r = redis.Redis.from_url(url)
    r.rpush(f"test:runs:{ctx.id}", f"{what}:{ctx.attempt}:{os.getpid()}")
    r.close()


@crash.task("slow", queue="crash", max_retry=3)
def slow(ctx: TaskContext, payload: Any) -> str:
    _record(ctx, "start")
    time.sleep(float(payload.get("seconds", 5)))
    _record(ctx, "end")
    return "done"


@crash.task("exit", queue="crash", max_retry=1)
def hard_exit(ctx: TaskContext, payload: Any) -> None:
    _record(ctx, "start")
    os._exit(13)  # the whole worker process dies, as on OOM-kill


@crash.task("quick", queue="crash")
async def quick(ctx: TaskContext, payload: Any) -> int:
    _record(ctx, "ran")
    return 1


@crash.task("exit_at_once", queue="crash", max_retry=0)
async def exit_at_once(ctx: TaskContext, payload: Any) -> None:
    # blocks the event loop until the process is gone: nothing the worker would send after
    # launching the handler (a start mark riding a later round trip) can leave first
    _record(ctx, "start")
    os._exit(13)
