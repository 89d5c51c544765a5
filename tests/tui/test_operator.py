"""The operator features against a real server: failure groups, audit, why/attempts, quarantine
restore, backlog forecast, cron fires and runs, the server-side ``/`` search, read-only."""

from __future__ import annotations

from typing import Any

import redis
from rich.text import Text
from textual.widgets import Input, Static

from engine import admin, inspect
from engine.client import Client
from engine.cron import CronDef
from engine.inspect import QueueSummary
from engine.scheduler import register
from rediq_tui import fmt
from rediq_tui.app import RediqApp
from rediq_tui.screens.confirm import ConfirmScreen
from rediq_tui.screens.detail import TaskDetailScreen
from rediq_tui.views.audit import AuditView
from rediq_tui.views.cron import CronView
from rediq_tui.views.failures import FailuresView
from rediq_tui.views.queues import QueuesView, local_forecast, short_drain
from rediq_tui.views.tasks import TasksView
from tests.tui import scenes
from tests.tui.helpers import make_app, next_poll, wait_for
from tests.tui.scenes import KS


def notes(app: RediqApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


def question(app: RediqApp) -> str:
    assert isinstance(app.screen, ConfirmScreen)
    return str(app.screen.query_one("#confirm-question", Static).render())


def plain(widget: Static) -> str:
    r = widget.render()
    return r.plain if isinstance(r, Text) else str(r)


def cell(table: Any, row: str, col: str) -> str:
    value = table.get_cell(row, col)
    return value.plain if isinstance(value, Text) else str(value)


async def confirm_yes(pilot: Any, app: RediqApp) -> None:
    await pilot.press(*"yes", "enter")


# ---------------------------------------------------------------------------------- failures


async def test_failures_view_lists_groups_biggest_first_and_enter_opens_group(
    redis_url: str, raw: redis.Redis
) -> None:
    scenes.failures_scene(redis_url, raw)
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("6")
        view = app.query_one(FailuresView)
        await wait_for(pilot, lambda: view.table.row_count == 3, what="3 groups")
        groups = list(view.groups.values())
        assert [(g.queue, g.count) for g in groups] == [("payment", 12), ("payment", 3), ("shipping", 1)]
        first = view.table.row_keys()[0]
        assert cell(view.table, first, "sample") == "card declined for dead-<n>"
        assert cell(view.table, first, "count") == "12"
        assert cell(view.table, first, "last") == "2m ago"
        assert "3 groups · 16 tasks" in plain(view.query_one("#failures-title", Static))
        # the letter alias reaches the same view
        await pilot.press("1", "f")
        assert app.switcher.current == "failures"
        await pilot.press("j", "enter")
        tasks = app.query_one(TasksView)
        await wait_for(pilot, lambda: tasks.table.row_count == 3, what="group tasks")
        assert app.switcher.current == "tasks"
        assert sorted(tasks.table.row_keys()) == ["gw-000", "gw-001", "gw-002"]
        title = plain(tasks.query_one("#tasks-title", Static))
        assert "group order:payment · ConnectionError: <addr> refused" in title
        assert "1-3 of 3" in title
        # > leaves the group for the queue's states
        await pilot.press("greater_than_sign")
        await wait_for(pilot, lambda: tasks.group is None and tasks.table.row_count == 15)
        assert tasks.state == "dead"


async def test_retry_group_is_one_action_with_typed_confirmation(redis_url: str, raw: redis.Redis) -> None:
    scenes.failures_scene(redis_url, raw)
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("6")
        view = app.query_one(FailuresView)
        await wait_for(pilot, lambda: view.table.row_count == 3)
        await pilot.press("j", "r")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert (
            question(app)
            == "Retry all 3 tasks of order:payment · ConnectionError: <addr> refused in payment?"
        )
        await pilot.press("escape")
        assert "Cancelled, nothing changed" in notes(app)
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await confirm_yes(pilot, app)
        await wait_for(pilot, lambda: app.writes == 1)
        assert "3 tasks of order:payment · ConnectionError: <addr> refused in payment requeued" in notes(app)
        await wait_for(pilot, lambda: view.table.row_count == 2, what="group gone")
        with Client(redis_url) as c:
            assert c.call(admin.count, "payment", "pending") == 3
            assert c.call(admin.count, "payment", "dead") == 12
            assert c.call(inspect.audit, 1)[0].action == "retry_group"


async def test_delete_group_quarantines_and_restore_brings_tasks_back(
    redis_url: str, raw: redis.Redis
) -> None:
    scenes.failures_scene(redis_url, raw)
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("6")
        view = app.query_one(FailuresView)
        await wait_for(pilot, lambda: view.table.row_count == 3)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert question(app) == (
            "Delete all 12 tasks of order:payment · card declined for dead-<n> in payment"
            " (to quarantine, restorable)?"
        )
        await confirm_yes(pilot, app)
        await wait_for(pilot, lambda: app.writes == 1)
        assert any("12 tasks of" in n and "deleted (to quarantine" in n for n in notes(app))
        with Client(redis_url) as c:
            assert c.call(admin.count, "payment", "quarantined") == 12
        # Tasks, payment, `<` from pending wraps to quarantined; restore two marked rows
        await pilot.press("1")
        queues = app.query_one(QueuesView)
        await wait_for(pilot, lambda: queues.table.row_count == 2)
        await pilot.press("g", "enter")
        tasks = app.query_one(TasksView)
        await wait_for(pilot, lambda: tasks.queue == "payment" and tasks.page is not None)
        assert tasks.check_action("restore", ()) is False  # hidden outside quarantine
        for _ in range(9):  # Enter opened the state needing attention; step to quarantined
            if tasks.state == "quarantined":
                break
            await pilot.press("greater_than_sign")
        await wait_for(pilot, lambda: tasks.state == "quarantined" and tasks.table.row_count == 12)
        assert tasks.check_action("restore", ()) is True
        await pilot.press("space", "space", "U")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert question(app) == "Restore 2 tasks of payment?"
        await confirm_yes(pilot, app)
        await wait_for(pilot, lambda: app.writes == 2)
        assert "2 of 2 tasks of payment restored" in notes(app)
        await wait_for(pilot, lambda: tasks.table.row_count == 10)
        with Client(redis_url) as c:
            assert c.call(admin.count, "payment", "quarantined") == 10
        # one task: no confirmation
        await pilot.press("U")
        await wait_for(pilot, lambda: app.writes == 3)
        with Client(redis_url) as c:
            assert c.call(admin.count, "payment", "quarantined") == 9


async def test_read_only_disables_the_new_writing_bindings(redis_url: str, raw: redis.Redis) -> None:
    scenes.failures_scene(redis_url, raw)
    scenes.quarantine_scene(redis_url, raw)
    app = make_app(redis_url, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("6")
        view = app.query_one(FailuresView)
        await wait_for(pilot, lambda: view.table.row_count == 3)
        assert view.check_action("retry_group", ()) is None
        assert view.check_action("delete_group", ()) is None
        await pilot.press("r", "d")
        await pilot.pause(0.3)
        assert not isinstance(app.screen, ConfirmScreen)
        # group task list: R/F (group retry/delete) refused too
        await pilot.press("enter")
        tasks = app.query_one(TasksView)
        await wait_for(pilot, lambda: tasks.group is not None and tasks.table.row_count > 0)
        await pilot.press("R", "F")
        await pilot.pause(0.3)
        assert not isinstance(app.screen, ConfirmScreen)
        tasks.open("payment", "quarantined")
        app.action_show("tasks")
        await wait_for(pilot, lambda: tasks.table.row_count == 3)
        assert tasks.check_action("restore", ()) is None
        await pilot.press("U")
        await pilot.pause(0.3)
        assert app.writes == 0
        assert "READ-ONLY" in str(app.query_one("#status").render())
    with Client(redis_url) as c:
        assert c.call(admin.count, "payment", "quarantined") == 3
        assert len(c.call(inspect.failure_groups)) == 3


# ---------------------------------------------------------------------------------- audit


async def test_audit_view_newest_first_and_shows_console_actions(redis_url: str, raw: redis.Redis) -> None:
    scenes.audit_scene(redis_url, raw)
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("7")
        view = app.query_one(AuditView)
        await wait_for(pilot, lambda: view.table.row_count == 6)
        keys = view.table.row_keys()
        assert [cell(view.table, k, "action") for k in keys][:2] == ["cron_run_now", "restore"]
        assert cell(view.table, keys[4], "count") == "312"
        assert cell(view.table, keys[4], "at") == "09-21 14:08:20"
        assert cell(view.table, keys[2], "actor") == "alice@laptop"
        # an action from the console lands on top
        with Client(redis_url) as c:
            c.enqueue("x", {}, queue="payment", id="a")
        await pilot.press("a")  # letter alias; already here: polls again
        await pilot.press("1")
        await wait_for(pilot, lambda: "payment" in app.query_one(QueuesView).summaries)
        await pilot.press("P")
        await wait_for(pilot, lambda: app.writes == 1)
        await pilot.press("a")
        await wait_for(pilot, lambda: view.table.row_count == 7)
        top = view.table.row_keys()[0]
        assert (cell(view.table, top, "action"), cell(view.table, top, "queue")) == ("pause", "payment")


# ---------------------------------------------------------------------------------- detail


async def test_detail_why_blocked_and_attempt_timeline(redis_url: str, raw: redis.Redis) -> None:
    scenes.detail_scene(redis_url, raw)
    with Client(redis_url) as c:
        c.enqueue("mail:send", {}, queue="mail", id="mail-1")
        c.call(admin.pause, "mail")
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        app.open_task("payment", "order-000")
        await wait_for(pilot, lambda: isinstance(app.screen, TaskDetailScreen) and app.screen.why is not None)
        screen = app.screen
        assert isinstance(screen, TaskDetailScreen)
        body = plain(screen.query_one("#detail-body", Static))
        # a finished task shows its outcome and attempts, not a "why not running" section
        assert "Why not running?" not in body
        assert "#1  w-test         14:13:21  1.00s dead      card declined for order-000" in body
        await pilot.press("escape")
        app.open_task("mail", "mail-1")
        await wait_for(
            pilot,
            lambda: (
                isinstance(app.screen, TaskDetailScreen)
                and app.screen.task_id == "mail-1"
                and app.screen.why is not None
            ),
        )
        screen = app.screen
        assert isinstance(screen, TaskDetailScreen) and screen.why is not None
        assert screen.why.blocked
        body = plain(screen.query_one("#detail-body", Static))
        assert "blocked · position 1 in pending" in body
        assert "queue 'mail' is paused" in body
        assert "no live worker serves queue 'mail'" in body
        assert "Attempts (oldest first) \n(none)" in body
        title = plain(screen.query_one("#detail-title", Static))
        assert title.startswith("mail · pending · mail:send · blocked: queue 'mail' is paused")


# ---------------------------------------------------------------------------------- forecast


def test_local_forecast_from_the_summary() -> None:
    def summary(pending: int, throughput: tuple[int, ...]) -> QueueSummary:
        return QueueSummary("q", {"pending": pending}, False, 0, 0, None, throughput)

    fc = local_forecast(summary(120, (0, 10, 10, 10, 10, 10, 99)))  # current minute ignored
    assert (fc.rate_per_min, fc.drain_minutes, fc.level) == (10.0, 12.0, "warn")
    assert short_drain(fc) == "~12m"
    assert fmt.drain(fc.pending, fc.drain_minutes) == "drains in ~12 min"
    stuck = local_forecast(summary(5, (0, 0, 0)))
    assert (stuck.drain_minutes, stuck.level, short_drain(stuck)) == (None, "alert", "never")
    assert fmt.drain(5, None) == "not draining"
    empty = local_forecast(summary(0, ()))
    assert (empty.level, short_drain(empty)) == ("ok", "-")
    slow = local_forecast(summary(6000, (0, 1, 1, 1, 1, 1, 0)))
    assert (short_drain(slow), slow.level) == ("~100h", "alert")


async def test_queues_forecast_column_and_selected_queue_runtimes(redis_url: str, raw: redis.Redis) -> None:
    with Client(redis_url) as c:
        for i in range(4):
            c.enqueue("order:payment", {"n": i}, queue="payment", id=f"p-{i}")
        c.enqueue("mail:send", {}, queue="mail", id="m-1")
    raw.rpush(KS.queue("payment").runtimes("order:payment"), *[str(ms) for ms in range(100, 2100, 100)])
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        view = app.query_one(QueuesView)
        assert cell(view.table, "payment", "drain") == "never"
        assert view.forecasts["payment"].level == "alert"
        await pilot.press("j")
        await next_poll(pilot, app)
        await wait_for(pilot, lambda: view.forecast is not None and view.forecast.queue == "payment")
        line = plain(view.query_one("#queues-detail", Static))
        # the inflow is the last 60 s (its value depends on the second of the minute)
        assert line.startswith("payment · 4 pending · ok 0/min, in "), line
        assert line.endswith("/min (last 60 s) · not draining · order:payment p50 1.10s p95 2.00s"), line
        await pilot.press("k")
        assert plain(view.query_one("#queues-detail", Static)).startswith("mail · 1 pending")


# ---------------------------------------------------------------------------------- cron


async def test_cron_next_fires_runs_and_run_now(redis_url: str) -> None:
    with Client(redis_url) as c:
        c.run(register(c.settings, CronDef("leap-day-report", "0 0 29 2 *", "report:leap", queue="reports")))
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("5")
        view = app.query_one(CronView)
        await wait_for(pilot, lambda: view.table.row_count == 1)
        detail = plain(view.query_one("#cron-detail", Static))
        assert detail.startswith("leap-day-report · next: 2028-02-29 00:00 (in 525d)")
        for year in (2032, 2036, 2040, 2044):
            assert f"{year}-02-29 00:00" in detail
        assert "last runs: none yet" in detail
        await pilot.press("x")
        await wait_for(pilot, lambda: app.writes == 1)
        await wait_for(pilot, lambda: "(run now)" in plain(view.query_one("#cron-detail", Static)))
        entry = view.entries["leap-day-report"]
        assert entry.runs and entry.runs[0].manual
        assert entry.runs[0].task_id in plain(view.query_one("#cron-detail", Static))
        with Client(redis_url) as c:
            assert c.call(inspect.audit, 1)[0].action == "cron_run_now"


# ---------------------------------------------------------------------------------- search


async def test_filter_searches_the_whole_state(redis_url: str) -> None:
    with Client(redis_url) as c:
        for i in range(60):
            c.enqueue(
                "order:payment",
                {"n": i, "city": "Oslo" if i == 57 else "Rome"},
                queue="payment",
                id=f"t-{i:03d}",
            )
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("enter")
        tasks = app.query_one(TasksView)
        await wait_for(pilot, lambda: tasks.table.row_count == 20)
        assert "t-057" not in tasks.table.row_keys()  # beyond the page on screen
        await pilot.press("slash", *"oslo", "enter")
        await wait_for(pilot, lambda: tasks.searched is not None and tasks.table.row_keys() == ["t-057"])
        title = plain(tasks.query_one("#tasks-title", Static))
        assert "1 found · searched 60 of 60" in title
        # Esc in the box clears the filter: the plain page again
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press("escape")
        await wait_for(pilot, lambda: tasks.searched is None and tasks.table.row_count == 20)


# ---------------------------------------------------------------------------------- hostile

HOSTILE = "[@click=app.quit]boom\x1b[2J\x9b31m\u202e"


async def test_hostile_failure_and_audit_text_is_inert(redis_url: str, raw: redis.Redis) -> None:
    from tests.tui.data import kill, lease

    with Client(redis_url) as c:
        c.enqueue(HOSTILE, {}, queue="evil", id="h1", max_retry=0)
        for job in lease(c, "evil", 1):
            kill(c, job, HOSTILE)
    raw.xadd(
        KS.audit, {"action": HOSTILE, "queue": HOSTILE, "count": "x", "detail": HOSTILE, "actor": HOSTILE}
    )
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("6")
        failures = app.query_one(FailuresView)
        await wait_for(pilot, lambda: failures.table.row_count == 1)
        key = failures.table.row_keys()[0]
        for col in ("type", "sample"):
            text = cell(failures.table, key, col)
            assert text.startswith("[@click=app.")
            assert not any(ch in text for ch in "\x1b\x9b\u202e")
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "\x1b" not in question(app) and "[@click=app.quit]" in question(app)
        await pilot.press("escape")
        await pilot.press("7")
        audit = app.query_one(AuditView)
        await wait_for(pilot, lambda: audit.table.row_count == 1)
        key = audit.table.row_keys()[0]
        for col in ("action", "queue", "detail", "actor"):
            assert "\x1b" not in cell(audit.table, key, col)
        assert cell(audit.table, key, "count") == "0"
        assert app.is_running
