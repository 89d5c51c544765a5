from __future__ import annotations

from engine.client import Client
from rediq_tui.views.queues import QueuesView
from tests.tui.helpers import make_app, next_poll, wait_for


async def test_queues_view_shows_counts(redis_url: str) -> None:
    with Client(redis_url) as c:
        for i in range(3):
            c.enqueue("order:payment", {"order_id": i}, queue="payment", id=f"pay-{i}")
        c.enqueue("mail:send", {}, queue="mail", id="mail-1")
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1, what="first poll")
        view = app.query_one(QueuesView)
        assert view.table.row_keys() == ["mail", "payment"]
        assert str(view.table.get_cell("payment", "pending")) == "3"
        await next_poll(pilot, app)
