"""Producing task states for console tests with the engine's own Lua-backed operations."""

from __future__ import annotations

from engine import ops
from engine.client import Client


def lease(client: Client, queue: str, n: int = 1, worker: str = "w-test") -> list[ops.Job]:
    reply = client.backend.execute(ops.dequeue_call(client.settings, queue, n, 60_000, worker))
    return ops.parse_dequeue(queue, reply)


def kill(client: Client, job: ops.Job, error: str = "boom") -> None:
    """Fail a leased task permanently: it goes dead."""
    client.backend.execute(
        ops.fail_call(client.settings, job.queue, job.id, job.token, error, "Traceback: boom", 0, "permanent")
    )


def progress(client: Client, job: ops.Job, percent: float, message: str) -> None:
    client.backend.execute(ops.progress_call(client.settings, job.queue, job.id, job.token, percent, message))


def make_dead(client: Client, queue: str, n: int, prefix: str = "dead") -> list[str]:
    ids = []
    for i in range(n):
        r = client.enqueue("order:payment", {"order_id": i}, queue=queue, id=f"{prefix}-{i:03d}", max_retry=0)
        ids.append(r.id)
    for job in lease(client, queue, n):
        kill(client, job, f"card declined for {job.id}")
    return ids
