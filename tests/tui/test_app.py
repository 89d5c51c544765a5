"""Command line, entry point, import boundaries, events-driven refresh, palette, detail key."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine import events
from engine.client import Client
from rediq_tui.__main__ import parse_args
from rediq_tui.config import ConsoleConfig
from rediq_tui.screens.detail import TaskDetailScreen
from rediq_tui.views.queues import QueuesView
from rediq_tui.views.tasks import TasksView
from tests.tui.helpers import make_app, wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_parse_args_defaults_and_flags() -> None:
    config = parse_args(["--redis-url", "redis://h:1/2"])
    assert config == ConsoleConfig(redis_url="redis://h:1/2")
    config = parse_args(
        ["--redis-url", "redis://h", "--interval", "500", "--no-mouse", "--read-only", "--theme", "light"]
    )
    assert (config.interval_ms, config.mouse, config.read_only, config.theme) == (500, False, True, "light")
    with pytest.raises(SystemExit):
        parse_args(["--interval", "5"])
    with pytest.raises(SystemExit):
        parse_args(["--theme", "blue"])


def test_display_name_hides_password() -> None:
    assert "s3cret" not in ConsoleConfig(redis_url="redis://bob:s3cret@db:6379/0").display_name
    assert "s3cret" not in ConsoleConfig(redis_url="redis://:s3cret@db:6379/0").display_name
    assert ConsoleConfig(redis_url="redis://db").display_name == "redis://db"


async def test_prefix_reads_another_installation(redis_url: str) -> None:
    from engine.ops import Settings

    with Client(redis_url, settings=Settings(prefix="other")) as c:
        c.enqueue("x", {}, queue="elsewhere", id="o-1")
    with Client(redis_url) as c:
        c.enqueue("x", {}, queue="here", id="h-1")
    app = make_app(redis_url, prefix="other")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        assert app.query_one(QueuesView).table.row_keys() == ["elsewhere"]


def test_module_entry_point_help() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "rediq_tui", "--help"], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0
    for flag in ("--redis-url", "--interval", "--no-mouse", "--read-only", "--theme"):
        assert flag in out.stdout


def test_console_reaches_redis_only_through_engine() -> None:
    for path in (ROOT / "rediq_tui").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] != "redis", f"{path} imports {name}"


async def test_transition_events_refresh_between_polls(redis_url: str) -> None:
    with Client(redis_url) as c:
        c.enqueue("x", {}, queue="payment", id="a")
    app = make_app(redis_url, interval_ms=600_000)  # only events can trigger a refresh
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await wait_for(pilot, lambda: app.events_seen >= 1, what="subscribed (resync)")
        view = app.query_one(QueuesView)
        with Client(redis_url) as c:
            c.enqueue("x", {}, queue="mail", id="b")
        await wait_for(pilot, lambda: "mail" in view.table.row_keys(), what="event-driven refresh")


async def test_a_closed_console_ends_its_subscription_even_when_the_cancel_is_lost(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Textual cancels the event listener as the console closes; a cancel lost in redis-py's
    read (tests/engine/test_event_reconnect.py shows the subscription then ends only by its
    ``running`` predicate) once kept the subscription and the event loop going. The console
    hands ``events.subscribe`` a predicate that turns false when it closes."""
    predicates: list[Callable[[], bool]] = []
    original = events.subscribe

    def recording(*args: Any, **kwargs: Any) -> Any:
        predicates.append(kwargs.get("running", lambda: True))
        return original(*args, **kwargs)

    monkeypatch.setattr(events, "subscribe", recording)
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.events_seen >= 1, what="subscribed (resync)")
        assert [running() for running in predicates] == [True]
    assert [running() for running in predicates] == [False]


async def test_detail_key_opens_task_under_cursor_and_palette_commands(redis_url: str) -> None:
    with Client(redis_url) as c:
        c.enqueue("x", {"n": 1}, queue="payment", id="first")
        c.enqueue("x", {"n": 2}, queue="payment", id="second")
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("4")  # nothing opened yet: a hint, no crash
        assert not isinstance(app.screen, TaskDetailScreen)
        await pilot.press("enter")
        tasks = app.query_one(TasksView)
        await wait_for(pilot, lambda: tasks.table.row_count == 2)
        await pilot.press("j", "4")
        await wait_for(pilot, lambda: isinstance(app.screen, TaskDetailScreen))
        assert app.screen.task_id == "second"  # type: ignore[attr-defined]
        await pilot.press("q")
        assert not isinstance(app.screen, TaskDetailScreen)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert {"View: queues", "View: cron", "Pause/resume refresh", "Help"} <= set(titles)
        await pilot.press("q")  # tasks -> queues
        assert app.switcher.current == "queues"
        await pilot.press("q")  # queues -> quit
    assert app.return_code == 0
