"""Every engine operation, written once as a generator of Redis requests (see ``backend``).

Pure argument building and reply parsing live here; ``Client``, ``AsyncClient``, the worker,
``inspect`` and ``admin`` drive these with a sync or async backend.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple, TypeVar

from pydantic import ValidationError

from engine import defaults
from engine.backend import Batch, Call, Op, cmd, script_call
from engine.declarations import Declarations
from engine.errors import (
    ConnectionFailed,
    InvalidConfig,
    InvalidTask,
    PayloadError,
    PayloadTooLarge,
    TaskNotFound,
    validation_message,
)
from engine.keys import Keyspace, QueueKeys, validate_prefix
from engine.task import SCHEMA_VERSION, HistoryEntry, Task, TaskInfo, TaskState

T = TypeVar("T")

DEFAULT_MAX_PAYLOAD = defaults.MAX_PAYLOAD_BYTES
ENQUEUE_WIDTH = 8
# tasks per enqueue script call: big enough that a call's overhead is small, small enough that
# a large batch streams in several calls and never holds Redis for long in one
ENQUEUE_CHUNK = 250
MAX_RETENTION_S = 10 * 365 * 86400.0
DEPENDENCY_POLICIES = ("cancel", "hold")
DEPENDENCY_FAILURE_ENV = "REDIQ_DEPENDENCY_FAILURE"
FINISHED_FOR_DEPENDENTS = ("completed", "dead", "cancelled", "quarantined", "expired")
"""Dependency states that resolve a dependent: completed releases it, the others (and a
dependency that is gone) fail it under its stored policy."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Engine behaviour shared by clients and workers (see ``engine.config`` for the loader)."""

    prefix: str = defaults.PREFIX
    retention_s: float = defaults.RETENTION_S
    """How long completed and cancelled tasks are kept."""
    dead_retention_s: float = defaults.DEAD_RETENTION_S
    """How long dead tasks are kept before Redis expires them."""
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD
    dependency_failure: str = field(
        default_factory=lambda: os.environ.get(DEPENDENCY_FAILURE_ENV, defaults.DEPENDENCY_FAILURE)
    )
    """What a dead/cancelled/vanished dependency does to its dependents: 'cancel' them or 'hold'
    them. Stored with each dependent at enqueue (a ``Task.dependency_failure`` overrides it), so
    the enqueuing process decides. Default: ``$REDIQ_DEPENDENCY_FAILURE`` or 'cancel'."""
    events: bool = defaults.EVENTS
    """Publish state-transition events (the console listens to them)."""
    quarantine_s: float = defaults.QUARANTINE_S
    """How long deleted tasks stay restorable in quarantine."""
    strict_types: bool = False
    """Clients refuse to enqueue a task type declared nowhere (default: warn once per type)."""

    def __post_init__(self) -> None:
        try:
            validate_prefix(self.prefix)
        except ValueError as exc:
            raise InvalidConfig(str(exc)) from None
        # the scripts take a TTL of 0 ms as "no TTL": a retention that rounds to 0 would keep
        # finished hashes forever, so it is refused before anything is written
        for name in ("retention_s", "dead_retention_s", "quarantine_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.001 <= value <= MAX_RETENTION_S):
                raise InvalidConfig(
                    f"{name}={value!r} is out of range: use 0.001..{MAX_RETENTION_S:.0f} seconds "
                    "(finished tasks expire after it; 0 does not mean forever)"
                )
        if self.dependency_failure not in DEPENDENCY_POLICIES:
            raise InvalidConfig(
                f"dependency_failure={self.dependency_failure!r}: use one of {', '.join(DEPENDENCY_POLICIES)}"
            )

    @property
    def keyspace(self) -> Keyspace:
        return Keyspace(self.prefix)


class EnqueueResult(NamedTuple):
    """What ``enqueue`` did with one task (a named tuple: immutable, and three times cheaper to
    make than a frozen dataclass, which counts in a 1,000-task ``enqueue_many``)."""

    id: str
    queue: str
    state: str
    status: str
    """'new', 'exists' (same id already stored) or 'duplicate' (unique key held by ``id``)."""
    client: Any = None
    """The client that enqueued it, for ``wait``; not part of equality."""

    @property
    def created(self) -> bool:
        return self.status == "new"

    @property
    def ref(self) -> str:
        return f"{self.queue}|{self.id}"

    def __eq__(self, other: object) -> bool:
        # equal as the 4-tuple it was before it carried its client
        if isinstance(other, EnqueueResult):
            return self[:4] == other[:4]
        return isinstance(other, tuple) and self[:4] == other

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self[:4])

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled (to another process) without the client, whose connections cannot travel
        return (EnqueueResult, tuple(self[:4]))

    def __repr__(self) -> str:
        fields = f"id={self.id!r}, queue={self.queue!r}, state={self.state!r}, status={self.status!r}"
        return f"EnqueueResult({fields})"

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the task is final and return its result (see ``Client.result``);
        for a result of ``Client.enqueue``."""
        return self._bound("wait").result(self.id, self.queue, timeout=timeout)

    async def wait_async(self, timeout: float | None = None) -> Any:  # noqa: ASYNC109 - as wait()
        """``wait`` for a result of ``AsyncClient.enqueue``."""
        return await self._bound("wait_async").result(self.id, self.queue, timeout=timeout)

    def _bound(self, method: str) -> Any:
        asynchronous = method == "wait_async"
        # an AsyncClient's result is a coroutine function, a Client's is not (telling them
        # apart this way keeps ops from importing the client, which imports ops)
        if self.client is None or inspect.iscoroutinefunction(self.client.result) != asynchronous:
            other = "wait_async" if method == "wait" else "wait"
            raise InvalidTask(
                f"EnqueueResult.{method} needs the {'AsyncClient' if asynchronous else 'Client'} that "
                "enqueued the task",
                fix=f"Use .{other}() for a task from {'a Client' if asynchronous else 'an AsyncClient'}, "
                "or client.result(id, timeout=...)",
            )
        return self.client


def build_task(task_or_type: Task | str, payload: Any = None, **options: Any) -> Task:
    """A ``Task`` from either a ready model or a type plus options, with one-line errors."""
    if isinstance(task_or_type, Task):
        if payload is not None or options:
            raise InvalidTask("pass either a Task or a type with options, not both")
        return task_or_type
    deps = options.get("depends_on")
    if deps is not None:
        options["depends_on"] = tuple(d.ref if isinstance(d, EnqueueResult) else str(d) for d in deps)
    try:
        return Task(type=task_or_type, payload=payload, **options)
    except ValidationError as exc:
        raise InvalidTask(validation_message(exc)) from None


def channel(settings: Settings, qk: QueueKeys) -> str:
    return qk.events if settings.events else ""


# ---------------------------------------------------------------------------------- enqueue


def checked_payload(settings: Settings, task_id: str, task_type: str, payload: str) -> str:
    """A task's payload JSON, refused (one line) when it is not valid Unicode or too large."""
    try:
        size = len(payload.encode())
    except UnicodeEncodeError as exc:
        raise PayloadError(
            f"payload of task type {task_type!r} holds text that is not valid Unicode "
            f"({exc.reason} at character {exc.start}); decode bytes before putting them in a payload"
        ) from exc
    if size > settings.max_payload_bytes:
        raise PayloadTooLarge(
            f"payload of task {task_id} ({task_type}) is {size:,} bytes, "
            f"above the limit of {settings.max_payload_bytes:,}"
        )
    return payload


def task_args(task: Task, settings: Settings, deps: Sequence[str]) -> list[Any]:
    """``enqueue.lua``'s fields of one task, in its order (``ENQUEUE_WIDTH`` of them)."""
    payload = checked_payload(settings, task.id, task.type, task.payload_json())
    extras: dict[str, Any] = {}
    if task.unique_key:
        extras["u"] = task.unique_key
        extras["ut"] = int(task.unique_ttl * 1000)
    if deps:
        extras["d"] = json.dumps(deps)
        extras["p"] = task.dependency_failure or settings.dependency_failure
    if task.metadata:
        extras["m"] = json.dumps(task.metadata)
    if task.group is not None:
        extras["g"] = task.group
    if task.expires is not None:
        extras["x"] = task.expires_in_ms()
    if task.keep_result is not None:
        # whole ms, at least 1 unless 0 (discard): ack.lua reads 0 as "store no result"
        extras["k"] = max(1, int(task.keep_result * 1000)) if task.keep_result > 0 else 0
    return [
        task.id,
        task.type,
        payload,
        task.priority,
        task.max_retry,
        int(task.timeout * 1000),
        task.due_in_ms(),
        json.dumps(extras) if extras else "",
    ]


EnqueueHook = Callable[[Task], "Task | None"]
"""Runs on each task before it is enqueued (``Client(before_enqueue=...)``,
``@registry.before_enqueue``): add tracing headers to ``metadata``, validate, refuse."""


def _run_hooks(hooks: Sequence[EnqueueHook], task: Task) -> Task:
    for hook in hooks:
        changed = hook(task)
        if changed is not None:
            if not isinstance(changed, Task):
                name = getattr(hook, "__name__", repr(hook))
                raise InvalidTask(
                    f"before-enqueue hook {name} returned {type(changed).__name__}, not a Task or None",
                    fix="Return task.model_copy(update=...) to change it, None to keep it, raise to refuse",
                )
            task = changed
    return task


def locate(settings: Settings, ids: Sequence[str]) -> Op[dict[str, str]]:
    """Find the queue of each task id (``queue|id`` refs are taken at their word)."""
    ks = settings.keyspace
    found: dict[str, str] = {}
    bare = []
    for ref in ids:
        if "|" in ref:
            queue, _, task_id = ref.partition("|")
            found[task_id] = queue
        else:
            bare.append(ref)
    if bare:
        queues = sorted((yield cmd("SMEMBERS", ks.queues)))
        probes = [(q, t) for t in bare for q in queues]
        if probes:
            replies = yield Batch([cmd("EXISTS", ks.queue(q).task(t)) for q, t in probes])
            for (q, t), exists in zip(probes, replies, strict=True):
                if exists and t not in found:
                    found[t] = q
    return found


REGISTRATION_REFRESH_S = 60.0
"""How long a client trusts its own registration of a queue before it sends ``SADD`` again (a
queue forgotten meanwhile reappears within this, or at a worker's next maintenance pass)."""


class QueueRegistrations:
    """The queues one client added to the registry (``SADD``) and when, so that an enqueue
    sends its script call alone; each is registered again after ``refresh_s``."""

    __slots__ = ("_at", "refresh_s")

    def __init__(self, refresh_s: float = REGISTRATION_REFRESH_S) -> None:
        self.refresh_s = refresh_s
        self._at: dict[str, float] = {}

    def due(self, queues: Sequence[str]) -> list[str]:
        """The queues of ``queues`` not registered by this client within ``refresh_s``."""
        at, now = self._at, time.monotonic()
        return [q for q in queues if now - at.get(q, -math.inf) >= self.refresh_s]

    def done(self, queues: Sequence[str]) -> None:
        now = time.monotonic()
        for q in queues:
            self._at[q] = now


@lru_cache(maxsize=1024)
def _enqueue_head(qk: QueueKeys, events_channel: str) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """``enqueue.lua``'s keys and leading arguments for one queue (the same on every call)."""
    keys = (qk.pending, qk.scheduled, qk.waiting, qk.seq, qk.paused, qk.active, qk.idle)
    return keys, (qk.base, events_channel, ENQUEUE_WIDTH, SCHEMA_VERSION)


def enqueue_head(settings: Settings, queue: str) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """``enqueue.lua``'s keys and the arguments before the tasks' fields, for one queue."""
    qk = settings.keyspace.queue(queue)
    return _enqueue_head(qk, channel(settings, qk))


def _enqueue_call(settings: Settings, queue: str, fields: Sequence[Any]) -> Call:
    keys, head = enqueue_head(settings, queue)
    return script_call("enqueue", keys, (*head, *fields))


def enqueue_one(
    settings: Settings,
    task: Task,
    declarations: Declarations,
    *,
    bind: Any = None,
    hooks: Sequence[EnqueueHook] = (),
    registrations: QueueRegistrations | None = None,
) -> Op[EnqueueResult]:
    """``enqueue_many`` of one task, as one script call and nothing else when it can be: its
    declaration is cached, it has no dependencies and its queue was registered lately (the
    common ``enqueue``). The short route skips the batch bookkeeping, about a tenth of a
    single ``enqueue``'s wall time; otherwise the task takes ``enqueue_many``'s."""
    if task.depends_on or declarations.needs_refresh({task.type}):
        return (
            yield from enqueue_many(
                settings, [task], declarations, bind=bind, hooks=hooks, registrations=registrations
            )
        )[0]
    task = declarations.apply_known(task)
    if hooks:
        task = _run_hooks(hooks, task)
    if task.depends_on or registrations is None or registrations.due((task.queue,)):
        # hooks not again; the declaration again changes nothing (what it set is explicit now)
        return (
            yield from enqueue_many(settings, [task], declarations, bind=bind, registrations=registrations)
        )[0]
    status, task_id, state = yield _enqueue_call(settings, task.queue, task_args(task, settings, ()))
    return EnqueueResult(task_id, task.queue, state, status, bind)


def enqueue_many(
    settings: Settings,
    tasks: Sequence[Task],
    declarations: Declarations | None = None,
    *,
    bind: Any = None,
    hooks: Sequence[EnqueueHook] = (),
    registrations: QueueRegistrations | None = None,
) -> Op[list[EnqueueResult]]:
    """Enqueue tasks: one scripted call per queue, all in one round trip (plus dependency
    registration for tasks that have dependencies). Each task takes its type's declaration
    for the fields it did not set (``declarations``: a client's cache; None reads the
    published ones afresh, one round trip), then passes through ``hooks`` in order (each
    returns the task to enqueue, or None to keep it; an exception refuses the whole call
    before anything is written). ``bind``: the client the results can ``wait`` on.
    ``registrations``: a client's record of the queues it added to the registry lately (None:
    add them on every call)."""
    ks = settings.keyspace
    if declarations is None:
        declarations = Declarations(strict=settings.strict_types)
    tasks = yield from declarations.resolve(ks, tasks)
    if hooks:
        tasks = [_run_hooks(hooks, task) for task in tasks]
    all_deps = [d for t in tasks for d in t.depends_on]
    dep_queue: dict[str, str] = {}
    if all_deps:
        dep_queue = yield from locate(settings, all_deps)
        missing = [d for d in all_deps if d.rpartition("|")[2] not in dep_queue]
        if missing:
            raise InvalidTask(
                f"unknown dependency {missing[0]!r}: no such task in any queue",
                fix="Pass ids returned by enqueue (or 'queue|id'); finished tasks expire after retention",
            )
    refs_of: dict[str, list[str]] = {}
    by_queue: dict[str, list[Any]] = defaultdict(list)
    order: list[str] = []
    for task in tasks:
        refs = [f"{dep_queue[d.rpartition('|')[2]]}|{d.rpartition('|')[2]}" for d in task.depends_on]
        refs_of[task.id] = refs
        by_queue[task.queue].extend(task_args(task, settings, refs))
        order.append(task.queue)
    queues = list(dict.fromkeys(order))
    # the registry lives outside the queues' slots; a failover of its node must not block
    # enqueues, so it is best effort here and workers re-register their queues periodically.
    # A client that registered these queues lately skips it: one command per single enqueue.
    unregistered = queues if registrations is None else registrations.due(queues)
    calls: list[Call] = []
    if unregistered:
        calls.append(Call(command=("SADD", ks.queues, *unregistered), best_effort=True))
    call_queues: list[str] = []
    chunk = ENQUEUE_CHUNK * ENQUEUE_WIDTH
    for queue in queues:
        args = by_queue[queue]
        for start in range(0, len(args), chunk):
            calls.append(_enqueue_call(settings, queue, args[start : start + chunk]))
            call_queues.append(queue)
    # several chunks stream: Redis runs one while the next is packed and the last reply decoded
    replies = yield Batch(calls, streamed=len(calls) > 2)
    if unregistered:
        if registrations is not None and replies[0] is not None:
            registrations.done(unregistered)
        replies = replies[1:]
    # the script answers one (status, id, state) triple per task, in the order it was sent
    per_queue: dict[str, list[EnqueueResult]] = defaultdict(list)
    for queue, reply in zip(call_queues, replies, strict=True):
        per_queue[queue].extend(
            EnqueueResult(reply[i + 1], queue, reply[i + 2], reply[i], bind) for i in range(0, len(reply), 3)
        )
    if len(queues) == 1:
        ordered = per_queue[queues[0]]
    else:
        cursor: dict[str, int] = defaultdict(int)
        ordered = []
        for task in tasks:
            ordered.append(per_queue[task.queue][cursor[task.queue]])
            cursor[task.queue] += 1
    if not all_deps:
        return ordered
    results = {t.id: r for t, r in zip(tasks, ordered, strict=True) if r.status != "duplicate"}
    # Register dependents with their dependencies, even for 'exists' (a retried enqueue must
    # finish a registration that a crashed first attempt may have left half done).
    waiting = [t for t in tasks if t.depends_on and results.get(t.id) and results[t.id].state == "waiting"]
    if waiting:
        yield from _register_dependencies(settings, [(t.queue, t.id, refs_of[t.id]) for t in waiting])
    return ordered


def durable(op: Op[T], replicas: int = 1, timeout_ms: int = 1000) -> Op[T]:
    """Wrap an enqueue so that it also waits (``WAIT``, same connection, same round trip) until
    ``replicas`` replicas have the write, and fails with ``ConnectionFailed`` otherwise: such
    a task may be lost in a failover. Retrying is safe (enqueue is idempotent by task id)."""
    try:
        request = next(op)
        while True:
            reply: Any
            if isinstance(request, Batch) and any(c.script == "enqueue" for c in request.calls):
                replies = yield Batch([*request.calls, cmd("WAIT", replicas, timeout_ms)])
                acked = int(replies[-1])
                if acked < replicas:
                    raise ConnectionFailed(
                        f"enqueue reached {acked} of {replicas} replica(s) within {timeout_ms} ms; it may be "
                        "lost in a failover (retry: enqueue is idempotent by task id)"
                    )
                reply = replies[:-1]
            else:
                reply = yield request
            request = op.send(reply)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def _register_dependencies(settings: Settings, items: list[tuple[str, str, list[str]]]) -> Op[None]:
    ks = settings.keyspace
    calls: list[Call] = []
    pairs: list[tuple[str, str, str]] = []
    for queue, task_id, refs in items:
        for ref in refs:
            dq, _, dep_id = ref.partition("|")
            calls.append(
                script_call(
                    "dep_register",
                    [ks.queue(dq).task(dep_id)],
                    [ks.queue(dq).base, dep_id, f"{queue}|{task_id}"],
                )
            )
            pairs.append((queue, task_id, ref))
    states = yield Batch(calls)
    # a dependency already finished, deleted or expired resolves the dependent at once (a
    # vanished one counts as failed): otherwise nothing would ever tell it
    resolves = [
        resolve_call(settings, queue, task_id, ref, state or GONE)
        for (queue, task_id, ref), state in zip(pairs, states, strict=True)
        if not state or state in FINISHED_FOR_DEPENDENTS
    ]
    if resolves:
        yield Batch(resolves)


GONE = "gone"
"""The outcome a dependent is told when its dependency was deleted or expired."""


def resolve_call(settings: Settings, queue: str, task_id: str, dep_ref: str, outcome: str) -> Call:
    qk = settings.keyspace.queue(queue)
    return script_call(
        "dep_resolve",
        [qk.waiting, qk.pending, qk.scheduled, qk.cancelled, qk.seq, qk.dep_outbox],
        [
            qk.base,
            channel(settings, qk),
            task_id,
            dep_ref,
            outcome,
            settings.dependency_failure,
            int(settings.retention_s * 1000),
        ],
    )


def trim_finished_indexes(settings: Settings, queue: str) -> Op[int]:
    """Drop ids whose retention is over from the completed, cancelled, dead and quarantined
    indexes (their hashes have expired). The scripts that add to the others trim them too, so
    there this matters only for a queue with no traffic; the completed index is trimmed here
    alone (``ack.lua`` would pay a call per ack for it). Returns how many ids went."""
    qk = settings.keyspace.queue(queue)
    now_ms = yield from server_time_ms()
    kept_for = (
        (qk.completed, settings.retention_s),
        (qk.cancelled, settings.retention_s),
        (qk.expired, settings.retention_s),
        (qk.dead, settings.dead_retention_s),
        (qk.quarantine, settings.quarantine_s),
    )
    removed = yield Batch(
        [cmd("ZREMRANGEBYSCORE", key, "-inf", now_ms - int(seconds * 1000)) for key, seconds in kept_for]
    )
    return sum(int(n) for n in removed)


EXPIRY_SWEEP_LIMIT = 500
"""Tasks one expiry sweep call looks at (the due ones first): it holds Redis for little."""


def expire_due(
    settings: Settings, queue: str, limit: int = EXPIRY_SWEEP_LIMIT, recheck_s: float = 5.0
) -> Op[list[str]]:
    """End as ``expired`` the tasks of ``queue`` whose ``expires`` deadline passed before they
    started (``expire.lua``), then tell their dependents. Returns the ids expired. Run by the
    worker's maintenance loop; dequeue and start apply the same deadline as they go. A task
    running past its deadline is looked at again ``recheck_s`` later (it may fail back to retry)."""
    qk = settings.keyspace.queue(queue)
    missed = yield script_call(
        "expire",
        [qk.expiries, qk.pending, qk.scheduled, qk.retry, qk.waiting, qk.dep_outbox],
        [qk.base, channel(settings, qk), int(settings.retention_s * 1000), limit, int(recheck_s * 1000)],
    )
    if missed:
        yield from flush_outbox(settings, queue, list(missed))
    return list(missed)


def flush_outbox(
    settings: Settings,
    queue: str,
    task_ids: Iterable[str] | None = None,
    older_than_ms: int | None = None,
    limit: int = 100,
) -> Op[int]:
    """Tell the dependents of finished tasks, then drop the outbox entries. Idempotent, so a
    worker that died half way is simply replayed by the next flush."""
    ks = settings.keyspace
    qk = ks.queue(queue)
    if task_ids is None:
        now_ms = yield from server_time_ms()
        upper = now_ms - (older_than_ms or 0)
        ids = list((yield cmd("ZRANGEBYSCORE", qk.dep_outbox, "-inf", upper, "LIMIT", 0, limit)))
    else:
        ids = list(task_ids)
    if not ids:
        return 0
    replies = yield Batch(
        [c for i in ids for c in (cmd("HGET", qk.task(i), "state"), cmd("SMEMBERS", qk.dependents(i)))]
    )
    resolves: list[Call] = []
    targets: list[tuple[str, str]] = []
    for n, task_id in enumerate(ids):
        state, dependents = replies[2 * n], replies[2 * n + 1]
        if state and state not in FINISHED_FOR_DEPENDENTS:
            continue  # requeued or restored since: it will finish again
        for ref in dependents:
            dq, _, dep_id = ref.partition("|")
            resolves.append(resolve_call(settings, dq, dep_id, f"{queue}|{task_id}", state or GONE))
            targets.append((dq, dep_id))
    outcomes = (yield Batch(resolves)) if resolves else []
    yield cmd("ZREM", qk.dep_outbox, *ids)
    # a cancelled dependent may have dependents of its own: cascade now rather than at the
    # next maintenance pass
    for (dq, dep_id), outcome in zip(targets, outcomes, strict=True):
        if outcome == "cancelled":
            yield from flush_outbox(settings, dq, [dep_id])
    return len(ids)


def server_time_ms() -> Op[int]:
    seconds, micros = yield cmd("TIME")
    return int(seconds) * 1000 + int(micros) // 1000


# ---------------------------------------------------------------------------------- reading

TASK_FIELDS = (
    "id",
    "type",
    "payload",
    "priority",
    "max_retry",
    "timeout",
    "enq",
    "due",
    "exp",
    "state",
    "attempts",
    "started",
    "finished",
    "lease",
    "worker",
    "unique",
    "deps",
    "meta",
    "error",
    "tb",
    "result",
    "progress",
    "pmsg",
    "cancel",
    "reason",
    "v",
    "grp",
)


def _int(value: Any) -> int | None:
    try:
        return int(float(value)) if value not in (None, "") else None
    except (TypeError, ValueError, OverflowError):  # "1e309" is a float, inf has no int
        return None


def _json(text: Any, default: Any = None) -> Any:
    if text in (None, ""):
        return default
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return default


ENTERED_STATES = frozenset({TaskState.PENDING, TaskState.SCHEDULED, TaskState.WAITING})


def _with_implied_entries(
    fields: dict[str, Any], state: TaskState, entries: list[HistoryEntry]
) -> list[HistoryEntry]:
    """The history with the entries a hash written with 'entered' implies instead of storing
    (see settle_active and settle_completed in engine/scripts/_lib.lua): the 'enqueued' entry
    (oldest), the start of the current attempt unless the list holds it, and, while the task
    stays completed, its completion (newest). A hash without 'entered' (written before) has them
    all in its list."""
    try:
        entered = TaskState(fields.get("entered") or "")
    except ValueError:
        return entries
    if entered not in ENTERED_STATES:
        return entries
    finished = _int(fields.get("finished"))
    completion = (
        state == TaskState.COMPLETED
        and finished is not None
        and (not entries or entries[0].state != "completed")
    )
    started = _int(fields.get("started"))
    worker = fields.get("worker")
    if started is not None and not any(
        e.state == "active" and e.at_ms == started and (worker is None or e.note == worker) for e in entries
    ):
        entries.insert(0, HistoryEntry(at_ms=started, state="active", note=worker or ""))
    if completion and finished is not None:
        entries.insert(0, HistoryEntry(at_ms=finished, state="completed", note=""))
    entries.append(HistoryEntry(at_ms=_int(fields.get("enq")) or 0, state=entered.value, note="enqueued"))
    return entries


def task_info(
    queue: str,
    fields: dict[str, Any],
    history: Sequence[str] = (),
    waiting_on: Iterable[str] = (),
    dependents: Iterable[str] = (),
) -> TaskInfo:
    """Build a ``TaskInfo`` from a task hash; tolerant of missing or malformed fields (a
    buggy or older client may have written them) so readers never crash."""
    state_text = fields.get("state") or "pending"
    try:
        state = TaskState(state_text)
    except ValueError:
        state = TaskState.PENDING
    entries = []
    for raw in history:
        item = _json(raw, [])
        if isinstance(item, list) and len(item) >= 2:
            entries.append(
                HistoryEntry(
                    at_ms=_int(item[0]) or 0, state=str(item[1]), note=str(item[2]) if len(item) > 2 else ""
                )
            )
    entries = _with_implied_entries(fields, state, entries)
    timeout_ms = _int(fields.get("timeout"))
    meta = _json(fields.get("meta"), {})
    deps = _json(fields.get("deps"), [])
    payload_raw = fields.get("payload") or ""
    progress = fields.get("progress")
    return TaskInfo(
        id=fields.get("id") or "",
        type=fields.get("type") or "",
        queue=queue,
        state=state,
        payload=_json(payload_raw, payload_raw),
        payload_raw=payload_raw,
        priority=_int(fields.get("priority")) if _int(fields.get("priority")) is not None else 50,  # type: ignore[arg-type]
        max_retry=_int(fields.get("max_retry")) or 0,
        timeout=(timeout_ms / 1000) if timeout_ms else 1800.0,
        attempts=_int(fields.get("attempts")) or 0,
        enqueued_at_ms=_int(fields.get("enq")) or 0,
        due_at_ms=_int(fields.get("due")),
        expires_at_ms=_int(fields.get("exp")),
        started_at_ms=_int(fields.get("started")),
        finished_at_ms=_int(fields.get("finished")),
        # (a completed hash keeps its last lease: ack.lua does not spend a command on it)
        lease_expiry_ms=_int(fields.get("lease")) if state == TaskState.ACTIVE else None,
        worker=fields.get("worker"),
        unique_key=fields.get("unique") or None,
        group=fields.get("grp") or None,
        depends_on=tuple(str(d) for d in deps) if isinstance(deps, list) else (),
        waiting_on=tuple(sorted(waiting_on)),
        dependents=tuple(sorted(dependents)),
        metadata={str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {},
        last_error=fields.get("error"),
        traceback=fields.get("tb"),
        result=_json(fields.get("result")),
        progress=float(progress) if progress is not None and _int(progress) is not None else None,
        progress_message=fields.get("pmsg"),
        cancel_requested=fields.get("cancel") == "1",
        reason=fields.get("reason"),
        schema_version=_int(fields.get("v")) or 1,
        history=tuple(entries),
    )


def get_task(settings: Settings, task_id: str, queue: str | None = None) -> Op[TaskInfo | None]:
    ks = settings.keyspace
    if queue is None:
        where = yield from locate(settings, [task_id])
        if task_id not in where:
            return None
        queue = where[task_id]
    qk = ks.queue(queue)
    fields, history, waiting_on, dependents = yield Batch(
        [
            cmd("HGETALL", qk.task(task_id)),
            cmd("LRANGE", qk.history(task_id), 0, -1),
            cmd("SMEMBERS", qk.deps(task_id)),
            cmd("SMEMBERS", qk.dependents(task_id)),
        ]
    )
    if not fields:
        return None
    return task_info(queue, fields, history, waiting_on, dependents)


def require_task(settings: Settings, task_id: str, queue: str | None = None) -> Op[TaskInfo]:
    info = yield from get_task(settings, task_id, queue)
    if info is None:
        raise TaskNotFound(f"no task with id {task_id!r}" + (f" in queue {queue!r}" if queue else ""))
    return info


# ---------------------------------------------------------------------------------- actions


class Moved(list[str]):
    """The ids an action moved, in order (a list, so existing callers keep working),
    ``refused``: each id it left in place on purpose, with the reason, and ``cpu_us``: the
    server CPU time the script took (None where the server cannot tell: Redis 7.0), by which
    bulk actions size their chunks (``admin``)."""

    def __init__(
        self, ids: Iterable[str] = (), refused: dict[str, str] | None = None, cpu_us: int | None = None
    ) -> None:
        super().__init__(ids)
        self.refused: dict[str, str] = dict(refused or {})
        self.cpu_us = cpu_us


def _cpu_us(reply: Any) -> int | None:
    """A bulk script's report of its own server CPU time (-1: not measurable there)."""
    value = int(reply)
    return value if value >= 0 else None


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}


def cancel(
    settings: Settings, queue: str, ids: Sequence[str], reason: str = "cancelled by request"
) -> Op[dict[str, str]]:
    qk = settings.keyspace.queue(queue)
    reply = yield script_call(
        "cancel",
        [qk.pending, qk.scheduled, qk.waiting, qk.retry, qk.cancelled, qk.dep_outbox, qk.active],
        [qk.base, channel(settings, qk), int(settings.retention_s * 1000), reason, *ids],
    )
    outcomes = {reply[i]: reply[i + 1] for i in range(0, len(reply), 2)}
    if any(v == "cancelled" for v in outcomes.values()):
        yield from flush_outbox(settings, queue, [i for i, v in outcomes.items() if v == "cancelled"])
    return outcomes


def requeue(settings: Settings, queue: str, ids: Sequence[str], note: str = "requeued") -> Op[Moved]:
    """Requeue tasks; one whose unique key another live task holds is refused (``.refused``)."""
    if not ids:
        return Moved()
    qk = settings.keyspace.queue(queue)
    moved, refused, cpu_us = yield script_call(
        "requeue",
        [qk.pending, qk.seq, qk.dead, qk.retry, qk.scheduled, qk.cancelled, qk.completed, qk.waiting],
        [qk.base, channel(settings, qk), note, *ids],
    )
    return Moved(moved, _pairs(refused), _cpu_us(cpu_us))


def delete(settings: Settings, queue: str, ids: Sequence[str]) -> Op[Moved]:
    if not ids:
        return Moved()
    qk = settings.keyspace.queue(queue)
    deleted, cpu_us = yield script_call(
        "delete",
        [
            qk.pending,
            qk.active,
            qk.scheduled,
            qk.retry,
            qk.waiting,
            qk.dead,
            qk.completed,
            qk.cancelled,
            qk.quarantine,
            qk.dep_outbox,
        ],
        [qk.base, channel(settings, qk), *ids],
    )
    # their dependents learn that the dependency is gone
    yield from flush_outbox(settings, queue, list(deleted))
    return Moved(deleted, cpu_us=_cpu_us(cpu_us))


def quarantine(
    settings: Settings, queue: str, ids: Sequence[str], note: str = "deleted by operator"
) -> Op[Moved]:
    """Delete tasks recoverably: they stay in quarantine for ``settings.quarantine_s``."""
    if not ids:
        return Moved()
    qk = settings.keyspace.queue(queue)
    moved, cpu_us = yield script_call(
        "quarantine",
        [
            qk.quarantine,
            qk.pending,
            qk.active,
            qk.scheduled,
            qk.retry,
            qk.waiting,
            qk.dead,
            qk.completed,
            qk.cancelled,
            qk.dep_outbox,
        ],
        [qk.base, channel(settings, qk), int(settings.quarantine_s * 1000), note, *ids],
    )
    # their dependents learn that the dependency was deleted
    yield from flush_outbox(settings, queue, list(moved))
    return Moved(moved, cpu_us=_cpu_us(cpu_us))


def restore(settings: Settings, queue: str, ids: Sequence[str]) -> Op[Moved]:
    """Restore quarantined tasks; one whose unique key another live task holds stays
    quarantined (``.refused``). A waiting one re-registers with its dependencies, so those
    already finished (or gone) resolve it now."""
    if not ids:
        return Moved()
    qk = settings.keyspace.queue(queue)
    restored, refused, waiting, cpu_us = yield script_call(
        "restore",
        [qk.quarantine, qk.pending, qk.seq, qk.dead, qk.completed, qk.cancelled, qk.waiting, qk.scheduled],
        [
            qk.base,
            channel(settings, qk),
            int(settings.dead_retention_s * 1000),
            int(settings.retention_s * 1000),
            *ids,
        ],
    )
    if waiting:
        deps = yield Batch([cmd("SMEMBERS", qk.deps(i)) for i in waiting])
        yield from _register_dependencies(
            settings, [(queue, i, sorted(refs)) for i, refs in zip(waiting, deps, strict=True) if refs]
        )
    return Moved(restored, _pairs(refused), _cpu_us(cpu_us))


def set_paused(settings: Settings, queue: str, paused: bool) -> Op[bool]:
    qk = settings.keyspace.queue(queue)
    changed = yield script_call("pause", [qk.paused], [channel(settings, qk), "1" if paused else "0"])
    return bool(changed)
