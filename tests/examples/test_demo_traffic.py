"""The demo looks like a shop on a busy afternoon (issue 22): bursts on top of the steady
orders, one import always running, a cron entry that fires every minute, and dead tasks that
died of a real error in the handler's code (with the traceback to show for it)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from croniter import croniter

from engine import inspect
from engine.client import Client
from engine.task import TaskState
from engine.testing import run_until_idle
from rediq_tui.demo import tasks
from rediq_tui.demo.demo import Demo
from rediq_tui.demo.models import ShippingAddress, ShippingTaskPayload
from rediq_tui.demo.producer import CITIES, NEW_CITY


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIQ_DEMO_PACE", "0.02")  # the workers are processes: read at their import
    monkeypatch.setenv("REDIQ_DEMO_GATEWAY_FAILURES", "0")


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def shipment(city: str) -> ShippingTaskPayload:
    address = ShippingAddress(
        recipient="u-1", phone="0", province="-", city=city, district="-", detail="-", postal_code="0"
    )
    return ShippingTaskPayload(order_id="o-1", address=address)


def test_a_shipment_to_a_city_the_carrier_lacks_dies_of_a_real_key_error(redis_url: str) -> None:
    with Client(redis_url, registry=tasks.registry) as client:
        sent = tasks.shipping.enqueue(shipment(NEW_CITY), client=client)
        # retries come due at once (the test kit's horizon): every attempt fails the same way
        run_until_idle(tasks.registry, redis_url, queues=["shipping"], horizon_s=3600)
        dead = client.get_task(sent.id)
    assert dead is not None and dead.state == TaskState.DEAD
    assert dead.attempts == 4  # the first and its 3 retries
    assert dead.last_error == f"KeyError: '{NEW_CITY}'"
    # the stored traceback starts at the handler's frame, on the failing line
    assert dead.traceback is not None and "in shipping" in dead.traceback
    assert "CARRIER_ZONES[payload.address.city]" in dead.traceback
    assert "engine/worker/" not in dead.traceback  # the worker's own frames are trimmed
    assert NEW_CITY not in CITIES and set(CITIES) <= set(tasks.CARRIER_ZONES)


def test_a_cron_entry_fires_every_minute() -> None:
    entry = tasks.registry.crons["stock-reconcile"]
    fires = croniter(entry.expression, 0.0)
    assert [fires.get_next(float) for _ in range(3)] == [60.0, 120.0, 180.0]
    assert entry.task_type in tasks.registry.types


def test_bursts_on_top_of_the_steady_orders_and_always_one_import(redis_url: str, tmp_path: Path) -> None:
    demo = Demo(
        redis_url,
        workers=1,
        concurrency=8,
        orders_per_s=1.0,
        burst_every_s=(1.0, 1.0),
        log_dir=tmp_path,
        seed=5,
    )
    with Client(redis_url) as client:

        def imports(state: str) -> int:
            return sum(q.count(state) for q in client.call(inspect.queues) if q.name == "imports")

        demo.start()
        try:
            # 1 order/s steady; a burst adds 15 to 30 seconds' worth within a few seconds (the
            # second one starts once the first has placed all of its orders)
            wait_for(lambda: demo.bursts >= 2, "two bursts", timeout=60)
            assert demo.burst_orders >= 15
            # an import ends (a few hundred rows at the test's pace) and the next one starts
            wait_for(lambda: imports("completed") >= 1 and demo.imports >= 2, "the next import")
        finally:
            demo.stop()
        # one at a time: every import but the last had completed when the next was started
        assert imports("completed") >= demo.imports - 1
