"""The console's cron detail marks a run that ``run_at_startup`` enqueued."""

from __future__ import annotations

from textual.widgets import Static

from engine import cron
from engine.client import Client
from engine.cron import CronDef
from rediq_tui.views.cron import CronView
from tests.tui.helpers import make_app, wait_for


async def test_a_startup_run_is_marked_in_the_cron_detail(redis_url: str) -> None:
    entry = CronDef("warm-cache", "0 3 * * *", "cache:warm", queue="reports", run_at_startup=True)
    with Client(redis_url) as c:
        (startup_id,) = c.run(cron.scheduler_pass(c.settings, [entry], {}, startup=True)).created
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("5")
        view = app.query_one(CronView)
        await wait_for(pilot, lambda: view.table.row_count == 1)
        detail = view.query_one("#cron-detail", Static)
        await wait_for(pilot, lambda: "(at startup)" in str(detail.render()))
        assert startup_id in str(detail.render())
