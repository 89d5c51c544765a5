"""Read-only views for the console and the CLI. Every view reads bounded data: counts,
one page of tasks, a fixed window of per-minute counters; never a whole queue.

Use through a client: ``client.call(inspect.queues)``,
``await aclient.call(inspect.page, "payment", TaskState.DEAD)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, is_dataclass

from engine import cron, ops
from engine.backend import Batch, Call, Op, cmd
from engine.cron import CronEntryInfo as CronEntryInfo
from engine.cron import CronRun as CronRun  # moved to engine.cron; importable from here as before
from engine.ops import Settings
from engine.task import TaskInfo, TaskState

THROUGHPUT_MINUTES = 30
STALE_HEARTBEAT_S = 30.0

COUNTED_STATES = tuple(TaskState)


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
    arrivals: tuple[int, ...] = ()
    """Tasks enqueued per minute, oldest first, the current minute last."""

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
    fenced: int = 0
    """Calls about a task this worker made after its delivery was over, refused (not applied)."""
    overdue: int = 0
    """Busy slots held by sync handlers past their timeout (or cancel) that have not returned."""
    supervisor: str = ""
    """``host:pid`` of the ``rediq-worker --processes`` supervisor it runs under, if any."""

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
    calls.append(cmd("MGET", *[qk.stat("e", m) for m in minutes]))
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
        paused, head = bool(r[n]), r[n + 1]
        processed, failed, arrived = (tuple(int(x or 0) for x in series) for series in r[n + 2 : n + 5])
        if head:
            heads.append((name, head[0]))
        parsed.append((name, counts, paused, processed, failed, arrived))
    enq = {}
    if heads:
        enq_replies = yield Batch([cmd("HGET", settings.keyspace.queue(q).task(t), "enq") for q, t in heads])
        enq = {q: ops._int(e) for (q, _), e in zip(heads, enq_replies, strict=True)}
    out = []
    for name, counts, paused, processed, failed, arrived in parsed:
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
                arrivals=arrived,
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
        newest_first = state in (TaskState.DEAD, TaskState.COMPLETED, TaskState.CANCELLED, TaskState.EXPIRED)
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
                fenced=ops._int(h.get("fenced")) or 0,
                overdue=ops._int(h.get("overdue")) or 0,
                supervisor=h.get("supervisor", ""),
            )
        )
    return out


def dump_json(obj: object) -> str:
    """Stable JSON for ``--json`` output of the dataclasses above."""

    def default(o: object) -> object:
        if is_dataclass(o) and not isinstance(o, type):
            return asdict(o)
        if hasattr(o, "model_dump"):
            return o.model_dump(mode="json")
        raise TypeError(type(o).__name__)

    return json.dumps(obj, default=default, indent=2, sort_keys=True)


def cron_entries(settings: Settings) -> Op[list[CronEntryInfo]]:
    """Registered cron entries with their next fire times (see ``engine.cron``)."""
    return (yield from cron.list_entries(settings))


# ---------------------------------------------------------------------------------- failures


@dataclass(frozen=True, slots=True)
class FailureGroup:
    """Unresolved failures (dead or retrying) of one task type with one normalised error."""

    queue: str
    fingerprint: str
    task_type: str
    sample: str
    count: int
    """Tasks in the group now."""
    total: int
    """Failures recorded for the group since it first appeared."""
    first_seen_ms: int
    last_seen_ms: int


def failure_groups(settings: Settings, names: Sequence[str] | None = None) -> Op[list[FailureGroup]]:
    """Failure groups, biggest first. Reads one small hash per queue plus a ZCARD per group."""
    if names is None:
        names = yield from queue_names(settings)
    ks = settings.keyspace
    hashes = yield Batch([cmd("HGETALL", ks.queue(q).failures) for q in names])
    found: list[tuple[str, str, dict[str, object]]] = []
    for q, h in zip(names, hashes, strict=True):
        for fp, raw in h.items():
            data = ops._json(raw, {})
            if isinstance(data, dict):
                found.append((q, fp, data))
    if not found:
        return []
    counts = yield Batch([cmd("ZCARD", ks.queue(q).fingerprint(fp)) for q, fp, _ in found])
    groups = [
        FailureGroup(
            queue=q,
            fingerprint=fp,
            task_type=str(d.get("type", "")),
            sample=str(d.get("sample", "")),
            count=int(c),
            total=ops._int(d.get("total")) or 0,
            first_seen_ms=ops._int(d.get("first")) or 0,
            last_seen_ms=ops._int(d.get("last")) or 0,
        )
        for (q, fp, d), c in zip(found, counts, strict=True)
        if int(c) > 0
    ]
    return sorted(groups, key=lambda g: (-g.count, -g.last_seen_ms))


def group_tasks(
    settings: Settings, queue_name: str, fingerprint: str, offset: int = 0, limit: int = 50
) -> Op[TaskPage]:
    """One page of the tasks in a failure group, newest failure first."""
    qk = settings.keyspace.queue(queue_name)
    key = qk.fingerprint(fingerprint)
    total, ids = yield Batch([cmd("ZCARD", key), cmd("ZRANGE", key, offset, offset + limit - 1, "REV")])
    hashes = (yield Batch([cmd("HGETALL", qk.task(i)) for i in ids])) if ids else []
    tasks = [ops.task_info(queue_name, h) for h in hashes if h]
    return TaskPage(queue_name, TaskState.DEAD, offset, int(total), tasks)


# ---------------------------------------------------------------------------------- audit


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: str
    at_ms: int
    action: str
    queue: str
    count: int
    detail: str
    actor: str


def audit(settings: Settings, limit: int = 100) -> Op[list[AuditEntry]]:
    """The latest operator actions, newest first."""
    entries = yield cmd("XREVRANGE", settings.keyspace.audit, "+", "-", "COUNT", limit)
    out = []
    for entry_id, fields in entries or []:
        f = dict(zip(fields[::2], fields[1::2], strict=False)) if isinstance(fields, list) else dict(fields)
        out.append(
            AuditEntry(
                id=entry_id,
                at_ms=int(str(entry_id).split("-")[0]),
                action=f.get("action", ""),
                queue=f.get("queue", ""),
                count=ops._int(f.get("count")) or 0,
                detail=f.get("detail", ""),
                actor=f.get("actor", ""),
            )
        )
    return out


# ---------------------------------------------------------------------------------- attempts


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int
    worker: str
    started_ms: int
    ended_ms: int | None
    outcome: str
    """'completed', 'retry', 'dead', 'cancelled', 'pending' (handed back or lease expired), or
    'running'."""
    error: str = ""

    @property
    def duration_s(self) -> float | None:
        return None if self.ended_ms is None else (self.ended_ms - self.started_ms) / 1000


def attempts(task_info: TaskInfo) -> list[Attempt]:
    """The attempt timeline of a task, derived from its (bounded) history: each 'active' entry
    opens an attempt, the next transition closes it. Oldest first."""
    out: list[Attempt] = []
    current: dict[str, object] | None = None
    for entry in reversed(task_info.history):  # history is newest first
        if entry.state == "active" and not entry.note.startswith("cancel requested"):
            current = {"worker": entry.note, "started": entry.at_ms}
            continue
        if current is not None and entry.state != "active":
            out.append(
                Attempt(
                    len(out) + 1,
                    str(current["worker"]),
                    int(current["started"]),  # type: ignore[call-overload]
                    entry.at_ms,
                    entry.state,
                    entry.note if entry.state != "completed" else "",
                )
            )
            current = None
    if current is not None:
        out.append(Attempt(len(out) + 1, str(current["worker"]), int(current["started"]), None, "running"))  # type: ignore[call-overload]
    return out


# ---------------------------------------------------------------------------------- forecast

FORECAST_WARN_MIN = 10.0
FORECAST_ALERT_MIN = 60.0


@dataclass(frozen=True, slots=True)
class RuntimeStats:
    task_type: str
    samples: int
    p50_s: float
    p95_s: float


@dataclass(frozen=True, slots=True)
class Forecast:
    queue: str
    pending: int
    head_age_s: float | None
    rate_per_min: float
    """Completions per minute, averaged over the last five full minutes."""
    drain_minutes: float | None
    """Minutes until pending reaches zero at the current rates (None: not draining)."""
    runtimes: tuple[RuntimeStats, ...] = ()
    inflow_per_min: float = 0.0
    """Enqueues per minute over the same minutes: the backlog drains at rate minus inflow."""

    @property
    def level(self) -> str:
        """'ok', 'warn' or 'alert', for colouring rows."""
        if self.pending and self.drain_minutes is None:
            return "alert"
        if self.drain_minutes is None:
            return "ok"
        if self.drain_minutes >= FORECAST_ALERT_MIN:
            return "alert"
        return "warn" if self.drain_minutes >= FORECAST_WARN_MIN else "ok"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


FORECAST_MINUTES = 5


def _recent_rate(series: tuple[int, ...]) -> float:
    """Per-minute average over the last full minutes (the current one is partial)."""
    recent = series[-FORECAST_MINUTES - 1 : -1] or (0,)
    return sum(recent) / len(recent)


def forecast_of(summary: QueueSummary, runtimes: Sequence[RuntimeStats] = ()) -> Forecast:
    """The backlog forecast from a summary already read (pure): pending shrinks at completions
    minus enqueues per minute; a queue whose inflow keeps up with its workers is not draining,
    however fast they run."""
    rate, inflow = _recent_rate(summary.throughput), _recent_rate(summary.arrivals)
    pending = summary.count(TaskState.PENDING)
    net = rate - inflow
    drain = (pending / net) if pending and net > 0 else (0.0 if pending == 0 else None)
    return Forecast(summary.name, pending, summary.head_age_s, rate, drain, tuple(runtimes), inflow)


def forecast(settings: Settings, queue_name: str, task_types: Sequence[str] = ()) -> Op[Forecast | None]:
    """Backlog forecast of one queue: oldest-at-head age, runtime p50/p95 per task type over
    the last samples the workers reported, and when the backlog drains at the current rate."""
    summary = yield from queue(settings, queue_name)
    if summary is None:
        return None
    qk = settings.keyspace.queue(queue_name)
    stats: list[RuntimeStats] = []
    if task_types:
        lists = yield Batch([cmd("LRANGE", qk.runtimes(t), 0, -1) for t in task_types])
        for t, values in zip(task_types, lists, strict=True):
            samples = [int(v) / 1000 for v in values if str(v).isdigit()]
            if samples:
                stats.append(
                    RuntimeStats(t, len(samples), _percentile(samples, 0.5), _percentile(samples, 0.95))
                )
    return forecast_of(summary, stats)


# ---------------------------------------------------------------------------------- search

SEARCH_CHUNK = 500


def search(
    settings: Settings,
    queue_name: str,
    state: TaskState | str,
    text: str,
    limit: int = 50,
    scan_limit: int = 20_000,
) -> Op[TaskPage]:
    """Tasks of one queue and state whose id, type, payload or error contains ``text``
    (case-insensitive), reading at most ``scan_limit`` tasks in bounded chunks: a search of a
    huge dead set stays cheap for Redis, and says how far it looked (``TaskPage.offset`` is the
    number of tasks examined)."""
    state = TaskState(state)
    qk = settings.keyspace.queue(queue_name)
    key = qk.state_key(str(state))
    needle = text.casefold()
    newest_first = state.is_final
    total = int((yield cmd("ZCARD", key)))
    found: list[TaskInfo] = []
    examined = 0
    while examined < min(total, scan_limit) and len(found) < limit:
        end = min(examined + SEARCH_CHUNK, scan_limit) - 1
        ids = yield cmd("ZRANGE", key, examined, end, *(("REV",) if newest_first else ()))
        if not ids:
            break
        examined += len(ids)
        hashes = yield Batch([cmd("HMGET", qk.task(i), "id", "type", "payload", "error") for i in ids])
        hits = [i for i, h in zip(ids, hashes, strict=True) if any(needle in (f or "").casefold() for f in h)]
        if hits:
            full = yield Batch([cmd("HGETALL", qk.task(i)) for i in hits[: limit - len(found)]])
            found.extend(ops.task_info(queue_name, h) for h in full if h)
    return TaskPage(queue_name, state, examined, total, found)
