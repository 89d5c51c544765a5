"""The worker's background loops: heartbeat (leases, registry entry, operator stop), hand-off
inbox, wake-up events, maintenance (queue registration, dependency outbox, index trimming,
cron) and ``--burst``'s drained check. Each runs under ``runners.keep_running`` in the driver,
so any exception is logged, counted and the loop restarted with backoff."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from engine import control, events, idle, ops
from engine.backend import Op, cmd
from engine.errors import ConnectionFailed, ReadOnlyError, RediqError
from engine.keys import ARRIVAL_EVENTS
from engine.ops import Settings
from engine.worker import protocol
from engine.worker.messages import HandlerDone, Outcome
from engine.worker.options import REGISTRY_REFRESH_S

if TYPE_CHECKING:  # the driver imports this module
    from engine.worker.driver import Worker

log = logging.getLogger("rediq.worker")
T = TypeVar("T")

ABANDON_RELEASE_S = 2.0
"""How long a cancelled worker tries to hand its running tasks back before leaving them to
lease expiry."""

BURST_IDLE_READINGS = 2


async def heartbeat_loop(worker: Worker) -> None:
    """Extend leases (through the drain's grace period; it stops once drained). The registry
    entry (busy slots, current tasks) is refreshed more often than leases are extended, so the
    console's Workers view stays current."""
    heartbeat_s = worker.effective.heartbeat_s
    tick = min(heartbeat_s, REGISTRY_REFRESH_S)
    clock = asyncio.get_running_loop().time  # the loop's clock: a harness may run it virtual
    last_extend = clock()
    while not worker.drained:
        await asyncio.sleep(tick)
        try:
            if clock() - last_extend >= heartbeat_s - tick / 2:
                last_extend = clock()
                await worker._heartbeat()
            else:
                await worker.heartbeat_registry()
            if not worker.core.stopping and await worker.backend.run(
                control.take_stop(worker.settings, worker.id)
            ):
                log.warning("an operator asked this worker to stop: draining")  # the console's S
                worker.request_stop()
        except RediqError as exc:
            log.warning("heartbeat failed: %s", exc)
        except Exception:  # noqa: BLE001 - e.g. a malformed reply: never stop extending leases
            worker.loop_errors["heartbeat"] += 1
            log.exception("heartbeat failed; trying again in %.1f s", tick)


INBOX_WAIT_S = 1.0
"""How long one wait for a hand-off blocks (a stop or a wanted slot ends it sooner)."""


async def inbox_loop(worker: Worker, queue: str) -> None:
    """Take tasks that enqueue handed to this worker. While the queue is drained, wait in a
    held slot and start the hand-off in the round trip that takes it (``take.lua``); else pop
    it and start it at once when a slot is free, or keep it with the prefetched."""
    inbox = worker.settings.keyspace.queue(queue).inbox(worker.id)
    backoff = 0.05
    while not worker.core.stopping:
        take = worker.core.take_exchange(queue, INBOX_WAIT_S)
        if take is None and worker.core.take_awaits_round(queue) and await worker.round_settled(INBOX_WAIT_S):
            continue  # a take, most likely, in the slots the round did not fill
        popped = None
        try:
            if take is not None:
                await worker.perform(take)  # runs what it started
            else:
                popped = await worker.backend.execute(cmd("BLPOP", inbox, INBOX_WAIT_S))
        except ReadOnlyError as exc:
            if take is not None:  # an ACL without BLMOVE: pop, then start (two round trips)
                log.warning("hand-off takes off: %s (docs/acl/worker.acl lists what it needs)", exc)
                worker.core.disable_take()
                continue
            if worker.core.handoff_enabled:  # an ACL from before hand-off: serve without it
                log.warning("hand-off off: %s (docs/acl/worker.acl lists what it needs)", exc)
            worker.core.disable_handoff()
            return
        except RediqError as exc:
            log.warning("hand-off inbox of %s unavailable (%s); retrying", queue, exc)
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(5.0, backoff * 2)
            continue
        backoff = 0.05
        if popped and popped[1]:  # ('' is a wake-up meant for a take: nothing to run)
            await worker.take_handoff(protocol.parse_handoff(queue, popped[1]))
        if popped or take is not None:
            # the handler just launched runs before the next wait is written (redis-py's
            # command path takes ~100 µs of the loop; the task would wait behind it)
            await asyncio.sleep(0)


WAKING = frozenset((*ARRIVAL_EVENTS, events.RESYNC))
"""The events that send a worker looking for work (a resync: some may have been missed)."""


async def wake_loop(worker: Worker) -> None:
    """Wake the exchange loop as soon as work arrives (pub/sub is a hint; polling backs it)."""
    # if the subscription fails, keep_running logs it, counts it and subscribes again with
    # backoff (the poll goes on meanwhile)
    # arrivals only: not the events of this worker's own starts and acks
    queues = list(worker.effective.queues)
    async for event in events.subscribe(
        worker.settings,
        worker.backend.redis,
        queues,
        arrivals_only=True,
        running=lambda: not worker.core.stopping,
    ):
        if event.event in WAKING:
            worker.core.on_work_arrived()
            worker.wake()
    if not worker.core.stopping:
        raise ConnectionFailed("event subscription ended")


async def maintenance_loop(worker: Worker) -> None:
    settings, backend, effective = worker.settings, worker.backend, worker.effective
    while not worker.core.stopping:
        # each step on its own: one that raises (a corrupt hash) must not
        # stop the others, here or in later passes
        await _maintain(
            worker,
            "queue registration",
            backend.execute(cmd("SADD", settings.keyspace.queues, *effective.queues)),
        )
        queues = await _maintain(worker, "queue listing", backend.run(_known_queues(settings)))
        older_than_ms = int(effective.maintenance_s * 1000)
        for q in queues or []:
            await _maintain(
                worker,
                f"outbox of {q}",
                backend.run(ops.flush_outbox(settings, q, older_than_ms=older_than_ms)),
            )
            await _maintain(worker, f"index trim of {q}", backend.run(ops.trim_finished_indexes(settings, q)))
            await _maintain(worker, f"expiry sweep of {q}", backend.run(ops.expire_due(settings, q)))
        await asyncio.sleep(effective.maintenance_s * (0.8 + 0.4 * random.random()))


async def _maintain(worker: Worker, step: str, work: Awaitable[T]) -> T | None:
    try:
        return await work
    except RediqError as exc:
        log.warning("maintenance (%s) deferred: %s", step, exc)
    except Exception:  # noqa: BLE001 - logged with its traceback and counted; the next pass tries again
        worker.loop_errors["maintenance"] += 1
        log.exception("maintenance (%s) failed; trying again next pass", step)
    return None


def _known_queues(settings: Settings) -> Op[list[str]]:
    names = yield cmd("SMEMBERS", settings.keyspace.queues)
    return sorted(names)


async def burst_loop(worker: Worker) -> None:
    """``--burst``: stop once the served queues read drained twice in a row (an exchange in
    flight between two readings can still add work) with nothing held here."""
    idle_readings = 0
    queues = list(worker.effective.queues)
    while not worker.core.stopping:
        left = await worker.backend.run(idle.outstanding(worker.settings, queues, count_paused=False))
        idle_readings = idle_readings + 1 if left == 0 and not worker.core.holds_work else 0
        if idle_readings >= BURST_IDLE_READINGS:
            log.info("burst: the queues are drained; stopping")
            worker.request_stop()
            return
        await asyncio.sleep(worker.effective.poll_interval_s)


# ---------------------------------------------------------------------------------- shutdown


async def cancel_all(tasks: list[asyncio.Task[None]], attempts: int = 20) -> None:
    """Cancel background loops and wait for them. A cancellation that lands while redis-py is
    reading a reply can be swallowed (seen on Python 3.11), so cancel again until they end; the
    loops also check the stop flag, so they end by themselves within a pass."""
    for _ in range(attempts):
        pending = [t for t in tasks if not t.done()]
        if not pending:
            return
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.25)
    log.warning("tasks that did not stop when cancelled: %s", [t.get_name() for t in tasks if not t.done()])


async def wait_all_unless(tasks: list[asyncio.Task[None]], hurry: asyncio.Event, timeout: float) -> None:  # noqa: ASYNC109
    """Wait for ``tasks`` for up to ``timeout`` seconds, or until ``hurry`` is set."""
    clock = asyncio.get_running_loop().time
    deadline = clock() + timeout
    waiting: set[asyncio.Future[Any]] = set(tasks)
    hurried = asyncio.ensure_future(hurry.wait())
    try:
        while waiting and not hurried.done() and (left := deadline - clock()) > 0:
            _, waiting = await asyncio.wait(
                waiting | {hurried}, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            waiting.discard(hurried)
    finally:
        hurried.cancel()


async def abandon_run(
    worker: Worker, background: list[asyncio.Task[None]], exchange: asyncio.Task[None] | None
) -> None:
    """End what a cancelled ``Worker.run`` started. Its handlers are cancelled and their tasks,
    with the reserved ones, handed back; the exchange loop records the outcomes still buffered
    (each step tries for at most ``ABANDON_RELEASE_S``: what is left returns when its lease
    expires); then every loop ends, the heartbeat among them."""
    # nothing new (the exchange loop ends once all is recorded); a waiting take ends at once
    worker.request_stop()
    worker._runner.abandon.set()  # stop waiting for sync handlers
    if worker._inbox_tasks:
        # before the handlers are cancelled: what a take started is handed back below like
        # the rest, never left charged to lease expiry
        try:
            async with asyncio.timeout(ABANDON_RELEASE_S):
                await asyncio.wait(worker._inbox_tasks)
                await worker._withdraw_handoffs()
        except TimeoutError:
            log.warning("could not take back the hand-offs in time: their leases expire")
    worker.core.close_intake()  # (what the withdrawal started is among the running below)
    running = list(worker._running.values())
    await cancel_all([task for _, task, _ in running])
    for job, _, _ in running:  # cancelled before its first step: run_task never ran to say so
        if (entry := worker._running.get(job.id)) is not None and entry[0] is job:
            del worker._running[job.id]
            worker.core.on_outcome(HandlerDone(job, Outcome.STALE))  # handed back below
    handed_back = [job for job, _, _ in running] + worker.core.slots.take_all_reserved()
    try:
        async with asyncio.timeout(ABANDON_RELEASE_S):
            await worker._release(handed_back, "returned by a worker whose run was cancelled")
    except TimeoutError:
        log.warning("could not hand back %d task(s) in time: their leases expire", len(handed_back))
    if exchange is not None:
        worker.wake()
        await asyncio.wait({exchange}, timeout=ABANDON_RELEASE_S)
    await cancel_all([*background, *([exchange] if exchange is not None else []), *worker._side_tasks])
