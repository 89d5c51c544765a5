"""``runners.wait_ignoring_cancel``: a given-up sync handler's slot is held until its thread
returns, through cancellations, without spinning."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from engine.worker.runners import wait_ignoring_cancel


def test_it_does_not_spin_when_every_task_is_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    # Found by the fault harness's deep profile: a killed worker's cleanup (as a loop's teardown)
    # cancels every task, the internal waiter on ``abandon`` among them; asyncio.wait then
    # returned at once, round after round, and the loop never idled. A private loop, stopped by
    # a timer (timers still fire in a busy loop), so that the faulty version fails, not hangs.
    waits = 0
    real_wait = asyncio.wait

    async def counting_wait(*args: Any, **kwargs: Any) -> Any:
        nonlocal waits
        waits += 1
        return await real_wait(*args, **kwargs)

    monkeypatch.setattr(asyncio, "wait", counting_wait)
    loop = asyncio.new_event_loop()
    try:
        handler_returned: asyncio.Future[None] = loop.create_future()
        abandon = asyncio.Event()
        holder = loop.create_task(wait_ignoring_cancel(handler_returned, abandon))
        loop.run_until_complete(asyncio.sleep(0.01))
        for task in asyncio.all_tasks(loop):
            task.cancel()  # the holder too: it ignores it
        loop.call_later(0.2, loop.stop)
        loop.run_forever()
        assert not holder.done()  # still holding: the handler has not returned
        assert waits <= 4, f"asyncio.wait called {waits} times in 0.2 s: a busy loop"
        handler_returned.set_result(None)
        loop.run_until_complete(asyncio.wait_for(holder, 1))
        abandon2 = asyncio.Event()
        never: asyncio.Future[None] = loop.create_future()
        second = loop.create_task(wait_ignoring_cancel(never, abandon2))
        loop.run_until_complete(asyncio.sleep(0.01))
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.call_soon(abandon2.set)  # abandoned after its waiter was cancelled: it ends
        loop.run_until_complete(asyncio.wait_for(second, 1))
        never.cancel()
    finally:
        loop.close()
