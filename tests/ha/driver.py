"""A minimal consumer for HA tests: leases, acknowledges and fails tasks through the engine's
own Lua scripts (the same calls the worker makes), so cluster/sentinel behaviour is exercised
on real servers without depending on the worker's scheduling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine import ops
from engine.backend import Op, script_call
from engine.ops import Settings, channel

LEASE_MS = 30_000


@dataclass(frozen=True)
class Leased:
    queue: str
    id: str
    type: str
    payload: str
    attempt: int


def dequeue(settings: Settings, queue: str, n: int = 10, worker: str = "ha-test") -> Op[list[Leased]]:
    qk = settings.keyspace.queue(queue)
    reply: list[Any] = yield script_call(
        "dequeue",
        [qk.pending, qk.active, qk.scheduled, qk.retry, qk.paused, qk.dead, qk.seq, qk.dep_outbox],
        [qk.base, channel(settings, qk), n, LEASE_MS, worker, 100, int(settings.dead_retention_s * 1000)],
    )
    out = []
    for i in range(1, len(reply), 9):
        task_id, ttype, payload, _prio, _max_retry, _timeout, attempts = reply[i : i + 7]
        out.append(Leased(queue, task_id, ttype, payload, int(attempts)))
    return out


def ack(settings: Settings, leased: list[Leased]) -> Op[list[str]]:
    """Complete leased tasks of one queue and tell their dependents; returns stale ids."""
    if not leased:
        return []
    queue = leased[0].queue
    qk = settings.keyspace.queue(queue)
    args: list[Any] = [qk.base, channel(settings, qk), int(settings.retention_s * 1000)]
    for t in leased:
        args += [t.id, t.attempt, '{"ok": true}']
    stale, notified = yield script_call("ack", [qk.active, qk.completed, qk.dep_outbox], args)
    if notified:
        yield from ops.flush_outbox(settings, queue, list(notified))
    return list(stale)


def fail(settings: Settings, t: Leased, error: str, mode: str = "retry", delay_ms: int = 0) -> Op[str]:
    qk = settings.keyspace.queue(t.queue)
    outcome: str = yield script_call(
        "fail",
        [qk.active, qk.retry, qk.dead, qk.dep_outbox, qk.cancelled],
        [
            qk.base,
            channel(settings, qk),
            t.id,
            t.attempt,
            error,
            "Traceback: test",
            delay_ms,
            mode,
            int(settings.dead_retention_s * 1000),
            int(settings.retention_s * 1000),
        ],
    )
    if outcome in ("dead", "cancelled"):
        yield from ops.flush_outbox(settings, t.queue, [t.id])
    return outcome
