"""Snapshots of the main views at 80x24 (deterministic: fixed ids, planted times, fixed clock)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
from textual.pilot import Pilot

from rediq_tui.app import RediqApp
from rediq_tui.screens.detail import TaskDetailScreen
from rediq_tui.views.tasks import TasksView
from tests.tui import scenes
from tests.tui.helpers import make_app, wait_for

SIZE = (80, 24)


def app_for(url: str, **kw: Any) -> RediqApp:
    # events off and a long interval: the snapshot is of one poll's data
    return make_app(url, interval_ms=600_000, events=False, label="redis://snapshot", **kw)


async def settle_tables(pilot: Pilot[Any]) -> None:
    """DataTable measures column widths on idle, and a scrollbar may come and go while it does
    (seen once under a loaded CI: a table one column narrower): wait until two screenshots
    50 ms apart agree, for at most 5 s, rather than a fixed three pauses."""
    previous = None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        await pilot.pause(0.05)
        shot = pilot.app.export_screenshot()
        if shot == previous:
            return
        previous = shot


def first_poll(app: RediqApp, *keys: str, until: Callable[[], bool] | None = None) -> Any:
    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: app.polls >= 1)
        for key in keys:
            start = app.polls
            await pilot.press(key)
            await wait_for(pilot, lambda: app.polls > start)  # noqa: B023 - awaited here
        if until is not None:
            await wait_for(pilot, until)
        await settle_tables(pilot)

    return run_before


def test_queues_view(snap_compare: Any, redis_url: str, raw: redis.Redis) -> None:
    scenes.queues_scene(redis_url, raw)
    app = app_for(redis_url)
    assert snap_compare(app, terminal_size=SIZE, run_before=first_poll(app))


def test_tasks_view_with_progress(snap_compare: Any, redis_url: str, raw: redis.Redis) -> None:
    scenes.tasks_scene(redis_url, raw)
    app = app_for(redis_url)

    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("enter")  # the state needing attention: active (no dead, no retry)
        tasks = app.query_one(TasksView)
        await wait_for(pilot, lambda: tasks.state == "active" and tasks.table.row_count == 2)
        await pilot.press("less_than_sign")
        await wait_for(pilot, lambda: tasks.state == "pending" and tasks.table.row_count == 20)
        await pilot.press("space")
        await settle_tables(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_active_tasks_progress_bars(snap_compare: Any, redis_url: str, raw: redis.Redis) -> None:
    scenes.tasks_scene(redis_url, raw)
    app = app_for(redis_url)

    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: app.polls >= 1)
        app.tasks_view.open("payment", "active")
        app.action_show("tasks")
        await wait_for(pilot, lambda: app.tasks_view.table.row_count == 2)
        await settle_tables(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_workers_view(snap_compare: Any, redis_url: str, raw: redis.Redis) -> None:
    scenes.workers_scene(redis_url, raw)
    app = app_for(redis_url)

    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: app.polls >= 1)
        # the beats are ages against the server's clock ("now" under 5 s): planted again just
        # before the poll that shows them, not before the console's start-up, which a loaded
        # machine (parallel tests) can stretch past 5 s
        scenes.workers_scene(redis_url, raw)
        start = app.polls
        await pilot.press("2")
        await wait_for(pilot, lambda: app.polls > start)
        await settle_tables(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_cron_view(snap_compare: Any, redis_url: str, raw: redis.Redis) -> None:
    scenes.cron_scene(redis_url, raw)
    app = app_for(redis_url)
    assert snap_compare(app, terminal_size=SIZE, run_before=first_poll(app, "5"))


def test_task_detail(snap_compare: Any, redis_url: str, raw: redis.Redis) -> None:
    scenes.detail_scene(redis_url, raw)
    app = app_for(redis_url)

    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: app.polls >= 1)
        app.open_task("payment", "order-000")
        await wait_for(
            pilot, lambda: isinstance(app.screen, TaskDetailScreen) and app.screen.info is not None
        )

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_light_theme_queues(snap_compare: Any, redis_url: str, raw: redis.Redis) -> None:
    scenes.queues_scene(redis_url, raw)
    app = app_for(redis_url, theme="light")
    assert snap_compare(app, terminal_size=SIZE, run_before=first_poll(app))


def test_help_screen(snap_compare: Any, redis_url: str) -> None:
    app = app_for(redis_url)
    assert snap_compare(app, terminal_size=SIZE, press=["question_mark"])


def test_failures_view(snap_compare: Any, redis_url: str, raw: redis.Redis) -> None:
    scenes.failures_scene(redis_url, raw)
    app = app_for(redis_url)
    assert snap_compare(app, terminal_size=SIZE, run_before=first_poll(app, "6"))


def test_retry_group_confirmation(snap_compare: Any, redis_url: str, raw: redis.Redis) -> None:
    scenes.failures_scene(redis_url, raw)
    app = app_for(redis_url)

    async def run_before(pilot: Pilot[Any]) -> None:
        await first_poll(app, "6")(pilot)
        await pilot.press("j", "r")
        await wait_for(pilot, lambda: len(app.screen_stack) > 1)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_audit_view(snap_compare: Any, redis_url: str, raw: redis.Redis) -> None:
    scenes.audit_scene(redis_url, raw)
    app = app_for(redis_url)
    assert snap_compare(app, terminal_size=SIZE, run_before=first_poll(app, "7"))


def test_quarantined_tasks_with_restore(snap_compare: Any, redis_url: str, raw: redis.Redis) -> None:
    scenes.quarantine_scene(redis_url, raw)
    app = app_for(redis_url)

    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: app.polls >= 1)
        app.tasks_view.open("payment", "quarantined")
        app.action_show("tasks")
        await wait_for(pilot, lambda: app.tasks_view.table.row_count == 3)
        await settle_tables(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_task_detail_why_and_attempts(snap_compare: Any, redis_url: str, raw: redis.Redis) -> None:
    scenes.detail_scene(redis_url, raw)
    app = app_for(redis_url)

    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: app.polls >= 1)
        app.open_task("payment", "order-000")
        await wait_for(pilot, lambda: isinstance(app.screen, TaskDetailScreen) and app.screen.why is not None)
        await pilot.press(*["j"] * 12)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_task_detail_blocked(snap_compare: Any, redis_url: str, raw: redis.Redis) -> None:
    scenes.blocked_scene(redis_url, raw)
    app = app_for(redis_url)

    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: app.polls >= 1)
        app.open_task("mail", "mail-001")
        await wait_for(pilot, lambda: isinstance(app.screen, TaskDetailScreen) and app.screen.why is not None)
        await pilot.press(*["j"] * 9)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
