"""The Django example against a real server (rediq's test kit) and sqlite:
``python -m pytest examples/django_project``.

A committed request enqueues one task that a real worker runs; a rolled-back one enqueues
nothing; ``manage.py rediq_worker --burst`` starts, drains the queue and exits.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import Client as WebClient
from django.test import override_settings
from shop.models import Order, Stock
from shop.tasks import registry

from engine import Client, Settings, inspect
from engine.testing import run_until_idle

HERE = Path(__file__).resolve().parent


@pytest.fixture
def rediq(rediq_url: str, rediq_settings: Settings) -> Iterator[Client]:
    """The project pointed at the test's private Valkey and key prefix, through its settings."""
    with override_settings(REDIQ_URL=rediq_url, REDIQ_PREFIX=rediq_settings.prefix):
        with Client(rediq_url, settings=rediq_settings) as reader:
            yield reader


def tasks_in_shop_queue(reader: Client) -> int:
    (shop,) = reader.call(inspect.queues, ["shop"])
    return sum(shop.counts.values())


def test_a_committed_order_enqueues_one_task_that_a_worker_runs(
    rediq: Client, rediq_url: str, rediq_settings: Settings
) -> None:
    Stock.objects.create(item="tea", quantity=5)
    response = WebClient().post("/orders/", {"item": "tea", "quantity": "2"})
    assert response.status_code == 201
    order_id = response.json()["order_id"]
    assert tasks_in_shop_queue(rediq) == 1

    report = run_until_idle(registry, rediq_url, rediq_settings)

    assert [(o.type, o.outcome) for o in report.outcomes] == [("shop:confirm_order", "completed")]
    order = Order.objects.get(pk=order_id)
    assert order.status == Order.Status.CONFIRMED
    assert order.confirmed_by_task == report.outcomes[0].task_id
    assert WebClient().get(f"/orders/{order_id}/").json()["status"] == "confirmed"


def test_a_rolled_back_order_enqueues_nothing(rediq: Client) -> None:
    Stock.objects.create(item="tea", quantity=1)
    response = WebClient().post("/orders/", {"item": "tea", "quantity": "2"})
    assert response.status_code == 409
    assert "not enough tea" in response.json()["error"]
    # the order row was created and its task scheduled inside the transaction: both are gone
    assert Order.objects.count() == 0
    assert tasks_in_shop_queue(rediq) == 0


def test_the_management_command_starts_and_drains(
    rediq: Client, rediq_url: str, rediq_settings: Settings
) -> None:
    Stock.objects.create(item="tea", quantity=10)
    placed = [
        WebClient().post("/orders/", {"item": "tea", "quantity": "1"}).json()["order_id"] for _ in range(3)
    ]
    assert tasks_in_shop_queue(rediq) == 3

    env = {
        **os.environ,
        "REDIS_URL": rediq_url,
        "REDIQ_PREFIX": rediq_settings.prefix,
        "PYTHONPATH": os.pathsep.join([str(HERE.parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    worker = subprocess.run(
        [sys.executable, "manage.py", "rediq_worker", "--burst", "--concurrency", "2"],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert worker.returncode == 0, worker.stdout + worker.stderr
    assert "serving shop" in worker.stdout and "rediq worker stopped" in worker.stdout
    assert set(Order.objects.filter(status=Order.Status.CONFIRMED).values_list("pk", flat=True)) == set(
        placed
    )
    (shop,) = rediq.call(inspect.queues, ["shop"])
    assert shop.counts.get("completed") == 3 and tasks_in_shop_queue(rediq) == 3


def test_bad_requests_are_refused_before_anything_is_written(rediq: Client) -> None:
    assert WebClient().post("/orders/", {"item": "tea", "quantity": "none"}).status_code == 400
    assert Order.objects.count() == 0 and tasks_in_shop_queue(rediq) == 0
