"""The seeds' order pipeline end to end, with real worker processes on a real server."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
import redis

from engine import inspect
from engine.client import Client
from engine.task import TaskState
from rediq_tui.demo.demo import Demo
from rediq_tui.demo.producer import cancel_order, place_order, random_order


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIQ_DEMO_PACE", "0.02")
    monkeypatch.setenv("REDIQ_DEMO_GATEWAY_FAILURES", "0")


def wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def states(client: Client, *ids: str) -> list[TaskState | None]:
    return [(t.state if (t := client.get_task(i)) else None) for i in ids]


def test_order_flow_runs_in_dependency_order_and_idempotently(
    redis_url: str, raw: redis.Redis, tmp_path: Path
) -> None:
    client = Client(redis_url)
    rng = random.Random(1)
    ok = place_order(client, random_order(rng), timeout_check_s=60)
    declined = place_order(client, random_order(rng), payment_method="expired_card", timeout_check_s=0.5)
    cancelled = place_order(client, random_order(rng), timeout_check_s=0.5)
    cancel_order(client, cancelled)
    demo = Demo(redis_url, workers=1, concurrency=8, orders_per_s=0.0001, log_dir=tmp_path)
    demo.start()
    try:
        wait_for(lambda: states(client, ok.sms, ok.shipping) == [TaskState.COMPLETED] * 2)
        wait_for(lambda: states(client, declined.payment)[0] == TaskState.DEAD)
        wait_for(lambda: states(client, declined.shipping)[0] == TaskState.CANCELLED)
    finally:
        demo.stop()
    assert raw.hget(f"orders:{ok.order.id}", "status") == "shipped"
    payment = client.get_task(ok.payment)
    inventory = client.get_task(ok.inventory)
    shipping = client.get_task(ok.shipping)
    assert payment and inventory and shipping
    assert inventory.finished_at_ms <= payment.started_at_ms  # type: ignore[operator]
    assert payment.finished_at_ms <= shipping.started_at_ms  # type: ignore[operator]
    assert shipping.progress == 99 and shipping.result["city"]
    dead = client.get_task(declined.payment)
    assert dead is not None and "expired" in (dead.last_error or "") and dead.attempts == 1
    assert states(client, cancelled.payment, cancelled.shipping) == [TaskState.CANCELLED] * 2
    assert raw.hget(f"orders:{cancelled.order.id}", "status") == "cancelled"
    # a second delivery of a finished step is a no-op (idempotent handlers)
    assert raw.exists(f"orders:done:{ok.order.id}:payment") == 1
    # the unpaid-order check is unique per order while it is alive; cancelling it frees the key
    assert states(client, ok.timeout_check) == [TaskState.SCHEDULED]
    dup = client.enqueue(
        "order:timeout",
        {"order_id": ok.order.id},
        queue="cancellations",
        unique_key=f"timeout:{ok.order.id}",
        delay=30,
    )
    assert dup.status == "duplicate" and dup.id == ok.timeout_check
    client.cancel(ok.timeout_check)
    fresh = client.enqueue(
        "order:timeout",
        {"order_id": ok.order.id},
        queue="cancellations",
        unique_key=f"timeout:{ok.order.id}",
        delay=30,
    )
    assert fresh.created
    client.cancel(fresh.id)


def test_demo_feeds_every_view(redis_url: str, tmp_path: Path) -> None:
    client = Client(redis_url)
    demo = Demo(redis_url, workers=1, concurrency=8, orders_per_s=20, log_dir=tmp_path, seed=3).start()
    try:
        wait_for(lambda: demo.placed >= 20 and any(s.count("completed") for s in client.call(inspect.queues)))
        wait_for(lambda: len(client.call(inspect.workers)) == 1)
        wait_for(lambda: any(q.count("dead") for q in client.call(inspect.queues)), timeout=40)
    finally:
        demo.stop()
    names = {q.name for q in client.call(inspect.queues)}
    assert {"inventory", "payment", "shipping", "notifications", "imports"} <= names
    assert client.call(inspect.workers) == []  # the demo's workers drained and deregistered
    assert demo.processes == []
