"""See the whole system and a light touch (issue 18, points 2, 3, 4 and 6): the Queues view at
80 columns (pinned name, the figures that matter first, Ok/m equal to the line under it),
Active apart from Reserved, finished tasks without live progress, the error first in a dead
task, y copies an id, the Redis page, worker detail and stop, a failed launch reported as
failed, exact escaped names in toasts. Real Valkey, 80x24 and 120x40."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from rich.text import Text
from textual.widgets import DataTable, Static

from engine import inspect, ops
from engine.backend import cmd
from engine.client import Client
from engine.ops import Settings
from engine.worker import protocol
from rediq_tui.launcher import LaunchSpec
from rediq_tui.screens.detail import TaskDetailScreen
from rediq_tui.screens.worker import WorkerDetailScreen
from rediq_tui.views.queues import QueuesView
from rediq_tui.views.redis import RedisView
from rediq_tui.views.tasks import TasksView
from tests.tui.data import kill, lease, make_dead, progress
from tests.tui.helpers import make_app, next_poll, wait_for
from tests.tui.test_hostile import plant

KS = Settings().keyspace
SIZES = [(80, 24), (120, 40)]


def plain(widget: Any) -> str:
    r = widget.render()
    return r.plain if isinstance(r, Text) else str(r)


def notes(app: Any) -> list[str]:
    return [str(n.message) for n in app._notifications]


@pytest.mark.parametrize("size", SIZES)
async def test_queues_at_80_columns_pinned_name_and_one_ok_per_min(
    redis_url: str, raw: redis.Redis, size: tuple[int, int]
) -> None:
    with Client(redis_url) as c:
        c.enqueue("t", {}, queue="a-very-long-queue-name-payments", id="p-1")
        now_ms = c.run(ops.server_time_ms())
    minute = now_ms // 60_000
    qk = KS.queue("a-very-long-queue-name-payments")
    raw.set(qk.stat("p", minute - 1), 120)  # completed in the previous minute
    raw.set(qk.stat("p", minute), 30)  # and so far in this one
    # and the same in the next minute: a loaded machine (parallel tests) can start the console
    # after the minute has turned, when the minute above counts as the previous one
    raw.set(qk.stat("p", minute + 1), 30)
    app = make_app(redis_url)
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        view = app.query_one(QueuesView)
        await next_poll(pilot, app)
        # the figures an operator acts on fit on screen without scrolling at 80 columns
        widths = {str(k.value): c.get_render_width(view.table) for k, c in view.table.columns.items()}
        keys = [str(k.value) for k in view.table.columns]
        needed = sum(widths[k] for k in keys[: keys.index("ppm") + 1])
        assert needed <= view.table.size.width, (needed, view.table.size.width)
        shown = str(view.table.get_cell("a-very-long-queue-name-payments", "ppm"))
        line = plain(view.query_one("#queues-detail", Static))
        assert f"ok {shown}/min" in line  # one figure for one thing
        assert float(shown) >= 30  # the current minute counts from its first second
        # scrolled right, the queue name stays on screen
        assert view.table.fixed_columns == 1
        view.table.scroll_right(animate=False)
        view.table.scroll_to(x=200, animate=False)
        await pilot.pause(0.1)
        assert view.table.scroll_x > 0 or size[0] >= 120
        assert "a-very-long-queue" in app.export_screenshot()


async def test_active_and_reserved_are_shown_apart(redis_url: str) -> None:
    with Client(redis_url) as c:
        for i in range(6):
            c.enqueue("t", {}, queue="work", id=f"w-{i}")
        c.backend.execute(protocol.dequeue_call(c.settings, "work", 5, 60_000, "w1", start_now=2))
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        view = app.query_one(QueuesView)
        assert str(view.table.get_cell("work", "active")) == "2"  # running, not 5
        assert str(view.table.get_cell("work", "reserved")) == "3"
        assert "2 running + 3 reserved" in plain(view.query_one("#queues-detail", Static))


async def test_finished_tasks_show_no_live_progress_and_dead_detail_shows_error_first(redis_url: str) -> None:
    with Client(redis_url) as c:
        c.enqueue("ship", {}, queue="orders", id="done-1")
        job = lease(c, "orders", 1)[0]
        progress(c, job, 99, "handing to carrier")
        c.backend.execute(protocol.ack_call(c.settings, "orders", [(job.id, job.token, '"ok"')]))
        make_dead(c, "orders", 1)
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        tasks = app.query_one(TasksView)
        tasks.open("orders", "completed")
        app.action_show("tasks")
        await wait_for(pilot, lambda: tasks.table.row_count == 1)
        info = str(tasks.table.get_cell("done-1", "info"))
        assert "99%" not in info and "handing to carrier" not in info
        await pilot.press("enter")
        await wait_for(
            pilot, lambda: isinstance(app.screen, TaskDetailScreen) and app.screen.info is not None
        )
        body = plain(app.screen.query_one("#detail-body"))
        assert "Last progress" in body and "final: task completed" in body
        await pilot.press("escape")
        app.open_task("orders", "dead-000")
        await wait_for(
            pilot, lambda: isinstance(app.screen, TaskDetailScreen) and app.screen.info is not None
        )
        lines = plain(app.screen.query_one("#detail-body")).splitlines()
        error_at = next(i for i, ln in enumerate(lines) if "── Error" in ln)
        payload_at = next(i for i, ln in enumerate(lines) if "── Payload" in ln)
        assert error_at < payload_at and error_at < 6  # on the first screen at 80x24
        assert "card declined for dead-000" in lines[error_at + 1]


async def test_y_copies_the_task_id(redis_url: str) -> None:
    with Client(redis_url) as c:
        c.enqueue("t", {}, queue="q", id="copy-me-1")
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("enter")
        tasks = app.query_one(TasksView)
        await wait_for(pilot, lambda: tasks.table.row_count == 1)
        await pilot.press("y")
        assert app.copied == ["copy-me-1"] and any("Copied task id copy-me-1" in n for n in notes(app))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TaskDetailScreen))
        await pilot.press("y")
        assert app.copied == ["copy-me-1", "copy-me-1"]


@pytest.mark.parametrize("size", SIZES)
async def test_redis_page_against_the_real_server(
    redis_url: str, raw: redis.Redis, size: tuple[int, int]
) -> None:
    with Client(redis_url) as c:
        make_dead(c, "payment", 2)
    raw.config_set("maxmemory-policy", "allkeys-lru")
    try:
        app = make_app(redis_url)
        async with app.run_test(size=size) as pilot:
            await wait_for(pilot, lambda: app.polls >= 1)
            await pilot.press("9")
            view = app.query_one(RedisView)
            await wait_for(pilot, lambda: view.data is not None)
            body = plain(view.query_one("#redis-body"))
            assert "valkey" in body and "Role: master" in body and "Eviction: allkeys-lru" in body
            assert "evicting keys loses tasks" in body and "1 rediq queues" in body
            assert "payment" in body  # per-queue memory
            assert "eviction allkeys-lru" in plain(view.query_one("#redis-title"))
    finally:
        raw.config_set("maxmemory-policy", "noeviction")


async def test_worker_detail_and_stop_from_there(redis_url: str) -> None:
    with Client(redis_url) as c:
        c.enqueue("t", {}, queue="mail", id="m-1")
        c.call(
            protocol.beat_registry,
            "host-x:4242:aa",
            {
                "host": "host-x",
                "pid": 4242,
                "queues": "mail",
                "concurrency": 4,
                "busy": 1,
                "tasks": '["mail|m-1"]',
            },
            60_000,
        )
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("2")
        await wait_for(pilot, lambda: app.query_one("#workers-table", DataTable).row_count == 1)
        await pilot.press("enter")
        await wait_for(
            pilot, lambda: isinstance(app.screen, WorkerDetailScreen) and app.screen.detail is not None
        )
        body = plain(app.screen.query_one("#worker-body"))
        assert "host-x" in body and "4242" in body and "m-1" in body and "Heartbeat: now" in body
        await pilot.press("S")
        await wait_for(pilot, lambda: len(app.screen_stack) > 2)
        assert "Drain and stop worker host-x:4242 (host-x:4242:aa)?" in plain(
            app.screen.query_one("#confirm-question")
        )
        await pilot.press(*"yes", "enter")
        await wait_for(pilot, lambda: app.writes == 1)
        assert any("Asked worker host-x:4242 (host-x:4242:aa) to drain and stop" in n for n in notes(app))
        with Client(redis_url) as c:
            assert c.backend.execute(cmd("GET", KS.worker_stop("host-x:4242:aa"))) == "drain"


async def test_a_worker_that_exits_at_once_is_reported_failed_not_launched(redis_url: str) -> None:
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        app.launch(LaunchSpec("no_such_module_xyz:registry", ("q",), 1))
        await wait_for(pilot, lambda: any("Launch" in str(n.title) for n in app._notifications), timeout=30)
        failed = [n for n in app._notifications if n.title == "Launch failed"]
        assert failed and "exited with code" in str(failed[0].message)
        assert not any("is up" in n for n in notes(app))
        with Client(redis_url) as c:
            entries = c.call(inspect.audit, 5)
        assert entries[0].action == "worker.launch" and "exited with code" in entries[0].detail


async def test_toasts_and_confirmations_name_the_exact_target_escaped(
    redis_url: str, raw: redis.Redis
) -> None:
    for name in ("lnk\x1b[0m", "lnk"):
        raw.sadd(KS.queues, name)
    for task_id in ("t\u202eX", "tX"):  # written by a buggy or hostile client
        plant(raw, "payment", task_id, {"type": "t"})
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        view = app.query_one(QueuesView)
        names = {str(view.table.get_cell(k, "queue")) for k in view.table.row_keys()}
        assert {"lnk", "lnk␛[0m"} <= names  # two names never look alike
        tasks = app.query_one(TasksView)
        tasks.open("payment", "pending")
        app.action_show("tasks")
        await wait_for(pilot, lambda: tasks.table.row_count == 2)
        row = tasks.table.row_keys().index("t\u202eX")
        await pilot.press(*(["j"] * row), "c")
        await wait_for(pilot, lambda: len(app.screen_stack) > 1)
        assert plain(app.screen.query_one("#confirm-question")) == "Cancel task t⟨U+202E⟩X of payment?"
        await pilot.press(*"yes", "enter")
        await wait_for(pilot, lambda: app.writes == 1)
        assert "Task t⟨U+202E⟩X of payment cancelled" in notes(app)


async def test_a_dead_tasks_whole_error_is_under_the_table_not_cut(redis_url: str) -> None:
    long_error = "PaymentDeclined: " + " ".join(f"reason-{i}" for i in range(12)) + " END-OF-ERROR"
    with Client(redis_url) as c:
        c.enqueue("order:payment", {}, queue="payment", id="long-1", max_retry=0)
        kill(c, lease(c, "payment", 1)[0], long_error)
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("enter")  # opens dead: the state needing attention
        tasks = app.query_one(TasksView)
        await wait_for(pilot, lambda: tasks.state == "dead" and tasks.table.row_count == 1)
        assert "END-OF-ERROR" not in str(tasks.table.get_cell("long-1", "info"))  # cut at 80 columns
        box = tasks.query_one("#tasks-error", Static)
        assert not box.has_class("-hidden") and "END-OF-ERROR" in plain(box)
        assert tasks.limit == 24 - 4 - 2
