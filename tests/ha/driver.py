"""A minimal consumer for HA tests: leases, acknowledges and fails tasks with the engine's own
calls (``protocol.dequeue_call``/``ack_call``/``fail_call``, the ones the worker sends), so
cluster/sentinel behaviour is checked step by step, independently of worker scheduling."""

from __future__ import annotations

from engine import ops
from engine.backend import Op
from engine.ops import Settings
from engine.worker import protocol
from engine.worker.protocol import Job

LEASE_MS = 30_000


def dequeue(settings: Settings, queue: str, n: int = 10, worker: str = "ha-test") -> Op[list[Job]]:
    reply = yield protocol.dequeue_call(settings, queue, n, LEASE_MS, worker)
    return protocol.parse_dequeue(queue, reply)


def ack(settings: Settings, jobs: list[Job]) -> Op[list[str]]:
    """Complete leased jobs of one queue and tell their dependents; returns stale ids."""
    if not jobs:
        return []
    queue = jobs[0].queue
    stale, notified = yield protocol.ack_call(settings, queue, [(j.id, j.token, '{"ok":true}') for j in jobs])
    if notified:
        yield from ops.flush_outbox(settings, queue, list(notified))
    return list(stale)


def fail(settings: Settings, job: Job, error: str, mode: str = "retry") -> Op[str]:
    outcome = yield protocol.fail_call(
        settings, job.queue, job.id, job.token, error, "Traceback: test", 0, mode
    )
    if isinstance(outcome, list):  # newer scripts answer {outcome, notify}
        outcome = outcome[0]
    if outcome in ("dead", "cancelled"):
        yield from ops.flush_outbox(settings, job.queue, [job.id])
    return str(outcome)
