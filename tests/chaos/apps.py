"""Task apps for the chaos scenarios. Handlers append one line per event to a ledger file per
process (``$REDIQ_CHAOS_LEDGER/<pid>.log``) with ``O_APPEND`` writes: the kernel keeps a line
once ``write`` returned, so a SIGKILLed worker's lines survive, and a crashed Redis cannot
take the ledger with it."""

from __future__ import annotations

import os
import time
from typing import Any

from engine.registry import Registry
from engine.retry import Backoff, Fixed
from engine.worker import TaskContext

chaos = Registry()

_fd: int | None = None


def record(event: str, ctx: TaskContext) -> None:
    global _fd
    if _fd is None:
        directory = os.environ["REDIQ_CHAOS_LEDGER"]
        _fd = os.open(os.path.join(directory, f"{os.getpid()}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.write(_fd, f"{event} {ctx.id} {ctx.attempt} {os.getpid()} {time.time():.6f}\n".encode())


@chaos.task("work", queue="chaos", max_retry=20)
def work(ctx: TaskContext, payload: Any) -> int:
    record("start", ctx)
    seconds = float((payload or {}).get("sleep", 0.0))
    if seconds:
        time.sleep(seconds)
    record("end", ctx)
    return 1


@chaos.task("hang", queue="bad", max_retry=1, timeout=0.5, retry=Fixed(0.2))
async def hang(ctx: TaskContext, payload: Any) -> None:
    import asyncio

    record("start", ctx)
    await asyncio.sleep(3600)


@chaos.task("exit", queue="bad", max_retry=2)
def hard_exit(ctx: TaskContext, payload: Any) -> None:
    record("start", ctx)
    os._exit(13)  # the whole worker process dies, as on an OOM kill


@chaos.task("raise", queue="bad", max_retry=3, retry=Fixed(0.3, jitter=0.1))
def always_raise(ctx: TaskContext, payload: Any) -> None:
    record("start", ctx)
    raise RuntimeError("this handler always fails")


@chaos.task("fail", queue="herd", max_retry=2, retry=Backoff(base=2.0, jitter=0.5))
def fail_jittered(ctx: TaskContext, payload: Any) -> None:
    record("start", ctx)
    raise RuntimeError("downstream is down")


@chaos.task("fail-nojitter", queue="herd", max_retry=2, retry=Backoff(base=2.0, jitter=0.0))
def fail_no_jitter(ctx: TaskContext, payload: Any) -> None:
    record("start", ctx)
    raise RuntimeError("downstream is down")


@chaos.task("tick", queue="cron")
def cron_tick(ctx: TaskContext, payload: Any) -> None:
    record("start", ctx)
