"""The worker protocol: the calls a worker sends to the Lua scripts and the parsing of their
replies. Each builder returns a ``Call`` (data, no I/O); ``engine.worker.core`` decides when to
send which, ``engine.worker.driver`` sends them.

Every call about a leased task names its delivery (``Job.token``); a script refuses one whose
delivery is over (lease lost, cancelled, deleted, requeued) and says so in its reply.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from engine.backend import Batch, Call, Op, cmd, script_call
from engine.fingerprint import normalise_error
from engine.ops import Settings, _int, channel, server_time_ms

JOB_WIDTH = 11  # id + 10 fields per leased task in the dequeue reply
MAINTENANCE_LIMIT = 100
"""Entries of each set a dequeue's maintenance scans (0: none; see ``dequeue.lua``)."""


@dataclass(slots=True)
class Job:
    """A leased task as the worker sees it (a plain dataclass: this is the hot path)."""

    id: str
    queue: str
    type: str
    payload_raw: str
    priority: int
    max_retry: int
    timeout_s: float
    attempt: int
    """Attempt number; for a reserved task, the attempts charged so far (it is not started)."""
    metadata_raw: str
    schema_version: int
    reserved: bool = False
    """Prefetched or handed off: leased but not started; ``start_call`` charges the attempt,
    and the handler runs only once its reply says so."""
    token: str = ""
    """This delivery's fencing token (``<worker id>#<delivery number>``): every call about the
    task names it, and the scripts refuse it once the task went on to another delivery."""


def dequeue_call(
    settings: Settings,
    queue: str,
    max_tasks: int,
    lease_ms: int,
    worker_id: str,
    maintenance_limit: int = MAINTENANCE_LIMIT,
    start_now: int | None = None,
    handoff_ms: int = 0,
    request_id: str = "",
    held: int = 0,
    received: Sequence[str] = (),
    quiet: bool = False,
) -> Call:
    """Lease up to ``max_tasks``; the first ``start_now`` (default: all) are charged an attempt
    and start at once, the others are reserved until ``start_call``. With ``handoff_ms``, a
    worker left with free slots registers for hand-offs (``parse_handoff``) for that long.
    With ``request_id`` (unique per worker and queue until its reply arrives), the call leaves a
    receipt (``QueueKeys.receipt``): sent again after its reply was lost, it returns the tasks
    the first copy leased instead of leasing more. ``held``: slots the worker's inbox loop holds
    for a hand-off (``take_calls``), offered to enqueues beside the free ones, less the
    hand-offs a take started in them that the worker has not received: ``received`` (id,
    token, ...) names those it has (a take's ``confirmed``).
    ``maintenance_limit`` 0 skips the promotion and recovery scans (``maintenance_left``).
    ``quiet``: an idle worker's poll, which leaves its hand-off registration as it is while that
    still has more than half its time to run (an idle fleet's polls write nothing)."""
    qk = settings.keyspace.queue(queue)
    return script_call(
        "dequeue",
        [
            qk.pending,
            qk.active,
            qk.scheduled,
            qk.retry,
            qk.paused,
            qk.dead,
            qk.seq,
            qk.dep_outbox,
            qk.failures,
            qk.idle,
            qk.receipt(worker_id),
            qk.cancelled,
            qk.rate_limit,
            qk.cgroup_limits,
            qk.type_limits,
            qk.batches,
        ],
        [
            qk.base,
            channel(settings, qk),
            max_tasks,
            lease_ms,
            worker_id,
            maintenance_limit,
            int(settings.dead_retention_s * 1000),
            max_tasks if start_now is None else start_now,
            handoff_ms,
            request_id,
            int(settings.retention_s * 1000),
            held,
            1 if quiet else 0,
            *received,
        ],
    )


def start_call(settings: Settings, queue: str, jobs: Sequence[Job]) -> Call:
    """Charge reserved tasks their attempt; the reply (``parse_started``) gives the attempt each
    started as, 0 for one refused (its delivery is over). Idempotent per delivery."""
    qk = settings.keyspace.queue(queue)
    flat: list[Any] = [x for j in jobs for x in (j.id, j.token)]
    return script_call(
        "start",
        [qk.active, qk.dep_outbox],
        [qk.base, channel(settings, qk), int(settings.retention_s * 1000), *flat],
    )


def parse_started(reply: Sequence[Any]) -> dict[str, int]:
    """Task id -> the attempt it started as (0: refused)."""
    return {reply[i]: int(reply[i + 1]) for i in range(0, len(reply), 2)}


def _int_fast(value: Any) -> int | None:
    """``_int`` with a fast path for the plain integer strings the scripts return."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return _int(value)


def parse_dequeue(queue: str, reply: Sequence[Any]) -> list[Job]:
    jobs = []
    for i in range(1, len(reply), JOB_WIDTH):
        (
            task_id,
            ttype,
            payload,
            priority,
            max_retry,
            timeout_ms,
            attempt,
            meta,
            version,
            reserved,
            token,
        ) = reply[i : i + JOB_WIDTH]
        jobs.append(
            Job(
                task_id,
                queue,
                ttype or "",
                payload or "",
                _int_fast(priority) or 0,
                _int_fast(max_retry) or 0,
                (_int_fast(timeout_ms) or 1_800_000) / 1000,
                int(attempt),
                meta or "",
                _int_fast(version) or 1,
                reserved == "1",
                token,
            )
        )
    return jobs


class HoldReason(StrEnum):
    """Why a dequeue leased nothing though tasks are pending (the third element of the reply's
    head; absent for the queue's own limit)."""

    QUEUE_LIMIT = "queue"
    """the queue's rate limit has no token: its arrivals wait for it too"""
    TYPE_LIMITS = "1"
    """the pending tasks' types' own limits have none: a task of another type may go at once"""
    BATCH_FORMING = "batch"
    """no batch is full or due yet: one may fill when tasks arrive"""


class HeldBack(NamedTuple):
    """A dequeue that leased nothing because a limit or a forming batch held its tasks back."""

    wait_ms: int
    """ms until the next token, or until the oldest batch is due"""
    reason: HoldReason


MAINTENANCE_LEFT = "more"
"""A dequeue reply's head when a maintenance scan filled its limit (more may be due)."""


def maintenance_left(reply: Sequence[Any]) -> bool:
    """Whether the dequeue's maintenance may have left due work behind: a scan filled its
    limit, or the reply is a held-back one (whose head carries no such word)."""
    head = reply[0] if reply else None
    if isinstance(head, list | tuple):
        return True
    return head is not None and _text(head) == MAINTENANCE_LEFT


def parse_throttle(reply: Sequence[Any]) -> HeldBack | None:
    """Whether a rate limit or a forming batch held back the queue's pending tasks: the reply's
    head is then ``[now, ms]`` (the queue's limit), ``[now, ms, 1]`` (its task types' limits) or
    ``[now, ms, 'batch']`` instead of ``now``."""
    head = reply[0] if reply else None
    if isinstance(head, list | tuple) and len(head) in (2, 3):
        reason = HoldReason.QUEUE_LIMIT if len(head) == 2 else HoldReason(_text(head[2]))
        return HeldBack(max(1, int(head[1])), reason)
    return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_handoff(queue: str, record: str) -> Job:
    """A task enqueue handed to this worker's inbox: leased to it, reserved (not charged) until
    ``start_call``. The record holds the fields of one task of a dequeue reply, in its order."""
    return parse_dequeue(queue, [None, *json.loads(record)])[0]


def take_calls(
    settings: Settings,
    queue: str,
    worker_id: str,
    lease_ms: int,
    confirmed: Sequence[str],
    wait_s: float,
    room: int,
) -> list[Call]:
    """Wait up to ``wait_s`` for a hand-off and start it in the same round trip: a ``BLMOVE``
    from the inbox to the worker's taken list, then ``take.lua``, which Valkey runs once the
    pop is served and which moves more while ``room`` (the slots held for it) lasts (``wait_s``
    0: the script alone). ``confirmed``: id, token, id, token... of the records of the last
    take reply received. The script's reply: ``parse_taken``."""
    qk = settings.keyspace.queue(queue)
    inbox, taken = qk.inbox(worker_id), qk.taken(worker_id)
    take = script_call(
        "take",
        [qk.active, qk.dep_outbox, taken, inbox],
        [qk.base, channel(settings, qk), int(settings.retention_s * 1000), lease_ms, room, *confirmed],
    )
    if wait_s <= 0:
        return [take]
    return [cmd("BLMOVE", inbox, taken, "LEFT", "RIGHT", wait_s), take]


def parse_taken(queue: str, reply: Sequence[Any]) -> tuple[int, list[tuple[Job, int]]]:
    """What was left in the inbox, and each hand-off ``take.lua`` returned with the attempt it
    started as (0: refused)."""
    if not reply:
        return 0, []
    taken = [(parse_handoff(queue, reply[i]), int(reply[i + 1])) for i in range(1, len(reply), 2)]
    return int(reply[0]), taken


def ack_call(settings: Settings, queue: str, done: Sequence[tuple[str, str, str]]) -> Call:
    """``done`` holds (task id, delivery token, result JSON or ''). The reply: (refused ids,
    ids with dependents to notify)."""
    qk = settings.keyspace.queue(queue)
    flat: list[Any] = [x for item in done for x in item]
    return script_call(
        "ack",
        [qk.active, qk.completed, qk.dep_outbox],
        [qk.base, channel(settings, qk), int(settings.retention_s * 1000), *flat],
    )


def fail_call(
    settings: Settings,
    queue: str,
    task_id: str,
    token: str,
    error: str,
    traceback: str,
    retry_delay_s: float,
    mode: str = "retry",
) -> Call:
    """``mode``: 'retry' (retry unless attempts are spent), 'permanent' (dead now), 'cancel'.
    Failures join the error-fingerprint group of (task type, normalised error). ``token``:
    the delivery's (``Job.token``); the reply is 'stale' when it was refused."""
    qk = settings.keyspace.queue(queue)
    sample = normalise_error(error)
    return script_call(
        "fail",
        [qk.active, qk.retry, qk.dead, qk.dep_outbox, qk.cancelled, qk.failures],
        [
            qk.base,
            channel(settings, qk),
            task_id,
            token,
            error,
            traceback,
            int(retry_delay_s * 1000),
            mode,
            int(settings.dead_retention_s * 1000),
            int(settings.retention_s * 1000),
            sample,
        ],
    )


WORKER_FORGOTTEN_MS = 3_600_000
"""A registered worker that has not beaten for this long is dropped from the registry."""


def beat_registry(
    settings: Settings,
    worker_id: str,
    fields: dict[str, Any],
    ttl_ms: int,
    written: Mapping[str, str] | None = None,
) -> Op[int]:
    """Refresh a worker's registry entry, stamped with the Redis clock (as leases are): a
    worker whose own clock runs an hour ahead must not make every other worker look an hour
    old and drop it. ``written``: the fields as the worker's last beat that got a reply wrote
    them; only those that changed are written again (``beat.lua``: all of them when the entry is
    gone). Returns the server time it stamped."""
    ks = settings.keyspace
    now_ms = yield from server_time_ms()
    values = {k: str(v) for k, v in fields.items()}
    previous = written or {}
    changed = [x for k, v in values.items() if previous.get(k) != v for x in (k, v)]
    others = [x for k, v in values.items() if previous.get(k) == v for x in (k, v)]
    yield Batch(
        [
            script_call(
                "beat", [ks.worker(worker_id)], [now_ms, ttl_ms, len(changed) // 2, *changed, *others]
            ),
            cmd("ZADD", ks.workers, now_ms, worker_id),
            # forget workers that have not beaten for an hour (their hashes expired long ago)
            cmd("ZREMRANGEBYSCORE", ks.workers, "-inf", now_ms - WORKER_FORGOTTEN_MS),
        ]
    )
    return now_ms


def extend_call(settings: Settings, queue: str, held: Sequence[tuple[str, str]], lease_ms: int) -> Call:
    """``held``: (task id, delivery token). The reply: (refused ids, ids to cancel)."""
    qk = settings.keyspace.queue(queue)
    return script_call("extend", [qk.active], [qk.base, lease_ms, *[x for item in held for x in item]])


def release_call(settings: Settings, queue: str, held: Sequence[tuple[str, str]], note: str) -> Call:
    """``held``: (task id, delivery token). The reply: the refused ids."""
    qk = settings.keyspace.queue(queue)
    return script_call(
        "release",
        [qk.active, qk.pending, qk.seq, qk.cancelled, qk.dep_outbox],
        [
            qk.base,
            channel(settings, qk),
            note,
            int(settings.retention_s * 1000),
            *[x for item in held for x in item],
        ],
    )


def throttle_call(
    settings: Settings, queue: str, task_id: str, token: str, pause_s: float, note: str
) -> Call:
    """A handler's ``RateLimited``: the task back to pending uncharged and its type's bucket
    (when the type has a rate limit of its own) or else the queue's paused for ``pause_s`` (and
    the queue's hand-off registrations withdrawn, so that no enqueue hands a task out before the
    pause ends). The reply reads like ``fail_call``'s: 'throttled' or 'stale'."""
    qk = settings.keyspace.queue(queue)
    return script_call(
        "throttle",
        [qk.active, qk.pending, qk.seq, qk.rate_limit, qk.type_limits, qk.idle],
        [qk.base, channel(settings, qk), task_id, token, max(1, int(pause_s * 1000)), note],
    )


def progress_call(
    settings: Settings, queue: str, task_id: str, token: str, percent: float, message: str
) -> Call:
    """The reply: the stored percent, or None when refused (``token`` is not the delivery's)."""
    qk = settings.keyspace.queue(queue)
    return script_call(
        "progress",
        [qk.task(task_id)],
        [qk.base, channel(settings, qk), task_id, token, max(0.0, min(100.0, percent)), message],
    )


def defer_call(
    settings: Settings,
    queue: str,
    task_id: str,
    token: str,
    delay_s: float,
    limit_s: float,
    note: str,
    error: str,
) -> Call:
    """A task of a type this worker has no handler for: back uncharged, due after ``delay_s``
    (for a worker that knows the type), or dead with ``error`` once it has waited so for
    ``limit_s``. Its reply reads like ``fail_call``'s: 'deferred', 'dead' or 'stale'; like
    ``fail_call`` the task id is ``args[2]``."""
    qk = settings.keyspace.queue(queue)
    return script_call(
        "defer",
        [qk.active, qk.scheduled, qk.dead, qk.dep_outbox],
        [
            qk.base,
            channel(settings, qk),
            task_id,
            token,
            int(delay_s * 1000),
            int(limit_s * 1000),
            note,
            error,
            int(settings.dead_retention_s * 1000),
        ],
    )
