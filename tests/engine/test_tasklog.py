"""``ctx.log`` with a real worker and server: lines are stored per task, bounded (the last 100,
each cut to 1 KiB), kept as long as the task (its TTL once it finished) and deleted with it,
written from async and sync (threaded) handlers, and shown by ``rediq task logs``."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from engine import Client, Fixed, Registry, TaskContext, ops, tasklog
from engine.errors import InvalidTask
from engine.task import TaskState
from tests.engine.conftest import running_worker, wait_until

Q = "logq"


def log_key(task_id: str) -> str:
    return f"rediq:{{{Q}}}:log:{task_id}"


def done(client: Client, task_id: str, state: TaskState = TaskState.COMPLETED) -> bool:
    info = client.get_task(task_id)
    return info is not None and info.state == state


def lines_of(client: Client, task_id: str) -> list[tasklog.LogLine]:
    return client.run(tasklog.read(client.settings, task_id))


def logging_registry() -> Registry:
    registry = Registry()

    @registry.task("log:async", queue=Q)
    async def log_async(ctx: TaskContext, payload: Any) -> str:
        ctx.log("charging card")
        ctx.log("gateway slow", level="warning")
        ctx.log("x" * 5000, level="debug")
        ctx.log("evil \x1b[31mred\x1b[0m \u202eabc")
        return "ok"

    @registry.task("log:sync", queue=Q)
    def log_sync(ctx: TaskContext, payload: Any) -> str:
        for i in range(payload["n"]):
            ctx.log(f"line {i}")
        return "ok"

    @registry.task("log:flaky", queue=Q, max_retry=1, retry=Fixed(seconds=0.01, jitter=0))
    async def log_flaky(ctx: TaskContext, payload: Any) -> str:
        ctx.log(f"attempt {ctx.attempt} starts")
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return "ok"

    @registry.task("log:badlevel", queue=Q, max_retry=0)
    async def log_badlevel(ctx: TaskContext, payload: Any) -> str:
        ctx.log("hello", level="loud")
        return "unreachable"

    return registry


async def test_lines_are_stored_in_order_cut_and_expire_with_the_task(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    async with running_worker(logging_registry(), redis_url, [Q]):
        r = client.enqueue("log:async", None, queue=Q)
        await wait_until(lambda: done(client, r.id) and len(lines_of(client, r.id)) == 4)
    lines = lines_of(client, r.id)
    assert [x.level for x in lines] == ["info", "warning", "debug", "info"]
    assert lines[0].message == "charging card" and lines[0].attempt == 1
    long = lines[2].message
    assert len(long.encode()) <= tasklog.MAX_LINE_BYTES and long.endswith("…")
    assert lines[3].message == "evil \x1b[31mred\x1b[0m \u202eabc"  # stored as written, shown escaped
    task_ttl = raw.pttl(f"rediq:{{{Q}}}:t:{r.id}")
    log_ttl = raw.pttl(log_key(r.id))
    assert task_ttl > 0 and log_ttl > 0 and abs(task_ttl - log_ttl) < 5_000


async def test_a_log_written_before_its_task_completes_expires_with_the_task(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    registry = Registry()

    @registry.task("log:wait", queue=Q)
    async def log_wait(ctx: TaskContext, payload: Any) -> str:
        ctx.log("first")
        await wait_until(lambda: raw.exists(log_key(ctx.id)) == 1)  # flushed before the ack
        return "ok"

    async with running_worker(registry, redis_url, [Q]):
        r = client.enqueue("log:wait", None, queue=Q)
        await wait_until(lambda: done(client, r.id))
    assert raw.hget(f"rediq:{{{Q}}}:t:{r.id}", "log") == "1"  # ack.lua expires the log too
    task_ttl, log_ttl = raw.pttl(f"rediq:{{{Q}}}:t:{r.id}"), raw.pttl(log_key(r.id))
    assert task_ttl > 0 and log_ttl > 0 and abs(task_ttl - log_ttl) < 5_000


async def test_a_sync_handler_logs_from_its_thread_and_only_the_last_100_are_kept(
    redis_url: str, client: Client
) -> None:
    async with running_worker(logging_registry(), redis_url, [Q]):
        r = client.enqueue("log:sync", {"n": 150}, queue=Q)
        await wait_until(lambda: done(client, r.id) and lines_of(client, r.id)[-1:] != [])
        await wait_until(lambda: lines_of(client, r.id)[-1].message == "line 149")
    messages = [x.message for x in lines_of(client, r.id)]
    assert len(messages) == tasklog.MAX_LINES == 100
    assert messages[0] == "line 50" and messages[-1] == "line 149"


async def test_lines_of_every_attempt_are_kept_with_their_attempt(redis_url: str, client: Client) -> None:
    async with running_worker(logging_registry(), redis_url, [Q]):
        r = client.enqueue("log:flaky", None, queue=Q)
        await wait_until(lambda: done(client, r.id) and len(lines_of(client, r.id)) == 2)
    assert [(x.attempt, x.message) for x in lines_of(client, r.id)] == [
        (1, "attempt 1 starts"),
        (2, "attempt 2 starts"),
    ]


async def test_a_bad_level_fails_the_attempt_with_a_one_line_error(redis_url: str, client: Client) -> None:
    async with running_worker(logging_registry(), redis_url, [Q]):
        r = client.enqueue("log:badlevel", None, queue=Q)
        await wait_until(lambda: done(client, r.id, TaskState.DEAD))
    info = client.get_task(r.id)
    assert info is not None and info.last_error is not None
    assert "ctx.log level 'loud' is not one of" in info.last_error
    with pytest.raises(InvalidTask, match="'debug', 'info', 'warning', 'error'"):
        tasklog.level_of("loud")


async def test_a_handler_in_a_child_process_logs_through_its_worker(redis_url: str, client: Client) -> None:
    from tests.engine import pool_apps

    async with running_worker(pool_apps.pool, redis_url, ["pool"], concurrency=1, pool="process"):
        r = client.enqueue("logs", None, queue="pool")
        await wait_until(lambda: done(client, r.id), timeout=60)
        await wait_until(lambda: len(client.run(tasklog.read(client.settings, r.id, "pool"))) == 2)
    info = client.get_task(r.id)
    assert info is not None and isinstance(info.result, int)
    lines = client.run(tasklog.read(client.settings, r.id, "pool"))
    assert [(x.level, x.message) for x in lines] == [
        ("warning", "from the child"),
        ("info", f"pid {info.result}"),
    ]


def test_the_log_is_deleted_with_its_task_and_lines_for_a_gone_task_are_dropped(
    client: Client, raw: redis.Redis
) -> None:
    r = client.enqueue("log:async", None, queue=Q)
    line = tasklog.LogLine(1, tasklog.LogLevel.INFO, 1, "hello")
    assert client.backend.execute(tasklog.append_call(client.settings, Q, r.id, [line])) == 1
    assert raw.ttl(log_key(r.id)) == -1  # a live task's log has no TTL
    assert client.run(ops.delete(client.settings, Q, [r.id])) == [r.id]
    assert not raw.exists(log_key(r.id))
    # buffered lines flushed after their task went: dropped, nothing left behind
    assert client.backend.execute(tasklog.append_call(client.settings, Q, r.id, [line])) == 0
    assert not raw.exists(log_key(r.id))


def test_cli_task_logs_prints_the_lines_escaped_and_as_json(redis_url: str, client: Client) -> None:
    from engine.cli import cli

    r = client.enqueue("log:async", None, queue=Q)
    lines = [
        tasklog.LogLine(1_700_000_000_000, tasklog.LogLevel.WARNING, 1, "gateway slow"),
        tasklog.LogLine(1_700_000_000_500, tasklog.LogLevel.INFO, 1, "evil \x1b[31m"),
    ]
    client.backend.execute(tasklog.append_call(client.settings, Q, r.id, lines))
    result = CliRunner().invoke(cli, ["--redis-url", redis_url, "task", "logs", r.id], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.output.splitlines()
    assert "warning" in out[0] and "attempt 1" in out[0] and out[0].endswith("gateway slow")
    assert "\x1b" not in result.output and "␛[31m" in out[1]
    as_json = CliRunner().invoke(cli, ["--redis-url", redis_url, "task", "logs", r.id, "--json"])
    assert [x["message"] for x in json.loads(as_json.output)] == ["gateway slow", "evil \x1b[31m"]
    empty = client.enqueue("log:async", None, queue=Q)
    result = CliRunner().invoke(cli, ["--redis-url", redis_url, "task", "logs", empty.id])
    assert "has no log lines" in result.output
