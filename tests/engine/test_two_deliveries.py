"""One worker can run two deliveries of one task at once: the first one's handler still runs
(its worker has not heard yet that the delivery is over: deleted and restored by an operator,
or its lease lapsed in a stall) when a dequeue leases the task to the same worker again. The
worker kept its running tasks by task id, so the old handler's end removed the new delivery:
no heartbeat extended it any more (its lease ran out while it ran, and with ``max_retry=0``
the recovery buried it although its handler then succeeded) and a drain did not wait for it
(its ack was never sent). Found by the fault harness, deep profile: "t5: run #9 succeeded and
nothing ended its delivery, yet the task is dead"."""

from __future__ import annotations

import asyncio
from typing import Any

import redis

from engine import ops
from engine.client import Client
from engine.registry import Registry
from engine.task import Task
from engine.worker import TaskContext
from tests.engine.conftest import running_worker, wait_until

Q = "twice"


async def test_the_end_of_an_old_delivery_leaves_the_new_one_of_the_same_task_running(
    redis_url: str, raw: redis.Redis
) -> None:
    registry = Registry()
    runs: list[tuple[str, asyncio.Future[None]]] = []

    @registry.task("job", queue=Q)
    async def job(ctx: TaskContext, payload: Any) -> str:
        done = asyncio.get_running_loop().create_future()
        runs.append((ctx._job.token, done))
        try:
            await asyncio.shield(done)  # an old delivery's handler may not hear its cancel
        except asyncio.CancelledError:
            await done  # (it returns when the test says, like a handler in a blocking call)
        return "ok"

    with Client(redis_url) as client:
        task = client.enqueue(Task(type="job", queue=Q, max_retry=0))
        async with running_worker(
            registry, redis_url, [Q], concurrency=2, heartbeat_s=3600, poll_interval_s=0.02, grace_s=10
        ) as worker:
            try:
                await wait_until(lambda: len(runs) == 1)
                # an operator deletes and restores it while its handler runs: a new life, pending
                client.run(ops.quarantine(client.settings, Q, [task.id]))
                client.run(ops.restore(client.settings, Q, [task.id]))
                await wait_until(lambda: len(runs) == 2)  # leased again by the same worker
                old, new = runs
                assert old[0] != new[0]
                old[1].set_result(None)  # the old delivery's handler returns (its ack is refused)
                await wait_until(lambda: worker.fenced > 0)
                held = [token for pairs in worker.core.held().values() for _, token in pairs]
                assert held == [new[0]], (
                    f"the worker holds {held} after the old delivery ended: its heartbeat no "
                    f"longer extends the running delivery {new[0]}"
                )
                worker.request_stop()  # a drain waits for the new delivery's handler
                await asyncio.sleep(0.2)
                assert not worker.drained, "the worker drained with a handler still running"
            finally:
                for _, done in runs:
                    if not done.done():
                        done.set_result(None)
        info = client.get_task(task.id)
        assert info is not None and info.state == "completed", (
            f"the new delivery's success was never recorded: the task is {info and info.state}"
        )
