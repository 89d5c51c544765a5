"""Prototype of the proposed ``durable`` enqueue (not in the engine yet): the enqueue pipeline
gets a trailing ``WAIT <replicas> <timeout>`` on the same connection, and the call fails with
``ConnectionFailed`` unless enough replicas acknowledged the write. Wrapping an engine
operation keeps the engine untouched; ``enqueue_many`` is idempotent by task id, so a caller
retries a failed durable enqueue safely.

Works on standalone and Sentinel (one connection per pipeline). On a cluster the WAIT must be
sent to the node that owns the queue's slot, on the connection that made the write."""

from __future__ import annotations

from typing import Any, TypeVar

from engine.backend import Batch, Op, cmd
from engine.errors import ConnectionFailed

T = TypeVar("T")


def durable(op: Op[T], replicas: int = 1, timeout_ms: int = 1000) -> Op[T]:
    try:
        request = next(op)
        while True:
            reply: Any
            if isinstance(request, Batch) and any(c.script == "enqueue" for c in request.calls):
                replies = yield Batch([*request.calls, cmd("WAIT", replicas, timeout_ms)])
                acked = int(replies[-1])
                if acked < replicas:
                    raise ConnectionFailed(
                        f"enqueue reached {acked} of {replicas} replica(s) within {timeout_ms} ms; "
                        "it may be lost in a failover (retry: enqueue is idempotent by task id)"
                    )
                reply = replies[:-1]
            else:
                reply = yield request
            request = op.send(reply)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
