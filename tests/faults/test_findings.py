"""Defects the fault harness found, each as a deterministic reproduction against a real Valkey
(RELIABILITY.md, Fault exploration)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis

from engine.client import Client
from engine.connection import parse_url
from engine.registry import Registry
from engine.task import Task
from engine.worker import Worker, WorkerOptions
from tests.faults.history import RunEnd
from tests.faults.machine import SYNC_TIMEOUT_S, machine_for
from tests.faults.wire import Fault, FaultyRedis, Wire

Q = "found"


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


async def test_a_worker_stopped_right_after_a_lost_dequeue_reply_hands_back_what_it_leased(
    redis_url: str, raw: redis.Redis
) -> None:
    """Found by tests/faults: stopped while the reply to its last dequeue was lost, the worker
    never took back what that dequeue started (its receipt); the tasks waited out their lease,
    charged, and with max_retry=0 went dead unrun."""
    ran: list[str] = []
    registry = Registry()

    @registry.task("job", queue=Q)
    async def job(ctx: Any, payload: Any) -> None:
        ran.append(ctx.id)

    with Client(redis_url) as client:
        task = client.enqueue(Task(type="job", queue=Q, max_retry=0))
    wire = Wire("w")
    wire.arm(Fault.DROP_REPLY, "dequeue")  # the dequeue leases and starts the task; its reply is lost
    for _ in range(5):
        wire.arm(Fault.DROP_REQUEST, "dequeue")  # and Redis stays out of reach for a while
    real = parse_url(redis_url).aio()
    options = WorkerOptions(queues=[Q], concurrency=1, handoff=False, lease_s=600, grace_s=1)
    worker = Worker(registry, options=options, redis=FaultyRedis(real, wire))
    running = asyncio.ensure_future(worker.run())
    try:
        await wait_for(lambda: bool(wire.log))
        worker.request_stop()  # SIGTERM while it backs off
        await asyncio.wait_for(running, 30)
    finally:
        await real.aclose()
    state, attempts = raw.hmget(f"rediq:{{{Q}}}:t:{task.id}", "state", "attempts")
    assert ran or state == "pending", (
        f"the stopped worker left the task {state!s} with {attempts!s} attempt(s) charged and never ran it"
    )


def test_a_cancel_requested_while_the_handler_fails_is_not_forgotten(redis_url: str) -> None:
    """Deep-profile finding (a), replayed with the machine's own rules: a cancel is requested
    on a running task (max_retry 1) and its handler raises before the worker's heartbeat brings
    the cancel. The failure went in as a retry (``fail.lua`` dropped the request), the retry
    ran: "t1 runs again after a cancel was requested". Now the task ends cancelled."""
    machine = machine_for(redis_url)()
    try:
        machine.first_worker(concurrency=1, prefetch=0, handoff=False)
        machine.enqueue([(1, None, -1, False, False)])  # t1: max_retry 1, no unique key, no dependency
        deadline = time.monotonic() + 10
        while not machine.pending:
            assert time.monotonic() < deadline, "the handler never started"
            machine.wake_worker(0)  # (a step: the worker polls)
        machine._operate("cancel", "t1")
        # the loop does not run between these two lines: the worker has not heard of the cancel
        machine.pending[0].outcome.set_result(RunEnd.RAISED)
        deadline = time.monotonic() + 10
        while machine._states()["t1"] not in ("cancelled", "completed", "dead"):
            assert not machine.history.violations, machine.history.violations
            assert time.monotonic() < deadline, f"t1 is still {machine._states()['t1']}"
            machine.advance_time(lapse_dead=False)  # a retry, if one was scheduled, comes due
            machine._finish_all()
        assert machine._states() == {"t1": "cancelled"}
        machine.store_is_consistent()
    finally:
        machine.step_ok = False  # (the settle phase is not this test's subject)
        machine.teardown()


def test_a_hung_sync_handler_past_its_timeout_keeps_its_slot(redis_url: str) -> None:
    """The harness's slot check, driven by hand: on one slot, a sync handler hangs past its
    timeout; the next task must not start until its thread returns (the revert
    'hung-sync-frees-slot' in reverts.py starts it at once: 2 handlers on 1 slot)."""
    machine = machine_for(redis_url)()
    try:
        machine.first_worker(concurrency=1, prefetch=0, handoff=False)
        machine.enqueue([(0, None, -1, False, True), (0, None, -1, False, True)])  # two sync tasks
        deadline = time.monotonic() + 10
        while not machine.pending:
            assert time.monotonic() < deadline, "the handler never started"
            machine.wake_worker(0)
        machine.loop.run_until_complete(asyncio.sleep(3 * SYNC_TIMEOUT_S))  # (virtual time)
        machine.wake_worker(0)
        machine.store_is_consistent()
        assert len(machine.pending) == 1 and machine.workers[0].worker.overdue_slots == 1
        machine._finish_all()  # the hung thread returns: its slot frees, the next task starts
        machine.wake_worker(0)
        machine.store_is_consistent()
        assert [p.run.task_id for p in machine.pending] == ["t2"]
    finally:
        machine.step_ok = False
        machine.teardown()
