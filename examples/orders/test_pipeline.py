"""How you would test the order pipeline in your own suite, with rediq's test kit (the
``rediq`` pytest plugin, loaded once rediq is installed): a private Valkey for the session,
keys of this test's own, and a real worker run until the work is done::

    pytest examples/orders/test_pipeline.py
"""

from __future__ import annotations

import random

import pytest
import redis

from engine import Client, Settings
from engine.task import TaskState
from engine.testing import run_until_idle
from rediq_tui.demo import tasks
from rediq_tui.demo.models import OrderStatus
from rediq_tui.demo.producer import place_order, random_order


@pytest.fixture(autouse=True)
def business_data_in_the_test_server(monkeypatch: pytest.MonkeyPatch, rediq_url: str) -> None:
    monkeypatch.setenv("ORDERS_REDIS_URL", rediq_url)  # the handlers' own store
    # the demo reads these when it is imported, before any fixture runs: set them on the module
    monkeypatch.setattr(tasks, "PACE", 0.0)  # no demo pauses
    monkeypatch.setattr(tasks, "GATEWAY_FAILURE_RATE", 0.0)  # no simulated gateway failures
    tasks._store.cache_clear()


def test_an_order_ends_shipped(rediq_url: str, rediq_settings: Settings) -> None:
    # a client with the app's registry: each task lands in the queue its type declares
    with Client(rediq_url, settings=rediq_settings, registry=tasks.registry) as client:
        placed = place_order(client, random_order(random.Random(7)), timeout_check_s=45)
        report = run_until_idle(tasks.registry, rediq_url, rediq_settings)

        steps = (placed.inventory, placed.payment, placed.sms, placed.shipping)
        assert [client.get_task(i).state for i in steps] == [TaskState.COMPLETED] * 4  # type: ignore[union-attr]
        assert client.get_task(placed.timeout_check).state == TaskState.SCHEDULED  # type: ignore[union-attr]
        assert report.completed == 4 and report.failed == 0
    store = redis.Redis.from_url(rediq_url, decode_responses=True)
    assert store.hget(f"orders:{placed.order.id}", "status") == OrderStatus.SHIPPED
    store.close()


def test_the_unpaid_order_check_runs_when_its_time_comes(rediq_url: str, rediq_settings: Settings) -> None:
    with Client(rediq_url, settings=rediq_settings, registry=tasks.registry) as client:
        placed = place_order(client, random_order(random.Random(8)), timeout_check_s=45)
        run_until_idle(tasks.registry, rediq_url, rediq_settings)  # the order goes through
        # then a minute "passes": the horizon brings the delayed check forward (no 45 s wait)
        run_until_idle(tasks.registry, rediq_url, rediq_settings, horizon_s=60)
        check = client.get_task(placed.timeout_check)
        assert check is not None and check.state == TaskState.COMPLETED
        assert check.result == {
            "order_id": placed.order.id,
            "timed_out": False,
            "status": OrderStatus.SHIPPED,
        }
