"""pause.lua: the paused flag of a queue, set or cleared, reporting whether it changed."""

from __future__ import annotations

import pytest
import redis

from engine import ops
from engine.backend import SyncBackend
from tests.lua.harness import (
    ABSENT,
    QK,
    RECENT,
    SETTINGS,
    Case,
    cases,
    first_call,
    published_events,
    run_case,
)

TABLE = cases(
    Case(
        "pause a running queue",
        before={},
        keys={},
        reply=1,
        keys_after={"paused": RECENT},
        args={"pause": True},
    ),
    Case(
        "pause a paused queue: unchanged, keeps its time",
        before={},
        keys={"paused": "12345"},
        reply=0,
        keys_after={"paused": "12345"},
        args={"pause": True},
    ),
    Case(
        "resume a paused queue",
        before={},
        keys={"paused": "12345"},
        reply=1,
        keys_after={"paused": ABSENT},
        args={"pause": False},
    ),
    Case(
        "resume a running queue: unchanged",
        before={},
        reply=0,
        keys_after={"paused": ABSENT},
        args={"pause": False},
    ),
)


@TABLE
def test_pause(redis_url: str, case: Case) -> None:
    run_case(redis_url, case, first_call(ops.set_paused(SETTINGS, "q", case.args["pause"])))


@pytest.mark.parametrize(
    ("events", "paused_before", "pause", "published"),
    [
        (True, False, True, [("events", "paused")]),
        # what may mean work goes to the arrivals channel, where workers listen
        (True, True, False, [("arrivals", "resumed")]),
        (True, True, True, []),  # no change, no event
        (True, False, False, []),
        (False, False, True, []),  # events off: the channel is '' and nothing is published
        (False, True, False, []),
    ],
)
def test_pause_events(
    redis_url: str, events: bool, paused_before: bool, pause: bool, published: list[tuple[str, str]]
) -> None:
    settings = ops.Settings(prefix="lt", events=events)
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        with published_events(redis_url) as seen:
            if paused_before:
                r.set(QK.paused, "1")
            backend = SyncBackend(redis.Redis.from_url(redis_url, decode_responses=True))
            backend.execute(first_call(ops.set_paused(settings, "q", pause)))
            backend.close()
            assert seen() == published
    finally:
        r.close()
