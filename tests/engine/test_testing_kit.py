"""The test kit users get (engine/testing.py, loaded by pytest as plugin 'rediq'): its fixtures
and run_until_idle, used here exactly as a user's test would use them."""

from __future__ import annotations

from typing import Any

import pytest

from engine.client import Client
from engine.errors import Retryable
from engine.ops import Settings
from engine.registry import Registry
from engine.retry import Fixed
from engine.task import TaskState
from engine.testing import NotIdle, run_until_idle
from engine.worker import TaskContext

registry = Registry()
tries: dict[str, int] = {}


@registry.task("kit:charge", queue="kit-pay", retry=Fixed(30))
def charge(ctx: TaskContext, payload: Any) -> dict[str, int]:
    tries[ctx.id] = ctx.attempt
    if ctx.attempt < 3:  # the gateway flakes twice; each retry waits 30 s in production
        raise Retryable("gateway timeout")
    return {"charged": payload["amount"]}


@registry.task("kit:ship", queue="kit-ship")
async def ship(ctx: TaskContext, payload: Any) -> str:
    return f"shipped {payload['order']}"


def test_an_order_ends_shipped_in_one_test(rediq_client: Client, rediq_url: str) -> None:
    pay = rediq_client.enqueue("kit:charge", {"amount": 5}, queue="kit-pay")
    ship_it = rediq_client.enqueue("kit:ship", {"order": "o-1"}, queue="kit-ship", depends_on=[pay])
    later = rediq_client.enqueue("kit:ship", {"order": "o-2"}, queue="kit-ship", delay=600)
    report = run_until_idle(registry, rediq_url, rediq_client.settings, horizon_s=3600)
    done = {r.id: rediq_client.get_task(r.id) for r in (pay, ship_it, later)}
    assert all(t is not None and t.state == TaskState.COMPLETED for t in done.values())
    assert done[pay.id].result == {"charged": 5} and tries[pay.id] == 3  # type: ignore[union-attr]
    assert done[ship_it.id].result == "shipped o-1"  # type: ignore[union-attr]
    assert report.completed == 3 and report.count("retry") == 2


def test_without_a_horizon_future_work_is_left_alone(rediq_client: Client, rediq_url: str) -> None:
    later = rediq_client.enqueue("kit:ship", {"order": "o-3"}, queue="kit-ship", delay=600)
    report = run_until_idle(registry, rediq_url, rediq_client.settings, queues=["kit-ship"])
    assert report.outcomes == []
    assert rediq_client.get_task(later.id).state == TaskState.SCHEDULED  # type: ignore[union-attr]


def test_each_test_has_keys_of_its_own(
    rediq_client: Client, rediq_url: str, rediq_settings: Settings
) -> None:
    with Client(rediq_url, settings=Settings(prefix="someone-else")) as other:
        other.enqueue("kit:ship", {"order": "x"}, queue="kit-ship")
        assert rediq_client.settings is rediq_settings and rediq_settings.prefix.startswith("test-")
        report = run_until_idle(registry, rediq_url, rediq_client.settings, queues=["kit-ship"])
        assert report.outcomes == []  # the other prefix's task is not this test's
        run_until_idle(registry, rediq_url, other.settings, queues=["kit-ship"])


def test_work_that_never_ends_is_reported(rediq_client: Client, rediq_url: str) -> None:
    stuck = Registry()

    @stuck.task("kit:forever", queue="kit-stuck", max_retry=100, retry=Fixed(0.05))
    async def forever(ctx: TaskContext, payload: Any) -> None:
        raise Retryable("again")

    rediq_client.enqueue("kit:forever", None, queue="kit-stuck", max_retry=100)
    with pytest.raises(NotIdle, match="still outstanding in kit-stuck after 1 s"):
        run_until_idle(stuck, rediq_url, rediq_client.settings, horizon_s=1, timeout_s=1)
