"""``DaemonThreadPool``, where sync handlers run: short calls share thread wake-ups, and a call
that hangs never delays the calls queued behind it (each gets a thread of its own at once)."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import operator
import threading
import time

import pytest

from engine.worker.runners import DaemonThreadPool

WAIT_S = 10.0  # a bound for a thread to pick up a call on a loaded machine, never reached when right


async def test_calls_queued_behind_a_hung_one_run_at_once() -> None:
    pool = DaemonThreadPool("test")
    release = threading.Event()
    hung = pool.submit(lambda: release.wait(60))
    quick = [pool.submit(functools.partial(operator.mul, i, 2)) for i in range(20)]
    try:
        results = await asyncio.wait_for(asyncio.gather(*(c.future for c in quick)), WAIT_S)
        assert results == [i * 2 for i in range(20)]
        assert not hung.returned and not hung.future.done()
    finally:
        release.set()
    assert await asyncio.wait_for(hung.future, WAIT_S) is True


async def test_every_call_of_a_blocking_batch_gets_its_own_thread() -> None:
    """Ten calls that each wait for all ten to have started: they complete only if none of
    them waits in the queue behind another (the guarantee a slot's timeout relies on)."""
    pool = DaemonThreadPool("test")
    started = threading.Barrier(10)
    calls = [pool.submit(lambda: started.wait(WAIT_S)) for _ in range(10)]
    await asyncio.wait_for(asyncio.gather(*(c.future for c in calls)), 2 * WAIT_S)


async def test_short_calls_share_threads_and_outcomes_arrive_with_their_errors() -> None:
    pool = DaemonThreadPool("test")

    def fail() -> None:
        raise ValueError("boom")

    calls = [pool.submit(functools.partial(int, i)) for i in range(200)]
    failing = pool.submit(fail)
    assert await asyncio.gather(*(c.future for c in calls)) == list(range(200))
    with pytest.raises(ValueError, match="boom"):
        await failing.future
    # a thread per call (the old pool) would be 201; a wake-up per call at worst ~a few dozen
    assert pool._count <= 50


async def test_a_cancelled_wait_can_still_wait_for_the_call_to_return() -> None:
    pool = DaemonThreadPool("test")
    release = threading.Event()
    call = pool.submit(lambda: release.wait(60))
    call.future.cancel()  # what a task's deadline does to the awaiting task
    returned = call.until_returned()
    await asyncio.sleep(0)
    assert not returned.done() and not call.returned
    release.set()
    await asyncio.wait_for(returned, WAIT_S)
    assert call.returned


async def test_a_context_runs_in_the_thread_as_given() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("from the loop")
    context = contextvars.copy_context()
    pool = DaemonThreadPool("test")
    assert await pool.submit(lambda: context.run(var.get)).future == "from the loop"


def test_threads_are_daemons_so_a_hung_call_never_keeps_a_process_alive() -> None:
    async def main() -> None:
        pool = DaemonThreadPool("test-daemon")
        pool.submit(lambda: time.sleep(0.5))
        await asyncio.sleep(0)

    asyncio.run(main())
    assert all(t.daemon for t in threading.enumerate() if t.name.startswith("test-daemon"))
