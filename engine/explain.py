"""Why is this task not running? The blocking reason, computed from live state, for the CLI
(``rediq task why ID``) and the console's task detail.

Two halves: ``gather`` reads the facts in a few round trips; ``explain`` is a pure function of
those facts, one small function per task state, deciding on typed ``Reason`` values (never on
the words of its own messages), so it is tested in milliseconds without a server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from engine import inspect, ops
from engine.backend import Batch, Op, cmd
from engine.batching import BatchState, read_batch_state
from engine.errors import TaskNotFound
from engine.flow import BucketState, GroupState, bucket_state, read_group
from engine.inspect import WorkerSummary
from engine.ops import Settings
from engine.task import TaskInfo, TaskState


class Reason(StrEnum):
    """What a line of the explanation is about."""

    NEXT_UP = "next_up"
    BEHIND = "behind"
    """Waiting its turn behind higher-priority or older tasks."""
    POSITION = "position"
    PAUSED = "paused"
    NO_WORKER = "no_worker"
    SLOTS_BUSY = "slots_busy"
    SCHEDULED = "scheduled"
    DUE = "due"
    """Due, not yet promoted by a dequeue."""
    RETRY = "retry"
    WAITING_ON_DEPENDENCIES = "waiting_on_dependencies"
    RELEASE_PENDING = "release_pending"
    """No dependency left: the release is still in an outbox."""
    NOTE = "note"
    """The reason stored on the task (e.g. why a dependency hold applies)."""
    LEASE_EXPIRED = "lease_expired"
    WORKER_STALE = "worker_stale"
    RUNNING = "running"
    AWAITING_SLOT = "awaiting_slot"
    """Prefetched by a worker: leased, not started, waiting for one of its slots."""
    FINISHED = "finished"
    UNIQUE_HELD = "unique_held"
    RATE_LIMITED = "rate_limited"
    """The queue's rate limit has no token now, or a handler's RateLimited paused it."""
    GROUP_FULL = "group_full"
    """The task's concurrency group holds its limit of leases."""
    BATCH_FORMING = "batch_forming"
    """The task's batch is neither full nor due yet (``engine.batching``)."""


BLOCKING = frozenset(
    {
        Reason.BEHIND,
        Reason.PAUSED,
        Reason.NO_WORKER,
        Reason.SLOTS_BUSY,
        Reason.SCHEDULED,
        Reason.DUE,
        Reason.RETRY,
        Reason.WAITING_ON_DEPENDENCIES,
        Reason.RELEASE_PENDING,
        Reason.LEASE_EXPIRED,
        Reason.WORKER_STALE,
        Reason.AWAITING_SLOT,
        Reason.RATE_LIMITED,
        Reason.GROUP_FULL,
        Reason.BATCH_FORMING,
    }
)
"""Reasons that stand in the task's way; the others describe (next up, running, finished)."""


@dataclass(frozen=True, slots=True)
class Cause:
    reason: Reason
    text: str

    @property
    def blocking(self) -> bool:
        return self.reason in BLOCKING


@dataclass(frozen=True, slots=True)
class Explanation:
    task_id: str
    queue: str
    state: TaskState
    causes: tuple[Cause, ...]
    position: int | None = None
    """0-based position in pending (0 runs next)."""

    @property
    def blocked(self) -> bool:
        """True when something stands in the way (as opposed to: running, finished, or next up)."""
        return any(c.blocking for c in self.causes)

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(c.text for c in self.causes)


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything ``explain`` looks at, read by ``gather``."""

    info: TaskInfo
    now_ms: int
    workers: tuple[WorkerSummary, ...]
    paused: bool = False
    position: int | None = None
    pending_total: int = 0
    unique_holder: str | None = None
    reserved: bool = False
    dependency_states: tuple[tuple[str, str], ...] = ()
    """(ref, state) of each dependency still waited on; 'gone' when its hash is gone."""
    bucket: BucketState | None = None
    """The queue's rate limit and its bucket (None: not read)."""
    group: GroupState | None = None
    """The task's concurrency group (None: it has none, or not read)."""
    type_bucket: BucketState | None = None
    """The task type's own rate limit in the queue (None: not read)."""
    batch: BatchState | None = None
    """The batch the task waits in (None: not a batch type, or not read)."""

    @property
    def serving(self) -> list[WorkerSummary]:
        return [w for w in self.workers if self.info.queue in w.queues and not w.stale]


def _ago(ms: int) -> str:
    s = ms / 1000
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


# ---------------------------------------------------------------------------------- per state


def _pending(f: Facts) -> list[Cause]:
    info, serving = f.info, f.serving
    causes: list[Cause] = []
    if f.paused:
        causes.append(
            Cause(
                Reason.PAUSED,
                f"queue {info.queue!r} is paused: resume it with `rediq queue resume {info.queue}`",
            )
        )
    if f.bucket is not None and (f.bucket.paused_ms or (f.bucket.limit and not f.bucket.tokens)):
        causes.append(Cause(Reason.RATE_LIMITED, _rate_text(info.queue, f.bucket)))
    tb = f.type_bucket
    if tb is not None and (tb.paused_ms or (tb.limit and not tb.tokens)):
        text = f"rate limit {info.type} {tb.limit}: next token in {tb.next_token_ms} ms"
        causes.append(Cause(Reason.RATE_LIMITED, text))
    b = f.batch
    if b is not None and b.waiting < b.batch.max_size and b.due_in_ms > 0:
        causes.append(Cause(Reason.BATCH_FORMING, str(b)))
    g = f.group
    if g is not None and g.limit is not None and g.holding >= g.limit:
        causes.append(Cause(Reason.GROUP_FULL, f"group {g.group} at {g.holding}/{g.limit}"))
    if not serving:
        stale = [w.id for w in f.workers if info.queue in w.queues]
        causes.append(
            Cause(
                Reason.NO_WORKER,
                f"no live worker serves queue {info.queue!r}"
                + (f" (stale heartbeats: {', '.join(stale)})" if stale else ""),
            )
        )
    else:
        slots = sum(w.concurrency for w in serving)
        if sum(w.busy for w in serving) >= slots:
            causes.append(
                Cause(
                    Reason.SLOTS_BUSY,
                    f"all {slots} slots of the {len(serving)} worker(s) serving {info.queue!r} are busy",
                )
            )
    if f.position is not None:
        causes.append(
            Cause(Reason.POSITION, f"position {f.position + 1} of {f.pending_total} in {info.queue!r}")
        )
    if not any(c.blocking for c in causes):
        if f.position:
            causes.insert(0, Cause(Reason.BEHIND, "waiting its turn behind higher-priority or older tasks"))
        else:
            causes.insert(0, Cause(Reason.NEXT_UP, "next up"))
    return causes


def _rate_text(queue: str, bucket: BucketState) -> str:
    if bucket.paused_ms:
        return (
            f"queue {queue!r} paused by a handler's RateLimited (the remote side's limit): "
            f"{bucket.paused_ms} ms left"
        )
    return f"rate limit {queue} {bucket.limit}: next token in {bucket.next_token_ms} ms"


def _scheduled(f: Facts) -> list[Cause]:
    due = f.info.due_at_ms or f.now_ms
    if due > f.now_ms:
        return [Cause(Reason.SCHEDULED, f"scheduled: becomes due in {_ago(due - f.now_ms)}")]
    causes = [Cause(Reason.DUE, "due, to be promoted by the next worker that polls the queue")]
    if not f.serving:
        causes.append(Cause(Reason.NO_WORKER, f"no live worker serves queue {f.info.queue!r}"))
    return causes


def _retry(f: Facts) -> list[Cause]:
    info = f.info
    due = info.due_at_ms or f.now_ms
    when = f"due in {_ago(due - f.now_ms)}" if due > f.now_ms else "due now"
    return [
        Cause(
            Reason.RETRY,
            f"retry after attempt {info.attempts} of {info.max_retry + 1} failed: "
            f"{info.last_error or '?'}; {when}",
        )
    ]


def _waiting(f: Facts) -> list[Cause]:
    if f.dependency_states:
        listed = ", ".join(f"{ref} ({state})" for ref, state in f.dependency_states)
        causes = [Cause(Reason.WAITING_ON_DEPENDENCIES, f"waiting on dependencies: {listed}")]
    else:
        causes = [
            Cause(
                Reason.RELEASE_PENDING,
                "waiting on dependencies (none left: a release is pending in an outbox)",
            )
        ]
    if f.info.reason:
        causes.append(Cause(Reason.NOTE, f.info.reason))
    return causes


def _active(f: Facts) -> list[Cause]:
    info, now = f.info, f.now_ms
    lease = info.lease_expiry_ms or 0
    worker = next((w for w in f.workers if w.id == info.worker), None)
    if lease and lease < now:
        return [
            Cause(
                Reason.LEASE_EXPIRED,
                f"leased by {info.worker}, whose lease expired {_ago(now - lease)} ago: the next dequeue on "
                f"{info.queue!r} recovers it"
                + ("" if f.serving else f", but no live worker serves {info.queue!r}"),
            )
        ]
    if worker is None or worker.stale:
        return [
            Cause(
                Reason.WORKER_STALE,
                f"leased by {info.worker}, which stopped heartbeating; recovery takes it when the lease "
                f"expires in {_ago(max(0, lease - now))}",
            )
        ]
    if f.reserved:
        return [
            Cause(
                Reason.AWAITING_SLOT,
                f"prefetched by {info.worker}, waiting for one of its {worker.concurrency} slots "
                f"({worker.busy} busy); attempt {info.attempts + 1} of {info.max_retry + 1} starts then",
            )
        ]
    progress = (
        f", {info.progress:.0f}% {info.progress_message or ''}".rstrip() if info.progress is not None else ""
    )
    started = info.started_at_ms or now
    return [
        Cause(
            Reason.RUNNING,
            f"running on {info.worker} for {_ago(now - started)} "
            f"(attempt {info.attempts} of {info.max_retry + 1}{progress})",
        )
    ]


def _finished(f: Facts) -> list[Cause]:
    info = f.info
    detail = info.last_error if info.state == TaskState.DEAD else info.reason
    return [
        Cause(Reason.FINISHED, f"not running because it is {info.state}" + (f": {detail}" if detail else ""))
    ]


_BY_STATE: dict[TaskState, Callable[[Facts], list[Cause]]] = {
    TaskState.PENDING: _pending,
    TaskState.SCHEDULED: _scheduled,
    TaskState.RETRY: _retry,
    TaskState.WAITING: _waiting,
    TaskState.ACTIVE: _active,
}


def explain(f: Facts) -> Explanation:
    """The explanation of the gathered facts (pure)."""
    info = f.info
    causes = _BY_STATE.get(info.state, _finished)(f)
    if info.unique_key and f.unique_holder and f.unique_holder != info.id and not info.state.is_final:
        causes.append(
            Cause(Reason.UNIQUE_HELD, f"unique key {info.unique_key!r} is held by task {f.unique_holder}")
        )
    return Explanation(info.id, info.queue, info.state, tuple(causes), f.position)


# ---------------------------------------------------------------------------------- reading


def gather(settings: Settings, task_id: str, queue: str | None = None) -> Op[Facts]:
    info = yield from ops.get_task(settings, task_id, queue)
    if info is None:
        raise TaskNotFound(f"no task with id {task_id!r}" + (f" in queue {queue!r}" if queue else ""))
    qk = settings.keyspace.queue(info.queue)
    now = yield from ops.server_time_ms()
    workers = yield from inspect.workers(settings)
    paused, position, pending_total, unique_holder, reserved, limit, type_limit = yield Batch(
        [
            cmd("EXISTS", qk.paused),
            cmd("ZRANK", qk.pending, task_id),
            cmd("ZCARD", qk.pending),
            cmd("GET", qk.unique(info.unique_key)) if info.unique_key else cmd("ECHO", ""),
            cmd("HGET", qk.task(task_id), "reserved"),
            cmd("HGETALL", qk.rate_limit),
            cmd("HGETALL", qk.type_rate(info.type)),
        ]
    )
    group = (yield from read_group(settings, info.queue, info.group)) if info.group else None
    batch = None
    if info.state == TaskState.PENDING:
        batch = yield from read_batch_state(settings, info.queue, info.type, info.group, now)
    dependency_states: tuple[tuple[str, str], ...] = ()
    if info.state == TaskState.WAITING and info.waiting_on:
        refs = list(info.waiting_on)
        replies = yield Batch(
            [
                cmd("HGET", settings.keyspace.queue(r.partition("|")[0]).task(r.partition("|")[2]), "state")
                for r in refs
            ]
        )
        dependency_states = tuple((ref, state or "gone") for ref, state in zip(refs, replies, strict=True))
    return Facts(
        info=info,
        now_ms=now,
        workers=tuple(workers),
        paused=bool(paused),
        position=None if position is None else int(position),
        pending_total=int(pending_total),
        unique_holder=unique_holder or None,
        reserved=reserved == "1",
        dependency_states=dependency_states,
        bucket=bucket_state(dict(limit or {}), now),
        group=group,
        type_bucket=bucket_state(dict(type_limit or {}), now),
        batch=batch,
    )


def why(settings: Settings, task_id: str, queue: str | None = None) -> Op[Explanation]:
    facts = yield from gather(settings, task_id, queue)
    return explain(facts)
