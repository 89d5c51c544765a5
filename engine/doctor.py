"""``rediq doctor [--repair]``: find state that no normal transition leaves behind, and fix it.

Checks, per queue: active tasks whose lease ran out and nobody recovered; task hashes in no
state structure; state entries whose hash is gone; unique locks held by finished or missing
tasks; failure-group members that are no longer failing; per-minute counters without a TTL;
a sequence counter behind the tasks it numbered. Globally: workers registered but long dead.

Unlike the rest of the engine the doctor SCANs (for hashes no index knows about), so it needs
a Redis user allowed to SCAN.

Safe on a live queue: findings come from a snapshot read over many round trips, which workers
overtake, so every repair is one script (``doctor_place.lua``, ``doctor_fix.lua``, or the
engine's own ``dequeue``/``dep_resolve``) that re-checks its condition when it runs and does
nothing when it no longer holds; a finding whose repair found nothing to do is dropped from the
report. Repairs converge in one pass (placement runs before lease recovery, so a task placed
in ``active`` without a live lease is recovered in the same run): a second ``--repair`` finds
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine import lua, ops
from engine.backend import Batch, Call, Op, SyncBackend, cmd, script_call
from engine.errors import FunctionsMissing
from engine.keys import PER_ID_KEYS, STATS
from engine.ops import Settings
from engine.task import TaskState
from engine.worker import protocol

SCAN_COUNT = 500
STATE_SETS = tuple(str(s) for s in TaskState)
FINISHED = ("completed", "dead", "cancelled", "quarantined", "expired")
DEAD_WORKER_S = 300
STATS_TTL_S = 90000


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
                # gone only if it has not beaten since: the long-dead cutoff, or (its hash
                # expired) the beat this snapshot saw
                cutoff = now - DEAD_WORKER_S * 1000 if age_s > DEAD_WORKER_S else int(float(beat))
                done = yield _fix(ks.workers, "worker", cutoff, worker_id)
                if not done:
                    continue
                yield _fix(ks.worker(worker_id), "worker_hash", cutoff)
            findings.append(
                Finding("dead_worker", "", worker_id, f"last heartbeat {age_s:.0f} s ago", repair)
            )
    return findings


def _fix(key: str, kind: str, *args: object) -> Call:
    return script_call("doctor_fix", [key], [kind, *args])


PLACE_ORDER = (
    "pending",
    "active",
    "scheduled",
    "waiting",
    "retry",
    "completed",
    "dead",
    "cancelled",
    "quarantined",
    "expired",
)
"""The state sets in the order ``doctor_place.lua`` takes them as KEYS."""


def _state_keys(settings: Settings, queue: str) -> list[str]:
    qk = settings.keyspace.queue(queue)
    return [qk.state_key(state) for state in PLACE_ORDER]


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
    misplaced: dict[str, Finding] = {}
    for task_id, state in members.items():
        stored_state = info[task_id][0]
        if stored_state is None and state not in FINISHED:
            misplaced[task_id] = Finding(
                "entry_without_hash", queue, task_id, f"in {state} but its hash is gone", repair
            )
        elif stored_state is not None and stored_state != state:
            misplaced[task_id] = Finding(
                "state_mismatch", queue, task_id, f"in {state} set, hash says {stored_state}", repair
            )
    # 2. task hashes that belong to no state
    task_keys = yield from _scan(_glob_escape(qk.base) + PER_ID_KEYS["task"] + "*", qk.pending)
    task_prefix = qk.task("")
    orphans = [k[len(task_prefix) :] for k in task_keys if k[len(task_prefix) :] not in members]
    if orphans:
        states = yield Batch([cmd("HGET", qk.task(i), "state") for i in orphans])
        for task_id, stored_state in zip(orphans, states, strict=True):
            if stored_state is not None:  # (None: expired between SCAN and now)
                misplaced[task_id] = Finding(
                    "hash_without_state", queue, task_id, f"hash says {stored_state}, in no set", repair
                )
    if misplaced and repair:
        changed = yield from _place(settings, queue, list(misplaced))
        misplaced = {i: f for i, f in misplaced.items() if i in changed}
    out += misplaced.values()
    # 3. unique locks held by finished or missing tasks
    for key in (yield from _scan(_glob_escape(qk.base) + PER_ID_KEYS["unique"] + "*", qk.pending)):
        holder = yield cmd("GET", key)
        holder_state = (yield cmd("HGET", qk.task(holder), "state")) if holder else None
        if holder_state is None or holder_state in FINISHED:
            if repair and not (yield _fix(key, "unique", qk.base)):
                continue
            out.append(
                Finding(
                    "stale_unique_lock",
                    queue,
                    key[len(qk.unique("")) :],
                    f"held by {holder} ({holder_state or 'gone'})",
                    repair,
                )
            )
    # 4. failure-group members that no longer fail
    groups = yield cmd("HKEYS", qk.failures)
    for fp in groups:
        group_ids = yield cmd("ZRANGE", qk.fingerprint(fp), 0, -1)
        if not group_ids:
            continue
        fps = yield Batch([cmd("HGET", qk.task(i), "fp") for i in group_ids])
        stale = [i for i, task_fp in zip(group_ids, fps, strict=True) if task_fp != fp]
        if stale and repair and not (yield _fix(qk.fingerprint(fp), "group", qk.base, fp, *stale)):
            continue
        out += [Finding("stale_group_member", queue, i, f"in failure group {fp}", repair) for i in stale]
    # 5. counters: per-minute stats without TTL, and a sequence behind its tasks
    for key in (yield from _scan(_glob_escape(qk.base) + STATS + "*", qk.pending)):
        if (yield cmd("TTL", key)) == -1:
            if repair and not (yield _fix(key, "counter", STATS_TTL_S)):
                continue
            out.append(Finding("counter_without_ttl", queue, key, "per-minute counter never expires", repair))
    seqs = {i: int(h[2]) for i, h in info.items() if h[2] and str(h[2]).isdigit()}
    current = int((yield cmd("GET", qk.seq)) or 0)
    if seqs and current < max(seqs.values()):
        top = max(seqs, key=lambda i: seqs[i])
        if not repair or (yield _fix(qk.seq, "seq", qk.base, top)):
            out.append(
                Finding("sequence_behind", queue, qk.seq, f"{current} < {seqs[top]} already used", repair)
            )
    # 6. waiting tasks whose dependency is gone (deleted or expired): nothing would ever tell them
    out += yield from _orphaned_dependents(settings, queue, repair)
    # 7. last, so that a task placed in active above without a live lease is recovered in this
    # same pass: active tasks whose lease ran out and that nobody recovered (no worker polls)
    expired = yield cmd("ZRANGEBYSCORE", qk.active, "-inf", now - 1000)
    if expired:
        if repair:  # the dequeue script's recovery path, leasing nothing; it re-checks each lease
            yield protocol.dequeue_call(settings, queue, 0, 1, "doctor", maintenance_limit=len(expired) + 10)
        for task_id in expired:
            out.append(
                Finding("expired_lease", queue, task_id, "active, lease expired, not recovered", repair)
            )
    return out


def _place(settings: Settings, queue: str, ids: list[str]) -> Op[set[str]]:
    """Put tasks where their hashes say they are (``doctor_place.lua``); returns the ids it
    changed."""
    qk = settings.keyspace.queue(queue)
    changed: set[str] = set()
    for start in range(0, len(ids), 500):
        reply = yield script_call(
            "doctor_place", _state_keys(settings, queue), [qk.base, *ids[start : start + 500]]
        )
        changed.update(reply[0::2])
    return changed


def _orphaned_dependents(settings: Settings, queue: str, repair: bool) -> Op[list[Finding]]:
    ks = settings.keyspace
    qk = ks.queue(queue)
    waiting = list((yield cmd("ZRANGE", qk.waiting, 0, -1)))
    if not waiting:
        return []
    dep_sets = yield Batch([cmd("SMEMBERS", qk.deps(i)) for i in waiting])
    pairs = [(task_id, ref) for task_id, refs in zip(waiting, dep_sets, strict=True) for ref in sorted(refs)]
    if not pairs:
        return []
    exists = yield Batch(
        [cmd("EXISTS", ks.queue(ref.partition("|")[0]).task(ref.partition("|")[2])) for _, ref in pairs]
    )
    gone = [(task_id, ref) for (task_id, ref), alive in zip(pairs, exists, strict=True) if not alive]
    if not gone:
        return []
    if not repair:  # one already held under 'hold' was told: not a finding any more
        reasons = yield Batch([cmd("HGET", qk.task(i), "reason") for i, _ in gone])
        outcomes = [
            "noop" if (why or "").startswith(f"dependency {ref} {ops.GONE};") else "found"
            for (_, ref), why in zip(gone, reasons, strict=True)
        ]
    else:  # dep_resolve re-checks that the task still waits for it, and applies its policy
        outcomes = yield Batch([ops.resolve_call(settings, queue, i, ref, ops.GONE) for i, ref in gone])
        cancelled = [i for (i, _), o in zip(gone, outcomes, strict=True) if o == "cancelled"]
        if cancelled:
            yield from ops.flush_outbox(settings, queue, cancelled)
    return [
        Finding("orphaned_dependent", queue, i, f"waits for {ref}, which is gone", repair)
        for (i, ref), outcome in zip(gone, outcomes, strict=True)
        if outcome != "noop"
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
