"""The worker protocol's call builders, wherever they live: ``engine.ops`` today; the worker
package (``engine/worker/protocol.py``) once the worker's split into a package lands. The worker
scripts' tables build every call through these, exactly as a worker sends it."""

from __future__ import annotations

from typing import Any

_protocol: Any
try:
    from engine.worker import protocol as _protocol  # type: ignore[attr-defined,no-redef,unused-ignore]
except ImportError:
    from engine import ops as _protocol  # type: ignore[no-redef,unused-ignore]

ack_call = _protocol.ack_call
defer_call = _protocol.defer_call
dequeue_call = _protocol.dequeue_call
extend_call = _protocol.extend_call
fail_call = _protocol.fail_call
progress_call = _protocol.progress_call
release_call = _protocol.release_call
start_call = _protocol.start_call
Job = _protocol.Job

WORKER = "w1"
DLV = "3"
TOKEN = f"{WORKER}#{DLV}"
"""The delivery token of a task held as ``HELD`` says (``<worker>#<dlv>``, see _lib.lua)."""
HELD = {"state": "active", "worker": WORKER, "dlv": DLV}
"""The fields of a task this worker holds, started (add ``reserved: "1"`` for a reserved one)."""
STALE_TOKENS = {
    "an earlier delivery": f"{WORKER}#2",
    "another worker": f"w2#{DLV}",
    "a later delivery": f"{WORKER}#4",
}
"""Tokens that are not the delivery's: each must be refused."""


def job(task_id: str, token: str = TOKEN) -> Any:
    """A reserved task as the worker holds it (``start_call`` reads only the id and token)."""
    return Job(task_id, "q", "t", "{}", 50, 3, 30.0, 0, "", 1, True, token)
