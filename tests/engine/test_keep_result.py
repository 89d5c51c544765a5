"""``keep_result`` against a real server: per type (``@registry.task(..., keep_result=)``) and
per task (``Task(keep_result=)``), on every enqueue path (a typed handle, a client with the
registry, a plain client reading published declarations); the completed task's hash and
history expire after it, 0 stores no result, unset keeps the retention, a task others depend
on is kept at least the retention, and a bad value is refused in one line."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from engine import Client, Registry, TaskContext, declarations
from engine.errors import InvalidTask
from engine.ops import Settings
from engine.task import TaskState
from tests.engine.conftest import running_worker, wait_until

RETENTION_MS = int(Settings().retention_s * 1000)


def keep_registry() -> tuple[Registry, Any]:
    registry = Registry()

    @registry.task("keep:short", queue="keep", keep_result=60)
    async def short(ctx: TaskContext, payload: Any) -> dict[str, Any]:
        return {"echo": payload}

    @registry.task("keep:none", queue="keep", keep_result=0)
    async def discard(ctx: TaskContext, payload: Any) -> dict[str, Any]:
        return {"echo": payload}

    @registry.task("keep:default", queue="keep")
    async def default(ctx: TaskContext, payload: Any) -> dict[str, Any]:
        return {"echo": payload}

    return registry, short


def ttls(raw: redis.Redis, task_id: str) -> tuple[int, int]:
    return raw.pttl(f"rediq:{{keep}}:t:{task_id}"), raw.pttl(f"rediq:{{keep}}:h:{task_id}")


def completed(client: Client, task_id: str) -> bool:
    info = client.get_task(task_id)
    return info is not None and info.state == TaskState.COMPLETED


async def run_all(registry: Registry, redis_url: str, client: Client, ids: list[str]) -> None:
    async with running_worker(registry, redis_url, ["keep"]):
        await wait_until(lambda: all(completed(client, i) for i in ids))


async def test_keep_result_per_type_and_per_task_sets_the_completed_tasks_lifetime(
    redis_url: str, raw: redis.Redis
) -> None:
    registry, short = keep_registry()
    with Client(redis_url, registry=registry) as client:
        typed = short.enqueue({"n": 1}, client=client)
        by_type = client.enqueue("keep:short", {"n": 2})
        explicit = client.enqueue("keep:short", {"n": 3}, keep_result=5)  # explicit wins
        discarded = client.enqueue("keep:none", {"n": 4})
        kept_default = client.enqueue("keep:default", {"n": 5})
        per_task_zero = client.enqueue("keep:default", {"n": 6}, keep_result=0)
        ids = [r.id for r in (typed, by_type, explicit, discarded, kept_default, per_task_zero)]
        await run_all(registry, redis_url, client, ids)
        for task_id in (typed.id, by_type.id):
            task_ttl, history_ttl = ttls(raw, task_id)
            # no history list: every entry of a task that ran once and completed is implied
            assert 50_000 < task_ttl <= 60_000 and history_ttl == -2
        assert 0 < ttls(raw, explicit.id)[0] <= 5_000
        info = client.get_task(explicit.id)
        assert info is not None and info.result == {"echo": {"n": 3}}
        # 0: no result stored, the task itself stays visible for the retention
        for task_id in (discarded.id, per_task_zero.id):
            info = client.get_task(task_id)
            assert info is not None and info.state == TaskState.COMPLETED and info.result is None
            assert ttls(raw, task_id)[0] > RETENTION_MS - 60_000
        info = client.get_task(kept_default.id)
        assert info is not None and info.result == {"echo": {"n": 5}}
        assert ttls(raw, kept_default.id)[0] > RETENTION_MS - 60_000
        # unset: nothing extra stored with the task (the hot path reads one more HMGET field only)
        assert raw.hget(f"rediq:{{keep}}:t:{kept_default.id}", "keep") is None


async def test_a_plain_client_applies_a_published_keep_result(redis_url: str, raw: redis.Redis) -> None:
    registry, _ = keep_registry()
    with Client(redis_url) as client:  # no registry: what a worker published
        client.run(
            declarations.publish(client.settings.keyspace, "w-keep", list(registry.declarations().values()))
        )
        plain = client.enqueue("keep:short", {"n": 1})
        assert raw.hget(f"rediq:{{keep}}:t:{plain.id}", "keep") == "60000"
        await run_all(registry, redis_url, client, [plain.id])
        assert 50_000 < ttls(raw, plain.id)[0] <= 60_000


async def test_a_task_others_depend_on_is_kept_at_least_the_retention(
    redis_url: str, raw: redis.Redis
) -> None:
    registry, _ = keep_registry()
    with Client(redis_url, registry=registry) as client:
        parent = client.enqueue("keep:default", {"n": 1}, keep_result=1)
        child = client.enqueue("keep:default", {"n": 2}, depends_on=[parent])
        await run_all(registry, redis_url, client, [parent.id, child.id])
        assert ttls(raw, parent.id)[0] > RETENTION_MS - 60_000


def test_a_bad_keep_result_is_refused_in_one_line(client: Client) -> None:
    with pytest.raises(InvalidTask, match="keep_result must be 0..") as caught:
        client.enqueue("keep:short", None, queue="keep", keep_result=-1)
    assert "\n" not in str(caught.value)
    with pytest.raises(InvalidTask, match="keep_result"):
        Registry().task("keep:nan", keep_result=float("nan"))
