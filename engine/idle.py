"""Whether served queues still have work: what ``rediq-worker --burst`` and the test kit's
``run_until_idle`` wait for."""

from __future__ import annotations

from collections.abc import Sequence

from engine.backend import Batch, Op, cmd
from engine.ops import Settings, server_time_ms

PER_QUEUE = 6  # commands per queue in ``outstanding``'s batch


def outstanding(
    settings: Settings, queues: Sequence[str], horizon_s: float = 0.0, *, count_paused: bool = True
) -> Op[int]:
    """Tasks that keep the queues from being idle: pending, active (leased), dependency releases
    not yet told, and scheduled or retrying ones due within ``horizon_s``. With
    ``count_paused=False`` a paused queue's pending and due tasks do not count (no worker takes
    them until it is resumed); its running ones and releases still do."""
    now = yield from server_time_ms()
    until = now + int(horizon_s * 1000)
    calls = []
    for queue in queues:
        qk = settings.keyspace.queue(queue)
        calls += [
            cmd("ZCARD", qk.pending),
            cmd("ZCOUNT", qk.scheduled, "-inf", until),
            cmd("ZCOUNT", qk.retry, "-inf", until),
            cmd("ZCARD", qk.active),
            cmd("ZCARD", qk.dep_outbox),
            cmd("EXISTS", qk.paused),
        ]
    counts = [int(c) for c in (yield Batch(calls))]
    total = 0
    for i in range(0, len(counts), PER_QUEUE):
        waiting, running = counts[i : i + 3], counts[i + 3 : i + 5]
        paused = counts[i + 5] > 0
        total += sum(running) + (0 if paused and not count_paused else sum(waiting))
    return total


__all__ = ["outstanding"]
