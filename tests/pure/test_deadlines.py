"""Handlers' time limits kept by one loop timer (engine.deadlines): they must behave as
``asyncio.timeout`` did where the worker relies on it, and cost no timer per task."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from engine.deadlines import Deadline, Deadlines


async def test_an_expired_deadline_cancels_its_block_and_reports_timeout_error() -> None:
    deadlines = Deadlines()
    deadline = deadlines.start(0.05)
    with pytest.raises(TimeoutError):
        async with deadline:
            await asyncio.sleep(5)
    assert deadline.expired()
    assert len(deadlines) == 0
    await asyncio.sleep(0)  # the task was un-cancelled: it goes on awaiting normally
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_timeout_error_the_body_raises_is_not_the_deadline() -> None:
    deadline = Deadlines().start(5)
    with pytest.raises(TimeoutError):
        async with deadline:
            raise TimeoutError("the handler's own")
    assert not deadline.expired()


async def test_a_cancel_from_elsewhere_stays_a_cancellation() -> None:
    deadline = Deadlines().start(5)
    entered = asyncio.Event()

    async def body() -> None:
        async with deadline:
            entered.set()
            await asyncio.sleep(5)

    task = asyncio.ensure_future(body())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not deadline.expired()


async def test_a_block_that_ended_in_time_is_never_cancelled_afterwards() -> None:
    deadlines = Deadlines()
    async with deadlines.start(0.05):
        pass
    await asyncio.sleep(0.15)  # past the deadline: would raise CancelledError if it fired
    assert len(deadlines) == 0


async def test_a_reschedule_after_the_block_ended_does_not_bring_the_limit_back() -> None:
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    deadline = deadlines.start(5)
    async with deadline:
        pass
    deadline.reschedule(loop.time() + 0.02)
    assert len(deadlines) == 0
    await asyncio.sleep(0.1)  # past the new time: would raise CancelledError if it fired
    assert not deadline.expired()


class _CountingDeadlines(Deadlines):
    """Counts the timers armed."""

    def __init__(self) -> None:
        super().__init__()
        self.arms: list[float] = []

    def _arm(self, when: float) -> None:
        self.arms.append(when)
        super()._arm(when)


async def test_deadlines_that_come_later_than_the_armed_one_arm_no_timer() -> None:
    """A drain: every new task's deadline lies after the earliest, so one timer serves all."""
    deadlines = _CountingDeadlines()
    arms = deadlines.arms
    release = asyncio.Event()

    async def handler() -> None:
        async with deadlines.start(30):
            await release.wait()

    tasks = [asyncio.ensure_future(handler()) for _ in range(100)]
    await asyncio.sleep(0.01)
    assert len(deadlines) == 100 and len(arms) == 1
    release.set()
    await asyncio.gather(*tasks)
    assert len(deadlines) == 0 and len(arms) == 1


async def test_a_shorter_deadline_entered_later_fires_first_and_each_fires_on_time() -> None:
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    ended: dict[str, float] = {}

    async def handler(name: str, timeout_s: float) -> None:
        deadline = deadlines.start(timeout_s)
        try:
            async with deadline:
                await asyncio.sleep(5)
        except TimeoutError:
            ended[name] = loop.time()

    t0 = loop.time()
    slow = asyncio.ensure_future(handler("slow", 0.4))
    await asyncio.sleep(0.01)
    fast = asyncio.ensure_future(handler("fast", 0.1))
    await asyncio.gather(slow, fast)
    assert ended["fast"] < ended["slow"]
    assert 0.1 <= ended["fast"] - t0 < 0.35
    assert 0.4 <= ended["slow"] - t0 < 0.65


async def test_reschedule_none_suspends_the_limit_and_a_new_time_restarts_it() -> None:
    """What runners does while a child process is being made ready for the handler."""
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    deadline = deadlines.start(0.05)
    t0 = loop.time()
    with pytest.raises(TimeoutError):
        async with deadline:
            deadline.reschedule(None)
            await asyncio.sleep(0.15)  # past the first limit: not cancelled
            assert not deadline.expired()
            deadline.reschedule(loop.time() + 0.05)
            await asyncio.sleep(5)
    assert deadline.expired() and loop.time() - t0 >= 0.2


async def test_a_deadline_already_past_when_entered_fires_at_once() -> None:
    deadlines = Deadlines()
    deadline = deadlines.start(0.01)
    await asyncio.sleep(0.05)
    with pytest.raises(TimeoutError):
        async with deadline:
            await asyncio.sleep(5)


def test_a_worker_run_again_on_a_new_loop_keeps_its_deadlines_working() -> None:
    """``Worker.run`` twice (the test kit does): the timer the first loop had armed died with
    that loop, so a later deadline on the second must arm one of its own."""
    deadlines = Deadlines()
    outcomes: list[Any] = []

    async def first_run() -> None:
        async with deadlines.start(0.2):  # ends in time; its timer stays armed on this loop
            pass

    async def second_run() -> None:
        deadline: Deadline = deadlines.start(0.5)  # after the dead timer's time
        try:
            async with deadline:
                await asyncio.sleep(3)
        except TimeoutError:
            outcomes.append(deadline.expired())

    asyncio.run(first_run())
    asyncio.run(second_run())
    assert outcomes == [True]
