"""A busy worker's dequeues run the maintenance scans (promotion of due tasks, lease recovery)
on a timer, not on every call; a scan that filled its limit says so ('more' in the reply's
head) and the next dequeue scans again at once, so a burst of due tasks is not promoted at
the limit's pace per timer tick."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest

from engine.client import Client
from engine.registry import Registry
from engine.worker import driver, protocol
from tests.engine.conftest import running_worker, wait_until


async def test_a_burst_of_due_tasks_past_the_scan_limit_is_promoted_without_waiting_for_the_timer(
    redis_url: str, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(protocol, "MAINTENANCE_LIMIT", 5)
    monkeypatch.setattr(driver, "MAINTAIN_EVERY_S", 60.0)  # the timer: once per poll (5 s) here
    registry = Registry()
    ran: list[float] = []

    @registry.task("due", queue="burst")
    async def due(ctx: Any, payload: Any) -> None:
        ran.append(time.monotonic())

    for n in range(30):
        client.enqueue("due", n, queue="burst", delay=0.05)
    await asyncio.sleep(0.2)  # all due, all still scheduled: six scans' worth at 5 a scan
    started = time.monotonic()
    async with running_worker(registry, redis_url, ["burst"], concurrency=10, poll_interval_s=5.0):
        # without the 'more' signal: 5 per timer tick, 30 s for the 30
        await wait_until(lambda: len(ran) == 30, timeout=4.0)
    assert max(ran) - started < 4.0


async def test_the_maintenance_timer_reads_the_workers_clock(
    redis_url: str, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The timer reads the worker's clock (its event loop's), as its other timer decisions do:
    a harness that runs the loop on virtual time then replays when each dequeue maintains
    (tests/faults/test_replay.py failed one run in two while it read the process's clock). Here
    the process's clock stands still, and a due task is promoted all the same."""
    monkeypatch.setattr(driver, "time", SimpleNamespace(monotonic=lambda: 0.0))
    registry = Registry()
    ran: list[int] = []

    @registry.task("due", queue="clock")
    async def due(ctx: Any, payload: int) -> None:
        ran.append(payload)

    async with running_worker(registry, redis_url, ["clock"], concurrency=2, poll_interval_s=0.2):
        await asyncio.sleep(0.3)  # its first dequeue maintained; idle since
        client.enqueue("due", 1, queue="clock", delay=0.1)
        await wait_until(lambda: ran == [1], timeout=5.0)
