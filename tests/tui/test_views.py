"""Pilot tests of every view against a real server."""

from __future__ import annotations

import redis
from rich.text import Text

from engine import admin
from engine.client import Client
from engine.cron import CronDef
from engine.scheduler import register
from rediq_tui.messages import OpenQueue
from rediq_tui.screens.detail import TaskDetailScreen
from rediq_tui.screens.help import HelpScreen
from rediq_tui.views.cron import CronView
from rediq_tui.views.queues import PAUSED_MARK, QueuesView
from rediq_tui.views.tasks import TasksView
from rediq_tui.views.workers import WorkersView
from tests.tui.data import lease, make_dead, progress
from tests.tui.helpers import make_app, next_poll, wait_for


def cell(table: object, row: str, col: str) -> str:
    value = table.get_cell(row, col)  # type: ignore[attr-defined]
    return value.plain if isinstance(value, Text) else str(value)


async def test_queues_counts_paused_and_enter_opens_tasks(redis_url: str) -> None:
    with Client(redis_url) as c:
        make_dead(c, "payment", 2)
        for i in range(3):
            c.enqueue("order:payment", {"order_id": i}, queue="payment", id=f"pay-{i}")
        c.enqueue("mail:send", {}, queue="mail", id="mail-1")
        c.call(admin.pause, "mail")
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1, what="first poll")
        view = app.query_one(QueuesView)
        assert view.table.row_keys() == ["mail", "payment"]
        assert cell(view.table, "payment", "pending") == "3"
        assert cell(view.table, "payment", "dead") == "2"
        assert cell(view.table, "mail", "queue") == f"mail {PAUSED_MARK}"
        assert cell(view.table, "payment", "queue") == "payment"
        await pilot.press("j", "enter")
        await wait_for(pilot, lambda: app.query_one(TasksView).page is not None, what="tasks page")
        tasks = app.query_one(TasksView)
        assert app.switcher.current == "tasks"
        # Enter opens the state that needs attention: payment has dead tasks
        assert (tasks.queue, tasks.state) == ("payment", "dead")
        await wait_for(pilot, lambda: tasks.table.row_count == 2, what="dead rows")


async def test_tasks_paging_state_switch_filter_sort_and_mark(redis_url: str) -> None:
    with Client(redis_url) as c:
        for i in range(45):
            c.enqueue(
                "order:payment" if i % 2 else "order:refund", {"n": i}, queue="payment", id=f"t-{i:03d}"
            )
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("enter")
        tasks = app.query_one(TasksView)
        await wait_for(pilot, lambda: tasks.page is not None)
        assert tasks.limit == 20  # 24 rows minus status, title, header and footer
        assert tasks.page is not None and tasks.page.total == 45
        assert len(tasks.table.row_keys()) == 20  # one page, never the whole queue
        assert tasks.table.row_keys()[0] == "t-000"
        await pilot.press("n")
        await wait_for(pilot, lambda: tasks.table.row_keys()[:1] == ["t-020"], what="page 2")
        await pilot.press("n", "n")  # the third press is past the end: stays on page 3
        await wait_for(pilot, lambda: tasks.table.row_keys()[:1] == ["t-040"], what="page 3")
        assert len(tasks.table.row_keys()) == 5
        await pilot.press("b")
        await wait_for(pilot, lambda: tasks.table.row_keys()[:1] == ["t-020"], what="back to page 2")
        # filter by type (client side on the loaded page)
        await pilot.press("slash", *"refund", "enter")
        assert tasks.needle == "refund"
        assert tasks.table.row_keys() and all(int(k[2:]) % 2 == 0 for k in tasks.table.row_keys())
        # sort by id reversed? sort cycles: id, type, ...; with "type" all rows are refund
        await pilot.press("s")
        assert tasks.sort_by == "id"
        # mark two rows with space
        await pilot.press("g", "space", "space")
        assert len(tasks.marked) == 2
        assert tasks.selection() == sorted(tasks.marked)
        # next state: active (empty)
        await pilot.press("greater_than_sign")
        await wait_for(pilot, lambda: tasks.state == "active" and tasks.page is not None)
        assert tasks.table.row_count == 0 and not tasks.marked


async def test_active_progress_bar_and_live_progress_event(redis_url: str) -> None:
    with Client(redis_url) as c:
        c.enqueue("order:payment", {}, queue="payment", id="run-1")
        c.enqueue("order:payment", {}, queue="payment", id="run-2")
        jobs = lease(c, "payment", 2)
        progress(c, jobs[0], 30, "charging")
    app = make_app(redis_url, interval_ms=60_000)  # no polls during the test: events only
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        app.post_message(OpenQueue("payment", "active"))
        tasks = app.query_one(TasksView)
        await wait_for(pilot, lambda: tasks.page is not None and tasks.table.row_count == 2)
        assert "30%" in cell(tasks.table, "run-1", "info")
        assert "charging" in cell(tasks.table, "run-1", "info")
        await wait_for(pilot, lambda: app.events_seen >= 1, what="subscription")
        polls = app.polls
        with Client(redis_url) as c:
            progress(c, jobs[1], 75, "shipping label")
        await wait_for(pilot, lambda: "75%" in cell(tasks.table, "run-2", "info"), what="progress event")
        assert "shipping label" in cell(tasks.table, "run-2", "info")
        assert app.polls == polls  # the row changed by the event, not by a poll


async def test_cursor_stays_on_same_task_when_rows_change(redis_url: str) -> None:
    with Client(redis_url) as c:
        for i in range(5):
            c.enqueue("x", {}, queue="q", id=f"k-{i}", priority=50)
    app = make_app(redis_url, events=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("enter")
        tasks = app.query_one(TasksView)
        await wait_for(pilot, lambda: tasks.table.row_count == 5)
        await pilot.press("j", "j")
        assert tasks.table.cursor_key == "k-2"
        with Client(redis_url) as c:  # two tasks jump ahead of the cursor's task
            c.enqueue("x", {}, queue="q", id="urgent-1", priority=0)
            c.enqueue("x", {}, queue="q", id="urgent-2", priority=0)
        await next_poll(pilot, app)
        await wait_for(pilot, lambda: tasks.table.row_count == 7)
        assert tasks.table.row_keys()[:2] == ["urgent-1", "urgent-2"]
        assert tasks.table.cursor_key == "k-2"


async def test_task_detail_fields_error_history_and_dependencies(redis_url: str) -> None:
    with Client(redis_url) as c:
        make_dead(c, "payment", 1, prefix="parent")
        c.enqueue("order:ship", {"order": 1}, queue="shipping", id="child-1", depends_on=["parent-000"])
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        app.open_task("payment", "parent-000")
        await wait_for(
            pilot, lambda: isinstance(app.screen, TaskDetailScreen) and app.screen.info is not None
        )
        screen = app.screen
        assert isinstance(screen, TaskDetailScreen)
        body = str(screen.query_one("#detail-body").render())
        assert "card declined for parent-000" in body
        assert "Traceback: boom" in body
        assert "History" in body and "dead" in body
        assert '"order_id": 0' in body
        # the dependent task is listed and Enter on it opens its detail
        deps = screen.query_one("#detail-deps")
        assert deps.option_count == 1  # type: ignore[attr-defined]
        deps.focus()
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, TaskDetailScreen) and app.screen.task_id == "child-1",
            what="dependent detail",
        )
        await wait_for(pilot, lambda: app.screen.info is not None)  # type: ignore[attr-defined]
        child = app.screen
        assert isinstance(child, TaskDetailScreen) and child.info is not None
        assert child.info.depends_on == ("payment|parent-000",)
        await pilot.press("escape")
        assert app.screen is screen
        await pilot.press("escape")
        assert not isinstance(app.screen, TaskDetailScreen)


async def test_workers_view_shows_heartbeats_and_stale(redis_url: str, raw: redis.Redis) -> None:
    # a worker row as the engine's worker registers it (see engine.inspect.workers)
    now_ms = int(raw.time()[0]) * 1000
    raw.zadd("rediq:workers", {"w-old": now_ms - 600_000})
    raw.hset(
        "rediq:worker:w-old",
        mapping={
            "host": "box-1",
            "pid": 4242,
            "queues": "payment,mail",
            "concurrency": 8,
            "busy": 2,
            "overdue": 1,
            "started": now_ms - 7_200_000,
            "heartbeat": now_ms - 600_000,
            "tasks": '["payment|abc"]',
        },
    )
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("2")
        view = app.query_one(WorkersView)
        await wait_for(pilot, lambda: view.table.row_count == 1, what="worker row")
        assert cell(view.table, "w-old", "host") == "box-1"
        assert cell(view.table, "w-old", "busy") == "2/8"
        assert cell(view.table, "w-old", "overdue") == "1"  # a slot held by a handler past its timeout
        assert cell(view.table, "w-old", "beat").startswith("STALE 10m")
        assert cell(view.table, "w-old", "uptime") == "2h"


async def test_cron_view_lists_entries(redis_url: str) -> None:
    with Client(redis_url) as c:
        c.run(register(c.settings, CronDef("leap-report", "0 0 29 2 *", "report:leap", queue="reports")))
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("5")
        view = app.query_one(CronView)
        await wait_for(pilot, lambda: view.table.row_count == 1, what="cron row")
        assert cell(view.table, "leap-report", "expr") == "0 0 29 2 *"
        assert cell(view.table, "leap-report", "next") == "2028-02-29 00:00"
        assert cell(view.table, "leap-report", "outcome") == "-"
        # run it now: a task is created and the outcome column follows
        await pilot.press("x")
        await wait_for(pilot, lambda: app.writes >= 1)
        await wait_for(
            pilot,
            lambda: cell(view.table, "leap-report", "outcome") == "pending",
            what="outcome",
            timeout=3,
        )


async def test_help_lists_bindings_and_view_keys(redis_url: str) -> None:
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        table = app.screen.query_one("#help-table")
        actions = [str(table.get_row_at(i)[2]) for i in range(table.row_count)]  # type: ignore[attr-defined]
        for expected in (
            "Queues",
            "Requeue all",
            "Flush",
            "Pause refresh",
            "Launch worker",
            "Mark",
            "Filter",
        ):
            assert expected in actions
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        for key, view in (("2", "workers"), ("3", "tasks"), ("5", "cron"), ("u", "queues"), ("o", "cron")):
            await pilot.press(key)
            assert app.switcher.current == view
        await pilot.press("escape")
        assert app.switcher.current == "queues"


async def test_pause_refresh_stops_polling(redis_url: str) -> None:
    app = make_app(redis_url, interval_ms=100, events=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 2)
        await pilot.press("p")
        assert app.refresh_paused
        assert "REFRESH PAUSED" in str(app.query_one("#status").render())
        polls = app.polls
        await pilot.pause(0.5)
        assert app.polls == polls
        await pilot.press("p")
        await next_poll(pilot, app)


async def test_tasks_key_opens_selected_queue_and_escape_clears_filter(redis_url: str) -> None:
    with Client(redis_url) as c:
        c.enqueue("alpha", {}, queue="a", id="a-1")
        c.enqueue("beta", {}, queue="b", id="b-1")
        c.enqueue("gamma", {}, queue="b", id="b-2")
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("j", "3")
        tasks = app.query_one(TasksView)
        await wait_for(pilot, lambda: tasks.queue == "b" and tasks.table.row_count == 2)
        await pilot.press("slash", *"gam")
        assert app.switcher.current == "tasks"
        await pilot.press("escape")  # clears the filter, does not leave the view
        assert app.switcher.current == "tasks"
        assert tasks.needle == "" and tasks.table.row_count == 2
        assert app.focused is tasks.table
        await pilot.press("slash", *"gam", "enter")
        assert tasks.table.row_keys() == ["b-2"]
        await pilot.press("escape")  # now Esc goes back to Queues
        assert app.switcher.current == "queues"


async def test_detail_follows_progress_events(redis_url: str) -> None:
    with Client(redis_url) as c:
        c.enqueue("order:payment", {}, queue="payment", id="live-1")
        (job,) = lease(c, "payment", 1)
        progress(c, job, 10, "starting")
    app = make_app(redis_url, interval_ms=600_000)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1 and app.events_seen >= 1)
        app.open_task("payment", "live-1")
        await wait_for(
            pilot, lambda: isinstance(app.screen, TaskDetailScreen) and app.screen.info is not None
        )
        screen = app.screen
        assert isinstance(screen, TaskDetailScreen)
        assert "starting" in str(screen.query_one("#detail-body").render())
        with Client(redis_url) as c:
            progress(c, job, 60, "capturing funds")
        await wait_for(
            pilot, lambda: "capturing funds" in str(screen.query_one("#detail-body").render()), what="event"
        )
        assert screen.info is not None and screen.info.progress == 60


async def test_page_size_follows_terminal_height(redis_url: str) -> None:
    with Client(redis_url) as c:
        for i in range(60):
            c.enqueue("x", {}, queue="q", id=f"r-{i:03d}")
    app = make_app(redis_url, interval_ms=600_000, events=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("enter")
        tasks = app.query_one(TasksView)
        await wait_for(pilot, lambda: tasks.table.row_count == 20)
        await pilot.resize_terminal(80, 40)
        await wait_for(pilot, lambda: tasks.table.row_count == 36, what="bigger page")
