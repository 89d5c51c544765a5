"""Issue 16: what a task type declares holds on every enqueue path (typed handle, a client with
the registry, a plain client with no registry), explicit arguments win, undeclared types warn
or are refused, and `rediq task types` lists declarations and who serves them."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from pydantic import BaseModel

from engine import AsyncClient, Client, Registry, TaskContext, admin, declarations, scheduler
from engine.cli import cli
from engine.cron import CronDef
from engine.errors import InvalidTask
from engine.ops import Settings
from engine.task import Task
from tests.engine.conftest import running_worker, wait_until

ROOT = Path(__file__).resolve().parents[2]


class Payment(BaseModel):
    order_id: str
    amount: int


def payment_registry() -> tuple[Registry, Any]:
    registry = Registry()

    @registry.task("order:payment", queue="payment", priority=0, max_retry=5, timeout=60, payload=Payment)
    async def charge(ctx: TaskContext, payment: Payment) -> dict[str, int]:
        return {"charged": payment.amount}

    return registry, charge


def publish(client: Client, registry: Registry, worker_id: str = "w-test") -> int:
    decls = list(registry.declarations().values())
    return client.run(declarations.publish(client.settings.keyspace, worker_id, decls))


def stored(raw: redis.Redis, queue: str, task_id: str) -> dict[str, str]:
    return raw.hgetall(f"rediq:{{{queue}}}:t:{task_id}")  # type: ignore[return-value]


def assert_declared(raw: redis.Redis, result: Any) -> None:
    assert result.queue == "payment"
    fields = stored(raw, "payment", result.id)
    assert (fields["priority"], fields["max_retry"], fields["timeout"]) == ("0", "5", "60000")


# ------------------------------------------------------------------ the three enqueue paths


async def test_plain_client_without_registry_enqueues_where_a_started_worker_declared(
    redis_url: str, raw: redis.Redis
) -> None:
    """The issue's first report: the README's handler, then a plain enqueue, landed in
    `default` with max_retry=3 and timeout=1800, where no worker of the app looks."""
    registry, _ = payment_registry()
    async with running_worker(registry, redis_url, ["payment"]):
        await wait_until(lambda: raw.hexists("rediq:types", "order:payment"))  # published at start
        client = AsyncClient(redis_url)  # no registry: only what the worker published
        result = await client.enqueue("order:payment", {"order_id": "o-1", "amount": 1999})
        assert_declared(raw, result)
        assert await result.wait_async(timeout=20) == {"charged": 1999}
        await client.close()


def test_explicit_arguments_win_over_the_declaration(client: Client, raw: redis.Redis) -> None:
    registry, _ = payment_registry()
    publish(client, registry)
    result = client.enqueue("order:payment", {"order_id": "o-1", "amount": 1}, queue="other", max_retry=1)
    fields = stored(raw, "other", result.id)
    assert result.queue == "other"
    assert (fields["max_retry"], fields["priority"], fields["timeout"]) == ("1", "0", "60000")


def test_client_with_registry_applies_declarations_with_no_worker_running(
    redis_url: str, raw: redis.Redis
) -> None:
    registry, _ = payment_registry()
    with Client(redis_url, registry=registry) as client:
        assert_declared(raw, client.enqueue("order:payment", {"order_id": "o-1", "amount": 1}))


def test_typed_handle_enqueues_with_the_declaration(redis_url: str, raw: redis.Redis) -> None:
    registry, charge = payment_registry()
    with Client(redis_url, registry=registry) as client:
        assert registry.client is client  # the registry's handles enqueue through it
        assert_declared(raw, charge.enqueue(Payment(order_id="o-1", amount=5)))
        later = charge.enqueue(Payment(order_id="o-2", amount=5), delay=60, priority=7)
        assert (later.state, stored(raw, "payment", later.id)["priority"]) == ("scheduled", "7")


async def test_typed_handle_enqueue_async(
    redis_url: str, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    registry, charge = payment_registry()
    async with AsyncClient(redis_url) as client:
        assert_declared(raw, await charge.enqueue_async(Payment(order_id="o-1", amount=5), client=client))
    # with no client given: one made for this registry and this event loop
    assert_declared(raw, await charge.enqueue_async(Payment(order_id="o-2", amount=5)))
    for _, made in registry.async_clients.values():
        await made.close()


def test_calling_the_handle_calls_the_handler() -> None:
    registry = Registry()

    @registry.task("sync:double")
    def double(ctx: Any, payload: int) -> int:
        return payload * 2

    assert double(None, 21) == 42
    assert registry.get("sync:double").handler(None, 4) == 8  # type: ignore[union-attr]


def test_unique_ttl_declared_makes_the_same_payload_a_duplicate(client: Client) -> None:
    registry = Registry()
    registry.task("report:build", queue="reports", unique_ttl=600)(lambda ctx, payload: None)
    publish(client, registry)
    first = client.enqueue("report:build", {"day": "2026-12-01"})
    again = client.enqueue("report:build", {"day": "2026-12-01"})
    other = client.enqueue("report:build", {"day": "2026-12-02"})
    assert (first.status, again.status, again.id, other.status) == ("new", "duplicate", first.id, "new")


def test_mypy_checks_the_payload_of_a_typed_handle(tmp_path: Path) -> None:
    snippet = tmp_path / "app_snippet.py"
    snippet.write_text(
        textwrap.dedent(
            """
            from pydantic import BaseModel
            from engine import Registry, TaskContext

            registry = Registry()

            class Payment(BaseModel):
                order_id: str
                amount: int

            @registry.task("order:payment", queue="payment", payload=Payment)
            async def charge(ctx: TaskContext, payment: Payment) -> dict[str, int]:
                return {"charged": payment.amount}

            charge.enqueue(Payment(order_id="o-1", amount=5))
            charge.enqueue(Payment(order_id=1, amount=5))
            charge.enqueue({"order_id": "o-1", "amount": 5})
            """
        )
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--follow-imports=silent",
            str(snippet),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = snippet.read_text().splitlines()
    bad_field = 1 + next(i for i, line in enumerate(lines) if "order_id=1" in line)
    bad_type = 1 + next(i for i, line in enumerate(lines) if "charge.enqueue({" in line)
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 2, proc.stdout + proc.stderr
    assert (
        f':{bad_field}: error: Argument "order_id" to "Payment" has incompatible type "int"; expected "str"'
        in errors[0]
    )
    assert f":{bad_type}: error:" in errors[1] and '"enqueue" of "TaskHandle"' in errors[1]


# ------------------------------------------------------------------ undeclared, strict, refresh


def test_undeclared_type_warns_once_naming_the_fix(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="rediq.client"):
        first = client.enqueue("nobody:declares-this", {"n": 1}, queue="somewhere")
        client.enqueue("nobody:declares-this", {"n": 2})
    warnings = [r.getMessage() for r in caplog.records if "nobody:declares-this" in r.getMessage()]
    assert first.queue == "somewhere"
    assert len(warnings) == 1
    assert "\n" not in warnings[0] and "@registry.task('nobody:declares-this', queue=...)" in warnings[0]


def test_strict_client_refuses_an_undeclared_type(redis_url: str, raw: redis.Redis) -> None:
    with Client(redis_url, strict=True) as client:
        with pytest.raises(
            InvalidTask, match=r"E006: task type 'nobody:strict' is declared nowhere.*@registry"
        ):
            client.enqueue("nobody:strict", {})
    assert raw.smembers("rediq:queues") == set()
    with Client(redis_url, settings=Settings(strict_types=True)) as client:
        with pytest.raises(InvalidTask):
            client.enqueue("nobody:strict", {})


def get_calls(raw: redis.Redis) -> int:
    """GET commands run so far, the enqueue script's own included."""
    return int(raw.info("commandstats").get("cmdstat_get", {}).get("calls", 0))


def test_client_caches_declarations_and_rereads_them_when_the_version_moves(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    registry, _ = payment_registry()
    publish(client, registry)
    client.enqueue("order:payment", {})  # loads the cache
    client.declarations.refresh_s = 3600.0  # no periodic check below, however slow the machine
    # baseline: a client with the registry never reads declarations from Redis
    with Client(redis_url, registry=registry) as local:
        before = get_calls(raw)
        for _ in range(20):
            local.enqueue("order:payment", {})
        per_20 = get_calls(raw) - before
    before = get_calls(raw)
    for _ in range(20):
        client.enqueue("order:payment", {})
    assert get_calls(raw) - before == per_20  # no version check until refresh_s has passed
    # a new version of the app moves the type; the client sees it at its next check
    moved = Registry()
    moved.task("order:payment", queue="payment-v2", max_retry=2)(lambda ctx, payload: None)
    version = raw.get("rediq:types:version")
    assert publish(client, moved, "w-v2") == 1
    moved_version = raw.get("rediq:types:version")
    assert publish(client, moved, "w-v2b") == 0  # same declarations: no change, no new version
    assert version != moved_version == raw.get("rediq:types:version")
    result = client.enqueue("order:payment", {})
    assert result.queue == "payment"  # cached until the next check
    client.declarations.refresh_s = 0.0
    result = client.enqueue("order:payment", {})
    assert (result.queue, stored(raw, "payment-v2", result.id)["max_retry"]) == ("payment-v2", "2")


def test_a_miss_rechecks_soon_so_a_just_started_worker_is_seen(client: Client) -> None:
    assert client.enqueue("order:payment", {}).queue == "default"  # nobody declared it yet
    registry, _ = payment_registry()
    publish(client, registry)
    client.declarations.miss_refresh_s = 0.0  # as if MISS_REFRESH_S had passed
    assert client.enqueue("order:payment", {}).queue == "payment"


def test_a_flushed_server_is_not_answered_from_a_stale_cache(client: Client, raw: redis.Redis) -> None:
    registry, _ = payment_registry()
    publish(client, registry)
    assert client.enqueue("order:payment", {}).queue == "payment"
    raw.flushall()
    moved = Registry()
    moved.task("order:payment", queue="payment-after-flush")(lambda ctx, payload: None)
    publish(client, moved)  # a counter would read 1 again here, as before the flush
    client.declarations.refresh_s = 0.0
    assert client.enqueue("order:payment", {}).queue == "payment-after-flush"


def test_malformed_published_declaration_counts_as_undeclared(client: Client, raw: redis.Redis) -> None:
    raw.hset(
        "rediq:types",
        mapping={
            "bad:json": "{not json",
            "bad:queue": json.dumps({"task_type": "bad:queue", "queue": "a b"}),
        },
    )
    raw.set("rediq:types:version", "hand-made")
    assert client.enqueue("bad:json", {}).queue == "default"
    assert client.enqueue("bad:queue", {}).queue == "default"


# ------------------------------------------------------------------ cron run-now, pause, CLI


def test_cron_run_now_lands_in_the_queue_its_type_declares(client: Client, raw: redis.Redis) -> None:
    """The console's run-now of an entry without its own queue went to `default`."""
    registry = Registry()
    registry.task("report:daily", queue="reports", priority=100)(lambda ctx, payload: None)
    publish(client, registry)
    client.run(scheduler.register(client.settings, CronDef("daily-report", "0 3 * * *", "report:daily")))
    task_id = client.run(admin.run_cron_now(client.settings, "daily-report"))
    info = client.get_task(task_id)
    assert info is not None and (info.queue, info.priority) == ("reports", 100)


def test_pause_of_a_queue_that_never_held_a_task(client: Client) -> None:
    assert client.pause("brand-new") is True
    assert client.pause("brand-new") is False
    assert client.enqueue("x:y", {}, queue="brand-new").state == "pending"
    assert client.resume("brand-new") is True


async def test_task_types_lists_declarations_and_the_workers_serving_them(
    redis_url: str, raw: redis.Redis
) -> None:
    registry, _ = payment_registry()
    registry.task("order:sms", queue="notifications")(lambda ctx, payload: None)
    async with running_worker(registry, redis_url, ["payment"]) as worker:
        await wait_until(lambda: bool(raw.hlen("rediq:types:workers")))  # the worker published
        result = CliRunner().invoke(cli, ["--redis-url", redis_url, "task", "types", "--json"])
        assert result.exit_code == 0, result.output
        types = {t["task_type"]: t for t in json.loads(result.stdout)}
        assert types["order:payment"]["queue"] == "payment"
        assert types["order:payment"]["served_by"] == [worker.id]
        # the worker has the handler but does not listen on `notifications`
        assert types["order:sms"]["served_by"] == []
        assert types["order:sms"]["handlers_elsewhere"] == [worker.id]
        table = CliRunner().invoke(cli, ["--redis-url", redis_url, "task", "types"])
        assert "order:sms" in table.output and "NONE, 1 not on its" in table.output
        assert "0 runs first" in table.output


async def test_a_worker_that_may_not_publish_declarations_still_runs_tasks(
    redis_url: str, raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """A deployment whose worker ACL predates declarations: the worker warns and works."""
    raw.execute_command(
        "ACL",
        "SETUSER",
        "oldworker",
        "on",
        ">pw",
        "resetkeys",
        "~rediq:{*",
        "~rediq:queues",
        "~rediq:workers",
        "~rediq:worker:*",
        "%R~rediq:types*",
        "&*",
        "+@all",
    )
    try:
        registry, _ = payment_registry()
        url = redis_url.replace("redis://", "redis://oldworker:pw@")
        with caplog.at_level(logging.WARNING, logger="rediq.worker"):
            async with (
                running_worker(registry, url, ["payment"]),
                AsyncClient(redis_url, registry=registry) as c,
            ):
                result = await c.enqueue("order:payment", {"order_id": "o-1", "amount": 3})
                assert await result.wait_async(timeout=20) == {"charged": 3}
        assert not raw.exists("rediq:types")
        assert any("task declarations not published (E010" in r.getMessage() for r in caplog.records)
    finally:
        raw.execute_command("ACL", "DELUSER", "oldworker")


# ------------------------------------------------------------------ before-enqueue hooks


def test_before_enqueue_hooks_add_headers_and_can_refuse(redis_url: str, raw: redis.Redis) -> None:
    registry, charge = payment_registry()
    seen: list[str] = []

    @registry.before_enqueue
    def trace(task: Task) -> Task:
        seen.append(task.queue)  # runs after the declaration: the declared queue
        return task.model_copy(update={"metadata": {**task.metadata, "traceparent": "00-abc-01"}})

    def refuse_big(task: Task) -> None:
        if isinstance(task.payload, dict) and task.payload.get("amount", 0) > 10_000:
            raise InvalidTask("amount above 10,000 needs approval")

    with Client(redis_url, registry=registry, before_enqueue=[refuse_big]) as client:
        result = charge.enqueue(Payment(order_id="o-1", amount=5))
        assert json.loads(stored(raw, "payment", result.id)["meta"]) == {"traceparent": "00-abc-01"}
        with pytest.raises(InvalidTask, match="E006: amount above 10,000 needs approval"):
            client.enqueue("order:payment", {"order_id": "o-2", "amount": 50_000})
        with pytest.raises(InvalidTask, match="returned int, not a Task or None"):
            Client(redis_url, before_enqueue=[lambda task: 1]).enqueue("x:y", {})  # type: ignore[list-item,return-value]
    assert seen == ["payment", "payment"]
    assert raw.zcard("rediq:{payment}:pending") == 1  # the refused one was never written


def test_task_forget_drops_a_stale_declaration(client: Client, redis_url: str) -> None:
    registry, _ = payment_registry()
    publish(client, registry)
    assert client.enqueue("order:payment", {}).queue == "payment"
    result = CliRunner().invoke(cli, ["--redis-url", redis_url, "task", "forget", "order:payment", "--json"])
    assert (result.exit_code, json.loads(result.stdout)) == (0, {"forgotten": 1})
    client.declarations.refresh_s = 0.0
    assert client.enqueue("order:payment", {}).queue == "default"
