"""Read-only views across the whole system for the console: the rows of the Queues view
(only the ones on screen), one rate per minute that is right from the first second, finding
anything by name or id, and tasks across queues and states. Every read is bounded.

Use through a client: ``await aclient.call(overview.queue_rows, ["payment", "mail"])``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from engine import inspect, ops
from engine.backend import Batch, Call, Op, cmd
from engine.inspect import QueueSummary
from engine.ops import Settings
from engine.task import TaskInfo, TaskState

ATTENTION_ORDER = (TaskState.DEAD, TaskState.RETRY, TaskState.ACTIVE, TaskState.PENDING)
"""Enter on a queue opens the first of these states that has tasks."""

RESERVED_SAMPLE = 500
"""At most this many active tasks per queue are read to tell running from reserved."""


def rate_per_min(series: Sequence[int], now_ms: int) -> float:
    """Events in the last 60 seconds from per-minute counters (oldest first, current minute
    last): the current minute so far plus the part of the previous minute still inside the
    window. Right from the first second of a minute, unlike "the last full minute"."""
    if not series:
        return 0.0
    current = series[-1]
    previous = series[-2] if len(series) > 1 else 0
    elapsed = (now_ms % 60_000) / 60_000
    return current + previous * (1.0 - elapsed)


def attention_state(counts: dict[str, int]) -> TaskState:
    """The state an operator opening a queue needs first: dead, then retry, active, pending."""
    for state in ATTENTION_ORDER:
        if counts.get(str(state), 0):
            return state
    return TaskState.PENDING


@dataclass(frozen=True, slots=True)
class QueueRow:
    """One row of the Queues view: the summary plus the figures the console shows."""

    summary: QueueSummary
    ok_per_min: float
    """Completed in the last 60 s (the one "Ok/m" figure, everywhere)."""
    err_per_min: float
    in_per_min: float
    running: int
    """Active tasks a handler is running (charged an attempt)."""
    reserved: int
    """Active tasks prefetched by a worker and not started yet (hash field ``reserved``)."""

    @property
    def name(self) -> str:
        return self.summary.name


def queue_rows(settings: Settings, names: Sequence[str]) -> Op[list[QueueRow]]:
    """Rows for the given queues only (the ones on screen): a Queues refresh costs the same
    with 10 queues or 10,000."""
    if not names:
        return []
    summaries = yield from inspect.queues(settings, list(names))
    now_ms = yield from ops.server_time_ms()
    ks = settings.keyspace
    active = yield Batch([cmd("ZRANGE", ks.queue(s.name).active, 0, RESERVED_SAMPLE - 1) for s in summaries])
    probes = [(s.name, i) for s, ids in zip(summaries, active, strict=True) for i in ids]
    flags = (yield Batch([cmd("HGET", ks.queue(q).task(i), "reserved") for q, i in probes])) if probes else []
    reserved: dict[str, int] = {}
    for (q, _), flag in zip(probes, flags, strict=True):
        if flag == "1":
            reserved[q] = reserved.get(q, 0) + 1
    rows = []
    for s in summaries:
        held = reserved.get(s.name, 0)
        rows.append(
            QueueRow(
                summary=s,
                ok_per_min=rate_per_min(s.throughput, now_ms),
                err_per_min=rate_per_min(s.failures, now_ms),
                in_per_min=rate_per_min(s.arrivals, now_ms),
                running=max(0, s.count(TaskState.ACTIVE) - held),
                reserved=held,
            )
        )
    return rows


def state_totals(
    settings: Settings, names: Sequence[str], states: Sequence[TaskState] = ()
) -> Op[dict[str, dict[str, int]]]:
    """``{queue: {state: count}}`` for the given queues and states (default: every state):
    one ZCARD each, in one round trip."""
    states = tuple(states) or tuple(TaskState)
    if not names:
        return {}
    pairs = [(q, s) for q in names for s in states]
    counts = yield Batch([cmd("ZCARD", settings.keyspace.queue(q).state_key(str(s))) for q, s in pairs])
    out: dict[str, dict[str, int]] = {q: {} for q in names}
    for (q, s), c in zip(pairs, counts, strict=True):
        out[q][str(s)] = int(c)
    return out


# ---------------------------------------------------------------------------------- find


class FoundKind(StrEnum):
    QUEUE = "queue"
    WORKER = "worker"
    TASK = "task"
    NOTHING = "nothing"


@dataclass(frozen=True, slots=True)
class Found:
    kind: FoundKind
    name: str = ""
    """The queue name, worker id or task id found."""
    queue: str = ""
    """The task's queue (tasks only)."""
    state: str = ""
    """The task's state, or for a queue the state that needs attention."""


def find(settings: Settings, text: str) -> Op[Found]:
    """What ``text`` names: a queue, a worker (id, or ``host:pid``) or a task id (in any queue;
    ``queue|id`` is taken at its word). Exact matches only; queues first."""
    text = text.strip()
    if not text:
        return Found(FoundKind.NOTHING)
    ks = settings.keyspace
    is_queue, worker_exists = yield Batch([cmd("SISMEMBER", ks.queues, text), cmd("EXISTS", ks.worker(text))])
    if is_queue:
        summaries = yield from inspect.queues(settings, [text])
        return Found(FoundKind.QUEUE, text, text, str(attention_state(summaries[0].counts)))
    if worker_exists:
        return Found(FoundKind.WORKER, text)
    where = yield from ops.locate(settings, [text])
    task_id = text.partition("|")[2] if "|" in text else text
    queue = where.get(task_id)
    if queue is not None:
        state = yield cmd("HGET", ks.queue(queue).task(task_id), "state")
        if state is not None:
            return Found(FoundKind.TASK, task_id, queue, str(state))
    workers = yield from inspect.workers(settings)
    for w in workers:
        if f"{w.host}:{w.pid}" == text or str(w.pid) == text:
            return Found(FoundKind.WORKER, w.id)
    return Found(FoundKind.NOTHING, text)


# ---------------------------------------------------------------------------------- all tasks

SCAN_CHUNK = 500
DEFAULT_SCAN_LIMIT = 20_000
NEWEST_FIRST = frozenset(s for s in TaskState if s.is_final)


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """What the All-tasks view shows: every field empty means every task."""

    states: tuple[TaskState, ...] = ()
    queues: tuple[str, ...] = ()
    task_type: str = ""
    """Substring of the task type (case-insensitive)."""
    fingerprint: str = ""
    """A failure group's fingerprint (its prefix is enough)."""
    text: str = ""
    """Substring of the id, payload or error (case-insensitive)."""

    @property
    def filtered(self) -> bool:
        return bool(self.task_type or self.fingerprint or self.text)

    def matches(self, fields: Sequence[str | None]) -> bool:
        """``fields``: id, type, payload, error, fp (as read by HMGET)."""
        task_id, task_type, payload, error, fp = (f or "" for f in fields)
        if self.task_type and self.task_type.casefold() not in task_type.casefold():
            return False
        if self.fingerprint and not fp.startswith(self.fingerprint):
            return False
        if self.text:
            needle = self.text.casefold()
            return any(needle in f.casefold() for f in (task_id, payload[:10_000], error))
        return True


@dataclass(frozen=True, slots=True)
class AllTasksPage:
    tasks: list[TaskInfo]
    offset: int
    counts: dict[str, int]
    """Tasks per state over the selected queues (before the type/fingerprint/text filter)."""
    queues: int
    """How many queues were looked at."""
    matched: int | None
    """Tasks matching the query: exact without a filter; ``None`` when a filter scan stopped
    at its limit (then ``examined`` says how far it looked)."""
    examined: int = 0
    skipped: list[str] = field(default_factory=list)


def all_tasks(
    settings: Settings,
    query: TaskQuery,
    offset: int = 0,
    limit: int = 50,
    scan_limit: int = DEFAULT_SCAN_LIMIT,
) -> Op[AllTasksPage]:
    """One page of tasks across queues and states, queue by queue, in each queue state by
    state (newest first for finished states). Without a filter the page is cut from exact
    counts (cheap at any depth); with one, at most ``scan_limit`` tasks are examined."""
    names = list(query.queues) or (yield from inspect.queue_names(settings))
    states = query.states or tuple(TaskState)
    totals = yield from state_totals(settings, names, states)
    counts = {str(s): sum(totals[q].get(str(s), 0) for q in names) for s in states}
    ks = settings.keyspace
    slots = [(q, s, totals[q][str(s)]) for q in names for s in states if totals[q][str(s)]]
    if not query.filtered:
        refs: list[tuple[str, str]] = []
        skip, want = offset, limit
        ranges = []
        for q, s, n in slots:
            if skip >= n:
                skip -= n
                continue
            take = min(want, n - skip)
            ranges.append((q, s, skip, take))
            want -= take
            skip = 0
            if want == 0:
                break
        if ranges:
            replies = yield Batch(
                [_range(settings, q, s, start, start + take - 1) for q, s, start, take in ranges]
            )
            refs = [(q, i) for (q, _, _, _), ids in zip(ranges, replies, strict=True) for i in ids]
        tasks = yield from _load(settings, refs)
        return AllTasksPage(tasks, offset, counts, len(names), sum(n for _, _, n in slots))
    hits: list[tuple[str, str]] = []
    matched = 0
    examined = 0
    complete = True
    for q, s, n in slots:
        start = 0
        while start < n:
            if examined >= scan_limit:
                complete = False
                break
            size = min(SCAN_CHUNK, scan_limit - examined)
            ids = yield _range(settings, q, s, start, start + size - 1)
            if not ids:
                break
            start += len(ids)
            examined += len(ids)
            qk = ks.queue(q)
            fields = yield Batch(
                [cmd("HMGET", qk.task(i), "id", "type", "payload", "error", "fp") for i in ids]
            )
            for i, f in zip(ids, fields, strict=True):
                if query.matches(f):
                    if offset <= matched < offset + limit:
                        hits.append((q, i))
                    matched += 1
        if not complete:
            break
    tasks = yield from _load(settings, hits)
    return AllTasksPage(tasks, offset, counts, len(names), matched if complete else None, examined)


def _range(settings: Settings, queue: str, state: TaskState, start: int, stop: int) -> Call:
    key = settings.keyspace.queue(queue).state_key(str(state))
    return cmd("ZRANGE", key, start, stop, *(("REV",) if state in NEWEST_FIRST else ()))


def _load(settings: Settings, refs: Sequence[tuple[str, str]]) -> Op[list[TaskInfo]]:
    if not refs:
        return []
    hashes = yield Batch([cmd("HGETALL", settings.keyspace.queue(q).task(i)) for q, i in refs])
    return [ops.task_info(q, h) for (q, _), h in zip(refs, hashes, strict=True) if h]


# ---------------------------------------------------------------------------------- workers


@dataclass(frozen=True, slots=True)
class WorkerDetail:
    id: str
    fields: dict[str, str]
    """The worker's registry hash as it wrote it (host, pid, version, slots, held, fenced…)."""
    tasks: list[TaskInfo]
    """The tasks it runs now (at most 50, as listed in its registry entry)."""
    heartbeat_age_s: float | None
    stop_requested: bool


def worker_detail(settings: Settings, worker_id: str) -> Op[WorkerDetail | None]:
    ks = settings.keyspace
    now_ms = yield from ops.server_time_ms()
    fields, stop = yield Batch(
        [cmd("HGETALL", ks.worker(worker_id)), cmd("EXISTS", ks.worker_stop(worker_id))]
    )
    if not fields:
        return None
    refs: list[tuple[str, str]] = []
    listed = ops._json(fields.get("tasks"), [])
    if isinstance(listed, list):
        for ref in listed[:50]:
            queue, _, task_id = str(ref).partition("|")
            if task_id:
                refs.append((queue, task_id))
    tasks = yield from _load(settings, refs)
    beat = ops._int(fields.get("heartbeat"))
    age = max(0.0, (now_ms - beat) / 1000) if beat else None
    return WorkerDetail(worker_id, {str(k): str(v) for k, v in fields.items()}, tasks, age, bool(stop))
