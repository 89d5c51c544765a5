"""Unserved task types against a real server and a real worker: a type waiting in a queue that
no live worker listens on, or whose listeners have no handler for it, is reported with why;
one a live worker serves is not; a worker that published no handlers is never a false alarm."""

from __future__ import annotations

from typing import Any

import redis

from engine import Client, Registry, TaskContext, serving
from tests.engine.conftest import running_worker, wait_until


def unserved(client: Client, queue: str) -> dict[str, serving.UnservedType]:
    return {u.task_type: u for u in client.run(serving.unserved_types(client.settings, queue))}


async def test_types_nobody_serves_are_reported_with_why(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    registry = Registry()

    @registry.task("t1", queue="a")
    async def t1(ctx: TaskContext, payload: Any) -> None: ...

    client.pause("a")  # the worker listens but takes nothing: the tasks stay pending
    for _ in range(3):
        client.enqueue("t2", None, queue="a")
    client.enqueue("t1", None, queue="a")
    client.enqueue("t3", None, queue="b")
    client.enqueue("t1", None, queue="b")
    assert set(unserved(client, "a")) == {"t1", "t2"}  # no worker at all yet
    async with running_worker(registry, redis_url, ["a"]) as worker:
        await wait_until(lambda: raw.hexists("rediq:types:workers", worker.id))
        on_a = unserved(client, "a")
        assert list(on_a) == ["t2"]  # t1 is served by the worker on a
        assert on_a["t2"].waiting == 3 and on_a["t2"].listeners == 1
        assert on_a["t2"].why == "none of the 1 worker(s) on a has a handler"
        on_b = unserved(client, "b")
        assert set(on_b) == {"t1", "t3"}
        assert on_b["t1"].why == "no live worker listens on b; declared for queue a; handlers on a"
        assert on_b["t3"].why == "no live worker listens on b" and on_b["t3"].declared_queue is None
        # a live worker that published no handlers may serve anything: not reported
        raw.hdel("rediq:types:workers", worker.id)
        assert unserved(client, "a") == {}
    assert client.run(serving.unserved_types(client.settings, "empty")) == []
    client.resume("a")
