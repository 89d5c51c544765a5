"""Hostile data in Redis: the console composes, shows it as literal text and runs no action."""

from __future__ import annotations

import json

import redis
from rich.text import Text

from engine.client import Client
from engine.ops import Settings
from rediq_tui.screens.detail import TaskDetailScreen
from rediq_tui.views.queues import QueuesView
from rediq_tui.views.tasks import TasksView
from tests.tui.helpers import make_app, wait_for

HOSTILE_TYPE = "[@click=app.quit]x\x1b]0;owned\x07\u202eevil"
HOSTILE_ERROR = "[/oops] [@click=app.toggle_refresh]boom\x1b[2J\x9b31m\x00"


def plant(raw: redis.Redis, queue: str, task_id: str, fields: dict[str | bytes, str | bytes]) -> None:
    """Write a task hash the way a buggy or malicious client could."""
    qk = Settings().keyspace.queue(queue)
    raw.sadd(Settings().keyspace.queues, queue)
    mapping: dict[str | bytes, str | bytes] = {"id": task_id, "state": "pending", "enq": "1"}
    mapping.update(fields)
    raw.hset(qk.task(task_id), mapping=mapping)  # type: ignore[arg-type]
    raw.zadd(qk.pending, {task_id: 1})


async def test_hostile_task_fields_are_inert(redis_url: str, raw: redis.Redis) -> None:
    with Client(redis_url) as c:
        c.enqueue("ok", {}, queue="evil", id="normal")
    plant(
        raw,
        "evil",
        "h1",
        {
            "type": HOSTILE_TYPE,
            "payload": json.dumps({"x": "[@click=app.quit]", "blob": "B" * 1_000_000}),
            "error": HOSTILE_ERROR,
            "tb": "\x1b[31mTraceback\x1b[0m\n[@click=app.quit]",
            "pmsg": "\x1b]8;;http://x\x1b\\[b]bold[/b]",
            "progress": "40",
            "worker": "\u2066w\u2069",
            "meta": json.dumps({"[k]": "\x1b[5mblink"}),
        },
    )
    # invalid UTF-8 bytes in a field (the engine decodes with errors="replace")
    raw.hset(Settings().keyspace.queue("evil").task("h1"), "reason", b"\xff\xfe[bold]x".decode("latin-1"))
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        assert "evil" in app.query_one(QueuesView).table.row_keys()
        await pilot.press("enter")
        tasks = app.query_one(TasksView)
        await wait_for(pilot, lambda: tasks.table.row_count == 2, what="rows")
        type_cell = tasks.table.get_cell("h1", "type")
        assert isinstance(type_cell, Text)
        assert "\x1b" not in type_cell.plain and "\u202e" not in type_cell.plain
        assert type_cell.plain.startswith("[@click=app.q")
        info = tasks.table.get_cell("h1", "info")
        assert isinstance(info, Text) and "40%" in info.plain and "[b]bold[/b]" in info.plain
        # click right on the hostile text: nothing runs
        await pilot.click("#tasks-table", offset=(20, 2))
        await pilot.click("#tasks-table", offset=(60, 2))
        await pilot.pause(0.2)
        assert app.is_running and not app.refresh_paused
        # the detail shows everything as literal text, capped
        app.open_task("evil", "h1")
        await wait_for(
            pilot, lambda: isinstance(app.screen, TaskDetailScreen) and app.screen.info is not None
        )
        body = app.screen.query_one("#detail-body").render()
        plain = body.plain if isinstance(body, Text) else str(body)
        assert "[@click=app.toggle_refresh]boom" in plain
        assert "\x1b" not in plain and "\x9b" not in plain and "\x00" not in plain
        assert "chars)" in plain  # the 1 MB payload is capped
        assert len(plain) < 60_000
        await pilot.click("#detail-body", offset=(5, 5))
        await pilot.pause(0.2)
        assert app.is_running and not app.refresh_paused
        # shown, not obeyed: the title sequence and the override are visible placeholders
        assert "x␛]0;owned␇⟨U+202E⟩evil" in plain
        svg = app.export_screenshot()
        assert "\x1b" not in svg and "\u202e" not in svg
    assert app.return_code in (None, 0)


async def test_malformed_task_hash_does_not_break_the_view(redis_url: str, raw: redis.Redis) -> None:
    plant(raw, "broken", "m1", {"type": "", "priority": "NaN?", "attempts": "[x]", "history": "{"})
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("enter")
        tasks = app.query_one(TasksView)
        await wait_for(pilot, lambda: tasks.table.row_count == 1)
        assert tasks.table.row_keys() == ["m1"]
