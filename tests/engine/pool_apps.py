"""Handlers for ``--pool process`` tests: module level, so a child process can import them.
They record what they did in Redis (``REDIQ_TEST_URL``) so the test process can see it."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import redis

from engine.registry import Registry

pool = Registry()


def _record(ctx: Any, what: str) -> None:
    r = redis.Redis.from_url(os.environ["REDIQ_TEST_URL"])
    r.rpush(f"test:runs:{ctx.id}", f"{what}:{ctx.attempt}:{os.getpid()}")
    r.close()


@pool.task("sleep_forever", queue="pool", max_retry=0)
def sleep_forever(ctx: Any, payload: Any) -> None:
    _record(ctx, "start")
    while True:
        time.sleep(3600)


@pool.task("ignore_sigterm", queue="pool", max_retry=0)
def ignore_sigterm(ctx: Any, payload: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _record(ctx, "start")
    while True:
        time.sleep(3600)


@pool.task("pid", queue="pool")
def pid(ctx: Any, payload: Any) -> dict[str, Any]:
    ctx.progress(50, "half way")
    return {"pid": os.getpid(), "echo": payload, "attempt": ctx.attempt}


@pool.task("own_timeout", queue="pool", max_retry=0)
def own_timeout(ctx: Any, payload: Any) -> None:
    raise TimeoutError("read timed out after 5 ms talking to payments-api")


@pool.task("logs", queue="pool")
def logs(ctx: Any, payload: Any) -> int:
    ctx.log("from the child", level="warning")
    ctx.log(f"pid {os.getpid()}")
    return os.getpid()
