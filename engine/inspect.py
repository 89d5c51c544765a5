"""Read-only views for the console and the CLI. Every view reads bounded data: counts,
one page of tasks, a fixed window of per-minute counters; never a whole queue.

Use through a client: ``client.call(inspect.queues)``,
``await aclient.call(inspect.page, "payment", TaskState.DEAD)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from engine import ops
from engine.backend import Batch, Call, Op, cmd
from engine.ops import Settings
from engine.task import TaskInfo, TaskState

THROUGHPUT_MINUTES = 30
STALE_HEARTBEAT_S = 30.0

COUNTED_STATES = (
    TaskState.PENDING,
    TaskState.ACTIVE,
    TaskState.SCHEDULED,
    TaskState.RETRY,
    TaskState.WAITING,
    TaskState.DEAD,
    TaskState.COMPLETED,
    TaskState.CANCELLED,
)


@dataclass(frozen=True, slots=True)
class QueueSummary:
    name: str
    counts: dict[str, int]
    paused: bool
    processed_per_min: int
    """Tasks completed in the last full minute."""
    failed_per_min: int
    head_age_s: float | None
    """How long the task at the head of pending (next to run) has waited."""
    throughput: tuple[int, ...] = ()
    """Completed per minute, oldest first, the current minute last."""
    failures: tuple[int, ...] = ()

    def count(self, state: TaskState | str) -> int:
        return self.counts.get(str(state), 0)


@dataclass(frozen=True, slots=True)
class WorkerSummary:
    id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    busy: int
    started_ms: int
    heartbeat_ms: int
    tasks: tuple[str, ...]
    """``queue|id`` of the tasks in flight."""
    now_ms: int = 0

    @property
    def heartbeat_age_s(self) -> float:
        return max(0.0, (self.now_ms - self.heartbeat_ms) / 1000)

    @property
    def stale(self) -> bool:
        return self.heartbeat_age_s > STALE_HEARTBEAT_S

    @property
    def uptime_s(self) -> float:
        return max(0.0, (self.now_ms - self.started_ms) / 1000)


@dataclass(frozen=True, slots=True)
class TaskPage:
    queue: str
    state: TaskState
    offset: int
    total: int
    tasks: list[TaskInfo] = field(default_factory=list)


def queue_names(settings: Settings) -> Op[list[str]]:
    names = yield cmd("SMEMBERS", settings.keyspace.queues)
    return sorted(names)


def _queue_calls(settings: Settings, name: str, minute: int) -> list[Call]:
    qk = settings.keyspace.queue(name)
    calls = [cmd("ZCARD", qk.state_key(str(s))) for s in COUNTED_STATES]
    calls.append(cmd("EXISTS", qk.paused))
    calls.append(cmd("ZRANGE", qk.pending, 0, 0))
    minutes = range(minute - THROUGHPUT_MINUTES + 1, minute + 1)
    calls.append(cmd("MGET", *[qk.stat("p", m) for m in minutes]))
    calls.append(cmd("MGET", *[qk.stat("f", m) for m in minutes]))
    return calls


def queues(settings: Settings, names: Sequence[str] | None = None) -> Op[list[QueueSummary]]:
    """Summaries of the given queues (default: all known), in one round trip per call."""
    if names is None:
        names = yield from queue_names(settings)
    now_ms = yield from ops.server_time_ms()
    minute = now_ms // 60000
    per = len(_queue_calls(settings, "x", minute))
    replies = yield Batch([c for n in names for c in _queue_calls(settings, n, minute)])
    heads: list[tuple[str, str]] = []
    parsed = []
    for i, name in enumerate(names):
        r = replies[i * per : (i + 1) * per]
        counts = {str(s): int(c) for s, c in zip(COUNTED_STATES, r, strict=False)}
        n = len(COUNTED_STATES)
        paused, head, processed, failed = bool(r[n]), r[n + 1], r[n + 2], r[n + 3]
        if head:
            heads.append((name, head[0]))
        parsed.append(
            (name, counts, paused, tuple(int(x or 0) for x in processed), tuple(int(x or 0) for x in failed))
        )
    enq = {}
    if heads:
        enq_replies = yield Batch([cmd("HGET", settings.keyspace.queue(q).task(t), "enq") for q, t in heads])
        enq = {q: ops._int(e) for (q, _), e in zip(heads, enq_replies, strict=True)}
    out = []
    for name, counts, paused, processed, failed in parsed:
        head_enq = enq.get(name)
        out.append(
            QueueSummary(
                name=name,
                counts=counts,
                paused=paused,
                processed_per_min=processed[-2] if len(processed) > 1 else 0,
                failed_per_min=failed[-2] if len(failed) > 1 else 0,
                head_age_s=(now_ms - head_enq) / 1000 if head_enq else None,
                throughput=processed,
                failures=failed,
            )
        )
    return out


def queue(settings: Settings, name: str) -> Op[QueueSummary | None]:
    known = yield cmd("SISMEMBER", settings.keyspace.queues, name)
    if not known:
        return None
    summaries = yield from queues(settings, [name])
    return summaries[0]


def page(
    settings: Settings,
    queue_name: str,
    state: TaskState | str,
    offset: int = 0,
    limit: int = 50,
    newest_first: bool | None = None,
) -> Op[TaskPage]:
    """One page of a queue's tasks in one state, in run order for pending (head first) and
    newest first for finished states."""
    state = TaskState(state)
    qk = settings.keyspace.queue(queue_name)
    key = qk.state_key(str(state))
    if newest_first is None:
        newest_first = state in (TaskState.DEAD, TaskState.COMPLETED, TaskState.CANCELLED)
    rng = ("ZRANGE", key, offset, offset + limit - 1) + (("REV",) if newest_first else ())
    total, ids = yield Batch([cmd("ZCARD", key), cmd(*rng)])
    if not ids:
        return TaskPage(queue_name, state, offset, int(total))
    hashes = yield Batch([cmd("HGETALL", qk.task(i)) for i in ids])
    tasks = [ops.task_info(queue_name, h) for h in hashes if h]
    return TaskPage(queue_name, state, offset, int(total), tasks)


def task(settings: Settings, task_id: str, queue_name: str | None = None) -> Op[TaskInfo | None]:
    """Everything about one task, with history and dependency links."""
    return (yield from ops.get_task(settings, task_id, queue_name))


def workers(settings: Settings) -> Op[list[WorkerSummary]]:
    ks = settings.keyspace
    now_ms = yield from ops.server_time_ms()
    ids = yield cmd("ZRANGE", ks.workers, 0, -1)
    if not ids:
        return []
    hashes = yield Batch([cmd("HGETALL", ks.worker(w)) for w in ids])
    out = []
    for wid, h in zip(ids, hashes, strict=True):
        if not h:
            continue
        tasks = ops._json(h.get("tasks"), [])
        out.append(
            WorkerSummary(
                id=wid,
                host=h.get("host", "?"),
                pid=ops._int(h.get("pid")) or 0,
                queues=tuple(q for q in h.get("queues", "").split(",") if q),
                concurrency=ops._int(h.get("concurrency")) or 0,
                busy=ops._int(h.get("busy")) or 0,
                started_ms=ops._int(h.get("started")) or 0,
                heartbeat_ms=ops._int(h.get("heartbeat")) or 0,
                tasks=tuple(str(t) for t in tasks) if isinstance(tasks, list) else (),
                now_ms=now_ms,
            )
        )
    return out


def dump_json(obj: object) -> str:
    """Stable JSON for ``--json`` output of the dataclasses above."""
    from dataclasses import asdict, is_dataclass

    def default(o: object) -> object:
        if is_dataclass(o) and not isinstance(o, type):
            return asdict(o)
        if hasattr(o, "model_dump"):
            return o.model_dump(mode="json")
        raise TypeError(type(o).__name__)

    return json.dumps(obj, default=default, indent=2, sort_keys=True)


@dataclass(frozen=True, slots=True)
class CronEntryInfo:
    name: str
    expression: str
    timezone: str
    task_type: str
    queue: str
    next_fire_ms: int | None
    last_fire_ms: int | None = None
    last_task_id: str | None = None
    last_state: str | None = None
    """State of the task the last fire created (``completed``, ``dead``…), if still known."""
    paused: bool = False


def cron_entries(settings: Settings) -> Op[list[CronEntryInfo]]:
    """Registered cron entries with their next fire time (see ``engine.scheduler``)."""
    from engine import scheduler

    return (yield from scheduler.list_entries(settings))
