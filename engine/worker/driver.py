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
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TypeVar

from pydantic import ValidationError

from engine import control, declarations, events, idle, lifecycle, ops
from engine.backend import AsyncBackend, Batch, Call, Op, cmd, use_hiredis_packer
from engine.connection import RedisTarget, parse_url
from engine.errors import ConnectionFailed, InvalidConfig, Permanent, ReadOnlyError, RediqError, Retryable
from engine.ops import Settings
from engine.registry import Registry, TaskDef
from engine.worker import protocol, runners
from engine.worker.protocol import Job
from engine.worker.runners import HandlerRunner, keep_running
from engine.worker.runners import result_json as result_json_of

log = logging.getLogger("rediq.worker")
T = TypeVar("T")

YIELDS_BEFORE_EXCHANGE = 3
# How long a hand-off registration lasts unless renewed (an idle worker renews it with each
# poll): a worker that died while waiting is handed new tasks for at most this long, and those
# wait for their lease to run out (they return uncharged).
HANDOFF_MS = 2000
REGISTRY_REFRESH_S = 2.0  # how often the worker's registry entry (busy slots, tasks) is refreshed
STOP_FLUSH_S = 10.0  # after the grace period, how long a stopping worker keeps trying to record outcomes
BURST_IDLE_READINGS = 2
RUNTIME_SAMPLES = 200  # per task type, for the p50/p95 of the backlog forecast

FencedCall = Literal["start", "ack", "fail", "extend", "release", "progress"]
"""A call about a task that a script refused because its delivery token was no longer the
task's current one (see ``protocol.Job.token``)."""


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
    pool: runners.Pool = "thread"
    """Where sync handlers run: 'thread' (a handler past its timeout keeps its slot until it
    returns) or 'process' (a child process per slot, killed at the task's timeout)."""
    unknown_type_delay_s: float = 5.0
    """A task of a type this worker has no handler for goes back uncharged, due this much later."""
    unknown_type_timeout_s: float = 3600.0
    """...and goes dead once no worker with a handler took it for this long (0: at once)."""
    burst: bool = False
    """Stop (exit 0) once the served queues are drained: nothing pending, running, due to be
    retried or scheduled now, and no dependency release outstanding (a paused queue's waiting
    tasks do not count; tasks scheduled for later are left for another worker)."""


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
        self.state = worker.state
        """What the registry's startup hooks set up (``ctx.state.db``...), shared by all tasks."""
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
        self.state = lifecycle.WorkerState()
        """Shared with handlers as ``ctx.state``; filled by the registry's startup hooks."""
        self._listeners: list[Callable[[TaskOutcome], None]] = []
        self._running: dict[str, tuple[Job, asyncio.Task[None], TaskContext]] = {}
        self._buffer: list[_Buffered] = []
        self._arrival = 0
        self._acks: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
        self._fails: list[Call] = []
        self._progress: dict[str, tuple[Job, float, str]] = {}
        self.handed_off = 0
        self._handoff_starting = 0
        """Handed-off tasks whose start mark is in flight: they hold a slot, and run once its
        reply says they started (never before: Redis must have charged the attempt)."""
        self.fenced = 0
        """Calls about a task refused because their delivery was over (counted per task)."""
        self._fence_listeners: list[Callable[[str, FencedCall, int], None]] = []
        self._queue_of_base = {self.settings.keyspace.queue(q).base: q for q in self.options.queues}
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
        _check_options(self.options)
        self._runner = HandlerRunner(self.options.pool, self.options.concurrency)
        self._hurry = asyncio.Event()
        """Set by a second SIGTERM/SIGINT: the drain stops waiting for running tasks."""
        self.loop_errors: Counter[str] = Counter()
        """Exceptions per background loop (each logged, then the loop restarted)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self.processed = 0
        self.failed = 0
        # run times (ms) of completed tasks per (queue, type), sent with the heartbeat
        self._runtimes: dict[tuple[str, str], list[int]] = defaultdict(list)

    # ---------------------------------------------------------------- public

    @property
    def in_flight(self) -> int:
        return len(self._running)

    @property
    def overdue_slots(self) -> int:
        """Slots held by sync handlers past their timeout, cancel or lost lease (not yet returned)."""
        return self._runner.overdue

    def add_listener(self, callback: Callable[[TaskOutcome], None]) -> None:
        self._listeners.append(callback)

    def add_fence_listener(self, callback: Callable[[str, FencedCall, int], None]) -> None:
        """``callback(queue, call, n)``: ``n`` calls of that kind were refused (fenced)."""
        self._fence_listeners.append(callback)

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
            self._hurry.set()  # the drain may already be waiting out the grace period
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
        hooks_ran = False
        try:
            await self._check_server()
            # before any task is taken: a failing hook (StartupFailed) stops the worker here
            await lifecycle.run_startup(self.registry.startup_hooks, self.state)
            hooks_ran = True
            await self._runner.start(
                {name: d.handler for name, d in self.registry.definitions.items() if not d.is_async},
                self.registry.startup_hooks,
                self.registry.shutdown_hooks,
            )
            await self._register()
            loops = [
                asyncio.create_task(self._exchange_loop(), name="rediq-exchange"),
                self._background("heartbeat", self._heartbeat_loop, lambda: not self._drained),
                self._background("maintenance", self._maintenance_loop),
                self._background("wake", self._wake_loop),
            ]
            if self.options.burst:
                loops.append(self._background("burst", self._burst_loop))
            if self.options.handoff:
                self._inbox_tasks = [
                    self._background(f"inbox-{q}", functools.partial(self._inbox_loop, q))
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
            self._runner.close()  # children run their shutdown hooks as they stop
            if hooks_ran:
                await lifecycle.run_shutdown(self.registry.shutdown_hooks, self.state)
            if self._redis is None:
                with contextlib.suppress(Exception):
                    await self.backend.close()

    def _background(
        self, name: str, body: Callable[[], Any], running: Callable[[], bool] | None = None
    ) -> asyncio.Task[None]:
        """A background loop that survives any exception (logged, counted, restarted)."""
        keep = running or (lambda: not self._stopping)
        return asyncio.create_task(keep_running(name, body, keep, self.loop_errors), name=f"rediq-{name}")

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
            "fenced": self.fenced,
            "overdue": self._runner.overdue,
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
        await self.backend.run(
            protocol.beat_registry(self.settings, self.id, self._registry_fields(), ttl_ms)
        )

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
        return (
            self.options.concurrency
            + prefetch
            - len(self._running)
            - len(self._buffer)
            - self._handoff_starting
        )

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
            if not self._acks and not self._fails and not want_start and not (want_fetch and self._fetch_now):
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
            # last progress reports go first: a finished task no longer accepts them
            progress, self._progress = self._progress, {}
            calls: list[Call] = [protocol.ack_call(self.settings, q, done) for q, done in acks.items()]
            calls.extend(fails)
            # reserved (prefetched) tasks for the free slots: charged an attempt as they start
            starting = self._take_reserved()
            start_calls = [protocol.start_call(self.settings, q, jobs) for q, jobs in starting.items()]
            calls.extend(start_calls)
            start_now = max(0, self._free_slots - sum(len(j) for j in starting.values()))
            calls[:0] = [
                protocol.progress_call(self.settings, j.queue, j.id, j.token, p, m)
                for j, p, m in progress.values()
            ]
            order = self._fetch_order() if want_fetch else []
            capacity = self._capacity
            lease_ms = int(self.options.lease_s * 1000)
            if order:  # the first queue rides along with the acks in the same round trip
                calls.append(
                    protocol.dequeue_call(
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
                # keep the outcomes: they are sent again once Redis is back (every call is
                # idempotent per delivery token, and a lost lease has them refused, never applied)
                for q, done in acks.items():
                    self._acks[q][:0] = done
                self._fails[:0] = fails
                for task_id, report in progress.items():
                    self._progress.setdefault(task_id, report)
                for jobs in starting.values():  # their start is sent again: same token, same answer
                    self._reserve(jobs)
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
            for (job, _, _), reply in zip(progress.values(), replies, strict=False):
                if reply is None:
                    self._fenced(job.queue, "progress", [job.id])
            replies = replies[len(progress) :]
            n_acks = len(acks)
            notified: list[tuple[str, list[str]]] = []
            for q, reply in zip(acks, replies[:n_acks], strict=True):
                refused, with_dependents = reply
                self._fenced(q, "ack", refused)
                if with_dependents:
                    notified.append((q, list(with_dependents)))
            fail_replies = replies[n_acks : n_acks + len(fails)]
            for call, reply in zip(fails, fail_replies, strict=True):
                if reply == "stale":
                    self._fenced(self._queue_of_base.get(call.args[0], "?"), "fail", [call.args[2]])
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
                        protocol.dequeue_call(
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
        if self._stopping:
            return 0
        return self.options.concurrency - len(self._running) - self._handoff_starting

    def _buffer_jobs(self, queue: str, reply: Any) -> int:
        """Launch the dequeued tasks that started (charged), keep the reserved ones for later."""
        jobs = protocol.parse_dequeue(queue, reply)
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
        """Launch the reserved tasks whose start Redis recorded; a refused one is not run."""
        new_attempts = protocol.parse_started(reply)
        refused = []
        for job in jobs:
            attempt = new_attempts.get(job.id, 0)
            if attempt:
                job.attempt, job.reserved = attempt, False
                self._launch(job)
            else:
                refused.append(job.id)
        if refused:
            self._fenced(jobs[0].queue, "start", refused)

    def _fenced(self, queue: str, call: FencedCall, task_ids: list[str]) -> None:
        """Calls refused because their delivery was over: not applied, logged and counted."""
        if not task_ids:
            return
        self.fenced += len(task_ids)
        log.warning(
            "%s of %d task(s) of %s refused: no longer their current delivery (lease lost, or "
            "cancelled, deleted or requeued meanwhile): %s",
            call,
            len(task_ids),
            queue,
            task_ids[:5],
        )
        for listener in self._fence_listeners:
            try:
                listener(queue, call, len(task_ids))
            except Exception:  # noqa: BLE001 - a broken listener must not break the worker
                log.exception("fence listener failed")

    @property
    def _handoff_ms(self) -> int:
        return HANDOFF_MS if self.options.handoff and not self._stopping else 0

    async def _inbox_loop(self, queue: str) -> None:
        """Take tasks that enqueue handed to this worker: start each at once when a slot is
        free, else keep it with the prefetched."""
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
                await self._take_handoff(protocol.parse_handoff(queue, popped[1]))

    async def _take_handoff(self, job: Job) -> None:
        """Start a handed-off task: its start mark goes at once, and the handler runs only on
        its reply. Run ahead of the mark, a worker killed before the mark landed would leave the
        attempt uncharged, and the task would run again as the same attempt (past max_retry)."""
        self.handed_off += 1
        if self._stopping or self._free_slots - self._promised_slots <= 0:
            self._reserve([job])  # started (or released) by the exchange loop like any prefetch
            self._wake.set()
            return
        self._handoff_starting += 1
        try:
            reply = await self.backend.execute(protocol.start_call(self.settings, job.queue, [job]))
        except Exception as exc:  # noqa: BLE001 - the exchange sends the start again (same token)
            log.warning("task %s: start of a hand-off deferred (%s)", job.id, exc)
            self._reserve([job])
            self._wake.set()
            return
        finally:
            self._handoff_starting -= 1
        self._started([job], reply)

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
        # asyncio.timeout, not wait_for: no second task and future per attempt (hot path)
        deadline = asyncio.timeout(job.timeout_s)
        try:
            if definition is None:
                self._defer_unknown(job)
                return
            payload = self._decode_payload(job, definition)
            if self.registry.middleware:
                await self._middleware("before", ctx)
            async with deadline:
                if definition.is_async:
                    result = await definition.handler(ctx, payload)
                else:
                    result = await self._call(definition, ctx, payload, deadline, job.timeout_s)
            result_json = result_json_of(result)
        except TimeoutError as exc:
            exc_for_after = exc
            if deadline.expired():  # the worker's deadline, not a TimeoutError the handler raised
                outcome, error = "timeout", f"E004: timed out after {job.timeout_s:g} s"
            else:
                outcome, error, trace = "retry", _describe(exc), runners.handler_traceback(exc)
            delay = definition.retry.delay(job.attempt) if definition else 0.0
        except asyncio.CancelledError as exc:
            exc_for_after = exc
            if ctx.cancelled:
                outcome, error, mode = "cancelled", "cancelled while running", "cancel"
            elif deadline.expired() and not self._stopping:  # a cancel that raced the deadline
                outcome, error = "timeout", f"E004: timed out after {job.timeout_s:g} s"
                delay = definition.retry.delay(job.attempt) if definition else 0.0
            else:  # lease lost or shutdown: someone else owns the outcome now
                outcome = "stale"
        except Permanent as exc:
            outcome, error, mode, exc_for_after = "dead", _describe(exc), "permanent", exc
            trace = runners.handler_traceback(exc)
        except Retryable as exc:
            outcome, error, exc_for_after = "retry", _describe(exc), exc
            delay = (
                exc.delay
                if exc.delay is not None
                else (definition.retry.delay(job.attempt) if definition else 1.0)
            )
            trace = runners.handler_traceback(exc)
        except Exception as exc:  # noqa: BLE001 - any handler error is the task's outcome
            outcome, error, exc_for_after = "retry", _describe(exc), exc
            delay = definition.retry.delay(job.attempt) if definition else 1.0
            trace = runners.handler_traceback(exc)
        finally:
            self._running.pop(job.id, None)
        if ctx.cancelled and outcome not in ("stale", "cancelled"):
            # a sync handler runs on after its cancel (or its child was killed): the cancel wins
            outcome, error, mode, trace = "cancelled", "cancelled while running", "cancel", ""
        if outcome == "completed":
            self._acks[job.queue].append((job.id, job.token, result_json))
            self.processed += 1
            if definition is not None:
                samples = self._runtimes[(job.queue, job.type)]
                if len(samples) < RUNTIME_SAMPLES:
                    samples.append(int((time.monotonic() - started) * 1000))
        elif outcome != "stale" and not (self._stopping and outcome == "cancelled" and not ctx.cancelled):
            if outcome == "retry" and job.attempt > job.max_retry:
                outcome = "dead"
            self._fails.append(
                protocol.fail_call(
                    self.settings, job.queue, job.id, job.token, error or "", trace, delay, mode
                )
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

    async def _call(
        self, definition: TaskDef, ctx: TaskContext, payload: Any, deadline: asyncio.Timeout, timeout_s: float
    ) -> Any:
        if definition.is_async:
            return await definition.handler(ctx, payload)
        # a thread or a child process; given up (deadline, cancel), it keeps the slot until it returns
        return await self._runner.call(definition.handler, ctx, payload, ctx.progress, deadline, timeout_s)

    def _defer_unknown(self, job: Job) -> None:
        """No handler here for this type (a rolling deploy): back uncharged for a worker that
        has one, sent with the next exchange like a failure; dead only after the time limit."""
        known = ", ".join(sorted(self.registry.types)) or "none"
        limit = self.options.unknown_type_timeout_s
        log.warning(
            "task %s: unknown task type %r (known here: %s); handing it back", job.id, job.type, known
        )
        self._fails.append(
            protocol.defer_call(
                self.settings,
                job.queue,
                job.id,
                job.token,
                self.options.unknown_type_delay_s,
                limit,
                f"unknown task type {job.type!r} on worker {self.id}; due again in "
                f"{self.options.unknown_type_delay_s:g} s for a worker that has a handler for it",
                f"unknown task type {job.type!r}: no worker with a handler for it took it within {limit:g} s "
                f"(known to worker {self.id}: {known})",
            )
        )
        self._wake.set()

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
        jobs = [j for j, _, _ in pending.values()]
        calls = [
            protocol.progress_call(self.settings, j.queue, j.id, j.token, p, m)
            for j, p, m in pending.values()
        ]
        with contextlib.suppress(RediqError):
            replies = await self.backend.execute(Batch(calls))
            for job, reply in zip(jobs, replies, strict=True):
                if reply is None:
                    self._fenced(job.queue, "progress", [job.id])

    # ---------------------------------------------------------------- heartbeat, maintenance, wake

    def _held(self) -> dict[str, list[tuple[str, str]]]:
        """(task id, delivery token) of every task this worker holds, per queue."""
        held: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for job, _, _ in self._running.values():
            held[job.queue].append((job.id, job.token))
        for item in self._buffer:
            held[item.job.queue].append((item.job.id, item.job.token))
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
            except Exception:  # noqa: BLE001 - e.g. a malformed reply: never stop extending leases
                self.loop_errors["heartbeat"] += 1
                log.exception("heartbeat failed; trying again in %.1f s", tick)

    async def _heartbeat(self) -> None:
        held = self._held()
        lease_ms = int(self.options.lease_s * 1000)
        queues = list(held)
        if queues:
            replies = await self.backend.execute(
                Batch([protocol.extend_call(self.settings, q, held[q], lease_ms) for q in queues])
            )
            # the delivery each id was extended for: a "lost" answer stops only that delivery
            extended = {task_id: token for pairs in held.values() for task_id, token in pairs}
            for q, (lost, cancel) in zip(queues, replies, strict=True):
                self._fenced(q, "extend", list(lost))
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

    def _drop(self, task_id: str, token: str, why: str) -> None:
        """Stop or forget this delivery of a task (a later delivery of it is left alone)."""
        entry = self._running.get(task_id)
        if entry is not None and entry[0].token == token:
            log.warning("task %s: %s; stopping it", task_id, why)
            entry[1].cancel()
        self._buffer = [b for b in self._buffer if b.job.id != task_id or b.job.token != token]
        heapq.heapify(self._buffer)

    async def _maintenance_loop(self) -> None:
        from engine import scheduler

        while not self._stopping:
            # each step on its own: one that raises (a bad cron entry, a corrupt hash) must not
            # stop the others, here or in later passes
            await self._maintain(
                "queue registration",
                self.backend.execute(cmd("SADD", self.settings.keyspace.queues, *self.options.queues)),
            )
            queues = await self._maintain("queue listing", self.backend.run(_known_queues(self.settings)))
            older_than_ms = int(self.options.maintenance_s * 1000)
            for q in queues or []:
                await self._maintain(
                    f"outbox of {q}",
                    self.backend.run(ops.flush_outbox(self.settings, q, older_than_ms=older_than_ms)),
                )
                await self._maintain(
                    f"index trim of {q}", self.backend.run(ops.trim_finished_indexes(self.settings, q))
                )
            await self._maintain("cron", scheduler.tick(self.backend, self.settings, self.registry))
            await asyncio.sleep(self.options.maintenance_s * (0.8 + 0.4 * random.random()))

    async def _maintain(self, step: str, work: Awaitable[T]) -> T | None:
        try:
            return await work
        except RediqError as exc:
            log.warning("maintenance (%s) deferred: %s", step, exc)
        except Exception:  # noqa: BLE001 - logged with its traceback and counted; the next pass tries again
            self.loop_errors["maintenance"] += 1
            log.exception("maintenance (%s) failed; trying again next pass", step)
        return None

    async def _burst_loop(self) -> None:
        """``--burst``: stop once the served queues read drained twice in a row (an exchange in
        flight between two readings can still add work) with nothing held here."""
        idle_readings = 0
        while not self._stopping:
            left = await self.backend.run(
                idle.outstanding(self.settings, self.options.queues, count_paused=False)
            )
            held = (
                self._running
                or self._buffer
                or self._handoff_starting
                or any(self._acks.values())
                or self._fails
            )
            idle_readings = idle_readings + 1 if left == 0 and not held else 0
            if idle_readings >= BURST_IDLE_READINGS:
                log.info("burst: the queues are drained; stopping")
                self.request_stop()
                return
            await asyncio.sleep(self.options.poll_interval_s)

    async def _wake_loop(self) -> None:
        """Wake the exchange loop as soon as work arrives (pub/sub is a hint; polling backs it)."""
        # if the subscription fails, keep_running logs it, counts it and subscribes again with
        # backoff (the poll goes on meanwhile)
        async for event in events.subscribe(self.settings, self.backend.redis, self.options.queues):
            if event.event in ("pending", "resumed", events.RESYNC):
                self._fetch_now = True
                self._wake_seq += 1
                self._wake.set()
        if not self._stopping:
            raise ConnectionFailed("event subscription ended")

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
            await _wait_all_unless(
                [t for _, t, _ in self._running.values()], self._hurry, self.options.grace_s
            )
        self._runner.abandon.set()  # stop waiting for sync handlers past their timeout
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
                    await self._take_handoff(protocol.parse_handoff(q, popped))
        except RediqError as exc:  # what is left returns when its lease expires, uncharged
            log.warning("could not withdraw hand-off registrations: %s", exc)

    async def _release(self, jobs: list[Job], note: str) -> None:
        by_queue: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for job in jobs:
            by_queue[job.queue].append((job.id, job.token))
        try:
            replies = await self.backend.execute(
                Batch([protocol.release_call(self.settings, q, h, note) for q, h in by_queue.items()])
            )
            for q, refused in zip(by_queue, replies, strict=True):
                self._fenced(q, "release", list(refused))
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


async def _wait_all_unless(tasks: list[asyncio.Task[None]], hurry: asyncio.Event, timeout: float) -> None:  # noqa: ASYNC109
    """Wait for ``tasks`` for up to ``timeout`` seconds, or until ``hurry`` is set."""
    deadline = time.monotonic() + timeout
    waiting: set[asyncio.Future[Any]] = set(tasks)
    hurried = asyncio.ensure_future(hurry.wait())
    try:
        while waiting and not hurried.done() and (left := deadline - time.monotonic()) > 0:
            _, waiting = await asyncio.wait(
                waiting | {hurried}, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            waiting.discard(hurried)
    finally:
        hurried.cancel()


def _known_queues(settings: Settings) -> Op[list[str]]:
    names = yield cmd("SMEMBERS", settings.keyspace.queues)
    return sorted(names)


_describe = runners.describe


def _check_options(options: WorkerOptions) -> None:
    if options.pool not in ("thread", "process"):
        raise InvalidConfig(f"pool must be 'thread' or 'process', got {options.pool!r}")
    for name in ("unknown_type_delay_s", "unknown_type_timeout_s"):
        value = getattr(options, name)
        if not 0 <= value <= 366 * 86400:  # NaN fails too
            raise InvalidConfig(f"{name} must be 0..31622400 seconds, got {value!r}")


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
