"""The worker runtime: the one asyncio loop that feeds ``engine.worker.core`` and performs what
it asks for, and the running of each handler.

One *exchange* loop talks to Redis for the hot path: each round trip carries the buffered acks
and failures of every served queue plus the next dequeue, so a busy worker spends well under one
round trip per task. What goes into each round trip, and what each reply means, is decided by
the core (no I/O there); this module sends the requests, runs handlers, and reports replies,
failures and handler outcomes back. Heartbeats extend leases (server clock); a worker that dies
simply stops extending, and the next dequeue on that queue puts its tasks back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import random
import signal
import socket
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any, assert_never

from engine import batching, cron, declarations, flow, lifecycle, ops, tasklog
from engine.backend import AsyncBackend, Batch, Call, cmd, use_hiredis_packer
from engine.connection import RedisTarget, parse_url
from engine.deadlines import Deadlines
from engine.errors import ReadOnlyError, RediqError
from engine.ops import Settings
from engine.registry import Registry
from engine.worker import batches, core, execute, loops, protocol
from engine.worker.context import TaskContext, TaskOutcome
from engine.worker.core import FencedCall, StopReason, WorkerCore
from engine.worker.options import HANDOFF_MS, STOP_FLUSH_S, Effective, WorkerOptions, loop_factory
from engine.worker.protocol import Job
from engine.worker.runners import HandlerRunner, keep_running
from engine.worker.slots import Held

log = logging.getLogger("rediq.worker")

YIELDS_BEFORE_EXCHANGE = 3
MAINTAIN_EVERY_S = 0.1
"""How often a busy worker's dequeue also promotes due tasks and recovers expired leases (at
most the poll interval): the lateness it adds to a due task, for three scans a call saved."""


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
            from engine.config import default_url  # pydantic-settings loads only when no URL is given

            target = default_url()
        self.registry = registry
        self.target = parse_url(target) if isinstance(target, str) else target
        self.options = options or WorkerOptions(queues=registry.queues or ["default"])
        """As the caller gave them; never changed (what the worker runs with: ``effective``)."""
        self.effective = Effective.of(self.options)
        self.settings = settings or Settings()
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._redis = redis
        self.state = lifecycle.WorkerState()
        """Shared with handlers as ``ctx.state``; filled by the registry's startup hooks."""
        eff = self.effective
        self.core = WorkerCore(
            core.CoreConfig(
                worker_id=self.id,
                queues=eff.queues,
                concurrency=eff.concurrency,
                prefetch=eff.prefetch,
                lease_ms=eff.lease_ms,
                handoff_ms=HANDOFF_MS if eff.handoff else 0,
                weights=eff.weights,
                grace_s=eff.grace_s,
                stop_flush_s=STOP_FLUSH_S,
            )
        )
        self._listeners: list[Callable[[TaskOutcome], None]] = []
        self._running: dict[str, tuple[Job, asyncio.Task[None], TaskContext]] = {}
        self.deadlines = Deadlines()
        """The running handlers' time limits, watched by one timer (engine.deadlines)."""
        self.fenced = 0
        """Calls about a task refused because their delivery was over (counted per task)."""
        self._fence_listeners: list[Callable[[str, FencedCall, int], None]] = []
        self._inbox_tasks: list[asyncio.Task[None]] = []
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._round_settled = asyncio.Event()
        """Set (and replaced) when a dequeue round's reply or failure arrives, or the worker
        stops: what an inbox loop waits on when only a round decides its take."""
        self._maintain_at = 0.0
        """The monotonic time from which the next dequeues run the maintenance scans."""
        self._grace_s = eff.grace_s
        """Cut to 0 by a second SIGTERM/SIGINT."""
        self._gave_up = False
        """Stopping, and Redis stayed unreachable past the grace period: outcomes given up."""
        self.drained = False
        self._started_ms = 0
        """Redis clock, set when the worker registers."""
        self._runner = HandlerRunner(eff.pool, eff.concurrency)
        self._hurry = asyncio.Event()
        """Set by a second SIGTERM/SIGINT: the drain stops waiting for running tasks."""
        self.throttled_s: defaultdict[str, float] = defaultdict(float)
        """Seconds this worker slept on a queue's rate limit, per queue (for /metrics)."""
        self.supervisor = ""
        """``host:pid`` of the ``--processes`` supervisor that started this worker (registered)."""
        self.loop_errors: Counter[str] = Counter()
        """Exceptions per background loop (each logged, then the loop restarted)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._beat_written: dict[str, str] | None = None
        """The registry entry's fields as the last beat that got a reply wrote them."""
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

    @property
    def processed(self) -> int:
        return self.core.counters.processed

    @property
    def failed(self) -> int:
        return self.core.counters.failed

    @property
    def handed_off(self) -> int:
        return self.core.counters.handed_off

    @property
    def handoff_enabled(self) -> bool:
        """Hand-off as the worker runs it: on unless disabled, or turned off by an ACL without it."""
        return self.core.handoff_enabled

    def add_listener(self, callback: Callable[[TaskOutcome], None]) -> None:
        self._listeners.append(callback)

    def add_fence_listener(self, callback: Callable[[str, FencedCall, int], None]) -> None:
        """``callback(queue, call, n)``: ``n`` calls of that kind were refused (fenced)."""
        self._fence_listeners.append(callback)

    def request_stop(self) -> None:
        """Begin a graceful drain (what SIGTERM does). Flags and wake-ups only: a cancelled
        run's abandon stops through it too."""
        self.core.stop(self._now())
        self._stop.set()
        self._wake.set()
        self._settle_round()  # an inbox loop waiting for a round sees the stop at once
        if self.core.slots.held_for_take:
            self._end_holds()

    def wake(self) -> None:
        self._wake.set()

    def _token_due(self, queue: str) -> None:
        self.core.on_token_due(queue)
        self._wake.set()

    def _now(self) -> float:
        """The worker's clock: its event loop's (asyncio's monotonic clock, so a test harness
        running the loop on virtual time replays every timer decision)."""
        return self._loop.time() if self._loop is not None else time.monotonic()

    def run_forever(self) -> int:
        """Run until SIGTERM/SIGINT; returns a process exit code."""
        try:
            with asyncio.Runner(loop_factory=loop_factory(self.effective.event_loop)) as runner:
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
        if self.core.stopping:  # second signal: do not wait for the grace period
            log.warning("second signal: handing running tasks back now")
            self._grace_s = 0
            self.core.cut_grace()
            self._hurry.set()  # the drain may already be waiting out the grace period
        log.info("draining: no new tasks; running ones get %.0f s", self._grace_s)
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
        # what this run starts: none of it may outlive the run, whichever way it ends
        background: list[asyncio.Task[None]] = []
        exchange: asyncio.Task[None] | None = None
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
            background = [
                self._background(
                    "heartbeat", functools.partial(loops.heartbeat_loop, self), lambda: not self.drained
                ),
                self._background("maintenance", functools.partial(loops.maintenance_loop, self)),
                self._background(
                    "cron",
                    functools.partial(
                        cron.run_scheduler,
                        self.backend,
                        self.settings,
                        self.registry,
                        lambda: not self.core.stopping,
                        self.effective.maintenance_s,
                    ),
                ),
                self._background("wake", functools.partial(loops.wake_loop, self)),
            ]
            if self.effective.burst:
                background.append(self._background("burst", functools.partial(loops.burst_loop, self)))
            if self.core.handoff_enabled:
                self._inbox_tasks = [
                    self._background(f"inbox-{q}", functools.partial(loops.inbox_loop, self, q))
                    for q in self.effective.queues
                ]
                background += self._inbox_tasks
            exchange = asyncio.create_task(self._exchange_loop(), name="rediq-exchange")
            log.info(
                "worker %s serving %s with %d slots on %s",
                self.id,
                ",".join(self.effective.queues),
                self.effective.concurrency,
                type(self._loop).__module__.partition(".")[0],  # 'uvloop' or 'asyncio'
            )
            await self._stop.wait()
            await self._drain()
            await tasklog.flush(self)  # what handlers logged and is still buffered
            self.drained = True
            for task in background:
                task.cancel()
            await asyncio.gather(exchange, return_exceptions=True)
            await loops.cancel_all(background)
            await self._deregister()
        except asyncio.CancelledError:
            # cancelled from outside (an embedding app's shutdown, a caller's timeout) rather
            # than stopped: a heartbeat loop left behind would extend the leases of handlers
            # nobody waits for, burying their tasks
            await loops.abandon_run(self, background, exchange)
            raise
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
        keep = running or (lambda: not self.core.stopping)
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
            "queues": ",".join(self.effective.queues),
            "concurrency": self.effective.concurrency,
            "started": self._started_ms,
            "busy": len(self._running),
            "fenced": self.fenced,
            "overdue": self._runner.overdue,
            "supervisor": self.supervisor,
            "tasks": json.dumps([f"{j.queue}|{j.id}" for j, _, _ in self._running.values()][:50]),
        }

    async def _register(self) -> None:
        self._started_ms = await self.backend.run(ops.server_time_ms())
        await self.heartbeat_registry()
        # producers without the app's registry enqueue with these (engine.declarations); a
        # worker whose Redis user may not write them still runs its tasks
        decls = list(self.registry.declarations().values())
        try:
            await self.backend.run(declarations.publish(self.settings.keyspace, self.id, decls))
            kept = await self.backend.run(flow.declare_limits(self.settings, self.registry.rate_limits))
            await self.backend.run(batching.declare_batches(self.settings, self.registry.batches))
            for (queue, group), limit in self.registry.group_limits.items():
                await self.backend.run(flow.write_group_limit(self.settings, queue, group, limit, True))
            for queue, weights in self.registry.fair_queues.items():
                await self.backend.run(flow.write_fair(self.settings, queue, weights, True))
        except ReadOnlyError as exc:
            log.warning("task declarations not published (%s): producers without the registry guess", exc)
        else:
            for queue in kept:
                log.info("queue %s: keeping the rate limit an operator set over the app's", queue)

    async def heartbeat_registry(self) -> None:
        ttl_ms = int(max(self.effective.heartbeat_s * 3, 10) * 1000)
        fields = self._registry_fields()
        written, self._beat_written = self._beat_written, None  # (a beat without a reply: all again)
        await self.backend.run(protocol.beat_registry(self.settings, self.id, fields, ttl_ms, written))
        self._beat_written = {k: str(v) for k, v in fields.items()}

    async def _deregister(self) -> None:
        ks = self.settings.keyspace
        with contextlib.suppress(RediqError):
            await self.backend.execute(
                Batch([cmd("DEL", ks.worker(self.id)), cmd("ZREM", ks.workers, self.id)])
            )

    # ---------------------------------------------------------------- performing the core's requests

    async def _perform(self, exchange: core.Exchange) -> list[core.Effect]:
        """Send one exchange and hand the replies to the core, keyed by request id. Raises
        what the backend raised, after telling the core (``on_failure``)."""
        if exchange.kind is core.ExchangeKind.HANDOFF_TAKE:
            (take,) = exchange.requests
            assert isinstance(take, core.Take)
            calls = self._take_calls(take)
        else:
            calls = [self._call_of(r) for r in exchange.requests]
        try:
            replies = await self.backend.execute(calls[0] if len(calls) == 1 else Batch(calls))
        except Exception as exc:
            kind = (
                core.FailureKind.UNAVAILABLE if isinstance(exc, RediqError) else core.FailureKind.CALL_FAILED
            )
            self._apply(self.core.on_failure(exchange.xid, kind, self._now()))
            if exchange.kind is core.ExchangeKind.ROUND:
                self._settle_round()
            raise
        if len(calls) == 1:
            replies = [replies]
        elif len(calls) > len(exchange.requests):
            replies = replies[-len(exchange.requests) :]  # a take's BLMOVE: take.lua returns what it moved
        # the one place replies meet requests by position: from here on, by request id
        by_rid = {r.rid: reply for r, reply in zip(exchange.requests, replies, strict=True)}
        effects = self.core.on_reply(exchange.xid, by_rid)
        self._apply(effects)
        if exchange.kind is core.ExchangeKind.ROUND:
            self._settle_round()
        return effects

    def _settle_round(self) -> None:
        self._round_settled.set()
        self._round_settled = asyncio.Event()

    def _call_of(self, request: core.Request) -> Call:
        s = self.settings
        match request:
            case core.Ack():
                return protocol.ack_call(s, request.queue, request.done)
            case core.Dequeue():
                return protocol.dequeue_call(
                    s,
                    request.queue,
                    request.max_tasks,
                    request.lease_ms,
                    self.id,
                    start_now=request.start_now,
                    handoff_ms=request.handoff_ms,
                    request_id=request.request_id,
                    held=request.held,
                    received=request.received,
                    quiet=request.quiet,
                    maintenance_limit=protocol.MAINTENANCE_LIMIT if request.maintain else 0,
                )
            case core.Start():
                return protocol.start_call(s, request.queue, request.jobs)
            case core.Fail():
                r = request
                return protocol.fail_call(
                    s, r.queue, r.task_id, r.token, r.error, r.traceback, r.delay_s, r.mode
                )
            case core.Progress():
                r2 = request
                return protocol.progress_call(s, r2.queue, r2.task_id, r2.token, r2.percent, r2.message)
            case core.Defer():
                d = request
                return protocol.defer_call(
                    s, d.queue, d.task_id, d.token, d.delay_s, d.limit_s, d.note, d.error
                )
            case core.Throttle():
                t = request
                return protocol.throttle_call(s, t.queue, t.task_id, t.token, t.pause_s, t.note)
            case core.Extend():
                return protocol.extend_call(s, request.queue, request.held, request.lease_ms)
            case core.Release():
                return protocol.release_call(s, request.queue, request.held, request.note)
            case core.Take():  # (alone: the script; its BLMOVE goes only in a take's exchange)
                return self._take_calls(request)[-1]
            case _:
                assert_never(request)

    def _take_calls(self, take: core.Take) -> list[Call]:
        lease_ms = self.core.config.lease_ms
        return protocol.take_calls(
            self.settings, take.queue, self.id, lease_ms, take.confirmed, take.wait_s, take.room
        )

    def _end_holds(self) -> None:
        """End the takes whose held slot is wanted elsewhere (``WorkerCore.holds_to_end``): a
        wake-up pushed to the inbox serves their ``BLMOVE`` at once."""
        ending = self.core.holds_to_end()
        if ending:
            task = asyncio.create_task(self._wake_takes(ending), name="rediq-wake-takes")
            self._side_tasks.add(task)
            task.add_done_callback(self._side_tasks.discard)

    async def _wake_takes(self, queues: list[str]) -> None:
        for queue in queues:
            inbox = self.settings.keyspace.queue(queue).inbox(self.id)
            try:
                await self.backend.execute(
                    Batch([cmd("LPUSH", inbox, ""), cmd("PEXPIRE", inbox, self.core.config.lease_ms)])
                )
            except RediqError as exc:  # the take ends with its wait anyway
                log.debug("could not wake the hand-off wait of %s: %s", queue, exc)

    def _apply(self, effects: list[core.Effect]) -> None:
        notified: list[tuple[str, tuple[str, ...]]] | None = None
        batched: dict[tuple[str, str], list[Job]] = defaultdict(list)
        for effect in effects:
            match effect:
                case core.RunHandler():
                    definition = self.registry.get(effect.job.type)
                    if definition is not None and definition.batch is not None:
                        # one dequeue leased the batch: its items go to one handler call
                        batched[(effect.job.queue, effect.job.type)].append(effect.job)
                    else:
                        self._launch(effect.job)
                case core.Fenced():
                    self._fenced(effect.queue, effect.call, effect.task_ids)
                case core.StopHandler():
                    self._stop_handler(effect)
                case core.ReleaseDependents():
                    notified = list(effect.notified)
                case core.Throttled():  # sleep till the queue's next token; others keep flowing
                    if not effect.batch:  # (a forming batch is not throttled time)
                        self.throttled_s[effect.queue] += effect.wait_ms / 1000
                    asyncio.get_running_loop().call_later(
                        effect.wait_ms / 1000, self._token_due, effect.queue
                    )
                case core.GiveUp():
                    log.error(
                        "stopping without recording %d outcome(s): Redis is unreachable. Those tasks "
                        "run again when their leases expire (at-least-once); nothing is lost",
                        effect.unsent,
                    )
                    self._gave_up = True
        for jobs in batched.values():
            self._launch_batch(jobs)
        if notified is not None:
            asyncio.create_task(self._flush_outboxes(notified, list(self.effective.queues)))
        if self.core.slots.held_for_take:
            self._end_holds()

    # ---------------------------------------------------------------- the exchange loop

    async def _exchange_loop(self) -> None:
        backoff = 0.05
        core_ = self.core
        while True:
            if not core_.wants_exchange():
                if core_.finished:
                    return
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.effective.poll_interval_s)
                core_.on_idle_poll()
                continue
            # let tasks launched by the last exchange take their step first: short tasks finish
            # now and ride in this batch instead of forcing one more round trip each (with
            # nothing running there is nothing to wait for: a wake-up fetches at once)
            if self._running:
                for _ in range(YIELDS_BEFORE_EXCHANGE):
                    await asyncio.sleep(0)
            now = self._now()
            if now >= self._maintain_at:
                self._maintain_at = now + min(MAINTAIN_EVERY_S, self.effective.poll_interval_s)
                core_.on_maintenance_due()
            exchange = core_.next_exchange()
            if exchange is None:
                continue
            try:
                await self._perform(exchange)
            except RediqError as exc:
                if self._gave_up:
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
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(5.0, backoff * 2)
                continue
            backoff = 0.05

    def _fenced(self, queue: str, call: FencedCall, task_ids: tuple[str, ...] | list[str]) -> None:
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
            list(task_ids[:5]),
        )
        for listener in self._fence_listeners:
            try:
                listener(queue, call, len(task_ids))
            except Exception:  # noqa: BLE001 - a broken listener must not break the worker
                log.exception("fence listener failed")

    def _stop_handler(self, effect: core.StopHandler) -> None:
        entry = self._running.get(effect.task_id)
        if entry is None or entry[0].token != effect.token:
            return
        job, task, ctx = entry
        definition = self.registry.get(job.type)
        if definition is not None and definition.batch is not None:
            # one item of a batch: the call goes on for the others; a cancelled item is
            # recorded cancelled when it ends, a lost one's outcome is refused by its token
            if effect.reason is StopReason.CANCEL_REQUESTED:
                ctx.cancelled = True
            log.warning("task %s (in a batch): %s; the batch call goes on", job.id, effect.reason)
            return
        if effect.reason is StopReason.LEASE_LOST:
            log.warning("task %s: lease lost; stopping it", job.id)
            task.cancel()
            return
        ctx.cancelled = True  # a sync handler sees it (a child is killed); it ends cancelled
        if definition is not None and definition.is_async:
            task.cancel()

    async def perform(self, exchange: core.Exchange) -> None:
        """Send an exchange the core issued outside the exchange loop (the inbox loop's takes)."""
        await self._perform(exchange)

    async def round_settled(self, timeout_s: float) -> bool:
        """Wait for the reply (or failure) of the dequeue round in flight or next; False if
        none came within ``timeout_s``."""
        settled = self._round_settled
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(settled.wait(), timeout_s)
        return settled.is_set()

    async def take_handoff(self, job: Job) -> None:
        """Start a handed-off task: its start mark goes at once, and the handler runs only on
        its reply (see ``WorkerCore.on_handoff``)."""
        exchange = self.core.on_handoff(job)
        if exchange is None:
            self._wake.set()  # started (or released) by the exchange loop like any prefetch
            return
        try:
            await self._perform(exchange)
        except Exception as exc:  # noqa: BLE001 - the exchange sends the start again (same token)
            log.warning("task %s: start of a hand-off deferred (%s)", job.id, exc)
            self._wake.set()

    def _launch_batch(self, jobs: list[Job]) -> None:
        definition = self.registry.get(jobs[0].type)
        assert definition is not None
        ctx = batches.BatchContext(jobs, self)
        task = asyncio.create_task(
            batches.run_batch(self, jobs, definition, ctx), name=f"rediq-batch-{jobs[0].id}"
        )
        for job in jobs:
            # each item its own context: a cancel asked for one item must not stop the call (a
            # child process is killed when the call's ctx says cancelled)
            self._running[job.id] = (job, task, TaskContext(job, self))

    def _launch(self, job: Job) -> None:
        ctx = TaskContext(job, self)
        task = asyncio.create_task(execute.run_task(self, job, ctx), name=f"rediq-task-{job.id}")
        self._running[job.id] = (job, task, ctx)

    async def _flush_outboxes(self, notified: list[tuple[str, tuple[str, ...]]], queues: list[str]) -> None:
        try:
            for q, ids in notified:
                await self.backend.run(ops.flush_outbox(self.settings, q, list(ids)))
            for q in queues:
                await self.backend.run(ops.flush_outbox(self.settings, q))
        except RediqError as exc:  # the maintenance loop replays the outbox later
            log.warning("dependency release deferred: %s", exc)

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
        if self.core.report_progress(job, percent, message):
            asyncio.ensure_future(self._send_progress())

    async def _send_progress(self) -> None:
        await asyncio.sleep(0.05)  # coalesce bursts: only the latest report per task is sent
        exchange = self.core.progress_exchange()
        if exchange is not None:
            with contextlib.suppress(RediqError):
                await self._perform(exchange)

    # ---------------------------------------------------------------- heartbeat

    def _held(self) -> Held:
        """(task id, delivery token) of every task this worker holds, per queue."""
        return self.core.held()

    @property
    def _buffer(self) -> list[Any]:
        """The reserved tasks waiting for a slot (tests look at it)."""
        return self.core.slots.buffer

    async def _heartbeat(self) -> None:
        exchange = self.core.extend_exchange(self._held())
        if exchange is not None:
            await self._perform(exchange)
        await self.heartbeat_registry()
        if self._runtimes:
            runtimes, self._runtimes = self._runtimes, defaultdict(list)
            calls: list[Call] = []
            for (queue, task_type), samples in runtimes.items():
                key = self.settings.keyspace.queue(queue).runtimes(task_type)
                calls += [
                    cmd("LPUSH", key, *samples),
                    cmd("LTRIM", key, 0, execute.RUNTIME_SAMPLES - 1),
                    cmd("EXPIRE", key, 86400),
                ]
            await self.backend.execute(Batch(calls))

    # ---------------------------------------------------------------- shutdown

    async def _drain(self) -> None:
        try:
            if self._inbox_tasks:
                # the inbox loops end within their one-second wait; what they took is buffered
                await asyncio.wait(self._inbox_tasks, timeout=3)
                await self._withdraw_handoffs()
        finally:
            # (the exchange loop ends only after this: what the withdrawal started may still run
            # here, and its outcome goes out with that loop's next exchange)
            self.core.close_intake()
            self._wake.set()
        buffered = self.core.slots.take_all_reserved()
        if buffered:
            await self._release(buffered, "returned unstarted by worker shutdown")
        if self._running:
            await loops.wait_all_unless([t for _, t, _ in self._running.values()], self._hurry, self._grace_s)
        self._runner.abandon.set()  # stop waiting for sync handlers past their timeout
        leftover = [job for job, _, _ in self._running.values()]
        for _, task, _ in list(self._running.values()):
            task.cancel()
        if leftover:
            await asyncio.gather(*(t for _, t, _ in list(self._running.values())), return_exceptions=True)
            await self._release(leftover, f"returned by worker shutdown after {self._grace_s:g} s grace")
        self._wake.set()

    async def _withdraw_handoffs(self) -> None:
        """No more hand-offs: withdraw the registrations, then take what already arrived (it
        is released with the other prefetched tasks)."""
        ks = self.settings.keyspace
        try:
            await self.backend.execute(
                Batch([cmd("HDEL", ks.queue(q).idle, self.id) for q in self.effective.queues])
            )
            for q in self.effective.queues:
                inbox = ks.queue(q).inbox(self.id)
                while (popped := await self.backend.execute(cmd("LPOP", inbox))) is not None:
                    if popped:  # ('' is a wake-up, see _end_holds)
                        await self.take_handoff(protocol.parse_handoff(q, popped))
                # what a take whose reply was lost started: run it (even with takes turned off
                # since: a record left started would be charged for an attempt never run)
                leftovers = self.core.take_leftovers(q)
                if leftovers is not None:
                    await self._perform(leftovers)
        except RediqError as exc:  # what is left returns when its lease expires, uncharged
            log.warning("could not withdraw hand-off registrations: %s", exc)

    async def _release(self, jobs: list[Job], note: str) -> None:
        exchange = self.core.release_exchange(jobs, note)
        if exchange is None:
            return
        try:
            await self._perform(exchange)
        except RediqError as exc:  # their leases expire and recovery hands them out again
            log.warning("could not hand back %d task(s): %s", len(jobs), exc)


def run_worker(
    registry: Registry,
    url: str | None,
    queues: list[str],
    concurrency: int = 10,
    settings: Settings | None = None,
) -> int:
    """Convenience for scripts: run a worker in this process until SIGTERM/SIGINT."""
    if url is None:
        from engine.config import default_url  # pydantic-settings loads only when no URL is given

        url = default_url()
    return Worker(
        registry, url, WorkerOptions(queues=queues, concurrency=concurrency), settings
    ).run_forever()
