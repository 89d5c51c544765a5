"""A queue's rate limit on real Valkey with real workers: it holds across workers (checked on
the start times Redis stamped), a worker sleeps till the next token instead of polling while
its other queues keep flowing, a handler's RateLimited pauses the queue for everyone without
burning a retry, the app's declared limit is written at start unless an operator set one, and
the CLI sets, shows and clears it (audited; a bad limit is one line and writes nothing; so is a
limit on a batched queue, whose dequeue would not apply it)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import redis

from engine import RateLimited, admin, batching, flow
from engine.client import Client
from engine.errors import InvalidBatch
from engine.explain import Reason, why
from engine.flow import LimitSource
from engine.metrics import LabelPolicy, WorkerMetrics, WorkerStateCollector
from engine.registry import Registry
from tests.engine import flow_apps
from tests.engine.conftest import running_worker, wait_until
from tests.engine.test_cli import invoke, invoke_json, run_cli

KEY = "rediq:{%s}:ratelimit"


def started_ms(client: Client, ids: list[str]) -> list[int]:
    out = []
    for task_id in ids:
        info = client.get_task(task_id)
        assert info is not None and info.state == "completed", info
        assert info.started_at_ms is not None
        out.append(info.started_at_ms)
    return sorted(out)


def fcalls(raw: redis.Redis) -> int:
    stats: dict[str, Any] = raw.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_fcall", "cmdstat_evalsha"))


async def test_a_limit_holds_across_two_workers_who_sleep_between_tokens(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    registry = Registry()

    @registry.task("tick", queue="rl")
    async def tick(ctx: Any, payload: Any) -> None:
        return None

    raw.hset(KEY % "rl", mapping={"rate": 20, "period": 1000, "burst": 3, "src": "operator"})
    ids = [client.enqueue("tick", i, queue="rl").id for i in range(30)]
    calls_before = fcalls(raw)
    async with (
        running_worker(registry, redis_url, ["rl"], concurrency=8, handoff=False) as one,
        running_worker(registry, redis_url, ["rl"], concurrency=8, handoff=False) as two,
    ):
        await wait_until(lambda: raw.zcard("rediq:{rl}:completed") == 30, timeout=30)
        # /metrics: the time each slept on the limit, by queue
        metrics = WorkerMetrics(
            LabelPolicy(["tick"], ["rl"]),
            lambda: [],
            worker_state=WorkerStateCollector(lambda: 0, dict, lambda: one.throttled_s),
        )
        text = metrics.exposition().decode()
        assert one.throttled_s["rl"] > 0 and two.throttled_s["rl"] > 0
        assert f'rediq_worker_throttled_seconds_total{{queue="rl"}} {one.throttled_s["rl"]}' in text
    starts = started_ms(client, ids)
    interval, burst = 50, 3
    # GCRA: any k consecutive starts span at least (k - burst) intervals (1 ms: the clock's grain)
    for i in range(len(starts)):
        for j in range(i + burst, len(starts)):
            assert starts[j] - starts[i] >= (j - i + 1 - burst) * interval - 1, (i, j, starts)
    # sleeping till the token: a few script calls per task (dequeue, ack, heartbeats), where
    # polling a limited queue for 1.35 s would take thousands
    assert fcalls(raw) - calls_before < 8 * 30


async def test_other_queues_keep_flowing_while_a_limited_one_waits(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    registry = Registry()

    @registry.task("slow", queue="limited")
    async def slow(ctx: Any, payload: Any) -> None:
        return None

    @registry.task("free", queue="open")
    async def free(ctx: Any, payload: Any) -> None:
        return None

    raw.hset(KEY % "limited", mapping={"rate": 1, "period": 60_000, "burst": 1})
    for i in range(3):
        client.enqueue("slow", i, queue="limited")
    async with running_worker(registry, redis_url, ["limited", "open"], concurrency=4):
        await wait_until(lambda: raw.zcard("rediq:{limited}:completed") == 1)
        for i in range(20):
            client.enqueue("free", i, queue="open")
        await wait_until(lambda: raw.zcard("rediq:{open}:completed") == 20)
        assert raw.zcard("rediq:{limited}:pending") == 2  # the next token is a minute away


async def test_rate_limited_pauses_the_queue_for_everyone_without_burning_a_retry(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    registry = Registry()
    calls: list[str] = []

    @registry.task("call", queue="remote", max_retry=0)
    async def call(ctx: Any, payload: Any) -> str:
        calls.append(ctx.id)
        if len(calls) == 1:
            raise RateLimited("429 from the gateway", retry_after=0.6)
        return "ok"

    first = client.enqueue("call", 1, queue="remote").id
    async with running_worker(registry, redis_url, ["remote"], concurrency=2):
        # the pause is in place before the second arrives (enqueued while the first still runs,
        # it could be handed to the worker's free slot before the pause: a race, not a finding)
        await wait_until(lambda: raw.hexists(KEY % "remote", "until"))
        second = client.enqueue("call", 2, queue="remote").id
        await wait_until(lambda: raw.zcard("rediq:{remote}:completed") == 2)
    info = client.get_task(first)
    assert info is not None and info.attempts == 1 and info.result == "ok"  # no retry spent (max 0)
    history = [json.loads(h) for h in raw.lrange(f"rediq:{{remote}}:h:{first}", 0, -1)][::-1]
    (back,) = [h for h in history if h[1] == "pending" and "429" in h[2]]
    # nobody took a task from the queue during the pause: neither the first again nor the second
    assert client.get_task(first).started_at_ms >= back[0] + 600  # type: ignore[union-attr]
    assert client.get_task(second).started_at_ms >= back[0] + 600  # type: ignore[union-attr]
    assert calls[0] == first and sorted(calls[1:]) == sorted([first, second])


async def test_the_apps_limit_is_written_at_start_unless_an_operator_set_one(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    registry = Registry()
    registry.rate_limit("declared", "5/s", burst=2)
    registry.rate_limit("overridden", "5/s")

    @registry.task("noop", queue="declared")
    async def noop(ctx: Any, payload: Any) -> None:
        return None

    raw.hset(KEY % "overridden", mapping={"rate": 1, "period": 1000, "burst": 1, "src": "operator"})
    async with running_worker(registry, redis_url, ["declared"]):
        await wait_until(lambda: raw.exists(KEY % "declared") == 1)
    assert raw.hgetall(KEY % "declared") == {"rate": "5", "period": "1000", "burst": "2", "src": "code"}
    assert raw.hgetall(KEY % "overridden") == {"rate": "1", "period": "1000", "burst": "1", "src": "operator"}


def test_the_cli_sets_shows_and_clears_a_limit_audited(
    redis_url: str, raw: redis.Redis, tmp_path: Path
) -> None:
    shown = invoke_json(redis_url, "queue", "limit", "payment", "50/s", "--burst", "5")
    assert shown["limit"] == {"rate": 50, "period_ms": 1000, "burst": 5, "text": "50/s burst 5"}
    assert shown["source"] == LimitSource.OPERATOR.value and shown["tokens"] == 5
    assert (
        "rate limit 50/s burst 5 (set by operator): 5 token(s) now"
        in invoke(redis_url, "queue", "limit", "payment").stdout
    )
    raw.hset(KEY % "payment", "tat", "1e15")  # spent far ahead
    assert "next token in" in invoke(redis_url, "queue", "limit", "payment").stdout
    for bad in (["0/s"], ["--", "-3/s"], ["fast"], ["5/s", "--burst", "0"], ["5/s", "--burst", "-1"]):
        result = run_cli("--redis-url", redis_url, "queue", "limit", "payment", *bad, cwd=tmp_path)
        assert result.returncode == 2 and result.stderr.startswith("E017: "), (bad, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    assert raw.hget(KEY % "payment", "rate") == "50"  # nothing written by the refused ones
    assert invoke_json(redis_url, "queue", "limit", "payment", "--clear")["changed"] is True
    assert raw.exists(KEY % "payment") == 0
    entries = invoke_json(redis_url, "audit", "--limit", "5")
    assert [(e["action"], e["detail"]) for e in entries[:2]] == [
        ("rate-limit", "cleared"),
        ("rate-limit", "50/s burst 5"),
    ]


def test_a_limit_on_a_batched_queue_is_refused_and_nothing_written(
    redis_url: str, client: Client, raw: redis.Redis, tmp_path: Path
) -> None:
    """A batched queue's dequeue hands out whole batches and applies no rate or group limit: an
    operator's limit there was written, shown and audited, and never held (as many leases as
    the batches held, whatever the bucket said). Refused now, as the registry refuses one."""
    client.run(batching.declare_batches(client.settings, {("bulk", "load"): batching.Batch(10, 1.0)}))
    result = run_cli("--redis-url", redis_url, "queue", "limit", "bulk", "5/s", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("E018: "), result.stderr
    assert "batch type 'load'" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(InvalidBatch):
        client.call(admin.set_rate_limit, "bulk", flow.parse_limit("5/s"), "load")
    with pytest.raises(InvalidBatch):
        client.call(admin.set_group_limit, "bulk", "*", 1)
    qk = client.settings.keyspace.queue("bulk")
    assert raw.exists(qk.rate_limit, qk.type_limits, qk.cgroup_limits) == 0
    assert invoke_json(redis_url, "audit", "--limit", "5") == []


def test_why_names_the_limit_and_the_next_token(client: Client, raw: redis.Redis) -> None:
    task_id = client.enqueue("tick", 1, queue="payment").id
    raw.hset(KEY % "payment", mapping={"rate": 50, "period": 1000, "burst": 1, "tat": "1e15"})
    causes = {c.reason: c.text for c in client.call(why, task_id).causes}
    assert causes[Reason.RATE_LIMITED].startswith("rate limit payment 50/s: next token in ")


async def test_a_group_limit_holds_across_two_workers_and_other_groups_flow(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    registry = Registry()
    registry.group_limit("exports", 2)
    running: dict[str, int] = {}
    most: dict[str, int] = {}

    @registry.task("export", queue="exports")
    async def export(ctx: Any, payload: Any) -> None:
        group = str(payload)
        running[group] = running.get(group, 0) + 1
        most[group] = max(most.get(group, 0), running[group])
        await asyncio.sleep(0.05)
        running[group] -= 1

    for _ in range(12):
        client.enqueue("export", "c42", queue="exports", group="c42")
    for _ in range(3):
        client.enqueue("export", "c7", queue="exports", group="c7")
    async with (
        running_worker(registry, redis_url, ["exports"], concurrency=6),
        running_worker(registry, redis_url, ["exports"], concurrency=6),
    ):
        await wait_until(lambda: raw.zcard("rediq:{exports}:completed") == 15, timeout=30)
    assert most == {"c42": 2, "c7": 2}  # never more than 2 of one group at once, fleet-wide
    assert raw.hgetall("rediq:{exports}:cglimits") == {"*": "2"}  # declared, written at start
    assert raw.exists("rediq:{exports}:cg:c42") == 0  # every slot given back


def test_why_names_a_full_group(client: Client, raw: redis.Redis) -> None:
    task_id = client.enqueue("export", 1, queue="exports", group="customer:42").id
    raw.hset("rediq:{exports}:cglimits", "*", 2)
    raw.zadd("rediq:{exports}:cg:customer:42", {"x": 1e15, "y": 1e15})
    causes = {c.reason: c.text for c in client.call(why, task_id).causes}
    assert causes[Reason.GROUP_FULL] == "group customer:42 at 2/2"


def test_the_busiest_groups_are_read_bounded_and_exported(client: Client, raw: redis.Redis) -> None:
    for group, n in (("c42", 5), ("c7", 2)):
        for _ in range(n):
            client.enqueue("export", 1, queue="exports", group=group)
    client.enqueue("export", 1, queue="exports")  # no group: not a row
    raw.hset("rediq:{exports}:cglimits", mapping={"*": 2, "c7": 1})
    raw.zadd("rediq:{exports}:cg:c42", {"x": 1e15, "gone": 1})  # one live lease, one lapsed
    rows = client.call(flow.group_backlogs, ["exports", "empty"])
    assert rows == [
        flow.GroupBacklog("exports", "c42", 5, 1, 2),
        flow.GroupBacklog("exports", "c7", 2, 0, 1),
    ]
    assert client.call(flow.group_backlogs, ["exports"], top=1) == rows[:1]
    metrics = WorkerMetrics(
        LabelPolicy(["export"], ["exports"]),
        lambda: [],
        read_groups=lambda: client.call(flow.group_backlogs, ["exports"]),
    )
    text = metrics.exposition().decode()
    assert 'rediq_group_pending{group="c42",queue="exports"} 5.0' in text
    assert 'rediq_group_running{group="c42",queue="exports"} 1.0' in text


async def test_a_task_types_own_limit_holds_it_back_while_the_queues_other_types_flow(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    registry = Registry()
    registry.rate_limit("mixed", "1/m", task_type="charge")

    @registry.task("charge", queue="mixed")
    async def charge(ctx: Any, payload: Any) -> None:
        return None

    @registry.task("notify", queue="mixed")
    async def notify(ctx: Any, payload: Any) -> None:
        return None

    for i in range(3):
        client.enqueue("charge", i, queue="mixed")
    for i in range(10):
        client.enqueue("notify", i, queue="mixed")
    async with running_worker(registry, redis_url, ["mixed"], concurrency=4):
        await wait_until(lambda: raw.zcard("rediq:{mixed}:completed") == 11)
        assert raw.zcard("rediq:{mixed}:pending") == 2  # two charges wait a minute for a token
        pending = [str(i) for i in raw.zrange("rediq:{mixed}:pending", 0, -1)]
        assert {t.type for i in pending if (t := client.get_task(i)) is not None} == {"charge"}
    assert raw.hget("rediq:{mixed}:rl:charge", "src") == "code"
    causes = [c.text for c in client.call(why, pending[0]).causes]
    assert any(t.startswith("rate limit charge 1/m: next token in ") for t in causes)


async def test_rate_limited_pauses_only_its_task_types_bucket_when_the_type_has_a_limit(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    registry = Registry()
    registry.rate_limit("mixed", "1000/s", task_type="charge")  # never binds: only the pause holds
    calls: list[str] = []

    @registry.task("charge", queue="mixed", max_retry=0)
    async def charge(ctx: Any, payload: Any) -> str:
        calls.append(ctx.id)
        if len(calls) == 1:
            raise RateLimited("429 from the gateway", retry_after=60)
        return "ok"

    @registry.task("notify", queue="mixed")
    async def notify(ctx: Any, payload: Any) -> None:
        return None

    first = client.enqueue("charge", 1, queue="mixed").id
    async with running_worker(registry, redis_url, ["mixed"], concurrency=2):
        await wait_until(lambda: len(calls) == 1 and raw.zcard("rediq:{mixed}:pending") == 1)
        for i in range(10):
            client.enqueue("notify", i, queue="mixed")
        # the queue's other type flows during the charge's pause; the charge waits its minute
        await wait_until(lambda: raw.zcard("rediq:{mixed}:completed") == 10)
        assert [str(i) for i in raw.zrange("rediq:{mixed}:pending", 0, -1)] == [first]
    assert float(raw.hget("rediq:{mixed}:rl:charge", "until") or 0) > 0
    assert raw.hget("rediq:{mixed}:ratelimit", "until") is None
    causes = [c.text for c in client.call(why, first).causes]
    assert any(t.startswith("rate limit charge") for t in causes), causes


def test_the_cli_sets_a_task_types_own_limit(redis_url: str, raw: redis.Redis) -> None:
    shown = invoke_json(redis_url, "queue", "limit", "payment", "5/s", "--type", "payment:charge")
    assert shown["type"] == "payment:charge" and shown["limit"]["text"] == "5/s"
    assert raw.hgetall("rediq:{payment}:typelimits") == {"payment:charge": "1"}
    assert raw.exists(KEY % "payment") == 0  # the queue itself stays unlimited
    invoke(redis_url, "queue", "limit", "payment", "--type", "payment:charge", "--clear")
    assert raw.exists("rediq:{payment}:typelimits", "rediq:{payment}:rl:payment:charge") == 0
    details = [e["detail"] for e in invoke_json(redis_url, "audit", "--limit", "2")]
    assert details == ["cleared for type payment:charge", "5/s for type payment:charge"]


async def test_rate_limited_from_a_process_pool_child_goes_back_uncharged(
    redis_url: str, client: Client, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIQ_TEST_URL", redis_url)
    task_id = client.enqueue("limited_once", 1, queue="flowpool").id
    async with running_worker(flow_apps.flow, redis_url, ["flowpool"], concurrency=1, pool="process"):
        await wait_until(lambda: raw.zcard("rediq:{flowpool}:completed") == 1, timeout=30)
    info = client.get_task(task_id)
    assert info is not None and info.attempts == 1 and info.result == "ok"  # max_retry 0: no retry burnt
    assert raw.get(f"test:calls:{task_id}") == "2"
    assert raw.hget(KEY % "flowpool", "until") is not None  # the queue was paused
