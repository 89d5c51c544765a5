"""Producing task states for console tests with the engine's own Lua-backed operations."""

from __future__ import annotations

from engine.client import Client
from engine.worker import protocol


def lease(client: Client, queue: str, n: int = 1, worker: str = "w-test") -> list[protocol.Job]:
    reply = client.backend.execute(protocol.dequeue_call(client.settings, queue, n, 60_000, worker))
    return protocol.parse_dequeue(queue, reply)


def kill(client: Client, job: protocol.Job, error: str = "boom") -> None:
    """Fail a leased task permanently: it goes dead."""
    client.backend.execute(
        protocol.fail_call(
            client.settings, job.queue, job.id, job.token, error, "Traceback: boom", 0, "permanent"
        )
    )


def progress(client: Client, job: protocol.Job, percent: float, message: str) -> None:
    client.backend.execute(
        protocol.progress_call(client.settings, job.queue, job.id, job.token, percent, message)
    )


def make_dead(client: Client, queue: str, n: int, prefix: str = "dead") -> list[str]:
    ids = []
    for i in range(n):
        r = client.enqueue("order:payment", {"order_id": i}, queue=queue, id=f"{prefix}-{i:03d}", max_retry=0)
        ids.append(r.id)
    for job in lease(client, queue, n):
        kill(client, job, f"card declined for {job.id}")
    return ids
