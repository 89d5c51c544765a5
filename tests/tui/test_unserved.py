"""The queue view names the task types waiting in the selected queue that no live worker
serves (``engine.serving``), and why; hidden when every waiting type is served. 80x24."""

from __future__ import annotations

import json
from typing import Any

import redis

from engine.client import Client
from engine.ops import Settings
from rediq_tui.views.queues import QueuesView
from tests.tui.helpers import make_app, wait_for
from tests.tui.scenes import server_ms
from tests.tui.test_snapshots import app_for, first_poll, settle_tables

SIZE = (80, 24)
KS = Settings().keyspace


def unserved_scene(url: str, raw: redis.Redis) -> None:
    """'payment' served by a live worker with a handler for its type; 'refunds' holds a type
    only a worker on 'payment' has a handler for."""
    with Client(url) as c:
        for i in range(4):
            c.enqueue("order:payment", {"order_id": i}, queue="payment", id=f"pay-{i:03d}")
        for i in range(3):
            c.enqueue("order:refund", {"order_id": i}, queue="refunds", id=f"ref-{i:03d}")
    worker = "w-payment-1"
    raw.zadd(KS.workers, {worker: server_ms(raw) + 3_600_000})  # live for the test's length
    raw.hset(KS.worker(worker), mapping={"queues": "payment", "host": "h", "pid": 1, "concurrency": 4})
    raw.hset(KS.declared_by, worker, json.dumps({"order:payment": "x", "order:refund": "y"}))
    stats = list(raw.scan_iter(KS.prefix + ":{*}:stats:*"))
    if stats:
        raw.delete(*stats)


async def test_the_selected_queue_shows_its_unserved_types(redis_url: str, raw: redis.Redis) -> None:
    unserved_scene(redis_url, raw)
    app = make_app(redis_url)
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(QueuesView)
        await wait_for(pilot, lambda: app.polls >= 1 and view.selected == "payment")
        line = app.query_one("#queues-unserved")
        assert "-hidden" in line.classes  # payment's waiting type is served
        await pilot.press("j")  # refunds
        await wait_for(pilot, lambda: view.selected == "refunds" and "-hidden" not in line.classes)
        text = str(line.render())
        assert "unserved: order:refund (3 waiting: no live worker listens on refunds" in text
        await pilot.press("k")
        await wait_for(pilot, lambda: "-hidden" in line.classes, what="hidden again on payment")


def test_snapshot_unserved_types(snap_compare: Any, redis_url: str, raw: redis.Redis) -> None:
    unserved_scene(redis_url, raw)
    app = app_for(redis_url)

    async def run_before(pilot: Any) -> None:
        await first_poll(app)(pilot)
        view = app.query_one(QueuesView)
        await pilot.press("j")
        start = app.polls
        await pilot.press("ctrl+r")  # the snapshot app polls only when asked
        await wait_for(
            pilot, lambda: app.polls > start and view.selected == "refunds" and bool(view.unserved)
        )
        await settle_tables(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
