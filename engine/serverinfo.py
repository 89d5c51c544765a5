"""What the console's Redis page and charts show: the server (version, role, memory against
maxmemory, eviction policy, persistence, clients, replication lag, slow log), rediq's keys and
memory per queue (sampled), and per-minute throughput and latency of a queue over the last
hour. Read-only and bounded: a few commands plus a fixed sample."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine import inspect, ops
from engine.backend import Batch, Op, cmd
from engine.ops import Settings
from engine.task import TaskState

SLOWLOG_ENTRIES = 10
QUEUES_SAMPLED = 20
"""Per-queue memory is estimated for at most this many queues (the biggest by task count)."""
TASKS_SAMPLED = 5
"""Task hashes measured per queue; the rest are estimated from their average."""
HISTORY_MINUTES = 60
LATENCY_SAMPLE = 2_000
"""At most this many completed tasks of the last hour are read for the latency chart."""


@dataclass(frozen=True, slots=True)
class SlowEntry:
    id: int
    at_s: int
    duration_us: int
    command: str


@dataclass(frozen=True, slots=True)
class QueueMemory:
    queue: str
    tasks: int
    keys: int
    """Keys of the queue (state sets plus one hash per task, estimated)."""
    bytes: int
    """Estimated from the sets' sizes plus sampled task hashes."""


@dataclass(frozen=True, slots=True)
class ServerPage:
    version: str
    server: str
    mode: str
    role: str
    used_memory: int
    maxmemory: int
    policy: str
    rdb: str
    """Last RDB save status, or "off"."""
    aof: str
    clients: int
    blocked_clients: int
    replication: str
    """Replication lag: replicas with their lag (primary), or the link to the primary."""
    uptime_s: int
    db_keys: int
    queue_count: int = 0

    @property
    def eviction_safe(self) -> bool:
        """Evicting keys would silently drop tasks: only ``noeviction`` is safe."""
        return self.policy == "noeviction"


def _section(reply: Any) -> dict[str, Any]:
    return reply if isinstance(reply, dict) else {}


def _replication(info: dict[str, Any]) -> str:
    role = str(info.get("role", "?"))
    if role in ("slave", "replica"):
        link = info.get("master_link_status", "?")
        age = info.get("master_last_io_seconds_ago", "?")
        primary = f"{info.get('master_host', '?')}:{info.get('master_port', '?')}"
        return f"replica of {primary}, link {link}, last io {age}s ago"
    replicas = []
    for key, value in info.items():
        if key.startswith("slave") and isinstance(value, dict):
            replicas.append(f"{value.get('ip', '?')}:{value.get('port', '?')} lag {value.get('lag', '?')}s")
    return ", ".join(replicas) if replicas else "no replicas"


def server_page(settings: Settings) -> Op[ServerPage]:
    """The server's INFO (one round trip); the slow log and per-queue memory are read by
    ``slowlog`` and ``queue_memory`` (managed services often deny those: the page shows the
    rest)."""
    names = ("server", "memory", "persistence", "clients", "replication", "keyspace")
    replies = yield Batch([cmd("INFO", n) for n in names])
    sections = {n: _section(r) for n, r in zip(names, replies, strict=True)}
    server, memory = sections["server"], sections["memory"]
    persistence, clients = sections["persistence"], sections["clients"]
    db_keys = sum(int(v.get("keys", 0)) for v in sections["keyspace"].values() if isinstance(v, dict))
    saved = persistence.get("rdb_last_save_time")
    rdb = str(persistence.get("rdb_last_bgsave_status", "?")) if saved else "off"
    queue_count = yield cmd("SCARD", settings.keyspace.queues)
    return ServerPage(
        version=str(server.get("valkey_version") or server.get("redis_version") or "?"),
        server=str(server.get("server_name") or "redis"),
        mode=str(server.get("server_mode") or server.get("redis_mode") or "?"),
        role=str(sections["replication"].get("role", "?")),
        used_memory=int(memory.get("used_memory", 0)),
        maxmemory=int(memory.get("maxmemory", 0)),
        policy=str(memory.get("maxmemory_policy", "?")),
        rdb=rdb,
        aof="on" if persistence.get("aof_enabled") else "off",
        clients=int(clients.get("connected_clients", 0)),
        blocked_clients=int(clients.get("blocked_clients", 0)),
        replication=_replication(sections["replication"]),
        uptime_s=int(server.get("uptime_in_seconds", 0)),
        db_keys=db_keys,
        queue_count=int(queue_count),
    )


def slowlog(settings: Settings, count: int = SLOWLOG_ENTRIES) -> Op[list[SlowEntry]]:
    out: list[SlowEntry] = []
    for e in (yield cmd("SLOWLOG", "GET", count)) or []:
        if isinstance(e, dict):
            command = e.get("command", "")
            text = command if isinstance(command, str) else " ".join(str(c) for c in command)
            out.append(
                SlowEntry(int(e.get("id", 0)), int(e.get("start_time", 0)), int(e.get("duration", 0)), text)
            )
    return out


def queue_memory(settings: Settings, limit: int = QUEUES_SAMPLED) -> Op[list[QueueMemory]]:
    """Keys and memory of the biggest queues, estimated from MEMORY USAGE of their state sets
    and of a few task hashes (never one command per task)."""
    names = yield from inspect.queue_names(settings)
    if not names:
        return []
    states = tuple(TaskState)
    ks = settings.keyspace
    counts = yield Batch([cmd("ZCARD", ks.queue(q).state_key(str(s))) for q in names for s in states])
    per = {q: [int(c) for c in counts[i * len(states) : (i + 1) * len(states)]] for i, q in enumerate(names)}
    biggest = sorted(names, key=lambda q: -sum(per[q]))[:limit]
    out: list[QueueMemory] = []
    for q in biggest:
        qk = ks.queue(q)
        set_bytes = yield Batch([cmd("MEMORY", "USAGE", qk.state_key(str(s))) for s in states])
        sample_ids: list[str] = []
        for s, n in zip(states, per[q], strict=True):
            if n and len(sample_ids) < TASKS_SAMPLED:
                sample_ids += yield cmd("ZRANGE", qk.state_key(str(s)), 0, TASKS_SAMPLED - 1)
        sample_ids = sample_ids[:TASKS_SAMPLED]
        hashes = (yield Batch([cmd("MEMORY", "USAGE", qk.task(i)) for i in sample_ids])) if sample_ids else []
        sizes = [int(h) for h in hashes if h]
        tasks = sum(per[q])
        avg = sum(sizes) / len(sizes) if sizes else 0.0
        total = sum(int(b or 0) for b in set_bytes) + int(avg * tasks)
        out.append(QueueMemory(q, tasks, tasks + sum(1 for n in per[q] if n), total))
    return out


@dataclass(frozen=True, slots=True)
class History:
    """Per-minute figures of one queue over the last hour, oldest first, current minute last."""

    queue: str
    completed: tuple[int, ...]
    failed: tuple[int, ...]
    enqueued: tuple[int, ...]
    run_p50_s: tuple[float | None, ...]
    """Median run time of the tasks completed in each minute (sampled)."""
    wait_p50_s: tuple[float | None, ...]
    """Median time from enqueue to start of those tasks."""
    sampled: int


def _median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def history(settings: Settings, queue: str, minutes: int = HISTORY_MINUTES) -> Op[History]:
    now_ms = yield from ops.server_time_ms()
    minute = now_ms // 60_000
    qk = settings.keyspace.queue(queue)
    span = range(minute - minutes + 1, minute + 1)
    p, f, e, ids = yield Batch(
        [
            cmd("MGET", *[qk.stat("p", m) for m in span]),
            cmd("MGET", *[qk.stat("f", m) for m in span]),
            cmd("MGET", *[qk.stat("e", m) for m in span]),
            cmd(
                "ZRANGE",
                qk.completed,
                "+inf",
                (minute - minutes + 1) * 60_000,
                "BYSCORE",
                "REV",
                "LIMIT",
                0,
                LATENCY_SAMPLE,
            ),
        ]
    )
    fields = (
        (yield Batch([cmd("HMGET", qk.task(i), "enq", "started", "finished") for i in ids])) if ids else []
    )
    runs: dict[int, list[float]] = {}
    waits: dict[int, list[float]] = {}
    for enq, started, finished in fields:
        s, fin, q = ops._int(started), ops._int(finished), ops._int(enq)
        if s is None or fin is None:
            continue
        m = fin // 60_000
        runs.setdefault(m, []).append(max(0, fin - s) / 1000)
        if q is not None:
            waits.setdefault(m, []).append(max(0, s - q) / 1000)
    return History(
        queue=queue,
        completed=tuple(int(x or 0) for x in p),
        failed=tuple(int(x or 0) for x in f),
        enqueued=tuple(int(x or 0) for x in e),
        run_p50_s=tuple(_median(runs.get(m, [])) for m in span),
        wait_p50_s=tuple(_median(waits.get(m, [])) for m in span),
        sampled=len(fields),
    )
