"""The worker runtime: leases tasks, runs handlers, reports outcomes.

One *exchange* loop talks to Redis for the hot path: each round trip carries the buffered
acks and failures of every served queue plus the next dequeue, so a busy worker spends well
under one round trip per task. Heartbeats extend leases (server clock); a worker that dies
simply stops extending, and the next dequeue on that queue puts its tasks back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import json
import logging
import os
import random
import signal
import socket
import time
import traceback as tb_module
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

from pydantic import ValidationError

from engine import control, declarations, events, ops
from engine.backend import AsyncBackend, Batch, Call, Op, cmd, use_hiredis_packer
from engine.connection import RedisTarget, parse_url
from engine.errors import ConnectionFailed, InvalidConfig, Permanent, ReadOnlyError, RediqError, Retryable
from engine.ops import Job, Settings
from engine.registry import Registry, TaskDef

log = logging.getLogger("rediq.worker")

YIELDS_BEFORE_EXCHANGE = 3
# How long a hand-off registration lasts unless renewed (an idle worker renews it with each
# poll): a worker that died while waiting is handed new tasks for at most this long, and those
# wait for their lease to run out (they return uncharged).
HANDOFF_MS = 2000
REGISTRY_REFRESH_S = 2.0  # how often the worker's registry entry (busy slots, tasks) is refreshed
STOP_FLUSH_S = 10.0  # after the grace period, how long a stopping worker keeps trying to record outcomes
RUNTIME_SAMPLES = 200  # per task type, for the p50/p95 of the backlog forecast


@dataclass
class WorkerOptions:
    queues: list[str]
    concurrency: int = 10
    lease_s: float = 30.0
    """Lease length; a dead worker's tasks return to pending this long after its last heartbeat."""
    grace_s: float = 30.0
    """On SIGTERM/SIGINT, how long running tasks may finish before they are handed back."""
    weights: dict[str, int] | None = None
    """None: strict priority in the order of ``queues``. Otherwise the fetch order is drawn by
    weight each round, so lower-weight queues are never starved."""
    prefetch: int | None = None
    """Tasks leased beyond free slots to hide round-trip latency (default: ``concurrency``)."""
    poll_interval_s: float = 0.5
    """Idle poll when no event woke the worker; also bounds how late a delayed task starts."""
    heartbeat_s: float | None = None
    """Default: a third of the lease."""
    maintenance_s: float = 5.0
    event_loop: str = "auto"
    """``run_forever``'s event loop: 'uvloop', 'asyncio', or 'auto' (uvloop when installed)."""
    handoff: bool = True
    """When idle, register so that enqueue hands new tasks straight to this worker (one hop
    from enqueue to start instead of a wake-up and a dequeue round trip)."""


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    task_id: str
    queue: str
    type: str
    outcome: str
    """'completed', 'retry', 'dead', 'cancelled', 'timeout' or 'stale' (lease lost)."""
    duration_s: float
    attempt: int
    error: str | None = None


class TaskContext:
    """What a handler gets besides its payload."""

    def __init__(self, job: Job, worker: Worker) -> None:
        self.id = job.id
        self.type = job.type
        self.queue = job.queue
        self.attempt = job.attempt
        self.max_retry = job.max_retry
        self.metadata: dict[str, str] = ops._json(job.metadata_raw, {}) or {}
        self.worker_id = worker.id
        self.cancelled = False
        self._job = job
        self._worker = worker

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt > self.max_retry

    def progress(self, percent: float, message: str = "") -> None:
        """Report progress (0..100). Non-blocking and safe from threads; only the latest report
        per task is sent, and the stored value never goes down within an attempt."""
        self._worker._report_progress(self._job, float(percent), message)

    async def dependency_results(self) -> dict[str, Any]:
        """The results of this task's completed dependencies (``depends_on``), by their ids."""
        from engine.results import dependency_results

        op = dependency_results(self._worker.settings, self.queue, self.id)
        return await self._worker.backend.run(op)


class _Buffered(NamedTuple):
    """A leased task waiting for a free slot. A tuple, so the heap compares in C; ``arrival``
    is unique, so ``job`` is never compared."""

    rank: int
    priority: int
    arrival: int
    job: Job


class Worker:
    def __init__(
        self,
        registry: Registry,
        target: RedisTarget | str | None = None,
        options: WorkerOptions | None = None,
        settings: Settings | None = None,
        *,
        redis: Any = None,
    ) -> None:
        if target is None and redis is None:
            from engine.embedded import default_url

            target = default_url()
        self.registry = registry
        self.target = parse_url(target) if isinstance(target, str) else target
        self.options = options or WorkerOptions(queues=registry.queues or ["default"])
        self.settings = settings or Settings()
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._redis = redis
        self._listeners: list[Callable[[TaskOutcome], None]] = []
        self._running: dict[str, tuple[Job, asyncio.Task[None], TaskContext]] = {}
        self._buffer: list[_Buffered] = []
        self._arrival = 0
        self._acks: dict[str, list[tuple[str, int, str]]] = defaultdict(list)
        self._fails: list[Call] = []
        self._progress: dict[str, tuple[Job, float, str]] = {}
        self._early: dict[str, list[Job]] = defaultdict(list)
        """Handed-off tasks started before their start mark: sent first in the next exchange."""
        self.handed_off = 0
        self._inbox_tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._stopping = False
        self._stop_requested_at = 0.0
        self._drained = False
        self._started_ms = 0
        """Redis clock, set when the worker registers."""
        self._fetch_now = True
        self._promised_slots = 0
        """Free slots an exchange in flight will fill (tasks it starts): a hand-off arriving
        meanwhile must not take them, or the worker would run more than ``concurrency``."""
        self._dequeue_requests: dict[str, str] = {}
        """Per queue, the id of a dequeue whose reply has not arrived yet: sent again under the
        same id, it returns the tasks it leased (its receipt) rather than stranding them."""
        self._request_seq = itertools.count(1)
        self._wake_seq = 0
        """Counts work-arrived events, so one that lands during an exchange is not lost."""
        self._pool = ThreadPoolExecutor(max_workers=self.options.concurrency, thread_name_prefix="rediq-task")
        self._loop: asyncio.AbstractEventLoop | None = None
        self.processed = 0
        self.failed = 0
        # run times (ms) of completed tasks per (queue, type), sent with the heartbeat
        self._runtimes: dict[tuple[str, str], list[int]] = defaultdict(list)

    # ---------------------------------------------------------------- public

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def add_listener(self, callback: Callable[[TaskOutcome], None]) -> None:
        self._listeners.append(callback)

    def request_stop(self) -> None:
        """Begin a graceful drain (what SIGTERM does)."""
        if not self._stopping:
            self._stop_requested_at = time.monotonic()
        self._stopping = True
        self._stop.set()
        self._wake.set()

    def run_forever(self) -> int:
        """Run until SIGTERM/SIGINT; returns a process exit code."""
        try:
            with asyncio.Runner(loop_factory=loop_factory(self.options.event_loop)) as runner:
                runner.run(self._main_with_signals())
        except RediqError as exc:
            log.error("%s", exc)
            return exc.exit_code
        return 0

    async def _main_with_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal)
        await self.run()

    def _on_signal(self) -> None:
        if self._stopping:  # second signal: do not wait for the grace period
            log.warning("second signal: handing running tasks back now")
            self.options.grace_s = 0
        log.info("draining: no new tasks; running ones get %.0f s", self.options.grace_s)
        self.request_stop()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._redis is not None:
            redis = self._redis
        else:
            redis = self.target.aio()  # type: ignore[union-attr]
            use_hiredis_packer(redis)
        self.backend = AsyncBackend(redis)
        try:
            await self._check_server()
            await self._register()
            loops = [
                asyncio.create_task(self._exchange_loop(), name="rediq-exchange"),
                asyncio.create_task(self._heartbeat_loop(), name="rediq-heartbeat"),
                asyncio.create_task(self._maintenance_loop(), name="rediq-maintenance"),
                asyncio.create_task(self._wake_loop(), name="rediq-wake"),
            ]
            if self.options.handoff:
                self._inbox_tasks = [
                    asyncio.create_task(self._inbox_loop(q), name=f"rediq-inbox-{q}")
                    for q in self.options.queues
                ]
                loops += self._inbox_tasks
            log.info(
                "worker %s serving %s with %d slots on %s",
                self.id,
                ",".join(self.options.queues),
                self.options.concurrency,
                type(self._loop).__module__.partition(".")[0],  # 'uvloop' or 'asyncio'
            )
            await self._stop.wait()
            await self._drain()
            self._drained = True
            for task in loops[1:]:
                task.cancel()
            await asyncio.gather(loops[0], return_exceptions=True)
            await _cancel_all(loops[1:])
            await self._deregister()
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)
            if self._redis is None:
                with contextlib.suppress(Exception):
                    await self.backend.close()

    # ---------------------------------------------------------------- startup

    async def _check_server(self) -> None:
        await self.backend.execute(cmd("PING"))
        await self.backend.ensure_scripts()  # no function library, no FUNCTION LOAD: E010 now
        try:
            reply = await self.backend.execute(cmd("CONFIG", "GET", "maxmemory-policy"))
        except RediqError:
            return  # CONFIG is often denied by ACL; nothing to check then
        except Exception:  # noqa: BLE001 - managed services disable CONFIG
            return
        policy = (
            reply[1] if isinstance(reply, list) and len(reply) > 1 else (reply or {}).get("maxmemory-policy")
        )
        if policy and policy != "noeviction":
            log.warning(
                "Redis maxmemory-policy is %r: under memory pressure Redis may evict task hashes and "
                "lose work. Set `maxmemory-policy noeviction`.",
                policy,
            )

    def _registry_fields(self) -> dict[str, Any]:
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": ",".join(self.options.queues),
            "concurrency": self.options.concurrency,
            "started": self._started_ms,
            "busy": len(self._running),
            "tasks": json.dumps([f"{j.queue}|{j.id}" for j, _, _ in self._running.values()][:50]),
        }

    async def _register(self) -> None:
        self._started_ms = await self.backend.run(ops.server_time_ms())
        await self._heartbeat_registry()
        # producers without the app's registry enqueue with these (engine.declarations); a
        # worker whose Redis user may not write them still runs its tasks
        decls = list(self.registry.declarations().values())
        try:
            await self.backend.run(declarations.publish(self.settings.keyspace, self.id, decls))
        except ReadOnlyError as exc:
            log.warning("task declarations not published (%s): producers without the registry guess", exc)

    async def _heartbeat_registry(self) -> None:
        ttl_ms = int(max(self._heartbeat_s * 3, 10) * 1000)
        await self.backend.run(ops.beat_registry(self.settings, self.id, self._registry_fields(), ttl_ms))

    async def _deregister(self) -> None:
        ks = self.settings.keyspace
        with contextlib.suppress(RediqError):
            await self.backend.execute(
                Batch([cmd("DEL", ks.worker(self.id)), cmd("ZREM", ks.workers, self.id)])
            )

    @property
    def _heartbeat_s(self) -> float:
        return self.options.heartbeat_s or max(0.2, self.options.lease_s / 3)

    # ---------------------------------------------------------------- the exchange loop

    @property
    def _capacity(self) -> int:
        prefetch = self.options.concurrency if self.options.prefetch is None else self.options.prefetch
        return self.options.concurrency + prefetch - len(self._running) - len(self._buffer)

    def _fetch_order(self) -> list[str]:
        queues = list(self.options.queues)
        weights = self.options.weights
        if not weights:
            return queues
        # weighted shuffle: a queue's chance to come first is proportional to its weight
        keyed = [(random.random() ** (1.0 / max(1, weights.get(q, 1))), q) for q in queues]
        return [q for _, q in sorted(keyed, reverse=True)]

    async def _exchange_loop(self) -> None:
        backoff = 0.05
        while True:
            want_fetch = not self._stopping and self._capacity > 0
            want_start = bool(self._buffer) and not self._stopping and self._free_slots > 0
            if (
                not self._acks
                and not self._fails
                and not self._early
                and not want_start
                and not (want_fetch and self._fetch_now)
            ):
                if self._stopping and not self._running:
                    return
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.options.poll_interval_s)
                self._fetch_now = True
                continue
            # let tasks launched by the last exchange take their step first: short tasks finish
            # now and ride in this batch instead of forcing one more round trip each (with
            # nothing running there is nothing to wait for: a wake-up fetches at once)
            if self._running:
                for _ in range(YIELDS_BEFORE_EXCHANGE):
                    await asyncio.sleep(0)
            wake_seq = self._wake_seq
            acks, self._acks = self._acks, defaultdict(list)
            fails, self._fails = self._fails, []
            early, self._early = self._early, defaultdict(list)
            # last progress reports go first: a finished task no longer accepts them
            progress, self._progress = self._progress, {}
            # start marks of handed-off tasks already running go first: an outcome of one of
            # them in this same batch must find its attempt charged
            early_calls = [
                ops.start_call(self.settings, q, jobs, self.id, uncharged=True) for q, jobs in early.items()
            ]
            calls: list[Call] = [*early_calls]
            calls.extend(ops.ack_call(self.settings, q, done) for q, done in acks.items())
            calls.extend(fails)
            # reserved (prefetched) tasks for the free slots: charged an attempt as they start
            starting = self._take_reserved()
            start_calls = [ops.start_call(self.settings, q, jobs, self.id) for q, jobs in starting.items()]
            calls.extend(start_calls)
            start_now = max(0, self._free_slots - sum(len(j) for j in starting.values()))
            calls[:0] = [
                ops.progress_call(self.settings, j.queue, j.id, j.attempt, p, m)
                for j, p, m in progress.values()
            ]
            order = self._fetch_order() if want_fetch else []
            capacity = self._capacity
            lease_ms = int(self.options.lease_s * 1000)
            if order:  # the first queue rides along with the acks in the same round trip
                calls.append(
                    ops.dequeue_call(
                        self.settings,
                        order[0],
                        capacity,
                        lease_ms,
                        self.id,
                        start_now=start_now,
                        handoff_ms=self._handoff_ms,
                        request_id=self._request_id(order[0]),
                    )
                )
            self._promised_slots = sum(len(jobs) for jobs in starting.values()) + (start_now if order else 0)
            try:
                try:
                    replies = await self.backend.execute(Batch(calls))
                finally:
                    # the tasks the reply starts are launched below before anything else runs
                    self._promised_slots = 0
            except RediqError as exc:
                # keep the outcomes: they are sent again once Redis is back (acks are idempotent
                # per attempt, and a lost lease makes them 'stale', never double-completed)
                for q, done in acks.items():
                    self._acks[q][:0] = done
                self._fails[:0] = fails
                for task_id, report in progress.items():
                    self._progress.setdefault(task_id, report)
                for jobs in starting.values():
                    self._reserve(jobs)
                for q, jobs in early.items():
                    self._early[q][:0] = jobs
                if (
                    self._stopping
                    and time.monotonic() - self._stop_requested_at > self.options.grace_s + STOP_FLUSH_S
                ):
                    unsent = sum(len(d) for d in self._acks.values()) + len(self._fails)
                    log.error(
                        "stopping without recording %d outcome(s): Redis is unreachable. Those tasks run "
                        "again when their leases expire (at-least-once); nothing is lost",
                        unsent,
                    )
                    return
                log.warning("Redis unavailable (%s); retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(5.0, backoff * 2)
                continue
            except Exception:  # noqa: BLE001 - e.g. a script error on a hash a buggy client wrote
                # Never let it end this loop (the worker would keep heartbeating but serve nothing).
                # The other calls of the batch did run; the failed one's task keeps its lease and
                # is handed out again when that expires.
                log.exception("a call to Redis failed; its task returns when its lease expires")
                self._dequeue_requests.clear()
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(5.0, backoff * 2)
                continue
            backoff = 0.05
            if order:
                self._dequeue_requests.pop(order[0], None)
            replies = replies[len(progress) :]
            confirmed: set[str] = set()
            for jobs, reply in zip(early.values(), replies[: len(early_calls)], strict=True):
                confirmed |= self._confirm(jobs, reply)
            replies = replies[len(early_calls) :]
            n_acks = len(acks)
            notified: list[tuple[str, list[str]]] = []
            for (q, done), reply in zip(acks.items(), replies[:n_acks], strict=True):
                stale, with_dependents = reply
                # An outcome can overtake its own start mark: when Redis had lost the start
                # script (restart, SCRIPT FLUSH) the backend reloads it and re-sends the mark
                # after the rest of the batch ran. Such an outcome goes again, now behind it.
                overtook = {task_id for task_id in stale if task_id in confirmed}
                if overtook:
                    self._acks[q].extend(d for d in done if d[0] in overtook)
                    stale = [task_id for task_id in stale if task_id not in overtook]
                if stale:
                    log.warning(
                        "%d task(s) of %s finished after their lease was lost: %s", len(stale), q, stale[:5]
                    )
                if with_dependents:
                    notified.append((q, list(with_dependents)))
            fail_replies = replies[n_acks : n_acks + len(fails)]
            self._fails.extend(
                call
                for call, reply in zip(fails, fail_replies, strict=True)
                if reply == "stale" and call.args[2] in confirmed
            )
            start_replies = replies[n_acks + len(fails) : n_acks + len(fails) + len(start_calls)]
            for jobs, reply in zip(starting.values(), start_replies, strict=True):
                self._started(jobs, reply)
            if notified or any(r in ("dead", "cancelled") for r in fail_replies):
                asyncio.create_task(self._flush_outboxes(notified, list(self.options.queues)))
            got = 0
            if order:
                got = self._buffer_jobs(order[0], replies[-1])
            # Later queues are asked, in order, only for what the earlier ones could not fill:
            # strict priority between queues, never over-leasing a lower queue.
            for q in order[1:]:
                if got >= capacity:
                    break
                self._promised_slots = self._free_slots
                try:
                    reply = await self.backend.execute(
                        ops.dequeue_call(
                            self.settings,
                            q,
                            capacity - got,
                            lease_ms,
                            self.id,
                            start_now=self._promised_slots,
                            handoff_ms=self._handoff_ms,
                            request_id=self._request_id(q),
                        )
                    )
                except RediqError:
                    break  # the request id stays: the next try gets what this one leased
                finally:
                    self._promised_slots = 0
                del self._dequeue_requests[q]
                got += self._buffer_jobs(q, reply)
            # a full fetch means there is probably more; so does a wake-up that arrived while
            # this round trip was in flight (its task may have been enqueued after our dequeue ran)
            self._fetch_now = want_fetch and (got >= capacity or self._wake_seq != wake_seq)

    def _request_id(self, queue: str) -> str:
        """The id of the next dequeue from ``queue``: the one whose reply was lost, if any."""
        request = self._dequeue_requests.get(queue)
        if request is None:
            request = self._dequeue_requests[queue] = str(next(self._request_seq))
        return request

    @property
    def _free_slots(self) -> int:
        return 0 if self._stopping else self.options.concurrency - len(self._running)

    def _buffer_jobs(self, queue: str, reply: Any) -> int:
        """Launch the dequeued tasks that started (charged), keep the reserved ones for later."""
        jobs = ops.parse_dequeue(queue, reply)
        self._reserve([j for j in jobs if j.reserved])
        for job in jobs:
            if not job.reserved:
                self._launch(job)
        return len(jobs)

    def _reserve(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._arrival += 1
            rank = self.options.queues.index(job.queue)
            heapq.heappush(self._buffer, _Buffered(rank, job.priority, self._arrival, job))

    def _take_reserved(self) -> dict[str, list[Job]]:
        """Reserved tasks for the free slots, best first, grouped by queue."""
        taken: dict[str, list[Job]] = defaultdict(list)
        for _ in range(min(self._free_slots, len(self._buffer))):
            job = heapq.heappop(self._buffer).job
            taken[job.queue].append(job)
        return taken

    def _started(self, jobs: list[Job], reply: list[Any]) -> None:
        new_attempts = {reply[i]: int(reply[i + 1]) for i in range(0, len(reply), 2)}
        for job in jobs:
            attempt = new_attempts.get(job.id, 0)
            if attempt:
                job.attempt, job.reserved = attempt, False
                self._launch(job)
            else:
                log.warning("task %s: lease lost before it started; not running it", job.id)

    def _confirm(self, jobs: list[Job], reply: list[Any]) -> set[str]:
        """Start marks of handed-off tasks that were already running: a task whose lease was
        gone by then (cancelled or deleted meanwhile) is stopped. Returns the confirmed ids."""
        new_attempts = {reply[i]: int(reply[i + 1]) for i in range(0, len(reply), 2)}
        confirmed = set()
        for job in jobs:
            if new_attempts.get(job.id, 0) == job.attempt:
                job.confirmed = True
                confirmed.add(job.id)
            else:
                self._drop(job.id, job.attempt, "lease lost before its start was recorded")
        return confirmed

    @property
    def _handoff_ms(self) -> int:
        return HANDOFF_MS if self.options.handoff and not self._stopping else 0

    async def _inbox_loop(self, queue: str) -> None:
        """Take tasks that enqueue handed to this worker: start each at once when a slot is
        free (its start mark follows in the next exchange), else keep it with the prefetched."""
        inbox = self.settings.keyspace.queue(queue).inbox(self.id)
        backoff = 0.05
        while not self._stopping:
            try:
                popped = await self.backend.execute(cmd("BLPOP", inbox, 1))
            except ReadOnlyError as exc:  # an ACL from before hand-off: serve without it
                if self.options.handoff:
                    log.warning("hand-off off: %s (docs/acl/worker.acl lists what it needs)", exc)
                self.options.handoff = False
                return
            except RediqError as exc:
                log.warning("hand-off inbox of %s unavailable (%s); retrying", queue, exc)
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(5.0, backoff * 2)
                continue
            backoff = 0.05
            if popped:
                self._take_handoff(ops.parse_handoff(queue, popped[1]))

    def _take_handoff(self, job: Job) -> None:
        self.handed_off += 1
        if self._stopping or self._free_slots - self._promised_slots <= 0:
            self._reserve([job])  # started (or released) by the exchange loop like any prefetch
            self._wake.set()
            return
        job.attempt, job.reserved, job.confirmed = job.attempt + 1, False, False
        self._early[job.queue].append(job)
        self._launch(job)
        self._wake.set()

    def _launch(self, job: Job) -> None:
        ctx = TaskContext(job, self)
        task = asyncio.create_task(self._execute(job, ctx), name=f"rediq-task-{job.id}")
        self._running[job.id] = (job, task, ctx)

    async def _flush_outboxes(self, notified: list[tuple[str, list[str]]], queues: list[str]) -> None:
        try:
            for q, ids in notified:
                await self.backend.run(ops.flush_outbox(self.settings, q, ids))
            for q in queues:
                await self.backend.run(ops.flush_outbox(self.settings, q))
        except RediqError as exc:  # the maintenance loop replays the outbox later
            log.warning("dependency release deferred: %s", exc)

    # ---------------------------------------------------------------- running one task

    async def _execute(self, job: Job, ctx: TaskContext) -> None:
        started = time.monotonic()
        definition = self.registry.get(job.type)
        outcome, error, result_json = "completed", None, ""
        exc_for_after: BaseException | None = None
        mode, delay, trace = "retry", 0.0, ""
        try:
            if definition is None:
                known = ", ".join(sorted(self.registry.types)) or "none"
                raise Permanent(
                    f"unknown task type {job.type!r}: this worker has no handler for it (known: {known})"
                )
            payload = self._decode_payload(job, definition)
            if self.registry.middleware:
                await self._middleware("before", ctx)
            # asyncio.timeout, not wait_for: no second task and future per attempt (hot path)
            async with asyncio.timeout(job.timeout_s):
                if definition.is_async:
                    result = await definition.handler(ctx, payload)
                else:
                    result = await self._call(definition, ctx, payload)
            result_json = _result_json(result)
        except TimeoutError as exc:
            outcome, error, exc_for_after = "timeout", f"E004: timed out after {job.timeout_s:g} s", exc
            delay = definition.retry.delay(job.attempt) if definition else 0.0
        except asyncio.CancelledError as exc:
            exc_for_after = exc
            if ctx.cancelled:
                outcome, error, mode = "cancelled", "cancelled while running", "cancel"
            else:  # lease lost or shutdown: someone else owns the outcome now
                outcome = "stale"
        except Permanent as exc:
            outcome, error, mode, exc_for_after = "dead", _describe(exc), "permanent", exc
            trace = tb_module.format_exc(limit=20)
        except Retryable as exc:
            outcome, error, exc_for_after = "retry", _describe(exc), exc
            delay = (
                exc.delay
                if exc.delay is not None
                else (definition.retry.delay(job.attempt) if definition else 1.0)
            )
            trace = tb_module.format_exc(limit=20)
        except Exception as exc:  # noqa: BLE001 - any handler error is the task's outcome
            outcome, error, exc_for_after = "retry", _describe(exc), exc
            delay = definition.retry.delay(job.attempt) if definition else 1.0
            trace = tb_module.format_exc(limit=20)
        finally:
            self._running.pop(job.id, None)
        if outcome == "completed":
            self._acks[job.queue].append((job.id, job.attempt, result_json))
            self.processed += 1
            if definition is not None:
                samples = self._runtimes[(job.queue, job.type)]
                if len(samples) < RUNTIME_SAMPLES:
                    samples.append(int((time.monotonic() - started) * 1000))
        elif outcome != "stale" and not (self._stopping and outcome == "cancelled" and not ctx.cancelled):
            if outcome == "retry" and job.attempt > job.max_retry:
                outcome = "dead"
            self._fails.append(
                ops.fail_call(self.settings, job.queue, job.id, job.attempt, error or "", trace, delay, mode)
            )
            self.failed += 1
        self._wake.set()  # the exchange loop acks this and starts the next reserved task
        if self.registry.middleware:
            await self._middleware("after", ctx, outcome, exc_for_after)
        if not self._listeners:
            return
        report = TaskOutcome(
            job.id, job.queue, job.type, outcome, time.monotonic() - started, job.attempt, error
        )
        for listener in self._listeners:
            try:
                listener(report)
            except Exception:  # noqa: BLE001 - a broken listener must not break the worker
                log.exception("task outcome listener failed")

    def _decode_payload(self, job: Job, definition: TaskDef) -> Any:
        try:
            payload = json.loads(job.payload_raw) if job.payload_raw else None
        except ValueError as exc:
            raise Permanent(f"E002: payload is not valid JSON: {exc}") from None
        if definition.payload_model is not None:
            try:
                return definition.payload_model.model_validate(payload)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first.get("loc", ())) or "payload"
                raise Permanent(f"E002: payload failed validation: {where}: {first.get('msg')}") from None
        return payload

    async def _call(self, definition: TaskDef, ctx: TaskContext, payload: Any) -> Any:
        if definition.is_async:
            return await definition.handler(ctx, payload)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(definition.handler, ctx, payload))

    async def _middleware(self, hook: str, ctx: TaskContext, *args: Any) -> None:
        for middleware in self.registry.middleware:
            fn = getattr(middleware, hook, None)
            if fn is None:
                continue
            try:
                value = fn(ctx, *args)
                if asyncio.iscoroutine(value):
                    await value
            except Exception as exc:
                name = f"{type(middleware).__name__}.{hook}"
                if hook == "before":  # the attempt fails (and is retried); the task is not lost
                    raise RuntimeError(f"middleware {name} raised: {_describe(exc)}") from exc
                log.exception("middleware %s raised for task %s", name, ctx.id)

    # ---------------------------------------------------------------- progress

    def _report_progress(self, job: Job, percent: float, message: str) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._queue_progress(job, percent, message)
        else:
            loop.call_soon_threadsafe(self._queue_progress, job, percent, message)

    def _queue_progress(self, job: Job, percent: float, message: str) -> None:
        first = not self._progress
        previous = self._progress.get(job.id)
        if previous is not None and previous[1] > percent:
            return  # progress never goes back within an attempt (the server enforces it too)
        self._progress[job.id] = (job, percent, message)
        if first:
            asyncio.ensure_future(self._send_progress())

    async def _send_progress(self) -> None:
        await asyncio.sleep(0.05)  # coalesce bursts: only the latest report per task is sent
        pending, self._progress = self._progress, {}
        if not pending:
            return
        calls = [
            ops.progress_call(self.settings, j.queue, j.id, j.attempt, p, m) for j, p, m in pending.values()
        ]
        with contextlib.suppress(RediqError):
            await self.backend.execute(Batch(calls))

    # ---------------------------------------------------------------- heartbeat, maintenance, wake

    def _held(self) -> dict[str, list[tuple[str, int]]]:
        held: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for job, _, _ in self._running.values():
            held[job.queue].append((job.id, job.held_attempt))
        for item in self._buffer:
            held[item.job.queue].append((item.job.id, item.job.attempt))
        return held

    async def _heartbeat_loop(self) -> None:
        # keeps extending leases through the drain's grace period; stops once drained
        # The registry entry (busy slots, current tasks) is refreshed more often than leases
        # are extended, so the console's Workers view stays current.
        tick = min(self._heartbeat_s, REGISTRY_REFRESH_S)
        last_extend = time.monotonic()
        while not self._drained:
            await asyncio.sleep(tick)
            try:
                if time.monotonic() - last_extend >= self._heartbeat_s - tick / 2:
                    last_extend = time.monotonic()
                    await self._heartbeat()
                else:
                    await self._heartbeat_registry()
                if not self._stopping and await self.backend.run(control.take_stop(self.settings, self.id)):
                    log.warning("an operator asked this worker to stop: draining")  # the console's S
                    self.request_stop()
            except RediqError as exc:
                log.warning("heartbeat failed: %s", exc)

    async def _heartbeat(self) -> None:
        held = self._held()
        lease_ms = int(self.options.lease_s * 1000)
        queues = list(held)
        if queues:
            replies = await self.backend.execute(
                Batch([ops.extend_call(self.settings, q, held[q], lease_ms) for q in queues])
            )
            # the attempt each id was extended for: a reserved task may have started (been
            # charged its attempt) while this round trip was in flight, and a "lost" answer
            # about the attempt before must not stop the run that now owns the lease
            extended = {task_id: attempt for pairs in held.values() for task_id, attempt in pairs}
            for lost, cancel in replies:
                for task_id in lost:
                    self._drop(task_id, extended[task_id], "lease lost")
                for task_id in cancel:
                    entry = self._running.get(task_id)
                    if entry is not None and not entry[2].cancelled:
                        entry[2].cancelled = True
                        if (
                            self.registry.get(entry[0].type)
                            and self.registry.definitions[entry[0].type].is_async
                        ):
                            entry[1].cancel()
        await self._heartbeat_registry()
        if self._runtimes:
            runtimes, self._runtimes = self._runtimes, defaultdict(list)
            calls: list[Call] = []
            for (queue, task_type), samples in runtimes.items():
                key = self.settings.keyspace.queue(queue).runtimes(task_type)
                calls += [
                    cmd("LPUSH", key, *samples),
                    cmd("LTRIM", key, 0, RUNTIME_SAMPLES - 1),
                    cmd("EXPIRE", key, 86400),
                ]
            await self.backend.execute(Batch(calls))

    def _drop(self, task_id: str, attempt: int, why: str) -> None:
        """Stop or forget this attempt of a task (a later attempt of it is left alone)."""
        entry = self._running.get(task_id)
        if entry is not None and entry[0].attempt == attempt:
            log.warning("task %s: %s; stopping it", task_id, why)
            entry[1].cancel()
        self._buffer = [b for b in self._buffer if b.job.id != task_id or b.job.attempt != attempt]
        heapq.heapify(self._buffer)

    async def _maintenance_loop(self) -> None:
        from engine import scheduler

        while not self._stopping:
            try:
                await self.backend.execute(cmd("SADD", self.settings.keyspace.queues, *self.options.queues))
                queues = await self.backend.run(_known_queues(self.settings))
                for q in queues:
                    await self.backend.run(
                        ops.flush_outbox(
                            self.settings, q, older_than_ms=int(self.options.maintenance_s * 1000)
                        )
                    )
                    await self.backend.run(ops.trim_finished_indexes(self.settings, q))
                await scheduler.tick(self.backend, self.settings, self.registry)
            except RediqError as exc:
                log.warning("maintenance deferred: %s", exc)
            await asyncio.sleep(self.options.maintenance_s * (0.8 + 0.4 * random.random()))

    async def _wake_loop(self) -> None:
        """Wake the exchange loop as soon as work arrives (pub/sub is a hint; polling backs it)."""
        try:
            async for event in events.subscribe(self.settings, self.backend.redis, self.options.queues):
                if event.event in ("pending", "resumed", events.RESYNC):
                    self._fetch_now = True
                    self._wake_seq += 1
                    self._wake.set()
        except Exception as exc:  # noqa: BLE001 - without wake-ups the poll still works
            log.warning("event subscription ended (%s); relying on polling", exc)

    # ---------------------------------------------------------------- shutdown

    async def _drain(self) -> None:
        if self._inbox_tasks:
            # the inbox loops end within their one-second wait; what they took is buffered
            await asyncio.wait(self._inbox_tasks, timeout=3)
            await self._withdraw_handoffs()
        buffered = [b.job for b in self._buffer]
        self._buffer.clear()
        if buffered:
            await self._release(buffered, "returned unstarted by worker shutdown")
        if self._running:
            done, _ = await asyncio.wait(
                [t for _, t, _ in self._running.values()], timeout=self.options.grace_s
            )
            del done
        leftover = [job for job, _, _ in self._running.values()]
        for _, task, _ in list(self._running.values()):
            task.cancel()
        if leftover:
            await asyncio.gather(*(t for _, t, _ in list(self._running.values())), return_exceptions=True)
            await self._release(
                leftover, f"returned by worker shutdown after {self.options.grace_s:g} s grace"
            )
        self._wake.set()

    async def _withdraw_handoffs(self) -> None:
        """No more hand-offs: withdraw the registrations, then take what already arrived (it
        is released with the other prefetched tasks)."""
        ks = self.settings.keyspace
        try:
            await self.backend.execute(
                Batch([cmd("HDEL", ks.queue(q).idle, self.id) for q in self.options.queues])
            )
            for q in self.options.queues:
                while popped := await self.backend.execute(cmd("LPOP", ks.queue(q).inbox(self.id))):
                    self._take_handoff(ops.parse_handoff(q, popped))
        except RediqError as exc:  # what is left returns when its lease expires, uncharged
            log.warning("could not withdraw hand-off registrations: %s", exc)

    async def _release(self, jobs: list[Job], note: str) -> None:
        by_queue: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for job in jobs:
            by_queue[job.queue].append((job.id, job.held_attempt))
        try:
            await self.backend.execute(
                Batch([ops.release_call(self.settings, q, h, note) for q, h in by_queue.items()])
            )
        except RediqError as exc:  # their leases expire and recovery hands them out again
            log.warning("could not hand back %d task(s): %s", len(jobs), exc)


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop a worker runs on. uvloop (libuv, in C) roughly halves the loop's own cost
    per Redis round trip, which is most of a no-op task's time; None means asyncio's default."""
    if choice not in ("auto", "uvloop", "asyncio"):
        raise InvalidConfig(f"event loop must be 'auto', 'uvloop' or 'asyncio', got {choice!r}")
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise InvalidConfig(
                "event loop 'uvloop' asked for but uvloop is not installed", fix="pip install uvloop"
            ) from None
        return None
    return uvloop.new_event_loop


async def _cancel_all(tasks: list[asyncio.Task[None]], attempts: int = 20) -> None:
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
    log.warning("background loops did not stop: %s", [t.get_name() for t in tasks if not t.done()])


def _known_queues(settings: Settings) -> Op[list[str]]:
    names = yield cmd("SMEMBERS", settings.keyspace.queues)
    return sorted(names)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _result_json(result: Any) -> str:
    if result is None:
        return ""
    if hasattr(result, "model_dump_json"):
        return str(result.model_dump_json())
    try:
        return json.dumps(result, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps({"unserialisable_result": repr(result)[:1000]})


def run_worker(
    registry: Registry,
    url: str | None,
    queues: list[str],
    concurrency: int = 10,
    settings: Settings | None = None,
) -> int:
    """Convenience for scripts: run a worker in this process until SIGTERM/SIGINT."""
    if url is None:
        from engine.embedded import default_url

        url = default_url()
    return Worker(
        registry, url, WorkerOptions(queues=queues, concurrency=concurrency), settings
    ).run_forever()


__all__ = ["ConnectionFailed", "TaskContext", "TaskOutcome", "Worker", "WorkerOptions", "run_worker"]
