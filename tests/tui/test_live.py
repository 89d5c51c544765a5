"""Redis going away and coming back; workers launched from the console."""

from __future__ import annotations

import sys

from engine import admin, inspect
from engine.client import Client
from rediq_tui.screens.confirm import ConfirmScreen
from rediq_tui.screens.launch import LaunchScreen
from rediq_tui.views.queues import QueuesView
from rediq_tui.views.workers import WorkersView
from tests.servers import ServerProcess
from tests.tui.helpers import make_app, wait_for


async def test_redis_goes_away_and_comes_back(redis_url: str, valkey_server: ServerProcess) -> None:
    with Client(redis_url) as c:
        c.enqueue("x", {}, queue="payment", id="a")
    app = make_app(redis_url, interval_ms=200)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        valkey_server.kill()
        try:
            await wait_for(pilot, lambda: app.connected is False, timeout=30, what="disconnect")
            status = app.query_one("#status")
            assert status.has_class("-error")
            assert "Redis unreachable" in str(status.render())
            # the last data stays on screen
            assert app.query_one(QueuesView).table.row_keys() == ["payment"]
            assert app.is_running
        finally:
            valkey_server.start()
        with Client(redis_url) as c:
            c.enqueue("x", {}, queue="mail", id="b")
        await wait_for(pilot, lambda: app.connected is True, timeout=30, what="reconnect")
        assert any("Redis is back" in str(n.message) for n in app._notifications)
        assert not app.query_one("#status").has_class("-error")
        await wait_for(pilot, lambda: "mail" in app.query_one(QueuesView).table.row_keys(), timeout=10)


async def test_launch_worker_see_log_and_stop_it(redis_url: str) -> None:
    with Client(redis_url) as c:
        for i in range(3):
            c.enqueue("tui:quick", {}, queue="tuiq", id=f"q-{i}")
    app = make_app(
        redis_url,
        worker_app="tests.tui.apps:console",
        stop_grace_s=10.0,
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("2", "L")
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen))
        await pilot.press("enter", "enter")  # keep the app path and queues
        await pilot.press("end", "backspace", "2", "enter")
        await wait_for(pilot, lambda: len(app.launched) == 1, what="launch")
        launched = app.launched[0]
        assert launched.argv[:4] == [sys.executable, "-m", "engine.cli", "worker"]
        assert launched.spec.queues == ("tuiq",) and launched.spec.concurrency == 2
        view = app.query_one(WorkersView)
        await wait_for(pilot, lambda: view.table.row_count == 1, timeout=30, what="worker heartbeat")
        row_key = view.table.row_keys()[0]
        assert str(view.table.get_cell(row_key, "queues")) == "tuiq"
        with Client(redis_url) as c:
            await wait_for(pilot, lambda: c.call(admin.count, "tuiq", "completed") == 3)
        await wait_for(pilot, lambda: any("serving tuiq" in line for line in launched.lines))
        log = view.query_one("#launched-log")
        assert not log.has_class("-hidden")
        # S asks the selected worker (any worker, through Redis) to drain and stop
        await pilot.press("S")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press(*"yes", "enter")
        await wait_for(pilot, lambda: launched.returncode is not None, timeout=30, what="graceful stop")
        assert launched.returncode == 0
        with Client(redis_url) as c:
            actions = [e.action for e in c.call(inspect.audit, 20)]
        assert "worker.stop" in actions and "worker.launch" in actions
        await wait_for(pilot, lambda: view.table.row_count == 0, timeout=10, what="worker gone")
