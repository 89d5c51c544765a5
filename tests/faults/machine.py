"""The fault-exploration state machine: real ``Worker``s (in process, on one asyncio loop) and
the real scripts on a real Valkey, with a ``Wire`` (``tests/faults/wire.py``) between each
worker and Redis. Hypothesis chooses what producers, operators, handlers and the network do,
and in what order; after every step the store is checked, and at the end a settle phase with
healthy workers must bring every accepted task to an end that the history explains.

The asyncio loop runs only inside a step: a rule acts, then lets the workers run until no
request is in flight and none was sent for a short quiet spell. So operators, enqueues and
the checks see a store no worker request is changing, and the fault schedule (armed per call,
see ``wire.py``) comes from Hypothesis' draws. The loop runs on virtual time
(``vtime.py``) and one request at a time crosses the wires (``Line``): timers inside the
workers (heartbeats, polls, back-offs, timeouts) fire at the same points of the request
sequence in every run, so an example replays the same interleaving and a finding shrinks.

Time: leases are long (never lapsing on their own); the harness makes them lapse, as the
chaos suite's frozen workers do, by rewriting the lease (``lapse``), and brings retries and
delayed tasks due with the test kit's ``testkit_advance``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import redis
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from engine import doctor, ops
from engine.client import Client
from engine.connection import parse_url
from engine.registry import Registry
from engine.task import DEFAULT_TIMEOUT_S, Task
from engine.testing import advance
from engine.worker import TaskContext, Worker, WorkerOptions
from tests.engine.invariants import check_invariants, check_unique_keys
from tests.faults.handles import OWNER, WorkerHandle, task_factory
from tests.faults.history import History, Run, RunEnd, TaskRecord
from tests.faults.threads import Gate, current_gate, open_gate, stepped_threads, wait_at
from tests.faults.vtime import VirtualTimeLoop
from tests.faults.wire import Fault, FaultyRedis, Line, Wire

QUEUE = "f"
LEASE_S = 600.0  # never lapses by itself within a run: lapses are the harness's choice
MAX_LIVE_WORKERS = 3
MAX_WORKERS = 6
MAX_TASKS = 24
QUIET_S = 0.01
STEP_LIMIT_S = 1.5
IN_FLIGHT_LIMIT_S = 60.0
SETTLE_LIMIT_S = 30.0
TASK_SPECS = st.tuples(
    st.sampled_from([0, 0, 1, 2]),  # max_retry
    st.sampled_from([None, None, None, "u1", "u2"]),  # unique key
    st.integers(-6, 30),  # a dependency on an earlier task (negative: none)
    st.integers(0, 5).map(lambda n: n == 0),  # delayed by an hour (time advances bring it due)
    st.integers(0, 2).map(lambda n: n == 0),  # a sync handler (in a thread) instead of an async one
)
SYNC_TIMEOUT_S = 1.0
"""A sync task's timeout (virtual time: a step lets some 10-1,500 ms pass, so a hung handler
times out within some steps)."""
HANDLER_ENDS = st.sampled_from([RunEnd.OK, RunEnd.OK, RunEnd.RAISED])
OPERATOR_ACTIONS = ["cancel", "delete", "restore", "requeue", "pause", "resume", "doctor"]
INTERRUPTIONS = ["cancel", "delete", "doctor", "stall", "kill", "cancel+stall", "cancel+kill", "delete+stall"]
LABELS = ["any", "start", "ack", "fail", "dequeue", "dequeue", "extend", "release", "BLPOP", "take"]

log = logging.getLogger("rediq.faults")
STEPS = [0]
"""Steps run in this process (all examples), for the deep profile's figures."""


@dataclass
class Pending:
    """A handler call waiting for the test to say how it ends."""

    run: Run
    outcome: asyncio.Future[RunEnd]


class FaultMachine(RuleBasedStateMachine):
    url: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.r = redis.Redis.from_url(self.url, decode_responses=True)
        self.r.flushall()
        self.client = Client(self.url)
        self.settings = self.client.settings
        self.line = Line()
        self.loop = VirtualTimeLoop(io_pending=lambda: self.line.in_flight > 0)
        self.threads = stepped_threads()
        self.threads.__enter__()
        self.gates: list[Gate] = []
        self.loop.set_task_factory(task_factory)  # type: ignore[arg-type]
        self.history = History()
        self.workers: list[WorkerHandle] = []
        self.pending: list[Pending] = []
        self.registry = Registry()
        self.registry.task("job", queue=QUEUE)(self._handler)
        self.registry.task("sync_job", queue=QUEUE)(self._sync_handler)
        self.ids: list[str] = []
        self.paused = False
        self.step_ok = True
        self.n_task = 0
        self.trace: list[str] = []
        """The steps so far, as Hypothesis would print them (it cannot when a failure does not
        replay: a rare interleaving)."""

    # ------------------------------------------------------------------ plumbing

    def _step(self, coro: Coroutine[Any, Any, Any] | None = None) -> Any:
        """Run ``coro`` (if any), then let the workers run until the wires are quiet."""
        STEPS[0] += 1
        caller = sys._getframe(1)
        if caller.f_code.co_name not in ("_step", "_settle_and_check", "_kill_or_stall"):
            args = {
                k: v
                for k, v in caller.f_locals.items()
                if k in caller.f_code.co_varnames[1 : caller.f_code.co_argcount]
            }
            self.trace.append(
                f"state.{caller.f_code.co_name}({', '.join(f'{k}={v!r}' for k, v in args.items())})"
            )

        async def body() -> Any:
            value = await coro if coro is not None else None
            await self._quiesce()
            return value

        return self.loop.run_until_complete(body())

    async def _quiesce(self, limit: float = STEP_LIMIT_S) -> None:
        """Let the workers run until no request is in flight (always: the checks read the store
        between steps and must not see it change) and none was sent for ``QUIET_S`` (or
        ``limit`` passed: timers keep some workers busy)."""
        clock = self.loop.time  # virtual: see vtime.py
        start, real_start = clock(), time.monotonic()
        await asyncio.sleep(0.002)
        while True:
            wires = [h.wire for h in self.workers]
            busy = any(w.in_flight for w in wires)
            last = max((w.last_request for w in wires), default=0.0)
            now = clock()
            if not busy and (now - last >= QUIET_S or now - start >= limit):
                return
            assert time.monotonic() - real_start < IN_FLIGHT_LIMIT_S, (
                f"a request in flight for {IN_FLIGHT_LIMIT_S} s"
            )
            await asyncio.sleep(0.002)

    def _live(self) -> list[WorkerHandle]:
        return [h for h in self.workers if h.alive]

    def _server_ms(self) -> int:
        seconds, micros = self.r.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def _held_by(self, worker_id: str | None) -> list[tuple[str, bool]]:
        """(task id, charged) of the active tasks whose delivery names ``worker_id`` (None: any)."""
        qk = self.settings.keyspace.queue(QUEUE)
        held = []
        for member in self.r.zrange(qk.active, 0, -1):
            task_id = str(member)
            worker, reserved = self.r.hmget(qk.task(task_id), "worker", "reserved")
            if worker_id is None or worker == worker_id:
                held.append((task_id, reserved != "1"))
        return held

    def _lapse(self, ids: list[str]) -> None:
        """Make these tasks' leases look run out (as if their holder had stalled that long)."""
        qk = self.settings.keyspace.queue(QUEUE)
        past = self._server_ms() - 1
        for task_id in ids:
            if self.r.zadd(qk.active, {task_id: past}, xx=True, ch=True) or self.r.zscore(qk.active, task_id):
                self.r.hset(qk.task(task_id), "lease", past)
                group = self.r.hget(qk.task(task_id), "grp")
                if group is not None:  # its concurrency group's slot is scored by the same lease
                    self.r.zadd(qk.cgroup(str(group)), {task_id: past}, xx=True)

    async def _handler(self, ctx: TaskContext, payload: Any) -> str:
        handle = next((h for h in self.workers if h.worker.id == ctx.worker_id), None)
        if handle is None or handle.wire.killed:
            self.history.violations.append(f"{ctx.id}: a handler ran on a killed or unknown worker")
        run = self.history.begin(ctx.id, ctx.worker_id, ctx.attempt)
        self._check_charged(ctx, run)
        outcome: asyncio.Future[RunEnd] = asyncio.get_running_loop().create_future()
        self.pending.append(Pending(run, outcome))
        try:
            end = await outcome
        except asyncio.CancelledError:
            run.end = RunEnd.CANCELLED
            raise
        finally:
            self.pending = [p for p in self.pending if p.run is not run]
        run.end = end
        if end is RunEnd.RAISED:
            raise RuntimeError(f"handler failed (run #{run.seq})")
        return "ok"

    def _sync_handler(self, ctx: TaskContext, payload: Any) -> str:
        """(in a thread of the worker's runner) Blocks until the test decides (``threads.py``)."""
        gate = current_gate()
        self.loop.call_soon_threadsafe(self._sync_began, ctx, gate)  # before the loop goes on
        return wait_at(gate, ctx.id)

    def _sync_began(self, ctx: TaskContext, gate: Gate) -> None:
        self.gates.append(gate)
        handle = next((h for h in self.workers if h.worker.id == ctx.worker_id), None)
        if handle is None or handle.wire.killed:
            self.history.violations.append(f"{ctx.id}: a sync handler ran on a killed or unknown worker")
        run = self.history.begin(ctx.id, ctx.worker_id, ctx.attempt)
        self._check_charged(ctx, run)
        outcome: asyncio.Future[RunEnd] = self.loop.create_future()
        self.pending.append(Pending(run, outcome))

        def release(done: asyncio.Future[RunEnd]) -> None:
            run.end = done.result()
            run.returned_after_cancel = ctx.cancelled
            self.pending = [p for p in self.pending if p.run is not run]
            open_gate(gate, run.end)

        outcome.add_done_callback(release)

    def _check_charged(self, ctx: TaskContext, run: Run) -> None:
        """A handler runs only after Redis charged its attempt to this delivery."""
        qk = self.settings.keyspace.queue(QUEUE)
        state, worker, reserved, attempts = self.r.hmget(
            qk.task(ctx.id), "state", "worker", "reserved", "attempts"
        )
        if state == "active" and worker == ctx.worker_id and reserved != "1":
            if str(ctx.attempt) != str(attempts):
                self.history.violations.append(
                    f"run #{run.seq}: {ctx.id} runs as attempt {ctx.attempt} but Redis charged {attempts!s}"
                )
        elif run.breaks_at_start == 0:
            self.history.violations.append(
                f"run #{run.seq}: {ctx.id} runs on {ctx.worker_id} but Redis holds it {state!s} "
                f"for {worker!s} (reserved {reserved!s}) and nothing ended a delivery of it"
            )

    # ------------------------------------------------------------------ producers

    @initialize(concurrency=st.integers(1, 3), prefetch=st.sampled_from([0, 1, 3]), handoff=st.booleans())
    def first_worker(self, concurrency: int, prefetch: int | None, handoff: bool) -> None:
        self._step(self._start_worker(concurrency, prefetch, handoff))

    def _enqueue(self, specs: list[tuple[int, str | None, int, bool, bool]]) -> None:
        for max_retry, unique, dep, delayed, sync in specs:
            if self.n_task >= MAX_TASKS:
                break
            self.n_task += 1
            deps = (self.ids[dep % len(self.ids)],) if dep >= 0 and self.ids else ()
            task = Task(
                type="sync_job" if sync else "job",
                timeout=SYNC_TIMEOUT_S if sync else DEFAULT_TIMEOUT_S,
                queue=QUEUE,
                id=f"t{self.n_task}",
                max_retry=max_retry,
                unique_key=unique,
                depends_on=deps,
                delay=3600.0 if delayed and not deps else None,
            )
            result = self.client.enqueue(task)
            if result.created:
                self.history.add_task(TaskRecord(task.id, max_retry, unique, deps))
                self.ids.append(task.id)
        self._step()

    @precondition(lambda self: self.n_task < MAX_TASKS)
    @rule(specs=st.lists(TASK_SPECS, min_size=1, max_size=3))
    def enqueue(self, specs: list[tuple[int, str | None, int, bool, bool]]) -> None:
        self._enqueue(specs)

    @precondition(lambda self: self.n_task < MAX_TASKS)
    @rule(specs=st.lists(TASK_SPECS, min_size=1, max_size=3))
    def enqueue_more(self, specs: list[tuple[int, str | None, int, bool, bool]]) -> None:
        """(a second rule: Hypothesis picks rules evenly, and producers should be busy)"""
        self._enqueue(specs)

    # ------------------------------------------------------------------ workers

    async def _start_worker(self, concurrency: int, prefetch: int | None, handoff: bool) -> None:
        n = len(self.workers)
        wire = Wire(f"w{n}", line=self.line)
        real = parse_url(self.url).aio()
        options = WorkerOptions(
            queues=[QUEUE],
            concurrency=concurrency,
            prefetch=prefetch,
            handoff=handoff,
            lease_s=LEASE_S,
            heartbeat_s=0.1,  # often, so that lost leases and cancels are noticed between steps
            poll_interval_s=0.05,  # often, so that lapsed leases are recovered between steps
            maintenance_s=0.5,
            grace_s=2.0,
        )
        worker = Worker(self.registry, options=options, settings=self.settings, redis=FaultyRedis(real, wire))
        handle = WorkerHandle(n, worker, wire, real)
        self.workers.append(handle)
        token = OWNER.set(handle)
        try:
            handle.run_task = asyncio.get_running_loop().create_task(worker.run())
        finally:
            OWNER.reset(token)

    # No precondition below depends on which workers live: a rule aimed at a running task kills
    # or stalls whichever worker runs it, which depends on timing (Hypothesis must draw the same
    # data when it replays an example). A rule with nothing to act on does nothing.

    @rule(concurrency=st.integers(1, 3), prefetch=st.sampled_from([0, 1, 3]), handoff=st.booleans())
    def start_worker(self, concurrency: int, prefetch: int | None, handoff: bool) -> None:
        if len(self._live()) >= MAX_LIVE_WORKERS or len(self.workers) >= MAX_WORKERS:
            self._step()
            return
        self._step(self._start_worker(concurrency, prefetch, handoff))

    @rule(which=st.integers(0, 5), kill=st.booleans())
    def kill_or_stall_worker(self, which: int, kill: bool) -> None:
        """Kill a worker, or stall it past its lease: its leases lapse, and another worker may
        take its tasks before it wakes (``wake_worker``)."""
        live = [h for h in self._live() if not h.wire.frozen]
        if live:
            self._kill_or_stall(live[which % len(live)], kill)
        self._step()

    def _kill_or_stall(self, handle: WorkerHandle, kill: bool) -> None:
        if kill:
            handle.kill()
        else:
            handle.wire.freeze()
            self._step()  # requests already on the wire finish; nothing new leaves
        held = self._held_by(handle.worker.id)
        for task_id, charged in held:
            if charged:
                self.history.holder_lost(task_id)
            else:
                self.history.brk(task_id, ends_delivery=True)
        if not kill:
            self._lapse([t for t, _ in held])

    @rule(which=st.integers(0, 10), action=st.sampled_from(INTERRUPTIONS))
    def interrupt_a_running_task(self, which: int, action: str) -> None:
        """Aimed at a task whose handler is running now (where the delivery races live): an
        operator acts on it, its worker stalls or dies, or both, one right after the other."""
        running = [p.run for p in self.pending if not p.outcome.done()]
        if not running:  # (no precondition: which handlers run depends on timing)
            self._step()
            return
        run = running[which % len(running)]
        first, _, then = action.partition("+")
        if first in OPERATOR_ACTIONS:
            self._operate(first, run.task_id)
        holder = next((h for h in self._live() if h.worker.id == run.worker and not h.wire.frozen), None)
        if holder is not None and (then or first) in ("stall", "kill"):
            self._kill_or_stall(holder, (then or first) == "kill")
        self._step()

    @rule(which=st.integers(0, 5))
    def wake_worker(self, which: int) -> None:
        frozen = [h for h in self._live() if h.wire.frozen]
        if frozen:
            frozen[which % len(frozen)].wire.thaw()
        self._step()

    @rule(which=st.integers(0, 5), fault=st.sampled_from(list(Fault)), label=st.sampled_from(LABELS))
    def arm_fault(self, which: int, fault: Fault, label: str) -> None:
        """The next request of that worker carrying ``label`` meets ``fault``."""
        live = self._live()
        if live:
            live[which % len(live)].wire.arm(fault, label)
        self._step()

    @rule(which=st.integers(0, 5), fault=st.sampled_from(list(Fault)), label=st.sampled_from(LABELS))
    def arm_another_fault(self, which: int, fault: Fault, label: str) -> None:
        """(a second rule: faults are what this machine is for)"""
        self.arm_fault(which, fault, label)

    @rule()
    def release_held(self) -> None:
        for handle in self._live():
            handle.wire.release_held()
        self._step()

    # ------------------------------------------------------------------ handlers

    def _finishable(self) -> list[Pending]:
        frozen = {h.worker.id for h in self.workers if h.wire.frozen or h.wire.killed}
        return [p for p in self.pending if p.run.worker not in frozen and not p.outcome.done()]

    @rule(
        which=st.integers(0, 10),
        end=HANDLER_ENDS,
        slow=st.booleans(),
    )
    def finish_handler(self, which: int, end: RunEnd, slow: bool) -> None:
        """A handler returns or raises, now or a little later (slow). One never finished is hung."""
        waiting = self._finishable()
        if not waiting:  # (no precondition: which handlers are waiting depends on timing)
            self._step()
            return
        pending = waiting[which % len(waiting)]
        if slow:

            def settle() -> None:
                if not pending.outcome.done():
                    pending.outcome.set_result(end)

            self.loop.call_later(0.02, settle)
        else:
            pending.outcome.set_result(end)
        self._step()

    @rule(
        which=st.integers(0, 10),
        end=HANDLER_ENDS,
        slow=st.booleans(),
    )
    def finish_another_handler(self, which: int, end: RunEnd, slow: bool) -> None:
        """(a second rule: handlers should finish about as often as tasks arrive)"""
        self.finish_handler(which, end, slow)

    # ------------------------------------------------------------------ operators

    @precondition(lambda self: self.n_task > 0)
    @rule(action=st.sampled_from(OPERATOR_ACTIONS), which=st.integers(0, 30))
    def operator(self, action: str, which: int) -> None:
        """What an operator does to one task (or the queue) from the CLI or the console."""
        # any task enqueued so far, accepted or not (which were accepted depends on timing)
        self._operate(action, f"t{which % self.n_task + 1}")
        self._step()

    def _operate(self, action: str, task_id: str) -> None:
        if action == "cancel":
            outcome = self.client.run(ops.cancel(self.settings, QUEUE, [task_id]))
            if outcome.get(task_id) == "requested":
                attempts, reserved = self.r.hmget(
                    self.settings.keyspace.queue(QUEUE).task(task_id), "attempts", "reserved"
                )
                # a reserved (prefetched) task is charged when its delivery starts it
                self.history.cancel_requested(task_id, int(attempts or 0) + (reserved == "1"))
            else:
                self.history.brk(task_id)
        elif action == "delete":
            self.client.run(ops.quarantine(self.settings, QUEUE, [task_id]))
            self.history.brk(task_id)
        elif action == "restore":
            if self.client.run(ops.restore(self.settings, QUEUE, [task_id])):
                # a finished task goes back to where it was (same attempts); a live one starts afresh
                finished = self._states().get(task_id) in ("completed", "dead", "cancelled")
                (self.history.brk if finished else self.history.new_life)(task_id)
        elif action == "requeue":
            if self.client.run(ops.requeue(self.settings, QUEUE, [task_id])):
                self.history.new_life(task_id)
        elif action in ("pause", "resume"):
            self.client.run(ops.set_paused(self.settings, QUEUE, action == "pause"))
        elif action == "doctor":
            self.client.run(doctor.examine(self.settings, repair=True))

    @rule(lapse_dead=st.booleans())
    def advance_time(self, lapse_dead: bool) -> None:
        """Time passes: retries and delayed tasks come due, and (if chosen) the leases of
        killed workers run out."""
        self.client.run(advance(self.settings, [QUEUE], 86400))
        if lapse_dead:
            dead = {h.worker.id for h in self.workers if h.wire.killed}
            self._lapse([t for t, _ in self._held_by(None) if self._holder(t) in dead])
        self._step()

    def _holder(self, task_id: str) -> str | None:
        worker = self.r.hget(self.settings.keyspace.queue(QUEUE).task(task_id), "worker")
        return None if worker is None else str(worker)

    # ------------------------------------------------------------------ checks

    @invariant()
    def store_is_consistent(self) -> None:
        problems = check_invariants(self.r) + check_unique_keys(self.r) + self.history.violations
        problems += [f"worker {h.wire.name}: {crash}" for h in self.workers for crash in h.crashed]
        for handle in self._live():
            # a handler past its timeout or cancel keeps its slot until it returns
            running = [p.run.seq for p in self.pending if p.run.worker == handle.worker.id]
            if len(running) > handle.worker.effective.concurrency:
                problems.append(
                    f"worker {handle.wire.name} runs {len(running)} handlers (runs {running}) with "
                    f"{handle.worker.effective.concurrency} slots"
                )
        if problems:
            self.step_ok = False
            raise AssertionError("\n".join(problems + self._wire_logs()))

    def _wire_logs(self) -> list[str]:
        wires = [f"wire {h.wire.name}: {h.wire.log}" for h in self.workers if h.wire.log]
        return wires + ["steps:", *self.trace]

    def teardown(self) -> None:
        try:
            if self.step_ok:
                self._settle_and_check()
        finally:
            self._cleanup()

    def _settle_and_check(self) -> None:
        """No more faults; every handler returns; live workers stop gracefully; leases held by
        nobody lapse; a healthy worker runs what is left. Then every accepted task must have
        ended, as the history allows."""
        for handle in self.workers:
            handle.wire.calm()
        self.client.run(ops.set_paused(self.settings, QUEUE, False))
        self._finish_all()
        self._step()
        self._finish_all()

        async def stop_live() -> None:
            stopping = self._live()
            for handle in stopping:
                handle.worker.request_stop()
            deadline = time.monotonic() + 20
            while not all(h.run_task is not None and h.run_task.done() for h in stopping):
                assert time.monotonic() < deadline, "live workers did not stop within 20 s"
                self._finish_all()  # what a stopping worker still runs returns at once
                await asyncio.sleep(0.005)
            for handle in stopping:
                assert handle.run_task is not None
                handle.run_task.result()
                handle.stopped = True

        self._step(stop_live())
        dead = {h.worker.id for h in self.workers if h.wire.killed}
        self._lapse([t for t, _ in self._held_by(None)])
        # a task still held by a worker that stopped cleanly was dropped by it: its lease runs
        # out (time passes), and what that does to it is judged below
        del dead
        self._step(self._start_worker(3, None, False))
        settler = self.workers[-1]
        deadline = time.monotonic() + SETTLE_LIMIT_S
        while time.monotonic() < deadline:
            self._finish_all()
            self.client.run(advance(self.settings, [QUEUE], 86400))
            self._step()
            if all(s in ("completed", "dead", "cancelled", "quarantined") for s in self._states().values()):
                break
            self.loop.run_until_complete(asyncio.sleep(0.05))
        settler.worker.request_stop()
        assert settler.run_task is not None
        self.loop.run_until_complete(asyncio.wait_for(settler.run_task, 20))
        settler.stopped = True
        problems = (
            self.history.final_checks(self._states()) + check_invariants(self.r) + check_unique_keys(self.r)
        )
        if problems:
            raise AssertionError("\n".join(problems + self._wire_logs() + self._stories(problems)))

    def _stories(self, problems: list[str]) -> list[str]:
        """What Redis and the harness recorded about each task a problem names."""
        qk = self.settings.keyspace.queue(QUEUE)
        told = []
        for task_id in self.history.tasks:
            if not any(
                p.startswith(task_id + " ") or f" {task_id} " in p or f"{task_id}:" in p for p in problems
            ):
                continue
            entries = [json.loads(e) for e in reversed(self.r.lrange(qk.history(task_id), 0, -1))]
            runs = [r for r in self.history.runs if r.task_id == task_id]
            told.append(f"{task_id}: {self.r.hgetall(qk.task(task_id))}")
            told += [f"  {t} {state}: {note}" for t, state, note in entries]
            told += [
                f"  run #{r.seq} on {r.worker} attempt {r.attempt} life {r.life}: {r.end.value}" for r in runs
            ]
        return told

    def _finish_all(self) -> None:
        for pending in list(self.pending):
            if not pending.outcome.done():
                pending.outcome.set_result(RunEnd.OK)

    def _states(self) -> dict[str, str | None]:
        qk = self.settings.keyspace.queue(QUEUE)
        states = {task_id: self.r.hget(qk.task(task_id), "state") for task_id in self.history.tasks}
        return {task_id: None if state is None else str(state) for task_id, state in states.items()}

    def _cleanup(self) -> None:
        for gate in self.gates:  # no handler thread outlives its example
            if not gate.opened.is_set():
                open_gate(gate, RunEnd.OK)  # (and its runner stops waiting for it)
        self.threads.__exit__(None, None, None)
        for handle in self.workers:
            if not handle.stopped:
                handle.kill()
        with contextlib.suppress(Exception):
            self.loop.run_until_complete(asyncio.sleep(0.01))
        pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in pending:
            task.cancel()
        with contextlib.suppress(Exception):
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        for handle in self.workers:
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(handle.real.aclose())
        self.loop.close()
        self.client.close()
        self.r.close()


M = TypeVar("M", bound="FaultMachine")
_MACHINES: dict[tuple[str, type[FaultMachine]], type[FaultMachine]] = {}


@overload
def machine_for(url: str) -> type[FaultMachine]: ...
@overload
def machine_for(url: str, base: type[M]) -> type[M]: ...
def machine_for(url: str, base: type[FaultMachine] = FaultMachine) -> type[FaultMachine]:
    """The machine ``base`` (a subclass adds invariants), on the server at ``url`` (one class
    per server: Hypothesis keys its examples database by the class)."""
    if (url, base) not in _MACHINES:
        _MACHINES[url, base] = type(f"{base.__name__}On", (base,), {"url": url})
    return _MACHINES[url, base]


__all__ = ["STEPS", "FaultMachine", "machine_for"]
