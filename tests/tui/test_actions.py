"""Every action by keyboard against a real server: confirmations, notifications, read-only."""

from __future__ import annotations

import redis
from textual.widgets import Input, Static

from engine import admin
from engine.client import Client
from engine.task import TaskState
from rediq_tui.app import RediqApp
from rediq_tui.screens.confirm import ConfirmScreen
from rediq_tui.views.queues import QueuesView
from rediq_tui.views.tasks import TasksView
from tests.tui.data import make_dead
from tests.tui.helpers import make_app, wait_for


def notes(app: RediqApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


def question(app: RediqApp) -> str:
    assert isinstance(app.screen, ConfirmScreen)
    return str(app.screen.query_one("#confirm-question", Static).render())


async def test_pause_and_resume_queue(redis_url: str) -> None:
    with Client(redis_url) as c:
        c.enqueue("x", {}, queue="payment", id="a")
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("P")
        await wait_for(pilot, lambda: app.writes == 1)
        assert "Paused queue payment" in notes(app)
        await wait_for(pilot, lambda: app.query_one(QueuesView).summaries["payment"].paused)
        await pilot.press("P")
        await wait_for(pilot, lambda: app.writes == 2)
        assert "Resumed queue payment" in notes(app)
        await wait_for(pilot, lambda: not app.query_one(QueuesView).summaries["payment"].paused)


async def test_requeue_all_dead_states_count_and_needs_typed_yes(redis_url: str) -> None:
    with Client(redis_url) as c:
        make_dead(c, "payment", 12)
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        assert question(app) == "Requeue all 12 dead tasks of payment?"
        # a wrong word does not confirm; Esc cancels and nothing changes
        await pilot.press(*"no", "enter")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")
        assert "Cancelled, nothing changed" in notes(app)
        with Client(redis_url) as c:
            assert c.call(admin.count, "payment", "dead") == 12
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press(*"yes", "enter")
        await wait_for(pilot, lambda: app.writes == 1)
        assert "12 dead tasks of payment requeued" in notes(app)
        with Client(redis_url) as c:
            assert c.call(admin.count, "payment", "dead") == 0
            assert c.call(admin.count, "payment", "pending") == 12


async def test_flush_dead_from_queues_view(redis_url: str) -> None:
    with Client(redis_url) as c:
        make_dead(c, "payment", 3)
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("F")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert question(app) == "Delete (flush) all 3 dead tasks of payment?"
        await pilot.press(*"yes", "enter")
        await wait_for(pilot, lambda: app.writes == 1)
        with Client(redis_url) as c:
            assert c.call(admin.count, "payment", "dead") == 0
            assert c.call(admin.count, "payment", TaskState.QUARANTINED) == 3


async def test_marked_tasks_requeue_delete_cancel(redis_url: str) -> None:
    with Client(redis_url) as c:
        make_dead(c, "payment", 4)
        c.enqueue("x", {}, queue="payment", id="p-1")
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("D")  # dead tasks of the queue under the cursor
        tasks = app.query_one(TasksView)
        await wait_for(pilot, lambda: tasks.state == "dead" and tasks.table.row_count == 4)
        # retry a single task: no confirmation
        await pilot.press("G", "r")
        await wait_for(pilot, lambda: app.writes == 1)
        assert "Task dead-000 of payment requeued" in notes(app)
        await wait_for(pilot, lambda: tasks.table.row_count == 3)
        # mark two and delete them: confirmation states the count
        await pilot.press("g", "space", "space", "d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert question(app) == "Delete 2 tasks of payment?"
        await pilot.press(*"yes", "enter")
        await wait_for(pilot, lambda: app.writes == 2)
        assert "2 of 2 tasks of payment deleted (to quarantine)" in notes(app)
        await wait_for(pilot, lambda: tasks.table.row_count == 1)
        assert not tasks.marked
        # cancel a pending task
        await pilot.press("less_than_sign", "less_than_sign", "less_than_sign", "less_than_sign")
        await wait_for(pilot, lambda: tasks.state == "pending" and tasks.table.row_count >= 1)
        await pilot.press("g")
        key = tasks.table.cursor_key
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press(*"yes", "enter")
        await wait_for(pilot, lambda: app.writes == 3)
        with Client(redis_url) as c:
            info = c.get_task(str(key), "payment")
            assert info is not None and info.state == TaskState.CANCELLED


async def test_requeue_all_of_filtered_selection(redis_url: str) -> None:
    with Client(redis_url) as c:
        make_dead(c, "payment", 3, prefix="card")
        make_dead(c, "payment", 2, prefix="bank")
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("D")
        tasks = app.query_one(TasksView)
        await wait_for(pilot, lambda: tasks.table.row_count == 5)
        await pilot.press("slash", *"bank", "enter", "R")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert question(app) == "Requeue all dead tasks matching 'bank' (of 5) of payment?"
        await pilot.press(*"yes", "enter")
        await wait_for(pilot, lambda: app.writes == 1)
        with Client(redis_url) as c:
            assert c.call(admin.count, "payment", "dead") == 3
            info = c.get_task("bank-000", "payment")
            assert info is not None and info.state == TaskState.PENDING


async def test_read_only_flag_disables_mutating_bindings(redis_url: str) -> None:
    with Client(redis_url) as c:
        make_dead(c, "payment", 2)
    app = make_app(redis_url, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        view = app.query_one(QueuesView)
        assert view.check_action("requeue_dead", ()) is None
        assert view.check_action("open_dead", ()) is True
        await pilot.press("R", "F", "P")
        await pilot.pause(0.3)
        assert not isinstance(app.screen, ConfirmScreen)
        assert app.writes == 0
        assert "READ-ONLY" in str(app.query_one("#status").render())
        with Client(redis_url) as c:
            assert c.call(admin.count, "payment", "dead") == 2


async def test_read_only_error_switches_to_read_only(redis_url: str, raw: redis.Redis) -> None:
    with Client(redis_url) as c:
        c.enqueue("x", {}, queue="payment", id="a")
    raw.execute_command(
        "ACL", "SETUSER", "viewer", "on", ">pw", "~*", "&*", "+@read", "+@connection", "+@pubsub", "+time"
    )
    url = redis_url.replace("redis://", "redis://viewer:pw@")
    app = make_app(url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1, what="read as viewer")
        await pilot.press("P")
        await wait_for(pilot, lambda: app.writes == 1)
        assert app.read_only
        assert "E010" in app.read_only_reason
        assert "READ-ONLY" in str(app.query_one("#status").render())
        assert app.query_one(QueuesView).check_action("toggle_pause", ()) is None
    raw.execute_command("ACL", "DELUSER", "viewer")


async def test_confirm_input_is_focused_for_typing(redis_url: str) -> None:
    with Client(redis_url) as c:
        make_dead(c, "payment", 1)
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("F")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert isinstance(app.focused, Input)
        await pilot.press("escape")


async def test_flush_refused_for_pending_tasks(redis_url: str) -> None:
    with Client(redis_url) as c:
        c.enqueue("x", {}, queue="payment", id="p-1")
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.query_one(TasksView).table.row_count == 1)
        await pilot.press("F")
        await wait_for(pilot, lambda: any("Flush works on" in n for n in notes(app)))
        assert not isinstance(app.screen, ConfirmScreen)
        with Client(redis_url) as c:
            assert c.call(admin.count, "payment", "pending") == 1
