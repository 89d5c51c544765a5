"""The worker's exchange with Redis as a state machine: no I/O, no asyncio, no clock.

How one task goes through a worker, all in this file:

1. **Delivered.** ``next_exchange`` issues a ``Dequeue`` (riding in one batch with the acks and
   failures of finished tasks). Its reply leases tasks to this worker, each with a delivery
   token: those the script already started (charged an attempt) come back as ``RunHandler``
   effects, the others are *reserved* (prefetched) and wait in ``Slots`` for a free slot. A
   task handed off by an enqueue (``on_handoff``) is reserved too; while the worker is idle,
   its inbox loop instead waits in a slot it holds (``take_exchange``), and the hand-off starts
   in the round trip that takes it (``take.lua``).
2. **Started.** A reserved task runs only once a ``Start`` request's reply says Redis charged its
   attempt; a refused start (its delivery is over) is ``Fenced``, never run. A lost reply puts
   the task back in the buffer: the start is sent again with the same token and gets the same
   answer, so the task is neither dropped nor charged twice.
3. **Acknowledged.** The driver reports each handler's end (``on_outcome``): a success becomes
   an ``Ack``, a failure a ``Fail`` (retried by the script, or dead once its attempts are spent),
   both sent with the next exchange. Every reply is matched to its request by request id.
4. **Recovered.** A heartbeat (``extend_exchange``) extends the lease of everything held; a
   task whose delivery is over is stopped (``StopHandler``) and forgotten, one cancelled by an
   operator is stopped and recorded ``cancelled``. Calls refused because their delivery was over
   are reported as ``Fenced``. If Redis is unreachable the outcomes are kept and sent again;
   a worker that dies simply stops extending, and its tasks return when their leases expire.

The driver (``engine.worker.driver``) performs the requests and feeds back replies, failures,
handler outcomes, hand-offs, wake-ups and the time; this module decides everything else.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.worker import protocol
from engine.worker.messages import (
    Ack,
    Defer,
    Dequeue,
    Effect,
    Exchange,
    ExchangeKind,
    Extend,
    Fail,
    FailMode,
    FailureKind,
    Fenced,
    FencedCall,
    GiveUp,
    HandlerDone,
    Outcome,
    Progress,
    Release,
    ReleaseDependents,
    Request,
    RunHandler,
    Start,
    StopHandler,
    StopReason,
    Take,
    Throttle,
    Throttled,
)
from engine.worker.protocol import Job
from engine.worker.slots import Held, Slots
from engine.worker.takes import TakePlan, Takes


@dataclass(frozen=True, slots=True)
class CoreConfig:
    worker_id: str
    queues: tuple[str, ...]
    concurrency: int
    prefetch: int
    lease_ms: int
    handoff_ms: int
    """How long a hand-off registration lasts unless renewed; 0: no hand-off."""
    weights: Mapping[str, int] | None = None
    grace_s: float = 30.0
    stop_flush_s: float = 10.0
    """Once stopping, unreachable Redis is retried for the grace period and this long more;
    then the outcomes are given up (their tasks run again when their leases expire)."""


@dataclass(slots=True)
class _Round:
    """The exchange of outcomes and starts, then the dequeues of the queues in fetch order."""

    xid: int
    want_fetch: bool
    wake_seq: int
    capacity: int
    followups: list[str]
    got: int = 0
    quiet: bool = False
    """An idle poll: its dequeues may leave an unchanged hand-off registration alone."""


@dataclass(slots=True)
class _Counters:
    processed: int = 0
    failed: int = 0
    handed_off: int = 0


class WorkerCore:
    def __init__(self, config: CoreConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self.slots = Slots(config.queues, config.concurrency, config.prefetch)
        self.counters = _Counters()
        self.stopping = False
        self.intake_closed = False
        """Stopping, and the drain has taken back what was handed to this worker: nothing more
        can start here. Until then the exchange loop stays, because a hand-off the drain takes
        from the inbox (or a take whose reply was lost) runs, and its outcome must be sent."""
        self.handoff_enabled = config.handoff_ms > 0
        self._rng = rng or random.Random()
        self._acks: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
        self._fails: list[Fail | Defer | Throttle] = []
        self._progress: dict[str, Progress] = {}
        self._cancel_requested: set[str] = set()
        self._inflight: dict[int, Exchange] = {}
        self._round: _Round | None = None
        self._promised = 0
        """Free slots an exchange in flight will fill (tasks it starts): a hand-off arriving
        meanwhile must not take them, or the worker would run more than ``concurrency``."""
        self._dequeue_ids: dict[str, str] = {}
        """Per queue, the id of a dequeue whose reply has not arrived yet: sent again under the
        same id, it returns the tasks it leased (its receipt) rather than stranding them."""
        self._throttled: set[str] = set()
        # throttled queues whose wait is a task type's token: tasks of other types may arrive
        self._held_by_type: set[str] = set()
        """Queues whose rate limit held back their tasks: not asked again until their next
        token is due (``on_token_due``), so a limited queue is never polled."""
        self.takes = Takes(self.handoff_enabled)
        self._seq = 0
        self._wake_seq = 0
        self._fetch_now = True
        self._maintain: set[str] = set(config.queues)
        """Queues whose next dequeue runs the maintenance scans (``on_maintenance_due``)."""
        self._stop_at: float | None = None
        self._grace_s = config.grace_s

    # ------------------------------------------------------------------ what the driver asks

    @property
    def running(self) -> Mapping[str, Job]:
        return self.slots.running

    def held(self) -> Held:
        return self.slots.held()

    @property
    def holds_work(self) -> bool:
        """Anything running, reserved, starting or not yet recorded (``--burst`` waits for it)."""
        s = self.slots
        return bool(s.running or s.buffer or s.handoff_starting or any(self._acks.values()) or self._fails)

    @property
    def unsent(self) -> int:
        return sum(len(d) for d in self._acks.values()) + len(self._fails)

    def wants_exchange(self) -> bool:
        if self._round is not None:
            return True  # a later queue's dequeue is due
        if any(self._acks.values()) or self._fails:
            return True
        if self.stopping and self._dequeue_ids:
            return True  # a dequeue whose reply was lost: take back what it leased
        free = self.slots.free(self.stopping)
        if self.slots.buffer and free > 0:
            return True
        return self._fetch_now and not self.stopping and self.slots.capacity > 0

    @property
    def finished(self) -> bool:
        """Stopping, nothing more to start (``close_intake``), nothing running and nothing left
        to record: the exchange loop may end."""
        return self.stopping and self.intake_closed and not self.slots.running and not self.wants_exchange()

    @property
    def handoff_ms(self) -> int:
        return self.config.handoff_ms if self.handoff_enabled and not self.stopping else 0

    # ------------------------------------------------------------------ inputs

    def on_idle_poll(self) -> None:
        """The poll interval passed with no wake-up: look for work anyway."""
        self._fetch_now = True
        self._release_held_by_type()

    def on_maintenance_due(self) -> None:
        """The maintenance interval passed: each queue's next dequeue promotes due tasks and
        recovers expired leases too (three scans a call, not worth paying on every call)."""
        self._maintain.update(self.config.queues)

    def on_work_arrived(self) -> None:
        """A hint that tasks arrived (pub/sub); one landing during an exchange is not lost."""
        self._fetch_now = True
        self._wake_seq += 1
        self._release_held_by_type()

    def on_token_due(self, queue: str) -> None:
        """The wait a ``Throttled`` effect named is over: the queue's next token is due."""
        self._throttled.discard(queue)
        self._held_by_type.discard(queue)
        self.on_work_arrived()

    def _release_held_by_type(self) -> None:
        """A queue held back only by its task types' limits is asked again when work arrives:
        the new task may be of another type. (A queue's own limit holds everything: its
        arrivals wait for the token.)"""
        self._throttled -= self._held_by_type
        self._held_by_type.clear()

    def stop(self, now: float) -> None:
        if self._stop_at is None:
            self._stop_at = now
        self.stopping = True

    def close_intake(self) -> None:
        """The drain has withdrawn the worker's hand-offs and started what it took back: from
        now on nothing new runs here (see ``finished``)."""
        self.intake_closed = True

    def cut_grace(self) -> None:
        """A second signal: the drain does not wait out the grace period."""
        self._grace_s = 0.0

    @property
    def take_enabled(self) -> bool:
        return self.takes.enabled

    def disable_handoff(self) -> None:
        self.handoff_enabled = False
        self.disable_take()

    def disable_take(self) -> None:
        """Hand-offs are popped and then started, two round trips (an ACL without ``BLMOVE``)."""
        self.slots.held_for_take -= self.takes.disable()

    def on_outcome(self, done: HandlerDone) -> Outcome:
        """Record how a handler ended; the ack or failure goes with the next exchange. Returns
        the outcome as recorded (a cancel wins over what the handler did; a retry with its
        attempts spent is dead)."""
        job = done.job
        # A newer delivery of the same task may run here by now (the old one's end had not
        # reached this worker when the task was leased to it again): leave its slot and its
        # cancel alone, or no heartbeat would extend it and no drain would wait for it.
        current = self.slots.running.get(job.id) is job
        cancelled = current and job.id in self._cancel_requested
        if current:
            del self.slots.running[job.id]
            self._cancel_requested.discard(job.id)
        outcome, error, mode, trace = done.outcome, done.error, done.mode, done.traceback
        if cancelled and outcome not in (Outcome.STALE, Outcome.CANCELLED):
            # a sync handler runs on after its cancel (or its child was killed): the cancel wins
            outcome, error, mode, trace = Outcome.CANCELLED, "cancelled while running", FailMode.CANCEL, ""
        if outcome is Outcome.COMPLETED:
            self._acks[job.queue].append((job.id, job.token, done.result_json))
            self.counters.processed += 1
        elif outcome is Outcome.RATE_LIMITED:  # not a failure: no retry burnt, no counter
            self._fails.append(Throttle(self._rid(), job.queue, job.id, job.token, done.delay_s, done.error))
        elif outcome is not Outcome.STALE and not (
            self.stopping and outcome is Outcome.CANCELLED and not cancelled
        ):
            if outcome is Outcome.RETRY and job.attempt > job.max_retry:
                outcome = Outcome.DEAD
            self._fails.append(
                Fail(self._rid(), job.queue, job.id, job.token, error, trace, done.delay_s, mode)
            )
            self.counters.failed += 1
        return outcome

    def defer_unknown(self, job: Job, delay_s: float, limit_s: float, note: str, error: str) -> None:
        """No handler here for this type (a rolling deploy): back uncharged for a worker that
        has one, sent with the next exchange like a failure; dead only after ``limit_s``."""
        self.slots.running.pop(job.id, None)
        self._fails.append(Defer(self._rid(), job.queue, job.id, job.token, delay_s, limit_s, note, error))

    def report_progress(self, job: Job, percent: float, message: str) -> bool:
        """Keep the latest report per task (it never goes back within an attempt). True when
        it is the first one waiting: the driver schedules a send."""
        first = not self._progress
        previous = self._progress.get(job.id)
        if previous is not None and previous.percent > percent:
            return False
        self._progress[job.id] = Progress(self._rid(), job.queue, job.id, job.token, percent, message)
        return first

    def on_handoff(self, job: Job) -> Exchange | None:
        """A task an enqueue handed to this worker. With a free slot its start mark goes at
        once (the returned exchange) and it runs on the reply; else it waits with the reserved.
        Run ahead of the mark, a worker killed before the mark landed would leave the attempt
        uncharged, and the task would run again as the same attempt (past max_retry)."""
        self.counters.handed_off += 1
        if self.stopping or self.slots.free(self.stopping) - self._promised <= 0:
            self.slots.reserve([job])
            return None
        self.slots.handoff_starting += 1
        return self._issue(ExchangeKind.HANDOFF_START, (Start(self._rid(), job.queue, (job,)),))

    def take_exchange(self, queue: str, wait_s: float) -> Exchange | None:
        """The inbox loop's next wait, in slots held for the hand-offs it may take, which
        ``take.lua`` starts in the same round trip (``engine.worker.takes``). None: the loop pops
        plainly (``on_handoff``), as in a backlog."""
        if self.stopping:
            return None
        free = self.slots.free(self.stopping) - self._promised
        held = self.takes.total_held
        plan = self.takes.plan(queue, wait_s, free, bool(self.slots.buffer))
        if plan is None:
            return None
        self.slots.held_for_take += self.takes.total_held - held  # (a lost take's are held still)
        return self._issue(ExchangeKind.HANDOFF_TAKE, (self._take(queue, plan),))

    def take_awaits_round(self, queue: str) -> bool:
        """No take now only because a dequeue round decides it within its round trip: the one
        in flight promised the free slots, or the worker's first has not answered (drained or
        not is unknown). The inbox loop waits for that reply rather than pop plainly for a whole
        wait: an idle worker's poll and its waits can fall into step, and hand-offs would go by
        the slower pop-then-start path for as long as they stay in step."""
        if self.stopping or self.slots.free(self.stopping) <= 0:
            return False
        if not self.takes.dequeue_answered:  # at start
            return self.takes.enabled and queue not in self.takes.in_flight
        # (a queue no round asked yet, under strict priority, is not drained: it pops plainly)
        return self._promised > 0 and self.takes.may_hold(queue, bool(self.slots.buffer))

    def take_leftovers(self, queue: str) -> Exchange | None:
        """A take without the wait (shutdown): what a take whose reply was lost started. None
        while the queue's inbox loop still has a take in flight (it answers for those)."""
        plan = self.takes.leftovers(queue)
        return None if plan is None else self._issue(ExchangeKind.HANDOFF_TAKE, (self._take(queue, plan),))

    def holds_to_end(self) -> list[str]:
        """Queues whose waiting take holds slots wanted elsewhere (tasks wait reserved, the queue
        has a backlog, or the worker is stopping): the driver ends the wait (a wake-up pushed to
        the inbox) rather than leave the slots idle for the rest of it. Each once."""
        return self.takes.to_wake(self.stopping, bool(self.slots.buffer))

    def _take(self, queue: str, plan: TakePlan) -> Take:
        return Take(self._rid(), queue, self.takes.confirm.get(queue, ()), plan.wait_s, plan.room)

    def _taken(self, effects: list[Effect], queue: str, reply: Any) -> None:
        """Run the hand-offs a take started, in the slots it held. A record comes back until
        confirmed: one already running here (an earlier reply arrived after all) runs once."""
        inbox_left, taken = protocol.parse_taken(queue, reply)
        ids_tokens = tuple(x for job, _ in taken for x in (job.id, job.token))
        self.slots.held_for_take -= self.takes.answered(queue, ids_tokens, inbox_left)
        refused = []
        for job, attempt in taken:
            running = self.slots.running.get(job.id)
            if running is not None and running.token == job.token:
                continue
            if attempt:
                self.counters.handed_off += 1
                job.attempt, job.reserved = attempt, False
                self._run(effects, job)
            else:
                refused.append(job.id)
        self._fence(effects, queue, FencedCall.START, refused)

    # ------------------------------------------------------------------ exchanges

    def next_exchange(self) -> Exchange | None:
        """The next round trip of the hot path: the outcomes, the start marks of reserved tasks
        for the free slots and a dequeue in one batch; or, after it, a later queue's dequeue."""
        if self._round is not None:
            return self._next_followup(self._round)
        want_fetch = not self.stopping and self.slots.capacity > 0
        acks, self._acks = self._acks, defaultdict(list)
        fails, self._fails = self._fails, []
        # last progress reports go first: a finished task no longer accepts them
        requests: list[Request] = list(self._progress.values())
        self._progress = {}
        requests += [Ack(self._rid(), q, tuple(done)) for q, done in acks.items()]
        requests += fails
        free = self.slots.free(self.stopping)
        starting = self.slots.take_reserved(free)
        requests += [Start(self._rid(), q, tuple(jobs)) for q, jobs in starting.items()]
        n_starting = sum(len(jobs) for jobs in starting.values())
        start_now = max(0, free - n_starting)
        order = self._fetch_order() if want_fetch else []
        capacity = self.slots.capacity
        # nothing to report and nothing held: an idle worker's poll (dequeue.lua's quiet)
        quiet = not requests and self.slots.idle
        if order:  # the first queue rides along with the acks in the same round trip
            requests.append(self._dequeue(order[0], capacity, start_now, quiet))
        elif self.stopping:
            # A dequeue that ran but whose reply was lost leased (and maybe started) tasks this
            # worker never saw: sent again under its request id it returns them (its receipt)
            # and leases nothing more, so they are run or released instead of waiting out
            # their lease charged.
            requests += [
                Dequeue(self._rid(), q, 0, self.config.lease_ms, 0, 0, request_id)
                for q, request_id in self._dequeue_ids.items()
            ]
        if not requests:
            self._fetch_now = False
            return None
        self._promised = n_starting + (start_now if order else 0)
        exchange = self._issue(ExchangeKind.ROUND, tuple(requests))
        self._round = _Round(exchange.xid, want_fetch, self._wake_seq, capacity, order[1:], quiet=quiet)
        return exchange

    def extend_exchange(self, held: Held | None = None) -> Exchange | None:
        """The heartbeat: extend the lease of every task held (``held``: a snapshot of it)."""
        held = self.slots.held() if held is None else held
        requests = tuple(
            Extend(self._rid(), q, tuple(pairs), self.config.lease_ms) for q, pairs in held.items() if pairs
        )
        return self._issue(ExchangeKind.HEARTBEAT, requests) if requests else None

    def progress_exchange(self) -> Exchange | None:
        if not self._progress:
            return None
        requests = tuple(self._progress.values())
        self._progress = {}
        return self._issue(ExchangeKind.PROGRESS, requests)

    def release_exchange(self, jobs: Sequence[Job], note: str) -> Exchange | None:
        """Hand tasks back uncharged (shutdown)."""
        by_queue: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for job in jobs:
            by_queue[job.queue].append((job.id, job.token))
        requests = tuple(Release(self._rid(), q, tuple(h), note) for q, h in by_queue.items())
        return self._issue(ExchangeKind.RELEASE, requests) if requests else None

    def on_reply(self, xid: int, replies: Mapping[int, Any]) -> list[Effect]:
        """The replies of exchange ``xid``, keyed by request id."""
        exchange = self._inflight.pop(xid)
        effects: list[Effect] = []
        notified: list[tuple[str, tuple[str, ...]]] = []
        flush_all = False
        got = 0
        if exchange.kind is ExchangeKind.ROUND:
            self._promised = 0  # the tasks it starts are run before anything else happens
        elif exchange.kind is ExchangeKind.HANDOFF_START:
            self.slots.handoff_starting -= 1
        for request in exchange.requests:
            reply = replies[request.rid]
            if isinstance(request, Progress):
                if reply is None:
                    effects.append(Fenced(request.queue, FencedCall.PROGRESS, (request.task_id,)))
            elif isinstance(request, Ack):
                refused, with_dependents = reply
                self._fence(effects, request.queue, FencedCall.ACK, refused)
                if with_dependents:
                    notified.append((request.queue, tuple(with_dependents)))
            elif isinstance(request, Fail | Defer | Throttle):
                if reply == "stale":
                    effects.append(Fenced(request.queue, FencedCall.FAIL, (request.task_id,)))
                elif reply in ("dead", "cancelled"):
                    flush_all = True
            elif isinstance(request, Start):
                self._started(effects, request.jobs, protocol.parse_started(reply))
            elif isinstance(request, Take):
                self._taken(effects, request.queue, reply)
            elif isinstance(request, Dequeue):
                self._dequeue_ids.pop(request.queue, None)
                if request.maintain and not protocol.maintenance_left(reply):
                    self._maintain.discard(request.queue)
                leased = self._leased(effects, protocol.parse_dequeue(request.queue, reply))
                got += leased
                held = protocol.parse_throttle(reply)
                self.takes.on_dequeue(request.queue, drained=leased < request.max_tasks and held is None)
                if held is not None:
                    forming = held.reason is protocol.HoldReason.BATCH_FORMING
                    if not forming:  # (a forming batch may fill before its due time)
                        self._throttled.add(request.queue)
                    if held.reason is protocol.HoldReason.TYPE_LIMITS:
                        self._held_by_type.add(request.queue)
                    effects.append(Throttled(request.queue, held.wait_ms, forming))
            elif isinstance(request, Extend):
                self._extended(effects, request, reply)
            elif isinstance(request, Release):
                self._fence(effects, request.queue, FencedCall.RELEASE, reply)
        if notified or flush_all:
            effects.append(ReleaseDependents(tuple(notified)))
        if exchange.kind is ExchangeKind.ROUND and self._round is not None:
            self._round.got += got
            if not self._round.followups or self._round.got >= self._round.capacity:
                self._close_round(self._round)
        return effects

    def on_failure(self, xid: int, kind: FailureKind, now: float) -> list[Effect]:
        """Exchange ``xid`` got no replies. Outcomes and start marks are kept and sent again
        (every call is idempotent per delivery token, and a lost lease has them refused, never
        applied); a dequeue is sent again under the same request id."""
        exchange = self._inflight.pop(xid)
        if kind is FailureKind.CALL_FAILED:
            # the failed call's task keeps its lease and is handed out again when that expires
            self._dequeue_ids.clear()
        if exchange.kind is ExchangeKind.HANDOFF_START:
            self.slots.handoff_starting -= 1
            for request in exchange.requests:
                if isinstance(request, Start):
                    self.slots.reserve(request.jobs)  # the exchange sends the start again
            return []
        if exchange.kind is ExchangeKind.HANDOFF_TAKE:
            # what it may have started stays in the taken list; the next take (same
            # confirmation, no wait, the same slots) returns it
            for request in exchange.requests:
                self.takes.failed(request.queue)
            return []
        if exchange.kind is not ExchangeKind.ROUND:
            return []
        self._promised = 0
        round_ = self._round
        first = round_ is not None and round_.xid == exchange.xid
        if round_ is not None:
            # a later queue's dequeue failed: the round ends, its request id stays (sent again,
            # it returns what this one leased)
            self._close_round(round_, update_fetch=not first)
        if not first or kind is FailureKind.CALL_FAILED:
            return []
        for request in reversed(exchange.requests):
            if isinstance(request, Ack):
                self._acks[request.queue][:0] = request.done
            elif isinstance(request, Fail | Defer | Throttle):
                self._fails.insert(0, request)
            elif isinstance(request, Progress):
                self._progress.setdefault(request.task_id, request)
            elif isinstance(request, Start):  # sent again: same token, same answer
                self.slots.reserve(request.jobs)
        give_up_after = self._grace_s + self.config.stop_flush_s
        if self.stopping and self._stop_at is not None and now - self._stop_at > give_up_after:
            return [GiveUp(self.unsent)]
        return []

    # ------------------------------------------------------------------ internals

    def _rid(self) -> int:
        self._seq += 1
        return self._seq

    def _issue(self, kind: ExchangeKind, requests: tuple[Request, ...]) -> Exchange:
        exchange = Exchange(self._rid(), kind, requests)
        self._inflight[exchange.xid] = exchange
        return exchange

    def _dequeue(self, queue: str, max_tasks: int, start_now: int, quiet: bool) -> Dequeue:
        request_id = self._request_id(queue)
        held = self.takes.held.get(queue, 0)
        return Dequeue(
            self._rid(),
            queue,
            max_tasks,
            self.config.lease_ms,
            start_now,
            self.handoff_ms,
            request_id,
            held,
            queue in self._maintain,
            self.takes.confirm.get(queue, ()) if held else (),
            quiet,
        )

    def _request_id(self, queue: str) -> str:
        """The id of the next dequeue from ``queue``: the one whose reply was lost, if any."""
        request_id = self._dequeue_ids.get(queue)
        if request_id is None:
            request_id = self._dequeue_ids[queue] = str(self._rid())
        return request_id

    def _next_followup(self, round_: _Round) -> Exchange | None:
        # Later queues are asked, in order, only for what the earlier ones could not fill:
        # strict priority between queues, never over-leasing a lower queue.
        queue = round_.followups.pop(0)
        self._promised = self.slots.free(self.stopping)
        quiet = round_.quiet and not round_.got
        exchange = self._issue(
            ExchangeKind.ROUND, (self._dequeue(queue, round_.capacity - round_.got, self._promised, quiet),)
        )
        return exchange

    def _close_round(self, round_: _Round, update_fetch: bool = True) -> None:
        self._round = None
        if update_fetch:
            # a full fetch means there is probably more; so does a wake-up that arrived while
            # this round trip was in flight (its task may have been enqueued after our dequeue ran)
            self._fetch_now = round_.want_fetch and (
                round_.got >= round_.capacity or self._wake_seq != round_.wake_seq
            )

    def _fetch_order(self) -> list[str]:
        queues = [q for q in self.config.queues if q not in self._throttled]
        weights = self.config.weights
        if not weights:
            return queues
        # weighted shuffle: a queue's chance to come first is proportional to its weight
        keyed = [(self._rng.random() ** (1.0 / max(1, weights.get(q, 1))), q) for q in queues]
        return [q for _, q in sorted(keyed, reverse=True)]

    def _leased(self, effects: list[Effect], jobs: list[Job]) -> int:
        """Run the dequeued tasks that started (charged), keep the reserved ones for later."""
        self.slots.reserve([j for j in jobs if j.reserved])
        for job in jobs:
            if not job.reserved:
                self._run(effects, job)
        return len(jobs)

    def _started(self, effects: list[Effect], jobs: Sequence[Job], attempts: Mapping[str, int]) -> None:
        """Run the reserved tasks whose start Redis recorded; a refused one is not run."""
        refused = []
        for job in jobs:
            attempt = attempts.get(job.id, 0)
            if attempt:
                job.attempt, job.reserved = attempt, False
                self._run(effects, job)
            else:
                refused.append(job.id)
        self._fence(effects, jobs[0].queue if jobs else "", FencedCall.START, refused)

    def _run(self, effects: list[Effect], job: Job) -> None:
        older = self.slots.running.get(job.id)
        if older is not None and older.token != job.token:
            # leased here again: the delivery still running here is over (stopped first, as
            # a heartbeat answering 'lost' would; the driver finds it by its token)
            effects.append(StopHandler(job.id, older.token, StopReason.LEASE_LOST))
            self._cancel_requested.discard(job.id)
        self.slots.running[job.id] = job
        effects.append(RunHandler(job))

    def _extended(self, effects: list[Effect], request: Extend, reply: Any) -> None:
        lost, cancel = reply
        self._fence(effects, request.queue, FencedCall.EXTEND, lost)
        # the delivery each id was extended for: a "lost" answer stops only that delivery
        token_of = dict(request.held)
        for task_id in lost:
            token = token_of.get(task_id)
            if token is None:
                continue
            job = self.slots.running.get(task_id)
            if job is not None and job.token == token:
                effects.append(StopHandler(task_id, token, StopReason.LEASE_LOST))
            self.slots.drop_reserved(task_id, token)
        for task_id in cancel:
            job = self.slots.running.get(task_id)
            if job is not None and task_id not in self._cancel_requested:
                self._cancel_requested.add(task_id)
                effects.append(StopHandler(task_id, job.token, StopReason.CANCEL_REQUESTED))

    @staticmethod
    def _fence(effects: list[Effect], queue: str, call: FencedCall, task_ids: Sequence[str]) -> None:
        if task_ids:
            effects.append(Fenced(queue, call, tuple(task_ids)))


__all__ = [
    "Ack",
    "CoreConfig",
    "Defer",
    "Dequeue",
    "Effect",
    "Exchange",
    "ExchangeKind",
    "Extend",
    "Fail",
    "FailMode",
    "FailureKind",
    "Fenced",
    "FencedCall",
    "GiveUp",
    "HandlerDone",
    "Outcome",
    "Progress",
    "Release",
    "ReleaseDependents",
    "Request",
    "RunHandler",
    "Start",
    "StopHandler",
    "StopReason",
    "Take",
    "Throttle",
    "Throttled",
    "WorkerCore",
]
