"""Apps for the lifecycle-hook and ``--burst`` tests: module level, so ``--pool process``
children and worker processes can import them. Hooks and handlers record what they did in
Redis (``REDIQ_TEST_URL``), under ``test:lifecycle``, as ``what:pid``."""

from __future__ import annotations

import os
from typing import Any

import redis

from engine.lifecycle import WorkerState
from engine.registry import Registry

LOG = "test:lifecycle"


def record(what: str) -> None:
    r = redis.Redis.from_url(os.environ["REDIQ_TEST_URL"])
    r.rpush(LOG, f"{what}:{os.getpid()}")
    r.close()


hooks = Registry()


@hooks.on_startup
async def open_pool(state: WorkerState) -> None:
    record("startup-async")
    state.pool = {"opened_by": os.getpid()}


@hooks.on_startup
def open_client(state: WorkerState) -> None:
    record("startup-sync")
    state.client_name = f"client-{os.getpid()}"


@hooks.on_shutdown
def close_pool(state: WorkerState) -> None:
    record(f"shutdown-{state.pool['opened_by']}")


@hooks.task("lc:sync", queue="lc")
def sync_state(ctx: Any, payload: Any) -> dict[str, Any]:
    record("task")
    return {"pool": ctx.state.pool["opened_by"], "client": ctx.state.client_name, "pid": os.getpid()}


@hooks.task("lc:async", queue="lc")
async def async_state(ctx: Any, payload: Any) -> dict[str, Any]:
    record("task")
    return {"pool": ctx.state.pool["opened_by"], "client": ctx.state.client_name, "pid": os.getpid()}


broken = Registry()


@broken.on_startup
def connect_database(state: WorkerState) -> None:
    raise ConnectionRefusedError("database at db:5432 refused the connection")


@broken.task("lc:never", queue="lc-broken")
def never(ctx: Any, payload: Any) -> None:
    record("task")


burst = Registry()


@burst.task("burst:step", queue="burst")
def step(ctx: Any, payload: Any) -> int:
    return int(payload["n"]) * 2


@burst.task("burst:flaky", queue="burst")
def flaky(ctx: Any, payload: Any) -> str:
    from engine.errors import Retryable

    if ctx.attempt == 1:
        raise Retryable("first attempt fails", delay=0)
    return "second attempt"
