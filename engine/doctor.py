"""``rediq doctor [--repair]``: find state that no normal transition leaves behind, and fix it.

Checks, per queue: active tasks whose lease ran out and nobody recovered; task hashes in no
state structure; state entries whose hash is gone; unique locks held by finished or missing
tasks; failure-group members that are no longer failing; per-minute counters without a TTL;
a sequence counter behind the tasks it numbered. Globally: workers registered but long dead.

Unlike the rest of the engine the doctor SCANs (for hashes no index knows about), so it needs
a Redis user allowed to SCAN. Every repair is idempotent: a second ``--repair`` finds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine import lua, ops
from engine.backend import Batch, Call, Op, SyncBackend, cmd
from engine.errors import FunctionsMissing
from engine.ops import Settings
from engine.task import TaskState

SCAN_COUNT = 500
STATE_SETS = tuple(str(s) for s in TaskState)
FINISHED = ("completed", "dead", "cancelled", "quarantined")
DEAD_WORKER_S = 300


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    queue: str
    item: str
    detail: str
    repaired: bool = False


def _scan(pattern: str, route_key: str) -> Op[list[str]]:
    """SCAN for ``pattern``; on a Cluster it runs on the node holding ``route_key``'s slot (all
    keys of a queue share one slot), not on every primary."""
    cursor = "0"
    found: list[str] = []
    while True:
        cursor, keys = yield Call(
            command=("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT), keys=(route_key,)
        )
        found.extend(keys)
        if str(cursor) == "0":
            return found


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]{}\\" else c for c in text)


def examine(settings: Settings, repair: bool = False) -> Op[list[Finding]]:
    ks = settings.keyspace
    findings: list[Finding] = []
    now = yield from ops.server_time_ms()
    queues = sorted((yield cmd("SMEMBERS", ks.queues)))
    for queue in queues:
        findings += yield from _examine_queue(settings, queue, now, repair)
    # workers registered but long dead
    workers = yield cmd("ZRANGE", ks.workers, 0, -1, "WITHSCORES")
    pairs = (
        workers
        if workers and isinstance(workers[0], list | tuple)
        else list(zip(workers[::2], workers[1::2], strict=False))
    )
    for worker_id, beat in pairs:
        age_s = (now - float(beat)) / 1000
        alive = yield cmd("EXISTS", ks.worker(worker_id))
        if age_s > DEAD_WORKER_S or not alive:
            if repair:
                yield Batch([cmd("ZREM", ks.workers, worker_id), cmd("DEL", ks.worker(worker_id))])
            findings.append(
                Finding("dead_worker", "", worker_id, f"last heartbeat {age_s:.0f} s ago", repair)
            )
    return findings


def _examine_queue(settings: Settings, queue: str, now: int, repair: bool) -> Op[list[Finding]]:
    qk = settings.keyspace.queue(queue)
    out: list[Finding] = []
    # 1. state entries, and the hashes behind them
    members: dict[str, str] = {}
    for state in STATE_SETS:
        ids = yield cmd("ZRANGE", qk.state_key(state), 0, -1)
        for task_id in ids:
            members.setdefault(task_id, state)
    ids = list(members)
    hashes = (yield Batch([cmd("HMGET", qk.task(i), "state", "priority", "seq") for i in ids])) if ids else []
    info = dict(zip(ids, hashes, strict=True))
    for task_id, state in members.items():
        stored_state, priority, _ = info[task_id]
        if stored_state is None and state not in FINISHED:
            if repair:
                yield cmd("ZREM", qk.state_key(state), task_id)
            out.append(
                Finding("entry_without_hash", queue, task_id, f"in {state} but its hash is gone", repair)
            )
        elif stored_state is not None and stored_state != state:
            if repair:
                yield Batch(
                    [
                        cmd("ZREM", qk.state_key(state), task_id),
                        *_place(settings, queue, task_id, stored_state),
                    ]
                )
            out.append(
                Finding("state_mismatch", queue, task_id, f"in {state} set, hash says {stored_state}", repair)
            )
    # 2. active tasks whose lease ran out and that nobody recovered (no worker polls the queue)
    expired = yield cmd("ZRANGEBYSCORE", qk.active, "-inf", now - 1000)
    if expired:
        if repair:  # the dequeue script's recovery path, leasing nothing
            yield ops.dequeue_call(settings, queue, 0, 1, "doctor", maintenance_limit=len(expired) + 10)
        for task_id in expired:
            out.append(
                Finding("expired_lease", queue, task_id, "active, lease expired, not recovered", repair)
            )
    # 3. task hashes that belong to no state
    task_keys = yield from _scan(_glob_escape(qk.base) + "t:*", qk.pending)
    orphans = [k[len(qk.base) + 2 :] for k in task_keys if k[len(qk.base) + 2 :] not in members]
    if orphans:
        states = yield Batch([cmd("HMGET", qk.task(i), "state", "priority") for i in orphans])
        for task_id, (stored_state, priority) in zip(orphans, states, strict=True):
            if stored_state is None:
                continue  # expired between SCAN and now
            if repair:
                yield Batch(_place(settings, queue, task_id, stored_state, ops._int(priority) or 50))
            out.append(
                Finding("hash_without_state", queue, task_id, f"hash says {stored_state}, in no set", repair)
            )
    # 4. unique locks held by finished or missing tasks
    for key in (yield from _scan(_glob_escape(qk.base) + "unique:*", qk.pending)):
        holder = yield cmd("GET", key)
        holder_state = (yield cmd("HGET", qk.task(holder), "state")) if holder else None
        if holder_state is None or holder_state in FINISHED:
            if repair:
                yield cmd("DEL", key)
            out.append(
                Finding(
                    "stale_unique_lock",
                    queue,
                    key[len(qk.base) + 7 :],
                    f"held by {holder} ({holder_state or 'gone'})",
                    repair,
                )
            )
    # 5. failure-group members that no longer fail
    groups = yield cmd("HKEYS", qk.failures)
    for fp in groups:
        group_ids = yield cmd("ZRANGE", qk.fingerprint(fp), 0, -1)
        if not group_ids:
            continue
        fps = yield Batch([cmd("HMGET", qk.task(i), "fp", "state") for i in group_ids])
        for task_id, (task_fp, _) in zip(group_ids, fps, strict=True):
            if task_fp != fp:
                if repair:
                    yield cmd("ZREM", qk.fingerprint(fp), task_id)
                out.append(Finding("stale_group_member", queue, task_id, f"in failure group {fp}", repair))
    # 6. counters: per-minute stats without TTL, and a sequence behind its tasks
    for key in (yield from _scan(_glob_escape(qk.base) + "stats:*", qk.pending)):
        if (yield cmd("TTL", key)) == -1:
            if repair:
                yield cmd("EXPIRE", key, 90000)
            out.append(Finding("counter_without_ttl", queue, key, "per-minute counter never expires", repair))
    seqs = [int(h[2]) for h in hashes if h[2] and str(h[2]).isdigit()]
    current = int((yield cmd("GET", qk.seq)) or 0)
    if seqs and current < max(seqs):
        if repair:
            yield cmd("SET", qk.seq, max(seqs))
        out.append(Finding("sequence_behind", queue, qk.seq, f"{current} < {max(seqs)} already used", repair))
    return out


def _place(settings: Settings, queue: str, task_id: str, state: str, priority: int = 50) -> list[Call]:
    """Commands that put a task back into the structure its hash names."""
    qk = settings.keyspace.queue(queue)
    if state == "pending":  # ahead of newer tasks of its priority: it has waited longest
        return [cmd("ZADD", qk.pending, priority * 2**40, task_id)]
    if state == "active":  # lease it to nobody, expiring at once: recovery hands it out again
        return [cmd("ZADD", qk.active, 0, task_id), cmd("HSET", qk.task(task_id), "lease", 0)]
    if state in STATE_SETS:
        return [cmd("ZADD", qk.state_key(state), 0, task_id)]
    return [
        cmd("HSET", qk.task(task_id), "state", "dead", "error", f"doctor: unknown state {state!r}"),
        cmd("ZADD", qk.dead, 0, task_id),
    ]


def examine_library(backend: SyncBackend, repair: bool = False) -> list[Finding]:
    """This rediq version's function library on every primary (functions mode only): a primary
    that lacks it (added later, or after ``FUNCTION FLUSH``) fails every call routed to it
    under a user that may not load it. ``repair`` loads it where this user may."""
    if backend.script_mode is not lua.ScriptMode.FUNCTIONS:
        return []
    missing = [s.node for s in backend.library_status() if not s.present]
    repaired = False
    detail = f"{lua.library().name} not loaded: run `rediq server install-functions` as an admin user"
    if missing and repair:
        try:
            backend.install_functions()
            repaired = True
        except FunctionsMissing:
            detail += " (this user may not FUNCTION LOAD)"
    return [Finding("function_library_missing", "", node, detail, repaired) for node in missing]
