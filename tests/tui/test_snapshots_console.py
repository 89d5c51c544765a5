"""Snapshots of the views added for issue 18 (All tasks, Redis page, worker detail, last-hour
charts, the jump prompt, a filtered Queues view) at 80x24 and 120x40. Server-dependent figures
(version, memory, uptime, per-minute history) come from canned values where they would change
from run to run; everything else is read from a real server."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from textual.pilot import Pilot

from engine.serverinfo import History, QueueMemory, ServerPage, SlowEntry
from rediq_tui.messages import OpenCharts
from rediq_tui.screens.charts import ChartsScreen
from rediq_tui.screens.worker import WorkerDetailScreen
from rediq_tui.views.alltasks import AllTasksView
from rediq_tui.views.redis import RedisData, RedisView
from tests.tui import scenes
from tests.tui.helpers import FIXED_NOW, wait_for
from tests.tui.test_snapshots import app_for, first_poll, settle_tables

SIZES = [(80, 24), (120, 40)]

CANNED_PAGE = ServerPage(
    version="8.1.8",
    server="valkey",
    mode="standalone",
    role="master",
    used_memory=734_003_200,
    maxmemory=1_073_741_824,
    policy="allkeys-lru",
    rdb="ok",
    aof="off",
    clients=14,
    blocked_clients=6,
    replication="10.0.0.7:6379 lag 0s",
    uptime_s=3 * 86400,
    db_keys=1_204_311,
    queue_count=3,
)
CANNED = RedisData(
    CANNED_PAGE,
    [
        SlowEntry(7, int(FIXED_NOW) - 120, 48_200, "EVALSHA 3f2a… 12 rediq:{payment}:pending"),
        SlowEntry(6, int(FIXED_NOW) - 900, 11_000, "ZRANGE rediq:{deep}:dead 0 -1"),
    ],
    [QueueMemory("payment", 1_000_000, 1_000_003, 312_000_000), QueueMemory("mail", 5, 6, 1_300)],
)


@pytest.mark.parametrize("size", SIZES)
def test_all_tasks_view(snap_compare: Any, redis_url: str, raw: redis.Redis, size: tuple[int, int]) -> None:
    scenes.queues_scene(redis_url, raw)
    app = app_for(redis_url)

    async def run_before(pilot: Pilot[Any]) -> None:
        await first_poll(app, "8")(pilot)
        view = app.query_one(AllTasksView)
        await wait_for(pilot, lambda: view.table.row_count > 0)
        await settle_tables(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_redis_page(
    snap_compare: Any, redis_url: str, size: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def canned(self: RedisView, client: Any) -> RedisData:
        return CANNED

    monkeypatch.setattr(RedisView, "fetch", canned)
    app = app_for(redis_url)
    assert snap_compare(app, terminal_size=size, run_before=first_poll(app, "9"))


@pytest.mark.parametrize("size", SIZES)
def test_worker_detail(snap_compare: Any, redis_url: str, raw: redis.Redis, size: tuple[int, int]) -> None:
    scenes.workers_scene(redis_url, raw)
    raw.hset("rediq:worker:w-c", mapping={"held": 2, "fenced": 0, "version": "0.1.0"})
    app = app_for(redis_url)

    async def run_before(pilot: Pilot[Any]) -> None:
        await first_poll(app, "2")(pilot)
        await pilot.press("g", "enter")  # w-c: the oldest heartbeat, stale, busy 8/8, 2 slots held
        await wait_for(
            pilot, lambda: isinstance(app.screen, WorkerDetailScreen) and app.screen.detail is not None
        )
        await settle_tables(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_last_hour_charts(
    snap_compare: Any, redis_url: str, size: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    completed = tuple((i * 7) % 40 + 20 for i in range(60))
    history = History(
        "payment",
        completed,
        tuple(3 if i in (12, 13, 40) else 0 for i in range(60)),
        tuple(c + 2 for c in completed),
        tuple(0.4 + (i % 10) / 20 for i in range(60)),
        tuple(None if i < 5 else 1.5 + (i % 7) / 3 for i in range(60)),
        1_930,
    )

    async def canned(self: ChartsScreen, client: Any) -> History:
        return history

    monkeypatch.setattr(ChartsScreen, "fetch", canned)
    app = app_for(redis_url)

    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: app.polls >= 1)
        app.post_message(OpenCharts("payment"))
        await wait_for(pilot, lambda: isinstance(app.screen, ChartsScreen) and app.screen.history is not None)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_jump_prompt_and_filtered_queues(snap_compare: Any, redis_url: str, raw: redis.Redis) -> None:
    scenes.queues_scene(redis_url, raw)
    app = app_for(redis_url)

    async def run_before(pilot: Pilot[Any]) -> None:
        await first_poll(app)(pilot)
        await pilot.press("slash", *"pay", "enter", "colon", *"pay-00")
        await settle_tables(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
