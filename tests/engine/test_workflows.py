"""Dependencies, cron, progress, middleware, events, results and cancellation."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import redis

from engine import events, inspect, ops, scheduler
from engine.backend import AsyncBackend
from engine.client import Client
from engine.cron import CronDef
from engine.errors import InvalidTask
from engine.ops import Settings
from engine.registry import Registry
from engine.task import TaskState
from engine.worker import TaskContext, protocol
from tests.engine.conftest import running_worker, wait_until


def state_of(client: Client, task_id: str) -> TaskState | None:
    info = client.get_task(task_id)
    return None if info is None else info.state


# ------------------------------------------------------------------------- dependencies


async def test_order_flow_inventory_payment_then_sms_and_shipping(redis_url: str) -> None:
    registry = Registry()
    ran: list[str] = []

    for task_type, queue in [
        ("order:inventory", "inventory"),
        ("order:payment", "payment"),
        ("order:sms", "notifications"),
        ("order:shipping", "shipping"),
    ]:

        async def handler(ctx: TaskContext, payload: Any, _t: str = task_type) -> str:
            ran.append(_t)
            return _t

        registry.task(task_type, queue=queue)(handler)

    client = Client(redis_url)
    inventory = client.enqueue("order:inventory", {"order": 1}, queue="inventory", priority=0)
    payment = client.enqueue(
        "order:payment", {"order": 1}, queue="payment", priority=0, depends_on=[inventory]
    )
    sms = client.enqueue(
        "order:sms", {"order": 1}, queue="notifications", priority=50, depends_on=[payment.id]
    )
    shipping = client.enqueue(
        "order:shipping", {"order": 1}, queue="shipping", priority=30, depends_on=[payment]
    )
    assert (payment.state, sms.state, shipping.state) == ("waiting", "waiting", "waiting")
    info = client.get_task(payment.id)
    assert info is not None and info.waiting_on == (f"inventory|{inventory.id}",)
    inv_info = client.get_task(inventory.id)
    assert inv_info is not None and inv_info.dependents == (f"payment|{payment.id}",)
    queues = ["inventory", "payment", "notifications", "shipping"]
    async with running_worker(registry, redis_url, queues, poll_interval_s=0.05):
        await wait_until(lambda: all(state_of(client, t.id) == TaskState.COMPLETED for t in (sms, shipping)))
    assert ran[:2] == ["order:inventory", "order:payment"]
    assert sorted(ran[2:]) == ["order:shipping", "order:sms"]


def test_unknown_dependency_is_refused_before_anything_is_written(client: Client) -> None:
    with pytest.raises(InvalidTask, match="unknown dependency 'nope'"):
        client.enqueue("t", None, queue="dq", depends_on=["nope"])
    assert client.backend.redis.exists("rediq:{dq}:waiting") == 0


def test_dependency_already_completed_releases_at_once(client: Client) -> None:
    dep = client.enqueue("t", None, queue="a")
    reply = client.backend.execute(protocol.dequeue_call(client.settings, "a", 1, 30000, "w"))
    (job,) = protocol.parse_dequeue("a", reply)
    client.backend.execute(protocol.ack_call(client.settings, "a", [(job.id, job.token, "")]))
    child = client.enqueue("t", None, queue="b", depends_on=[dep])
    assert state_of(client, child.id) == TaskState.PENDING


def test_release_survives_a_crash_between_ack_and_release(client: Client) -> None:
    """The ack puts the finished task in its queue's outbox atomically; if the worker dies before
    telling the dependents, the next maintenance pass replays it, and replays are idempotent."""
    dep = client.enqueue("t", None, queue="a")
    child = client.enqueue("t", None, queue="b", depends_on=[dep])
    (job,) = protocol.parse_dequeue(
        "a", client.backend.execute(protocol.dequeue_call(client.settings, "a", 1, 30000, "w"))
    )
    _, notified = client.backend.execute(protocol.ack_call(client.settings, "a", [(job.id, job.token, "")]))
    assert notified == [dep.id]
    # ...the worker is SIGKILLed here: nobody flushed the outbox
    assert state_of(client, child.id) == TaskState.WAITING
    assert client.backend.redis.zcard("rediq:{a}:depoutbox") == 1
    assert client.run(ops.flush_outbox(client.settings, "a")) == 1  # any worker's maintenance pass
    assert state_of(client, child.id) == TaskState.PENDING
    # replaying the release (a second worker raced the first) changes nothing
    client.run(ops.flush_outbox(client.settings, "a", [dep.id]))
    assert client.backend.redis.zcard("rediq:{b}:pending") == 1
    history = client.get_task(child.id).history  # type: ignore[union-attr]
    assert [h.note for h in history].count("dependencies completed") == 1


def test_dead_dependency_cancels_dependents_in_cascade(client: Client) -> None:
    a = client.enqueue("t", None, queue="a", max_retry=0)
    b = client.enqueue("t", None, queue="b", depends_on=[a])
    c = client.enqueue("t", None, queue="c", depends_on=[b])
    (job,) = protocol.parse_dequeue(
        "a", client.backend.execute(protocol.dequeue_call(client.settings, "a", 1, 30000, "w"))
    )
    assert (
        client.backend.execute(protocol.fail_call(client.settings, "a", job.id, job.token, "no stock", "", 0))
        == "dead"
    )
    client.run(ops.flush_outbox(client.settings, "a"))
    b_info, c_info = client.get_task(b.id), client.get_task(c.id)
    assert b_info is not None and b_info.state == TaskState.CANCELLED
    assert b_info.reason == f"dependency a|{a.id} dead"
    assert c_info is not None and c_info.state == TaskState.CANCELLED
    assert c_info.reason == f"dependency b|{b.id} cancelled"


def test_hold_policy_keeps_dependents_waiting_until_the_dependency_is_requeued(redis_url: str) -> None:
    client = Client(redis_url, settings=Settings(dependency_failure="hold"))
    a = client.enqueue("t", None, queue="a", max_retry=0)
    b = client.enqueue("t", None, queue="b", depends_on=[a])
    (job,) = protocol.parse_dequeue(
        "a", client.backend.execute(protocol.dequeue_call(client.settings, "a", 1, 30000, "w"))
    )
    client.backend.execute(protocol.fail_call(client.settings, "a", job.id, job.token, "x", "", 0))
    client.run(ops.flush_outbox(client.settings, "a"))
    info = client.get_task(b.id)
    assert (
        info is not None
        and info.state == TaskState.WAITING
        and "requeue it to continue" in (info.reason or "")
    )
    client.run(ops.requeue(client.settings, "a", [a.id]))
    (job,) = protocol.parse_dequeue(
        "a", client.backend.execute(protocol.dequeue_call(client.settings, "a", 1, 30000, "w"))
    )
    client.backend.execute(protocol.ack_call(client.settings, "a", [(job.id, job.token, "")]))
    client.run(ops.flush_outbox(client.settings, "a"))
    assert state_of(client, b.id) == TaskState.PENDING


# ------------------------------------------------------------------------- cron


async def test_three_schedulers_fire_each_tick_exactly_once(redis_url: str, raw: redis.Redis) -> None:
    """Ticks are simulated by moving the recorded last fire back one minute, as if the
    scheduler had just crossed a minute boundary; three schedulers race for each tick."""
    import redis.asyncio as aioredis

    settings = Settings()
    entry = CronDef("sweep", "* * * * *", "order:timeout", {"sweep": True}, "UTC", "cancellations")
    backends = [AsyncBackend(aioredis.Redis.from_url(redis_url, decode_responses=True)) for _ in range(3)]
    try:
        first = await backends[0].run(scheduler.tick_op(settings, [entry], {}))
        assert first == []  # a new entry does not fire its past tick
        created: list[str] = []
        for round_no in range(5):
            state = __import__("json").loads(raw.hget(settings.keyspace.cron_state, "sweep") or "{}")
            state["last_fire_ms"] = state["last_fire_ms"] - 60_000  # pretend a new tick came due
            raw.hset(settings.keyspace.cron_state, "sweep", __import__("json").dumps(state))
            results = await asyncio.gather(
                *(b.run(scheduler.tick_op(settings, [entry], {})) for b in backends)
            )
            created.extend(x for r in results for x in r)
            assert sum(len(r) for r in results) <= 1, f"round {round_no} fired twice: {results}"
        # the fire id is per entry+fire time, so a replay of the same tick is a no-op
        assert raw.zcard("rediq:{cancellations}:pending") == 1
        assert len(set(created)) == 1
    finally:
        for b in backends:
            await b.close()


async def test_scheduler_down_for_hours_fires_once_on_catch_up(redis_url: str, raw: redis.Redis) -> None:
    import json

    import redis.asyncio as aioredis

    settings = Settings()
    entry = CronDef("sweep", "* * * * *", "order:timeout", None, "UTC", "cancellations")
    backend = AsyncBackend(aioredis.Redis.from_url(redis_url, decode_responses=True))
    try:
        await backend.run(scheduler.tick_op(settings, [entry], {}))
        state = json.loads(raw.hget(settings.keyspace.cron_state, "sweep") or "{}")
        raw.hset(
            settings.keyspace.cron_state,
            "sweep",
            json.dumps({"last_fire_ms": state["last_fire_ms"] - 3 * 3_600_000}),
        )
        created = await backend.run(scheduler.tick_op(settings, [entry], {}))
        assert len(created) == 1  # 180 missed ticks, one fire
        entries = await backend.run(scheduler.list_entries(settings))
        (info,) = entries
        assert info.name == "sweep" and info.last_task_id == created[0] and info.last_state == "pending"
        assert info.next_fire_ms is not None and info.next_fire_ms % 60_000 == 0
    finally:
        await backend.close()


def test_cron_entries_are_listed_for_the_console(client: Client) -> None:
    client.run(
        scheduler.register(
            client.settings, CronDef("report", "0 3 * * *", "report:daily", None, "Europe/Paris", "reports")
        )
    )
    (entry,) = client.call(inspect.cron_entries)
    assert (entry.name, entry.expression, entry.timezone, entry.queue) == (
        "report",
        "0 3 * * *",
        "Europe/Paris",
        "reports",
    )
    assert entry.next_fire_ms is not None and entry.next_fire_ms > time.time() * 1000


# ------------------------------------------------------------------------- progress, middleware, events


async def test_batch_import_reports_monotonic_progress_visible_through_get_task_and_events(
    redis_url: str,
) -> None:
    registry = Registry()
    step = threading.Event()

    @registry.task("import:orders", queue="imports")
    def batch_import(ctx: TaskContext, payload: Any) -> dict[str, int]:
        total = int(payload["total"])
        ctx.progress(0, "Starting import...")
        for i in range(total):
            step.wait(2)
            step.clear()
            ctx.progress((i + 1) * 100 / total, f"Imported {i + 1}/{total}")
        ctx.progress(10, "late stale report")  # never goes backwards
        return {"imported": total}

    client = Client(redis_url)
    seen: list[events.Event] = []

    async def listen() -> None:
        async for event in events.subscribe(
            client.settings,
            __import__("redis.asyncio", fromlist=["x"]).Redis.from_url(redis_url, decode_responses=True),
            ["imports"],
        ):
            seen.append(event)

    listener = asyncio.create_task(listen())
    await wait_until(lambda: any(e.event == events.RESYNC for e in seen))
    r = client.enqueue("import:orders", {"total": 4}, queue="imports")
    async with running_worker(registry, redis_url, ["imports"]):
        await wait_until(lambda: (t := client.get_task(r.id)) is not None and t.progress == 0)
        for expected in (25, 50, 75, 100):
            step.set()

            def reached(e: float = expected) -> bool:
                return (t := client.get_task(r.id)) is not None and t.progress == e

            await wait_until(reached)
        await wait_until(lambda: state_of(client, r.id) == TaskState.COMPLETED)
    await wait_until(lambda: any(e.event == "completed" for e in seen))
    listener.cancel()
    info = client.get_task(r.id)
    assert info is not None and info.progress == 100 and info.progress_message == "Imported 4/4"
    assert info.result == {"imported": 4}
    progress = [e.percent for e in seen if e.event == "progress"]
    percents = [p for p in progress if p is not None]
    assert percents == progress and percents == sorted(percents) and percents[-1] == 100
    kinds = [e.event for e in seen if r.id in e.ids]
    assert kinds[0] == "pending" and kinds[-1] == "completed" and "active" in kinds
    assert all(e.queue == "imports" for e in seen if e.event != events.RESYNC)


async def test_middleware_sees_every_attempt_and_a_raising_one_loses_nothing(redis_url: str) -> None:
    registry = Registry()
    log: list[tuple[str, str, int, str]] = []

    class OrderMiddleware:
        async def before(self, ctx: TaskContext) -> None:
            log.append(("before", ctx.type, ctx.attempt, ""))

        def after(self, ctx: TaskContext, outcome: str, error: BaseException | None) -> None:
            log.append(("after", ctx.type, ctx.attempt, outcome))
            raise RuntimeError("broken after hook")  # reported, ignored

    class Gatekeeper:
        def before(self, ctx: TaskContext) -> None:
            if ctx.attempt == 1:
                raise RuntimeError("audit service down")

    registry.add_middleware(OrderMiddleware())
    registry.add_middleware(Gatekeeper())

    @registry.task("order:sms", queue="mw", retry=__import__("engine.retry", fromlist=["x"]).Fixed(0.05, 0))
    async def sms(ctx: TaskContext, payload: Any) -> str:
        return "sent"

    client = Client(redis_url)
    r = client.enqueue("order:sms", None, queue="mw")
    async with running_worker(registry, redis_url, ["mw"], poll_interval_s=0.05):
        await wait_until(lambda: state_of(client, r.id) == TaskState.COMPLETED)
    assert log == [
        ("before", "order:sms", 1, ""),
        ("after", "order:sms", 1, "retry"),
        ("before", "order:sms", 2, ""),
        ("after", "order:sms", 2, "completed"),
    ]
    info = client.get_task(r.id)
    assert info is not None and info.attempts == 2
    assert any(
        "middleware Gatekeeper.before raised: RuntimeError: audit service down" in h.note
        for h in info.history
    )


def test_sync_subscriber_sees_transitions(client: Client) -> None:
    stream = events.subscribe_sync(client.settings, client.backend.redis, ["evq"], timeout=3)
    assert next(stream).event == events.RESYNC
    r = client.enqueue("t", None, queue="evq")
    got = next(stream)
    assert got.event == "pending" and got.ids == (r.id,) and got.queue == "evq" and got.version == 1
    stream.close()


# ------------------------------------------------------------------------- cancellation


async def test_cancel_running_async_handler_is_enforced(redis_url: str) -> None:
    registry = Registry()
    started = asyncio.Event()

    @registry.task("long", queue="cx")
    async def long(ctx: TaskContext, payload: Any) -> None:
        started.set()
        await asyncio.sleep(60)

    client = Client(redis_url)
    r = client.enqueue("long", None, queue="cx")
    async with running_worker(registry, redis_url, ["cx"], lease_s=0.6, heartbeat_s=0.1):
        await asyncio.wait_for(started.wait(), 10)
        assert client.cancel(r.id) == "requested"
        await wait_until(lambda: state_of(client, r.id) == TaskState.CANCELLED)


async def test_sync_handler_can_poll_ctx_cancelled(redis_url: str) -> None:
    registry = Registry()

    @registry.task("loop", queue="cx")
    def loop(ctx: TaskContext, payload: Any) -> str:
        deadline = time.monotonic() + 20
        while not ctx.cancelled and time.monotonic() < deadline:
            time.sleep(0.02)
        return "stopped early" if ctx.cancelled else "ran out"

    client = Client(redis_url)
    r = client.enqueue("loop", None, queue="cx")
    async with running_worker(registry, redis_url, ["cx"], lease_s=0.6, heartbeat_s=0.1):
        await wait_until(lambda: state_of(client, r.id) == TaskState.ACTIVE)
        client.cancel(r.id)
        await wait_until(lambda: (t := client.get_task(r.id)) is not None and t.state.is_final)
    info = client.get_task(r.id)
    # the handler returned normally after seeing the flag: the cancel wins (issue 14), the task
    # ends cancelled, not completed
    assert info is not None and info.state == TaskState.CANCELLED and info.result is None
