"""The console's rate limit: ``L`` on the queues view sets or clears the selected queue's limit
(audited like the CLI's; a bad one is a toast and writes nothing) and the detail line under the
table shows the limit and its tokens."""

from __future__ import annotations

from functools import partial

import redis
from textual.widgets import Static

from engine.client import Client
from rediq_tui.app import RediqApp
from rediq_tui.screens.limit import LimitScreen
from tests.tui.helpers import make_app, wait_for

KEY = "rediq:{payment}:ratelimit"


def notes(app: RediqApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


def noted(app: RediqApp, note: str) -> bool:
    return note in notes(app)


def detail(app: RediqApp) -> str:
    return str(app.query_one("#queues-detail", Static).render())


async def test_l_sets_shows_and_clears_the_rate_limit(redis_url: str, raw: redis.Redis) -> None:
    with Client(redis_url) as c:
        c.enqueue("x", {}, queue="payment", id="a")
    app = make_app(redis_url)
    async with app.run_test(size=(120, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await pilot.press("L")
        await wait_for(pilot, lambda: isinstance(app.screen, LimitScreen), what="limit dialog")
        await pilot.press(*"50/s burst 5", "enter")
        await wait_for(pilot, lambda: app.writes == 1)
        assert "Rate limit of queue payment: 50/s burst 5" in notes(app)
        assert raw.hgetall(KEY) == {"rate": "50", "period": "1000", "burst": "5", "src": "operator"}
        await wait_for(pilot, lambda: "limit 50/s burst 5: 5 token(s)" in detail(app), what="detail")

        await pilot.press("L")
        await wait_for(pilot, lambda: isinstance(app.screen, LimitScreen), what="limit dialog")
        await pilot.press(*"0/s", "enter")
        await wait_for(pilot, lambda: any(n.startswith("E017: ") for n in notes(app)), what="refusal")
        assert raw.hget(KEY, "rate") == "50"  # nothing written

        await pilot.press("L")
        await wait_for(pilot, lambda: isinstance(app.screen, LimitScreen), what="limit dialog")
        await pilot.press(*"off", "enter")
        await wait_for(pilot, lambda: "Removed the rate limit of queue payment" in notes(app))
        assert raw.exists(KEY) == 0
        await wait_for(pilot, lambda: "limit" not in detail(app), what="detail without a limit")
    entries: list[tuple[str, dict[str, str]]] = raw.xrange("rediq:audit")  # type: ignore[assignment]
    actions = [e["action"] for _, e in entries]
    assert actions.count("rate-limit") == 2


async def test_l_sets_and_clears_a_task_types_and_a_groups_limit(redis_url: str, raw: redis.Redis) -> None:
    with Client(redis_url) as c:
        c.enqueue("x", {}, queue="payment", id="a")
    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        for line, note in [
            ("type charge 5/s burst 2", "Rate limit of type charge in queue payment: 5/s burst 2"),
            ("group customer:42 2", "Group limit of group customer:42 in queue payment: 2 at once"),
            ("group * 3", "Group limit of group * in queue payment: 3 at once"),
        ]:
            await pilot.press("L")
            await wait_for(pilot, lambda: isinstance(app.screen, LimitScreen), what="limit dialog")
            await pilot.press(*line, "enter")
            await wait_for(pilot, partial(noted, app, note), what=note)
        assert raw.hgetall("rediq:{payment}:rl:charge") == {
            "rate": "5",
            "period": "1000",
            "burst": "2",
            "src": "operator",
        }
        assert raw.hgetall("rediq:{payment}:typelimits") == {"charge": "1"}
        assert raw.hgetall("rediq:{payment}:cglimits") == {"customer:42": "2", "*": "3"}
        assert raw.exists(KEY) == 0  # the queue's own limit untouched

        await pilot.press("L")
        await wait_for(pilot, lambda: isinstance(app.screen, LimitScreen), what="limit dialog")
        await pilot.press(*"group customer:42 0", "enter")
        await wait_for(pilot, lambda: any(n.startswith("E017: ") for n in notes(app)), what="refusal")
        assert raw.hget("rediq:{payment}:cglimits", "customer:42") == "2"  # nothing written

        for line, note in [
            ("type charge off", "Removed the rate limit of type charge in queue payment"),
            ("group customer:42 off", "Removed the group limit of group customer:42 in queue payment"),
        ]:
            await pilot.press("L")
            await wait_for(pilot, lambda: isinstance(app.screen, LimitScreen), what="limit dialog")
            await pilot.press(*line, "enter")
            await wait_for(pilot, partial(noted, app, note), what=note)
        assert raw.exists("rediq:{payment}:rl:charge") == 0
        assert raw.hgetall("rediq:{payment}:cglimits") == {"*": "3"}
    entries: list[tuple[str, dict[str, str]]] = raw.xrange("rediq:audit")  # type: ignore[assignment]
    actions = [e["action"] for _, e in entries]
    assert actions.count("rate-limit") == 2 and actions.count("group-limit") == 3


async def test_the_detail_line_shows_the_busiest_groups(redis_url: str, raw: redis.Redis) -> None:
    with Client(redis_url) as c:
        for _ in range(3):
            c.enqueue("x", {}, queue="payment", group="customer:42")
    raw.hset("rediq:{payment}:cglimits", "*", 2)
    app = make_app(redis_url)
    async with app.run_test(size=(160, 24)) as pilot:
        await wait_for(
            pilot, lambda: "group customer:42: 3 pending, 0/2 running" in detail(app), what="group backlog"
        )
