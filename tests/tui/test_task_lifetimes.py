"""The console shows what ``expires`` and ``ctx.log`` leave on a task: an expired task's state,
reason and deadline, and the handler's log lines (sanitised) in the task detail, at 80x24."""

from __future__ import annotations

from engine import ops, tasklog
from engine.client import Client
from engine.inspect import queues
from rediq_tui.screens.detail import TaskDetailScreen
from tests.tui.helpers import make_app, wait_for


def expire_now(c: Client, queue: str, task_id: str) -> None:
    """Past its deadline on the server's clock, then swept (what a worker's maintenance does)."""
    info = c.get_task(task_id)
    assert info is not None and info.expires_at_ms is not None
    deadline = info.expires_at_ms
    while c.run(ops.server_time_ms()) <= deadline:
        pass  # at most the 50 ms of the deadline, on the server's clock
    assert c.run(ops.expire_due(c.settings, queue)) == [task_id]


async def test_detail_shows_an_expired_task_its_reason_and_its_log_lines(redis_url: str) -> None:
    with Client(redis_url) as c:
        r = c.enqueue("order:payment", {"order": 1}, queue="payment", id="late-1", expires=0.05)
        lines = [
            tasklog.LogLine(1_790_000_000_000, tasklog.LogLevel.WARNING, 1, "gateway slow"),
            tasklog.LogLine(1_790_000_000_500, tasklog.LogLevel.INFO, 1, "card \x1b[31mred"),
        ]
        c.backend.execute(tasklog.append_call(c.settings, "payment", r.id, lines))
        expire_now(c, "payment", r.id)
        assert c.run(queues(c.settings, ["payment"]))[0].count("expired") == 1
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        app.open_task("payment", "late-1")
        await wait_for(
            pilot, lambda: isinstance(app.screen, TaskDetailScreen) and app.screen.info is not None
        )
        screen = app.screen
        assert isinstance(screen, TaskDetailScreen)
        title = str(screen.query_one("#detail-title").render())
        assert "expired" in title
        body = str(screen.query_one("#detail-body").render())
        assert "not started by its deadline" in body and "while pending" in body
        assert "Expires" in body
        assert "Log (last 2 of 2)" in body and "gateway slow" in body
        assert "\x1b" not in body and "␛[31mred" in body
