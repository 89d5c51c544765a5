"""Helpers for the console tests: wait for the app to catch up with Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot

from rediq_tui.app import RediqApp
from rediq_tui.config import ConsoleConfig

FIXED_NOW = 1_790_000_000.0  # 2026-09-21 14:13:20 UTC, the clock of snapshot tests


def make_app(redis_url: str, **overrides: Any) -> RediqApp:
    clock = overrides.pop("clock", lambda: FIXED_NOW)
    config = ConsoleConfig(redis_url=redis_url, interval_ms=overrides.pop("interval_ms", 500), **overrides)
    return RediqApp(config, clock=clock)


async def wait_for(
    pilot: Pilot[Any],
    cond: Callable[[], bool],
    timeout: float = 10.0,  # noqa: ASYNC109
    what: str = "",
) -> None:
    """Let the app run until ``cond()`` holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await pilot.pause(0.05)
    await pilot.pause()


async def next_poll(pilot: Pilot[Any], app: RediqApp, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Wait for one more successful poll than now."""
    start = app.polls
    await wait_for(pilot, lambda: app.polls > start, timeout, "a poll")


async def settle(seconds: float) -> None:
    await asyncio.sleep(seconds)
