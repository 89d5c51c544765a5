"""Find anything (issue 18, point 1): ``/`` filters every list as you type and never switches
views, ``:`` and the palette jump to a queue, worker or task id, a pasted id opens its task,
All tasks across queues and states, Enter on a queue opens the state needing attention, and
filters never follow the operator to another queue. At 80x24 and 120x40, real Valkey."""

from __future__ import annotations

import pytest
from textual import events

from engine.client import Client
from engine.worker import protocol
from rediq_tui.screens.detail import TaskDetailScreen
from rediq_tui.screens.worker import WorkerDetailScreen
from rediq_tui.views.alltasks import AllTasksView, parse_query
from rediq_tui.views.queues import QueuesView
from rediq_tui.views.tasks import TasksView
from rediq_tui.widgets.filter import FilterBar
from tests.tui.data import make_dead
from tests.tui.helpers import make_app, next_poll, wait_for

SIZES = [(80, 24), (120, 40)]
VIEW_KEYS = {
    "queues": "1",
    "workers": "2",
    "tasks": "3",
    "cron": "5",
    "failures": "6",
    "audit": "7",
    "all": "8",
}


def seed(url: str) -> None:
    with Client(url) as c:
        make_dead(c, "payment", 2)
        for i in range(3):
            c.enqueue("order:payment", {"order_id": i, "city": "Berlin"}, queue="payment", id=f"pay-{i}")
        c.enqueue("order:ship", {"city": "Paris"}, queue="orders", id="ord-1")
        c.enqueue("mail:send", {}, queue="mail", id="mail-1")


@pytest.mark.parametrize("size", SIZES)
async def test_slash_filters_every_list_and_typing_never_switches_views(
    redis_url: str, size: tuple[int, int]
) -> None:
    seed(redis_url)
    app = make_app(redis_url)
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("3")  # Tasks of the selected queue, so it has a queue to filter
        for view, key in VIEW_KEYS.items():
            await pilot.press("escape", key)
            await wait_for(pilot, lambda: app.switcher.current == view, what=view)  # noqa: B023
            await pilot.press("slash", *"ord")  # o is the Cron key, d is Delete in Tasks
            assert app.switcher.current == view, f"typing /ord switched {view} to {app.switcher.current}"
            bar = app.current_view.query_one(FilterBar)
            assert bar.has_focus and bar.value == "ord" and app.current_view.needle == "ord"
            await pilot.press("escape")  # clears the filter, back to the list
            assert app.current_view.needle == "" and not bar.has_class("-shown")
        # in Queues, the filter narrows the rows as typed
        await pilot.press("1", "slash", *"ord")
        queues = app.query_one(QueuesView)
        assert queues.table.row_keys() == ["orders"]
        await pilot.press("enter")  # keeps the filter, shown, and gives the list the focus back
        assert queues.table.has_focus and queues.query_one(FilterBar).has_class("-shown")
        assert "match ord" in str(queues.query_one("#queues-title").render())


@pytest.mark.parametrize("size", SIZES)
async def test_colon_jumps_to_a_task_id_in_any_queue_a_queue_and_a_worker(
    redis_url: str, size: tuple[int, int]
) -> None:
    seed(redis_url)
    with Client(redis_url) as c:
        c.call(
            protocol.beat_registry,
            "box:77:w1",
            {"host": "box", "pid": 77, "queues": "mail", "concurrency": 4},
            60_000,
        )
    app = make_app(redis_url)
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("6", "colon", *"ord-1", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TaskDetailScreen), what="task detail")
        assert isinstance(detail := app.screen, TaskDetailScreen)
        assert (detail.queue, detail.task_id) == ("orders", "ord-1")
        await pilot.press("escape", "colon", *"payment", "enter")
        tasks = app.query_one(TasksView)
        await wait_for(pilot, lambda: app.switcher.current == "tasks" and tasks.queue == "payment")
        assert tasks.state == "dead"  # the state that needs attention
        await pilot.press("colon", *"box:77", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, WorkerDetailScreen), what="worker detail")
        await next_poll(pilot, app)
        body = str(app.screen.query_one("#worker-body").render())
        assert "box" in body and "77" in body
        await pilot.press("escape", "colon", *"no-such-thing", "enter")
        await wait_for(
            pilot, lambda: any("No queue, worker or task named" in n.message for n in app._notifications)
        )


async def test_a_pasted_task_id_opens_its_detail_whatever_its_queue(redis_url: str) -> None:
    seed(redis_url)
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        app.post_message(events.Paste("  mail-1\n"))  # as the terminal driver delivers a paste
        await wait_for(pilot, lambda: isinstance(app.screen, TaskDetailScreen), what="detail from paste")
        assert isinstance(detail := app.screen, TaskDetailScreen)
        assert (detail.queue, detail.task_id) == ("mail", "mail-1")


async def test_command_palette_jumps_to_a_queue(redis_url: str) -> None:
    seed(redis_url)
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("ctrl+p")
        await pilot.press(*"go to queue: orders")
        await pilot.pause(0.5)
        await pilot.press("enter")
        tasks = app.query_one(TasksView)
        await wait_for(
            pilot, lambda: app.switcher.current == "tasks" and tasks.queue == "orders", what="palette"
        )


async def test_enter_on_a_queue_opens_the_state_that_needs_attention(redis_url: str) -> None:
    with Client(redis_url) as c:
        make_dead(c, "a-dead", 1)
        c.enqueue("x", {}, queue="a-dead", id="p")
        c.enqueue("x", {}, queue="b-pending", id="q")
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        tasks = app.query_one(TasksView)
        await pilot.press("enter")
        await wait_for(pilot, lambda: tasks.queue == "a-dead")
        assert tasks.state == "dead"
        await pilot.press("1", "j", "enter")
        await wait_for(pilot, lambda: tasks.queue == "b-pending")
        assert tasks.state == "pending"


async def test_a_task_filter_never_follows_the_operator_to_another_queue(redis_url: str) -> None:
    seed(redis_url)
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        queues = app.query_one(QueuesView)
        tasks = app.query_one(TasksView)
        row = queues.table.row_keys().index("payment")
        await pilot.press(*(["j"] * row), "enter")
        await wait_for(pilot, lambda: tasks.queue == "payment")
        await pilot.press("slash", *"Berlin", "enter")
        assert tasks.needle == "Berlin"
        await pilot.press("1", "g", "enter")  # another queue
        await wait_for(pilot, lambda: tasks.queue != "payment")
        assert tasks.needle == "" and not tasks.query_one(FilterBar).has_class("-shown")
        assert "filter" not in str(tasks.query_one("#tasks-title").render())


@pytest.mark.parametrize("size", SIZES)
async def test_all_tasks_view_across_queues_with_counts_filter_and_paging(
    redis_url: str, size: tuple[int, int]
) -> None:
    seed(redis_url)
    with Client(redis_url) as c:
        for i in range(40):
            c.enqueue("bulk:job", {"i": i}, queue="bulk", id=f"bulk-{i:02d}")
    app = make_app(redis_url)
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("8")
        view = app.query_one(AllTasksView)
        await wait_for(pilot, lambda: view.page is not None and view.table.row_count > 0)
        assert view.page is not None and view.page.matched == 47 and view.page.counts["dead"] == 2
        assert view.table.row_count == min(47, view.limit)
        counts = str(view.query_one("#all-counts").render())
        assert "dead 2" in counts and "pending 45" in counts
        first = view.table.row_keys()
        await pilot.press("n")
        await wait_for(pilot, lambda: view.table.row_keys() != first)
        assert not set(first) & set(view.table.row_keys())
        await pilot.press("slash", *"state:dead", "enter")
        await wait_for(pilot, lambda: view.page is not None and view.page.matched == 2)
        assert sorted(view.table.row_keys()) == ["payment|dead-000", "payment|dead-001"]
        await pilot.press("slash", "ctrl+u", *"type:ship Paris", "enter")
        await wait_for(pilot, lambda: view.table.row_keys() == ["orders|ord-1"])
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TaskDetailScreen))
        assert isinstance(detail := app.screen, TaskDetailScreen) and detail.task_id == "ord-1"


def test_parse_query() -> None:
    q = parse_query("state:dead,retry queue:a,b type:order fp:3fa2 Berlin nightly state:bogus")
    assert [str(s) for s in q.states] == ["dead", "retry"]
    assert q.queues == ("a", "b") and q.task_type == "order" and q.fingerprint == "3fa2"
    assert q.text == "Berlin nightly state:bogus"  # a typo is searched, never silently dropped
