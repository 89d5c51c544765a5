"""Operator requests to workers through Redis: ask any worker (not only one this process
launched) to drain and stop. The worker checks at each registry heartbeat and drains as on
SIGTERM; every request is audited."""

from __future__ import annotations

from engine import admin
from engine.backend import Op, cmd
from engine.ops import Settings

STOP_REQUEST_TTL_S = 600
"""A request nobody honoured (the worker had already gone) expires on its own."""


def request_stop(settings: Settings, worker_id: str, actor: str | None = None) -> Op[bool]:
    """Ask ``worker_id`` to drain and stop. False when no such worker is registered."""
    ks = settings.keyspace
    known = yield cmd("EXISTS", ks.worker(worker_id))
    if not known:
        return False
    yield cmd("SET", ks.worker_stop(worker_id), "drain", "EX", STOP_REQUEST_TTL_S)
    yield from admin.audit(settings, "worker.stop", detail=f"worker {worker_id}", actor=actor)
    return True


def take_stop(settings: Settings, worker_id: str) -> Op[bool]:
    """Whether an operator asked this worker to stop, consuming the request (the worker's
    heartbeat reads it and drains)."""
    value = yield cmd("GETDEL", settings.keyspace.worker_stop(worker_id))
    return value is not None


def audit_launch(settings: Settings, pid: int, queues: str, outcome: str) -> Op[None]:
    """Record that the console launched a worker, and whether it came up."""
    yield from admin.audit(settings, "worker.launch", detail=f"pid {pid} queues {queues}: {outcome}")
